"""Where patches go on an image, and how overlapping patch predictions are weighted.

Two small pure pieces used by :class:`~ctseg_helpers.segment.segmenter.Segmenter`:

- :func:`compute_steps` / :func:`patch_origins` place square patches of the network's input
  size over an image so that they cover it completely, with at least the requested overlap
  and evenly spread (the last patch ends exactly on the image border; no patch hangs over it).
- :func:`blend_weights` gives the per-pixel weight of a patch's prediction when overlapping
  predictions are averaged: ``'average'`` (flat), ``'hann'`` or ``'gaussian'`` (centre of a
  patch trusted more than its border, where the network saw less context). Every weight is
  strictly positive, so a pixel covered by one patch only is never divided by zero.

Stitching is a weighted mean, ``sum(w * p) / sum(w)``, so the result does not depend on the
order of the patches (never "last patch wins").
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ctseg_helpers.errors import CtsegSettingsError

#: Blend modes accepted by :func:`blend_weights`.
BLEND_MODES = ("average", "hann", "gaussian")


def check_overlap(overlap: float) -> float:
    """Return ``overlap`` as a float after checking it lies in ``[0, 1)``.

    Raises
    ------
    CtsegSettingsError
        If ``overlap`` is outside ``[0, 1)`` (1 would place patches on top of each other forever).
    """
    overlap = float(overlap)
    if not 0.0 <= overlap < 1.0:
        raise CtsegSettingsError(f"overlap must be a fraction of the patch size in [0, 1), e.g. 0.25; got {overlap}")
    return overlap


def compute_steps(image_size: int, patch_size: int, overlap: float) -> list[int]:
    """Start offsets of patches along one axis.

    Parameters
    ----------
    image_size : int
        Length of the axis in pixels. If it is not larger than ``patch_size`` one patch at
        offset 0 covers it (the caller pads the image to the patch size).
    patch_size : int
        Patch side in pixels.
    overlap : float in [0, 1)
        Least overlap between neighbouring patches, as a fraction of ``patch_size``; in pixels
        the overlap is at least ``ceil(overlap * patch_size)``.

    Returns
    -------
    list of int
        Increasing offsets; the first is 0 and the last is ``image_size - patch_size``.

    Examples
    --------
    >>> compute_steps(300, 128, 0.25)
    [0, 86, 172]
    >>> compute_steps(100, 128, 0.5)
    [0]
    """
    if patch_size < 1:
        raise CtsegSettingsError(f"patch_size must be a positive number of pixels, got {patch_size}")
    overlap = check_overlap(overlap)
    if image_size <= patch_size:
        return [0]
    # a whole number of pixels, rounded down: the rounded offsets below then never step further,
    # so neighbours overlap by at least ceil(overlap * patch_size) pixels
    max_step = max(1, math.floor(patch_size * (1.0 - overlap) + 1e-9))
    n_steps = math.ceil((image_size - patch_size) / max_step) + 1
    spread = (image_size - patch_size) / (n_steps - 1)
    return [int(round(spread * i)) for i in range(n_steps)]


def patch_origins(shape: tuple[int, int], patch_size: int, overlap: float) -> list[tuple[int, int]]:
    """Top-left corners ``(row, col)`` of the patches covering an image of ``shape`` (rows, cols)."""
    rows = compute_steps(int(shape[0]), patch_size, overlap)
    cols = compute_steps(int(shape[1]), patch_size, overlap)
    return [(r, c) for r in rows for c in cols]


def check_blend(blend: str) -> str:
    """Return ``blend`` after checking it is one of :data:`BLEND_MODES`.

    Raises
    ------
    CtsegSettingsError
        If ``blend`` is not 'average', 'hann' or 'gaussian'.
    """
    if blend not in BLEND_MODES:
        raise CtsegSettingsError(f"blend must be one of {', '.join(BLEND_MODES)}; got {blend!r}")
    return blend


@functools.lru_cache(maxsize=16)
def _blend_weights_cached(patch_size: int, blend: str) -> np.ndarray:
    if blend == "average":
        weights = np.ones((patch_size, patch_size), dtype=np.float32)
    elif blend == "hann":
        # Hann window without its two zero end points: strictly positive at the border.
        window = np.hanning(patch_size + 2)[1:-1]
        weights = np.outer(window, window)
        weights /= weights.max()
    else:
        # Gaussian with sigma = patch/8 (as nnU-Net), scaled to a maximum of 1; the tails
        # are clipped to a small positive floor so border pixels still count.
        centre = (patch_size - 1) / 2.0
        sigma = patch_size / 8.0
        axis = np.exp(-0.5 * ((np.arange(patch_size) - centre) / sigma) ** 2)
        weights = np.outer(axis, axis)
        weights /= weights.max()
        weights = np.maximum(weights, 1e-3)
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


def blend_weights(patch_size: int, blend: str = "gaussian") -> np.ndarray:
    """Per-pixel weight of one patch's prediction when overlapping patches are averaged.

    Parameters
    ----------
    patch_size : int
        Patch side in pixels.
    blend : {"average", "hann", "gaussian"}
        ``'average'``: every pixel weighs 1. ``'hann'``: separable Hann window (without its
        zero end points), peak 1. ``'gaussian'``: separable Gaussian, sigma = patch_size / 8, peak 1,
        floor 1e-3.

    Returns
    -------
    ndarray of shape (patch_size, patch_size) and dtype float32
        Strictly positive weights, read-only (the array is cached and shared).

    Raises
    ------
    CtsegSettingsError
        If ``blend`` is unknown or ``patch_size`` is not positive.
    """
    check_blend(blend)
    if int(patch_size) < 1:
        raise CtsegSettingsError(f"patch_size must be a positive number of pixels, got {patch_size}")
    return _blend_weights_cached(int(patch_size), blend)


def pad_to_patch(shape: tuple[int, int], patch_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Padding ``((top, bottom), (left, right))`` that centres an image smaller than a patch.

    Axes already at least ``patch_size`` long get no padding.
    """
    pads = []
    for size in shape:
        missing = max(0, patch_size - int(size))
        pads.append((missing // 2, missing - missing // 2))
    return tuple(pads)


__all__ = [
    "BLEND_MODES",
    "blend_weights",
    "check_blend",
    "check_overlap",
    "compute_steps",
    "pad_to_patch",
    "patch_origins",
]
