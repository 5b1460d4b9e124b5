"""Label images for training, and pairing them with their DICOM slices.

Training layout (the user manual's rules)::

    <main_dir>/train/dicoms/<name>.dcm      one DICOM slice per file (extension optional)
    <main_dir>/train/labels/<name>.png      same stem; .npy, .png, .tif/.tiff or .jpg/.jpeg

A label image holds one integer per pixel: 0 is background and 1..num_labels are the ROIs.
PNG, TIFF and NumPy labels are exact. JPEG is lossy, so JPEG labels are snapped to the nearest
valid value, with a warning that says how many pixels changed.

The module never imports TensorFlow or Keras.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.label_names import label_names_hint
from ctseg_helpers.io.naming import LABEL_SUFFIXES, dicom_stem, label_stem

logger = logging.getLogger(__name__)

JPEG_SUFFIXES = (".jpg", ".jpeg")

#: JPEG values up to this far above ``num_labels`` are compression noise and are snapped down;
#: values further away mean the labels were saved with another scale (e.g. 0/255).
JPEG_TOLERANCE = 8

_IMAGES_DIR = "dicoms"
_LABELS_DIR = "labels"


@dataclass(frozen=True)
class Pair:
    """A training slice and its label image.

    Attributes
    ----------
    name : str
        The shared file stem.
    image_path : Path
        The DICOM file in ``<split_dir>/dicoms``.
    label_path : Path
        The label file in ``<split_dir>/labels``.
    """

    name: str
    image_path: Path
    label_path: Path


@dataclass(frozen=True)
class Matching:
    """Result of matching the two folders of a split, before judging it.

    Attributes
    ----------
    pairs : list of Pair
        Sorted by name.
    images_without_labels : list of Path
    labels_without_images : list of Path
    ignored : list of Path
        Files in ``labels/`` whose extension is not a label format.
    """

    pairs: list[Pair]
    images_without_labels: list[Path]
    labels_without_images: list[Path]
    ignored: list[Path]


def check_num_labels(num_labels) -> int:
    """Validate ``num_labels`` (the number of ROIs, background excluded) and return it as int.

    Raises
    ------
    CtsegSettingsError
        If it is not an integer between 1 and 255.
    """
    if isinstance(num_labels, bool) or not isinstance(num_labels, (int, np.integer)):
        raise CtsegSettingsError(
            f"num_labels must be a whole number of ROIs (1..255, background not counted), got {num_labels!r}"
        )
    if not 1 <= int(num_labels) <= 255:
        raise CtsegSettingsError(
            f"num_labels must be between 1 and 255 (number of ROIs, background not counted), got {num_labels}"
        )
    return int(num_labels)


def _listing(paths: list[Path], limit: int = 10) -> str:
    names = ", ".join(p.name for p in paths[:limit])
    more = f", ... ({len(paths)} in all)" if len(paths) > limit else f" ({len(paths)} in all)"
    return names + more


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def match_split(split_dir: str | Path) -> Matching:
    """Match ``<split_dir>/dicoms`` and ``<split_dir>/labels`` by file stem, without judging.

    Raises
    ------
    CtsegDataError
        If the folder or either subfolder is missing, if two files in one subfolder share a
        stem, or if ``dicoms`` is empty.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise CtsegDataError(
            f"{split_dir}: no such folder; give the training folder that holds "
            f"'{_IMAGES_DIR}/' and '{_LABELS_DIR}/' (e.g. <main_dir>/train)"
        )
    images_dir, labels_dir = split_dir / _IMAGES_DIR, split_dir / _LABELS_DIR
    for sub in (images_dir, labels_dir):
        if not sub.is_dir():
            raise CtsegDataError(
                f"{split_dir}: has no '{sub.name}/' folder; training data must be laid out as "
                f"{split_dir}/{_IMAGES_DIR}/<name>.dcm and {split_dir}/{_LABELS_DIR}/<name>.png"
            )
    images: dict[str, Path] = {}
    for path in _visible_files(images_dir):
        stem = dicom_stem(path)
        if stem in images:
            raise CtsegDataError(
                f"{images_dir}: two image files have the stem '{stem}': {images[stem].name} and {path.name}; keep one"
            )
        images[stem] = path
    if not images:
        raise CtsegDataError(f"{images_dir}: the folder is empty; put the training DICOM slices there")
    labels: dict[str, Path] = {}
    ignored: list[Path] = []
    for path in _visible_files(labels_dir):
        stem = label_stem(path)
        if stem is None:
            ignored.append(path)
            continue
        if stem in labels:
            raise CtsegDataError(
                f"{labels_dir}: two label files have the stem '{stem}': {labels[stem].name} and {path.name}; keep one"
            )
        labels[stem] = path
    if ignored:
        logger.warning(
            "%s: ignoring %d file(s) that are not label images (%s): %s",
            labels_dir,
            len(ignored),
            "/".join(LABEL_SUFFIXES),
            _listing(ignored),
        )
    pairs = [Pair(name, images[name], labels[name]) for name in sorted(images) if name in labels]
    return Matching(
        pairs=pairs,
        images_without_labels=[images[n] for n in sorted(images) if n not in labels],
        labels_without_images=[labels[n] for n in sorted(labels) if n not in images],
        ignored=ignored,
    )


