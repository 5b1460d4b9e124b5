"""Check a training folder before spending hours training on it.

:func:`check_data` reads every image/label pair of ``<main_dir>/train`` and reports what a
researcher needs to know first: how many pairs, which label values occur and how often,
labels never seen, slices with values out of range, images or labels without a partner,
shape mismatches and unreadable files. The report prints as readable text (also in a
notebook) and converts to a JSON-ready dict; ``ctseg check-data`` is its command-line form.

Problems (``report.problems``) are what would stop training; warnings are worth reading but
do not stop it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.dicom import read_dicom_file
from ctseg_helpers.io.labels import (
    JPEG_SUFFIXES,
    JPEG_TOLERANCE,
    check_num_labels,
    load_label_values,
    match_split,
    snap_jpeg_values,
)

logger = logging.getLogger(__name__)

_LIST_LIMIT = 10


@dataclass(frozen=True, repr=False)
class DataReport:
    """What :func:`check_data` found in a training folder.

    Attributes
    ----------
    split_dir : Path
        The folder checked (the one holding ``dicoms/`` and ``labels/``).
    num_labels : int
        Number of ROIs expected; valid label values are 0..num_labels.
    n_pairs : int
        Image/label pairs found by name.
    label_values : list of int
        Sorted label values seen in readable labels (JPEG labels after snapping), including
        values out of range.
    slices_per_label : dict of int to int
        For each value seen, the number of label images that contain it.
    pixels_per_label : dict of int to int
        For each value seen, the number of pixels holding it over all label images.
    labels_never_seen : list of int
        Values in 0..num_labels that no label image contains.
    out_of_range : list of (str, list of int)
        Pair name and the values outside 0..num_labels.
    images_without_labels, labels_without_images : list of str
        File names without a partner.
    shape_mismatches : list of (str, (int, int), (int, int))
        Pair name, image (rows, cols), label (rows, cols).
    unreadable : list of (str, str)
        File and the reason it cannot be read.
    jpeg_pixels_snapped : int
        JPEG label pixels moved to the nearest valid value.
    image_sizes : dict of str to int
        ``"rowsxcols"`` to number of images.
    modalities : dict of str to int
    pixel_spacing_mm : (float, float) or None
        Smallest and largest in-plane pixel spacing seen (mm).
    n_without_spacing : int
        Images without PixelSpacing.
    problems : list of str
        What would stop training; empty when the data is ready.
    warnings : list of str
        Worth a look; training can go on.
    """

    split_dir: Path
    num_labels: int
    n_pairs: int
    label_values: list[int]
    slices_per_label: dict[int, int]
    pixels_per_label: dict[int, int]
    labels_never_seen: list[int]
    out_of_range: list[tuple[str, list[int]]]
    images_without_labels: list[str]
    labels_without_images: list[str]
    shape_mismatches: list[tuple[str, tuple[int, int], tuple[int, int]]]
    unreadable: list[tuple[str, str]]
    jpeg_pixels_snapped: int
    image_sizes: dict[str, int]
    modalities: dict[str, int]
    pixel_spacing_mm: tuple[float, float] | None
    n_without_spacing: int
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing would stop training."""
        return not self.problems

    def to_dict(self) -> dict:
        """JSON-ready dict (keys as the attributes, plus ``ok``)."""
        return {
            "split_dir": str(self.split_dir),
            "num_labels": self.num_labels,
            "n_pairs": self.n_pairs,
            "label_values": list(self.label_values),
            "slices_per_label": {str(k): v for k, v in self.slices_per_label.items()},
            "pixels_per_label": {str(k): v for k, v in self.pixels_per_label.items()},
            "labels_never_seen": list(self.labels_never_seen),
            "out_of_range": [{"name": n, "values": v} for n, v in self.out_of_range],
            "images_without_labels": list(self.images_without_labels),
            "labels_without_images": list(self.labels_without_images),
            "shape_mismatches": [
                {"name": n, "image_shape": list(i), "label_shape": list(lab)} for n, i, lab in self.shape_mismatches
            ],
            "unreadable": [{"file": f, "reason": r} for f, r in self.unreadable],
            "jpeg_pixels_snapped": self.jpeg_pixels_snapped,
            "image_sizes": dict(self.image_sizes),
            "modalities": dict(self.modalities),
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "n_without_spacing": self.n_without_spacing,
            "ok": self.ok,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }

    def to_text(self) -> str:
        """Readable multi-line summary (what ``print(report)`` and notebooks show)."""
        lines = [f"Training data in {self.split_dir}", f"  pairs: {self.n_pairs}"]
        if self.image_sizes:
            sizes = ", ".join(f"{k} ({v})" for k, v in self.image_sizes.items())
            lines.append(f"  image sizes: {sizes}")
        if self.modalities:
            lines.append("  modalities: " + ", ".join(f"{k or '?'} ({v})" for k, v in self.modalities.items()))
        if self.pixel_spacing_mm:
            low, high = self.pixel_spacing_mm
            lines.append(
                f"  pixel spacing: {low:.4g}-{high:.4g} mm"
                + (f" ({self.n_without_spacing} images without)" if self.n_without_spacing else "")
            )
        lines.append(
            f"  label values expected: 0..{self.num_labels}; seen: "
            + (", ".join(map(str, self.label_values)) or "none")
        )
        if self.pixels_per_label:
            lines.append("  value   slices      pixels")
            for value in sorted(self.pixels_per_label):
                lines.append(f"  {value:>5} {self.slices_per_label[value]:>8} {self.pixels_per_label[value]:>11}")
        lines.append("Problems (must be fixed before training):" if self.problems else "No problems found.")
        lines.extend(f"  - {p}" for p in self.problems)
        if self.warnings:
            lines.append("Warnings:")
            lines.extend(f"  - {w}" for w in self.warnings)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return (
            f"DataReport(split_dir={str(self.split_dir)!r}, n_pairs={self.n_pairs}, "
            f"label_values={self.label_values}, problems={len(self.problems)})"
        )

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython / Jupyter display
        printer.text(repr(self) if cycle else self.to_text())


