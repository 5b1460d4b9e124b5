"""Training data: paired slices loaded into arrays, fitted to the network input, split, batched.

The steps follow the data's path:

1. :func:`load_slices` reads every image/label pair of a folder (``<main_dir>/train``),
   normalises the images for their modality and fits each slice into the square network input
   (:func:`fit_image` / :func:`fit_label`);
2. :func:`split_by_group` picks whole patients (or series) for validation, never single slices,
   since neighbouring slices of one scan are near duplicates;
3. :func:`make_dataset` builds the ``tf.data`` pipeline: shuffle, label-safe augmentation in a
   parallel map, batch, prefetch.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.prepare.augment import NO_AUGMENTATION, AugmentConfig, augment_pair
from ctseg_helpers.prepare.normalize import Normalization, normalize_image

logger = logging.getLogger(__name__)

FIT_MODES = ("resize", "pad")


@dataclass
class SliceSet:
    """Slices ready for the network.

    Attributes
    ----------
    images : ndarray of shape (K, S, S) and dtype float32
        Normalised images (0..1), fitted to the square input side ``S``.
    labels : ndarray of shape (K, S, S) and dtype uint8
        Label maps, 0 = background.
    groups : ndarray of shape (K,) and dtype object (str)
        Patient (or series) each slice belongs to; validation is split by these.
    names : list of str
        Pair name of each slice (file stem).
    normalization : Normalization
        How the images were normalised.
    pixel_spacing_mm : (float, float) or None
        Median native pixel spacing (row, col) of the slices, before fitting.
    shapes : ndarray of shape (K, 2) and dtype int, or None
        For slices kept at their own size (native-resolution training): the rows and columns of
        each slice; the stack is zero-padded (label 0) beyond them to a common size. None when
        every slice fills the stack (resized or padded to the network input).
    """

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    names: list[str]
    normalization: Normalization
    pixel_spacing_mm: tuple[float, float] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    shapes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index) -> SliceSet:
        """The slices at ``index`` (array of positions or boolean mask)."""
        index = np.asarray(index)
        return SliceSet(
            images=self.images[index],
            labels=self.labels[index],
            groups=self.groups[index],
            names=[self.names[i] for i in np.arange(len(self))[index]],
            normalization=self.normalization,
            pixel_spacing_mm=self.pixel_spacing_mm,
            shapes=None if self.shapes is None else self.shapes[index],
        )

    def slice_shape(self, i: int) -> tuple[int, int]:
        """Rows and columns of slice ``i`` without the stack's padding."""
        if self.shapes is None:
            return tuple(int(v) for v in self.images.shape[1:3])
        return int(self.shapes[i][0]), int(self.shapes[i][1])

    def label_values(self) -> list[int]:
        """Label values present, sorted."""
        return [int(v) for v in np.unique(self.labels)]


def fit_image(image: np.ndarray, size: int, mode: str = "resize") -> np.ndarray:
    """Fit one image into a ``size`` x ``size`` square.

    Parameters
    ----------
    image : ndarray of shape (M, N), real dtype
    size : int
        Side of the square network input, pixels.
    mode : {"resize", "pad"}
        ``"resize"``: bilinear resampling of the whole slice (aspect ratio not kept, as the
        segmenter maps predictions back with the inverse resize). ``"pad"``: zero padding
        and/or centre crop, no resampling.

    Returns
    -------
    ndarray of shape (size, size) and dtype float32
    """
    image = np.asarray(image, dtype=np.float32)
    if image.shape == (size, size):
        return image
    if mode == "resize":
        from skimage.transform import resize  # noqa: PLC0415

        return resize(image, (size, size), order=1, mode="edge", anti_aliasing=False, preserve_range=True).astype(
            np.float32
        )
    return _pad_or_crop(image, size)


