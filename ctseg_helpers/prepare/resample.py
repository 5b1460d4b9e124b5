"""Resampling slices between pixel spacings: images linearly, label maps by nearest neighbour.

Training resamples every slice to the plan's target spacing; segmentation resamples each slice
there, predicts, and resamples the class probabilities back to the slice's own grid before the
arg-max, so label maps (and areas) are always on the scan's own pixels.
"""

from __future__ import annotations

import numpy as np

from ctseg_helpers.errors import CtsegSettingsError


def resampled_shape(shape, spacing_mm, target_spacing_mm) -> tuple[int, int]:
    """Size of a slice of ``shape`` pixels at ``spacing_mm`` once resampled to ``target_spacing_mm``.

    The field of view is kept: ``round(shape * spacing / target)``, at least 1 pixel.

    >>> resampled_shape((256, 200), (1.25, 1.25), (2.5, 2.5))
    (128, 100)

    Raises
    ------
    CtsegSettingsError
        If a spacing is not positive.
    """
    try:
        spacing = np.asarray(spacing_mm, dtype=float)
        target = np.asarray(target_spacing_mm, dtype=float)
    except (TypeError, ValueError):
        spacing = target = np.zeros(0)
    if spacing.shape != (2,) or target.shape != (2,) or not (np.all(spacing > 0) and np.all(target > 0)):
        raise CtsegSettingsError(
            f"pixel spacings must be two positive numbers (row, col) in mm; got {spacing_mm!r} and "
            f"{target_spacing_mm!r}"
        )
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape[:2], spacing, target, strict=True))


def resize_image(image: np.ndarray, shape) -> np.ndarray:
    """Bilinear resize of (M, N) or (M, N, C) to ``shape`` (rows, cols), pixel centres aligned.

    Returns float32; returns the input (as float32) when the shape is already right.
    """
    image = np.asarray(image, dtype=np.float32)
    shape = tuple(int(v) for v in shape[:2])
    if image.shape[:2] == shape:
        return image
    from skimage.transform import resize  # noqa: PLC0415

    return resize(
        image, shape + image.shape[2:], order=1, mode="edge", anti_aliasing=False, preserve_range=True
    ).astype(np.float32)


def resize_label(label: np.ndarray, shape) -> np.ndarray:
    """Nearest-neighbour resize of a label map (M, N) to ``shape``: no new label values.

    Pixel centres are mapped as in :func:`resize_image`, so an up- then down-sampling by a
    whole factor returns the original map exactly.

    >>> lab = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    >>> resize_label(resize_label(lab, (6, 6)), (2, 2)).tolist()
    [[0, 1], [2, 3]]
    """
    label = np.asarray(label)
    shape = tuple(int(v) for v in shape[:2])
    if label.shape[:2] == shape:
        return label
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * label.shape[0] / shape[0]).astype(int), label.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * label.shape[1] / shape[1]).astype(int), label.shape[1] - 1)
    return label[np.ix_(rows, cols)]


def needs_resampling(spacing_mm, target_spacing_mm, tolerance: float = 0.01) -> bool:
    """True unless both spacings are known and agree within ``tolerance`` (relative)."""
    if spacing_mm is None or target_spacing_mm is None:
        return False
    spacing = np.asarray(spacing_mm, dtype=float)
    target = np.asarray(target_spacing_mm, dtype=float)
    return bool(np.any(np.abs(spacing / target - 1.0) > tolerance))