def resolve_split_dir(path: str | Path, split: str = "train") -> Path:
    """The folder holding ``dicoms/`` and ``labels/``: ``path`` itself or ``path/<split>``.

    Raises
    ------
    CtsegDataError
        If neither holds both subfolders.
    """
    path = Path(path)
    if not path.is_dir():
        raise CtsegDataError(f"{path}: no such folder; check the path")
    if (path / "dicoms").is_dir() and (path / "labels").is_dir():
        return path
    candidate = path / split
    if (candidate / "dicoms").is_dir() and (candidate / "labels").is_dir():
        return candidate
    raise CtsegDataError(
        f"{path}: neither this folder nor {candidate} holds 'dicoms/' and 'labels/' folders; give the "
        f"main data folder (with {split}/dicoms and {split}/labels) or the {split} folder itself"
    )


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _LIST_LIMIT else "")


def check_data(split_dir: str | Path, num_labels: int, *, progress: bool = True) -> DataReport:
    """Read every training pair and report what would stop or spoil training.

    Parameters
    ----------
    split_dir : path-like
        ``<main_dir>/train`` (the folder holding ``dicoms/`` and ``labels/``).
    num_labels : int
        Number of ROIs (label values 1..num_labels; 0 is background).
    progress : bool
        Show a progress bar.

    Returns
    -------
    DataReport
        Never raises for problems in individual files: they are listed in ``problems``.

    Raises
    ------
    CtsegDataError
        If the folder, ``dicoms/`` or ``labels/`` is missing, ``dicoms/`` is empty, or two
        files in one folder share a stem.
    CtsegSettingsError
        If ``num_labels`` is not an integer in 1..255.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    num_labels = check_num_labels(num_labels)
    split_dir = Path(split_dir)
    matching = match_split(split_dir)
    pixels: Counter[int] = Counter()
    slices: Counter[int] = Counter()
    sizes: Counter[str] = Counter()
    modalities: Counter[str] = Counter()
    spacings: list[tuple[float, float]] = []
    n_without_spacing = 0
    out_of_range, mismatches, unreadable = [], [], []
    snapped_total = 0
    for pair in tqdm(matching.pairs, desc="checking pairs", unit="pair", disable=not progress):
        image_shape = None
        try:
            image = read_dicom_file(pair.image_path)
        except CtsegDataError as exc:
            unreadable.append((pair.image_path.name, str(exc)))
        else:
            image_shape = image.pixels.shape
            sizes[f"{image_shape[0]}x{image_shape[1]}"] += 1
            modalities[image.modality] += 1
            if image.pixel_spacing_mm is None:
                n_without_spacing += 1
            else:
                spacings.append(image.pixel_spacing_mm)
        try:
            values = load_label_values(pair.label_path)
        except CtsegDataError as exc:
            unreadable.append((pair.label_path.name, str(exc)))
            continue
        if image_shape is not None and values.shape != image_shape:
            mismatches.append((pair.name, tuple(image_shape), tuple(values.shape)))
        if pair.label_path.suffix.lower() in JPEG_SUFFIXES:
            # Compression noise (up to JPEG_TOLERANCE above num_labels) is snapped, as read_label
            # does; values further out stay and are reported as out of range.
            snapped, _ = snap_jpeg_values(values, num_labels)
            changed = (values <= num_labels + JPEG_TOLERANCE) & (snapped != values)
            snapped_total += int(np.count_nonzero(changed))
            values = np.where(changed, snapped, values)
        found, counts = np.unique(values, return_counts=True)
        bad = [int(v) for v in found if v < 0 or v > num_labels]
        if bad:
            out_of_range.append((pair.name, bad))
        for value, count in zip(found, counts, strict=True):
            pixels[int(value)] += int(count)
            slices[int(value)] += 1
    never_seen = [v for v in range(num_labels + 1) if v not in pixels] if matching.pairs else []
    problems = _problems(matching, out_of_range, mismatches, unreadable, num_labels, modalities)
    warnings = _warnings(never_seen, snapped_total, modalities, n_without_spacing, matching)
    report = DataReport(
        split_dir=split_dir,
        num_labels=num_labels,
        n_pairs=len(matching.pairs),
        label_values=sorted(pixels),
        slices_per_label=dict(sorted(slices.items())),
        pixels_per_label=dict(sorted(pixels.items())),
        labels_never_seen=never_seen,
        out_of_range=out_of_range,
        images_without_labels=[p.name for p in matching.images_without_labels],
        labels_without_images=[p.name for p in matching.labels_without_images],
        shape_mismatches=mismatches,
        unreadable=unreadable,
        jpeg_pixels_snapped=snapped_total,
        image_sizes=dict(sizes.most_common()),
        modalities=dict(modalities.most_common()),
        pixel_spacing_mm=(float(np.min(spacings)), float(np.max(spacings))) if spacings else None,
        n_without_spacing=n_without_spacing,
        problems=problems,
        warnings=warnings,
    )
    logger.info(
        "checked %d pairs in %s: %d problem(s), %d warning(s)", report.n_pairs, split_dir, len(problems), len(warnings)
    )
    return report


def _mixes_ct(modalities) -> bool:
    """CT next to any other modality: training refuses it (CT is normalised in HU, the rest per image)."""
    return "CT" in {m.upper() for m in modalities} and len({m.upper() == "CT" for m in modalities}) > 1


def _problems(matching, out_of_range, mismatches, unreadable, num_labels, modalities) -> list[str]:
    problems = []
    if not matching.pairs:
        problems.append("no image/label pairs: no file in 'dicoms/' has a label with the same name in 'labels/'")
    if matching.images_without_labels:
        names = [p.name for p in matching.images_without_labels]
        problems.append(f"{len(names)} image(s) without a label: {_listing(names)}")
    if matching.labels_without_images:
        names = [p.name for p in matching.labels_without_images]
        problems.append(f"{len(names)} label(s) without an image: {_listing(names)}")
    if out_of_range:
        shown = [f"{name} ({', '.join(map(str, values[:5]))})" for name, values in out_of_range]
        problems.append(f"{len(out_of_range)} label(s) with values outside 0..{num_labels}: {_listing(shown)}")
    if mismatches:
        shown = [f"{name} (image {i[0]}x{i[1]}, label {lab[0]}x{lab[1]})" for name, i, lab in mismatches]
        problems.append(f"{len(mismatches)} label(s) whose size differs from the image: {_listing(shown)}")
    if unreadable:
        shown = [f"{name}: {reason}" for name, reason in unreadable]
        problems.append(f"{len(unreadable)} unreadable file(s): {_listing(shown)}")
    if _mixes_ct(modalities):
        problems.append(
            "mixes CT with other modalities ("
            + ", ".join(f"{k or '?'} ({v})" for k, v in modalities.items())
            + "): CT is normalised in Hounsfield units and other scans per image, so train one model per "
            "kind of scan (move the other images and their labels to another folder)"
        )
    return problems


def _warnings(never_seen, snapped, modalities, n_without_spacing, matching) -> list[str]:
    warnings = []
    if never_seen:
        warnings.append(
            f"label value(s) {', '.join(map(str, never_seen))} never seen in any label: the model cannot "
            "learn them (check num_labels)"
        )
    if snapped:
        warnings.append(f"{snapped} JPEG label pixel(s) snapped to the nearest valid value (save labels as PNG)")
    if len(modalities) > 1 and not _mixes_ct(modalities):
        warnings.append("mixed modalities: " + ", ".join(f"{k or '?'} ({v})" for k, v in modalities.items()))
    if n_without_spacing:
        warnings.append(f"{n_without_spacing} image(s) without PixelSpacing: areas in mm² cannot be computed for them")
    if matching.ignored:
        warnings.append(
            f"{len(matching.ignored)} file(s) in 'labels/' ignored (not a label format): "
            f"{_listing([p.name for p in matching.ignored])}"
        )
    return warnings


__all__ = ["DataReport", "check_data", "resolve_split_dir"]