def fit_label(label: np.ndarray, size: int, mode: str = "resize") -> np.ndarray:
    """Fit one label map into a ``size`` x ``size`` square by nearest neighbour only.

    Parameters
    ----------
    label : ndarray of shape (M, N), integer dtype
    size : int
    mode : {"resize", "pad"}

    Returns
    -------
    ndarray of shape (size, size) and dtype uint8; its values are a subset of the input's
    (plus 0 where padding was added).
    """
    label = np.asarray(label)
    if label.shape == (size, size):
        return label.astype(np.uint8)
    if mode == "resize":
        rows = np.minimum((np.arange(size) + 0.5) * label.shape[0] / size, label.shape[0] - 1).astype(int)
        cols = np.minimum((np.arange(size) + 0.5) * label.shape[1] / size, label.shape[1] - 1).astype(int)
        return label[np.ix_(rows, cols)].astype(np.uint8)
    return _pad_or_crop(label, size).astype(np.uint8)


def _pad_or_crop(array: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size), dtype=array.dtype)
    src, dst = [], []
    for n in array.shape:
        if n >= size:
            start = (n - size) // 2
            src.append(slice(start, start + size))
            dst.append(slice(0, size))
        else:
            start = (size - n) // 2
            src.append(slice(0, n))
            dst.append(slice(start, start + n))
    out[tuple(dst)] = array[tuple(src)]
    return out


def _check_settings(size: int, mode: str, num_labels: int) -> None:
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise CtsegSettingsError(f"input_shape must be an integer of at least 8 pixels, got {size!r}")
    if mode not in FIT_MODES:
        raise CtsegSettingsError(f"fit_mode must be one of {FIT_MODES}, got {mode!r}")
    if num_labels < 1:
        raise CtsegSettingsError(f"num_labels must be at least 1, got {num_labels}")


def slices_from_arrays(
    images,
    labels,
    input_shape: int,
    num_labels: int,
    *,
    groups=None,
    names=None,
    normalization: Normalization | None = None,
    fit_mode: str = "resize",
    pixel_spacing_mm=None,
) -> SliceSet:
    """Build a :class:`SliceSet` from raw images and labels already in memory.

    Parameters
    ----------
    images : sequence of ndarray of shape (M, N)
        Raw values (HU for CT, scanner units for MR); slices may differ in size.
    labels : sequence of ndarray of shape (M, N), integer dtype
        Label maps with values 0..num_labels, each the shape of its image.
    input_shape : int
        Side of the square network input.
    num_labels : int
        Number of ROIs (background excluded).
    groups : sequence of str, optional
        Patient/series of each slice; by default every slice is its own group.
    names : sequence of str, optional
    normalization : Normalization, optional
        Default: MR (per-image percentiles).
    fit_mode : {"resize", "pad"}
    pixel_spacing_mm : (float, float), optional

    Raises
    ------
    CtsegDataError
        If an image and its label differ in shape or a label holds values above ``num_labels``.
    """
    _check_settings(input_shape, fit_mode, num_labels)
    norm = normalization or Normalization(modality="MR")
    n = len(images)
    if len(labels) != n:
        raise CtsegDataError(f"{n} images but {len(labels)} label maps were given; give one label map per image")
    names = list(names) if names is not None else [f"slice_{i}" for i in range(n)]
    groups = np.asarray(list(groups) if groups is not None else names, dtype=object)
    out_images = np.empty((n, input_shape, input_shape), np.float32)
    out_labels = np.empty((n, input_shape, input_shape), np.uint8)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        image, label = np.asarray(image), np.asarray(label)
        _check_pair(names[i], image, label, num_labels)
        out_images[i] = fit_image(normalize_image(image, norm), input_shape, fit_mode)
        out_labels[i] = fit_label(label, input_shape, fit_mode)
    return SliceSet(
        out_images, out_labels, groups, names, norm, tuple(pixel_spacing_mm) if pixel_spacing_mm is not None else None
    )