def find_pairs(split_dir: str | Path) -> list[Pair]:
    """Pair every DICOM slice in ``<split_dir>/dicoms`` with its label in ``<split_dir>/labels``.

    Files pair by stem: ``dicoms/a.dcm`` (or ``dicoms/a``) with ``labels/a.png`` (``.npy``,
    ``.tif``, ``.jpg`` ...). Hidden files (``.DS_Store``) are ignored.

    Parameters
    ----------
    split_dir : path-like
        ``<main_dir>/train`` (or any folder with ``dicoms/`` and ``labels/``).

    Returns
    -------
    list of Pair
        Sorted by name.

    Raises
    ------
    CtsegDataError
        If a folder is missing or empty, two files share a stem, or any image has no label or
        any label no image: the message lists the first ten of each and their count.
    """
    matching = match_split(split_dir)
    problems = []
    if matching.images_without_labels:
        problems.append(f"images without a label: {_listing(matching.images_without_labels)}")
    if matching.labels_without_images:
        problems.append(f"labels without an image: {_listing(matching.labels_without_images)}")
    if problems:
        raise CtsegDataError(
            f"{split_dir}: {'; '.join(problems)}. Every file in '{_IMAGES_DIR}/' needs a label "
            f"with the same name in '{_LABELS_DIR}/' and the other way round; add or remove files"
        )
    return matching.pairs


# --------------------------------------------------------------------------------------------
# Reading label files
# --------------------------------------------------------------------------------------------


def load_label_values(path: str | Path) -> np.ndarray:
    """Read a label file's raw values, without checking them against ``num_labels``.

    Parameters
    ----------
    path : path-like
        ``.npy``, ``.png``, ``.tif``/``.tiff`` or ``.jpg``/``.jpeg``.

    Returns
    -------
    ndarray of shape (M, N)
        Integer dtype for exact formats and JPEG; for ``.npy`` files the stored dtype (float
        arrays are checked to hold whole numbers). RGB images whose pixels are all grey are
        converted to one channel.

    Raises
    ------
    CtsegDataError
        Missing file, unknown extension, unreadable file, not a 2D image, colour pixels in an
        RGB image, or non-integer values.
    """
    path = Path(path)
    if not path.is_file():
        raise CtsegDataError(f"{path}: no such label file; check the path")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        values = _load_npy(path)
    elif suffix in LABEL_SUFFIXES:
        values = _load_picture(path)
    else:
        raise CtsegDataError(
            f"{path}: unknown label format '{path.suffix}'; save labels as {', '.join(LABEL_SUFFIXES)}"
        )
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim != 2:
        raise CtsegDataError(f"{path}: label has shape {values.shape}; a label must be one 2D image (rows, cols)")
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
            raise CtsegDataError(
                f"{path}: label values must be whole numbers 0..num_labels; found non-integer values "
                "(was the label resized with interpolation? save it with integer values)"
            )
        values = values.astype(np.int64)
    elif values.dtype.kind == "b":
        values = values.astype(np.uint8)
    elif values.dtype.kind not in "iu":
        raise CtsegDataError(f"{path}: label has dtype {values.dtype}; labels must be integers")
    return values


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (ValueError, OSError, EOFError) as exc:
        raise CtsegDataError(f"{path}: cannot read the NumPy label file ({exc}); save it with numpy.save") from exc


def _load_picture(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr", "HSV", "LAB"):
                rgb = np.asarray(img.convert("RGB"))
            elif mode == "P":
                # Palette images: a grey palette shows the values; a coloured one is indexed by label.
                shown = np.asarray(img.convert("RGB"))
                if (shown == shown[..., :1]).all():
                    return shown[..., 0]
                return np.asarray(img)
            else:
                rgb = None
                values = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CtsegDataError(f"{path}: cannot read the label image ({exc}); re-export it as PNG") from exc
    if rgb is not None:
        grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
        if path.suffix.lower() in JPEG_SUFFIXES:
            # JPEG chroma noise: accept near-grey colours (each channel within 2 of the mean).
            spread = rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1)
            grey = spread <= 2
        if not grey.all():
            row, col = np.argwhere(~grey)[0]
            raise CtsegDataError(
                f"{path}: colour label image: {int((~grey).sum())} pixels are not grey, e.g. "
                f"(row {row}, col {col}) = {tuple(int(v) for v in rgb[row, col])}; save labels as "
                "greyscale images holding 0 for background and 1..num_labels for the ROIs"
            )
        values = np.round(rgb.astype(np.float32).mean(axis=-1)).astype(np.uint8)
    return values


def _out_of_range_message(path: Path, bad: np.ndarray, num_labels: int) -> str:
    shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if len(bad) > 10 else "")
    hint = ""
    if bad.max() == 255 and num_labels < 255:
        hint = " (masks saved as 0/255? divide them by 255)"
    return (
        f"{path}: label values {shown} are outside 0..{num_labels} (num_labels={num_labels}){hint}; "
        "fix the label or the num_labels setting"
    )


def snap_jpeg_values(values: np.ndarray, num_labels: int) -> tuple[np.ndarray, int]:
    """Snap lossy JPEG label values to the nearest of 0..num_labels.

    Returns
    -------
    snapped : ndarray of shape (M, N) and dtype uint8
    n_changed : int
        Number of pixels whose value changed.
    """
    snapped = np.clip(values, 0, num_labels).astype(np.uint8)
    return snapped, int(np.count_nonzero(snapped != values))


def read_label(path: str | Path, num_labels: int) -> np.ndarray:
    """Read one label image and check its values.

    Parameters
    ----------
    path : path-like
        ``.npy``, ``.png``, ``.tif``/``.tiff`` or ``.jpg``/``.jpeg``.
    num_labels : int
        Number of ROIs; valid values are 0 (background) .. num_labels.

    Returns
    -------
    ndarray of shape (M, N) and dtype uint8

    Raises
    ------
    CtsegDataError
        If the file cannot be read (see :func:`load_label_values`) or holds values outside
        0..num_labels. For JPEG, values up to ``num_labels + JPEG_TOLERANCE`` are compression
        noise: they are snapped to the nearest valid value and a warning is logged with the
        number of pixels changed.
    CtsegSettingsError
        If ``num_labels`` is not an integer in 1..255.
    """
    num_labels = check_num_labels(num_labels)
    path = Path(path)
    values = load_label_values(path)
    is_jpeg = path.suffix.lower() in JPEG_SUFFIXES
    limit = num_labels + JPEG_TOLERANCE if is_jpeg else num_labels
    bad = np.unique(values[(values < 0) | (values > limit)])
    if bad.size:
        raise CtsegDataError(_out_of_range_message(path, bad, num_labels))
    if is_jpeg:
        snapped, changed = snap_jpeg_values(values, num_labels)
        if changed:
            logger.warning(
                "%s: JPEG label: %d pixel(s) snapped to the nearest valid value 0..%d (JPEG is lossy; "
                "save labels as PNG to avoid this)",
                path,
                changed,
                num_labels,
            )
        return snapped
    return values.astype(np.uint8)


def read_named_label(path: str | Path, label_names: Sequence[str]) -> np.ndarray:
    """:func:`ctseg_helpers.io.labels.read_label` with one ROI per name.

    Returns
    -------
    ndarray of shape (M, N) and dtype uint8

    Raises
    ------
    CtsegDataError
        As ``read_label``; when the file holds label values above the number of names, the
        message also gives the names, the largest value and an example.
    """
    try:
        return read_label(path, len(label_names))
    except CtsegDataError as exc:
        try:
            values = load_label_values(path)
        except CtsegDataError:
            raise exc from None
        high = int(values.max()) if values.size else 0
        if high <= len(label_names):
            raise
        raise CtsegDataError(f"{exc}; {label_names_hint(label_names, high)}") from exc


def read_pair(pair: Pair, num_labels: int):
    """Read a training pair and check that image and label have the same shape.

    Returns
    -------
    image : DicomImage
    labels : ndarray of shape (rows, cols) and dtype uint8

    Raises
    ------
    CtsegDataError
        If either file cannot be read or the shapes differ (the message names both files).
    """
    from ctseg_helpers.io.dicom import read_dicom_file  # noqa: PLC0415 - avoid a cycle

    image = read_dicom_file(pair.image_path)
    labels = read_label(pair.label_path, num_labels)
    check_same_shape(pair, image.pixels.shape, labels.shape)
    return image, labels


def check_same_shape(pair: Pair, image_shape: tuple[int, ...], label_shape: tuple[int, ...]) -> None:
    """Raise CtsegDataError naming both files when a label's shape differs from its image's."""
    if tuple(image_shape) != tuple(label_shape):
        raise CtsegDataError(
            f"label {pair.label_path} is {label_shape[0]}x{label_shape[1]} but its image "
            f"{pair.image_path} is {image_shape[0]}x{image_shape[1]}; a label must have exactly the "
            "image's size (do not resize or crop one of them)"
        )


__all__ = [
    "JPEG_TOLERANCE",
    "LABEL_SUFFIXES",
    "Matching",
    "Pair",
    "check_num_labels",
    "check_same_shape",
    "find_pairs",
    "load_label_values",
    "match_split",
    "read_label",
    "read_named_label",
    "read_pair",
    "snap_jpeg_values",
]