def load_slices(
    split_dir: str | Path,
    input_shape: int,
    num_labels: int,
    *,
    fit_mode: str = "resize",
    normalization: Normalization | None = None,
    max_slices: int | None = None,
    progress: bool = True,
) -> SliceSet:
    """Read every image/label pair in ``split_dir`` and fit it to the network input.

    Parameters
    ----------
    split_dir : path
        Folder in the training layout (``<main_dir>/train``, holding ``dicoms/`` and
        ``labels/``), as understood by :func:`ctseg_helpers.io.labels.find_pairs`.
    input_shape : int
        Side of the square network input, pixels.
    num_labels : int
        Number of ROIs (background excluded).
    fit_mode : {"resize", "pad"}
    normalization : Normalization, optional
        Default: from the DICOM Modality tag (CT window for CT, percentiles otherwise).
    max_slices : int, optional
        Read only ``max_slices`` pairs, evenly spaced in name order (cheap smoke runs).
    progress : bool
        Show a progress bar.

    Returns
    -------
    SliceSet
        Slices grouped by DICOM PatientID; when a file has none, by StudyInstanceUID (then
        SeriesInstanceUID, then the pair name), so several series of one study stay together.

    Raises
    ------
    CtsegDataError
        If the folder does not exist or holds no pairs, if an image and its label differ in
        shape, or if the folder mixes CT with other modalities.
    """
    _check_settings(input_shape, fit_mode, num_labels)
    raw = read_pairs(split_dir, num_labels, max_slices=max_slices, progress=progress)
    normalization = normalization or raw.default_normalization()
    slices = slices_from_arrays(
        raw.images,
        raw.labels,
        input_shape,
        num_labels,
        groups=raw.groups,
        names=raw.names,
        normalization=normalization,
        fit_mode=fit_mode,
        pixel_spacing_mm=raw.median_spacing_mm(),
    )
    logger.info(
        "read %d slices from %s (%d patients/series, %s normalisation)",
        len(slices),
        split_dir,
        len(set(raw.groups)),
        normalization.modality,
    )
    return slices


@dataclass
class RawPairs:
    """Image/label pairs as read, before normalisation or resampling.

    Attributes
    ----------
    images : list of ndarray of shape (M, N)
        Raw values (HU for CT); sizes may differ between slices.
    labels : list of ndarray of shape (M, N) and dtype uint8
    spacings_mm : list of (float, float) or None
        Pixel spacing of each slice, None where the file has none.
    groups : list of str
        Patient (or study, series, pair name) of each slice.
    names : list of str
    modalities : list of str
    source : Path
    """

    images: list
    labels: list
    spacings_mm: list
    groups: list
    names: list
    modalities: list
    source: Path

    def __len__(self) -> int:
        return len(self.images)

    def modality(self) -> str:
        """ "CT" or "MR" (anything not CT is normalised as MR).

        Raises
        ------
        CtsegDataError
            If the folder mixes CT with other modalities.
        """
        counts = Counter("CT" if m == "CT" else "MR" for m in self.modalities)
        if len(counts) > 1:
            raise CtsegDataError(
                f"{self.source}: mixes CT with other modalities ({dict(counts)}); CT is normalised in "
                "Hounsfield units and MR per image, so train one model per kind of scan"
            )
        return next(iter(counts), "MR")

    def default_normalization(self) -> Normalization:
        return Normalization.for_modality(self.modality())

    def median_spacing_mm(self) -> tuple[float, float] | None:
        known = [s for s in self.spacings_mm if s is not None]
        return tuple(float(v) for v in np.median(np.array(known), axis=0)) if known else None

    def subset(self, index) -> RawPairs:
        index = [int(i) for i in np.arange(len(self))[np.asarray(index)]]
        pick = lambda values: [values[i] for i in index]  # noqa: E731
        return RawPairs(
            pick(self.images),
            pick(self.labels),
            pick(self.spacings_mm),
            pick(self.groups),
            pick(self.names),
            pick(self.modalities),
            self.source,
        )


def read_pairs(
    split_dir: str | Path, num_labels: int, *, max_slices: int | None = None, progress: bool = True
) -> RawPairs:
    """Read every image/label pair of a folder in the training layout, unchanged.

    Parameters
    ----------
    split_dir : path
        Folder holding ``dicoms/`` and ``labels/`` (see :func:`ctseg_helpers.io.labels.find_pairs`).
    num_labels : int
        Label values above it are refused.
    max_slices : int, optional
        Read only this many pairs, evenly spaced in name order (cheap smoke runs).
    progress : bool

    Returns
    -------
    RawPairs
        Slices grouped by DICOM PatientID; when a file has none, by StudyInstanceUID (then
        SeriesInstanceUID, then the pair name), so several series of one study stay together.

    Raises
    ------
    CtsegDataError
        If the folder does not exist or holds no pairs, or a pair cannot be used.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    from ctseg_helpers.io.labels import find_pairs, read_pair  # noqa: PLC0415

    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise CtsegDataError(
            f"{split_dir}: training folder not found; expected a folder holding dicoms/ and labels/ "
            "(the layout is <main_dir>/train/dicoms and <main_dir>/train/labels)"
        )
    pairs = list(find_pairs(split_dir))
    if max_slices is not None and max_slices < len(pairs):
        # Evenly spaced over the sorted pairs, so a smoke run still sees several patients.
        keep = np.unique(np.linspace(0, len(pairs) - 1, max(1, int(max_slices))).round().astype(int))
        pairs = [pairs[i] for i in keep]
    raw = RawPairs([], [], [], [], [], [], split_dir)
    for pair in tqdm(pairs, desc=f"Reading {split_dir.name}", unit="slice", disable=not progress):
        dicom, label = read_pair(pair, num_labels)
        raw.images.append(dicom.pixels)
        raw.labels.append(np.asarray(label, dtype=np.uint8))
        # A study is one patient's visit: its series (e.g. short- and long-axis cine) are near
        # duplicates of each other, so they must not land on both sides of the split.
        raw.groups.append(dicom.patient_id or dicom.study_uid or dicom.series_uid or pair.name)
        raw.names.append(pair.name)
        raw.modalities.append((dicom.modality or "").upper())
        spacing = dicom.pixel_spacing_mm
        raw.spacings_mm.append(tuple(float(v) for v in spacing) if spacing is not None else None)
    return raw


def native_slices(
    raw: RawPairs, num_labels: int, normalization: Normalization, target_spacing_mm=None, *, min_size: int = 1
) -> SliceSet:
    """Normalise slices and resample them to ``target_spacing_mm``, keeping each at its own size.

    Images are resampled linearly and labels mask by mask (linear, then the arg-max)
    (:mod:`ctseg_helpers.prepare.resample`); slices without a spacing, or with no target, keep
    their pixels. The slices are stacked, zero-padded to the largest (and to at least
    ``min_size``), with :attr:`SliceSet.shapes` saying how much of each is real.

    Raises
    ------
    CtsegDataError
        If an image and its label differ in shape or a label holds values above ``num_labels``.
    """
    from ctseg_helpers.prepare.resample import resampled_shape, resize_image, resize_label  # noqa: PLC0415

    images, labels = [], []
    for i, (image, label, spacing) in enumerate(zip(raw.images, raw.labels, raw.spacings_mm, strict=True)):
        image, label = np.asarray(image), np.asarray(label)
        _check_pair(raw.names[i], image, label, num_labels)
        image = normalize_image(image, normalization)
        if target_spacing_mm is not None and spacing is not None:
            shape = resampled_shape(image.shape, spacing, target_spacing_mm)
            image, label = resize_image(image, shape), resize_label(label, shape)
        images.append(image)
        labels.append(label.astype(np.uint8))
    shapes = np.array([im.shape for im in images], dtype=int).reshape(-1, 2)
    rows = max(int(shapes[:, 0].max()), min_size) if len(images) else min_size
    cols = max(int(shapes[:, 1].max()), min_size) if len(images) else min_size
    out_images = np.zeros((len(images), rows, cols), np.float32)
    out_labels = np.zeros((len(images), rows, cols), np.uint8)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        out_images[i, : image.shape[0], : image.shape[1]] = image
        out_labels[i, : label.shape[0], : label.shape[1]] = label
    return SliceSet(
        out_images,
        out_labels,
        np.asarray(raw.groups, dtype=object),
        list(raw.names),
        normalization,
        raw.median_spacing_mm(),
        shapes=shapes,
    )


def _check_pair(name: str, image: np.ndarray, label: np.ndarray, num_labels: int) -> None:
    if image.shape != label.shape:
        raise CtsegDataError(
            f"{name}: image shape {image.shape} and label shape {label.shape} differ; "
            "each label map must have the size of its image"
        )
    if label.size and (label.min() < 0 or label.max() > num_labels):
        raise CtsegDataError(
            f"{name}: label values {sorted(int(v) for v in np.unique(label))} do not fit "
            f"num_labels={num_labels} (allowed 0..{num_labels}); fix the label file or num_labels"
        )


def split_by_group(groups, validation_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Choose whole groups (patients or series) for validation.

    Groups are shuffled with ``seed`` and taken while they bring the validation share closer to
    ``validation_fraction``; at least one group (the smallest, if every group is too large)
    goes to validation when the fraction is above 0, and at least one stays for training.

    Parameters
    ----------
    groups : sequence of str, length K
        Group of each slice.
    validation_fraction : float
        Wanted share of slices for validation, 0 <= f < 1.
    seed : int

    Returns
    -------
    (train_index, val_index) : ndarrays of int
        Positions of the training and validation slices; ``val_index`` is empty when the
        fraction is 0 or there is only one group (a warning is logged then).

    Raises
    ------
    CtsegSettingsError
        If ``validation_fraction`` is not within 0..1.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise CtsegSettingsError(f"validation_fraction must be within 0 <= f < 1, got {validation_fraction}")
    groups = np.asarray(groups, dtype=object)
    everything = np.arange(len(groups))
    unique = sorted(set(groups.tolist()))
    if validation_fraction == 0.0:
        return everything, everything[:0]
    if len(unique) < 2:
        logger.warning(
            "all %d slices belong to one patient/series, so no validation split is possible without "
            "near-duplicate slices on both sides; training without validation (give validation_dir "
            "to validate on other scans)",
            len(groups),
        )
        return everything, everything[:0]
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    counts = Counter(groups.tolist())
    wanted = validation_fraction * len(groups)
    chosen, taken = [], 0
    for group in order:  # greedy, in seeded order: take a group unless it overshoots by over half its size
        if len(chosen) == len(unique) - 1:
            break
        if taken + counts[group] / 2 <= wanted:
            chosen.append(group)
            taken += counts[group]
    if not chosen:  # every group is large against the wanted share: take the smallest
        chosen = [min(order, key=lambda g: counts[g])]
    is_val = np.isin(groups, np.array(chosen, dtype=object))
    return everything[~is_val], everything[is_val]


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    augment: AugmentConfig = NO_AUGMENTATION,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = False,
):
    """The ``tf.data`` pipeline: shuffle, augment in parallel, batch, prefetch.

    Parameters
    ----------
    images : ndarray of shape (K, S, S) and dtype float32
        Normalised, fitted images.
    labels : ndarray of shape (K, S, S) and dtype uint8
    batch_size : int
    augment : AugmentConfig
        Label-safe augmentation; off with ``AugmentConfig(enabled=False)``.
    shuffle : bool
        Reshuffle every epoch (reproducible with ``seed``).
    seed : int
        Seed for the shuffle order and the augmentations; each epoch draws new ones.
    drop_remainder : bool

    Returns
    -------
    tf.data.Dataset
        Yields ``(x, y)``: x float32 (B, S, S, 1), y uint8 (B, S, S).
    """
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    tf = configure_tensorflow()
    if batch_size < 1:
        raise CtsegSettingsError(f"batch_size must be at least 1, got {batch_size}")
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.uint8)
    if images.ndim != 3 or images.shape != labels.shape or len(images) == 0:
        raise CtsegDataError(
            f"images {images.shape} and labels {labels.shape} must be non-empty stacks of the same "
            "shape (K, S, S); build them with load_slices or slices_from_arrays"
        )
    ds = tf.data.Dataset.from_tensor_slices((images[..., None], labels))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if augment.active:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda pair, r: augment_pair(pair[0], pair[1], tf.stack([r, tf.constant(seed, tf.int64)]), augment),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
