"""Array operations of volume segmentation: slices of a block through a Segmenter, axes combined.

Used by :func:`ctseg_helpers.workflows.volume.segment_volume` (slab by slab) and its Dask
backend (:mod:`ctseg_helpers.workflows.dask_backend`, block by block), which read and write the
files; everything here takes and returns arrays.

- :func:`segment_block`: the per-chunk function, every 2D slice of a 3D block along one axis;
- :func:`segmenter_slices`: how many slices the segmenter may take at once within a memory budget;
- :func:`argmax_uint8`: class probabilities to labels (to uint8: :func:`ctseg_helpers.io.probabilities.quantise`);
- :func:`combine_labels`: per-axis results combined by majority vote or mean probability
  (ties: see its docstring and :mod:`ctseg_helpers.workflows.volume`);
- :func:`rotate_planes`, :func:`rotated_plane_shape`: rotation of every plane about Z.
"""

from __future__ import annotations

import math

import numpy as np

from ctseg_helpers.errors import CtsegSettingsError

COMBINE_METHODS = ("vote", "mean")
_GB = 1e9
#: Segmenter working memory per slice pixel, on top of 4 bytes per class (see segmenter_slices).
_SEGMENTER_BYTES_PER_PIXEL = 20


# ---------------------------------------------------------------------------- per-chunk function
def segment_block(
    block: np.ndarray, segmenter, axis: int, *, proba: bool = False, max_slices: int | None = None
) -> np.ndarray:
    """Segment every 2D slice of a 3D block along ``axis``; the per-chunk function.

    Parameters
    ----------
    block : ndarray of shape (Z, Y, X)
        Raw voxel values (normalised by the segmenter).
    segmenter : Segmenter
        Anything with ``segment(images)`` and ``predict_proba(images)`` on (K, M, N) stacks.
    axis : {0, 1, 2}
        Slices are taken perpendicular to this axis (axis 0: (Y, X) slices).
    proba : bool
        Return class probabilities instead of labels.
    max_slices : int, optional
        Hand the segmenter at most this many slices at a time, which bounds its working
        memory (see :func:`segmenter_slices`); all slices at once when None.

    Returns
    -------
    ndarray
        uint8 labels of shape (Z, Y, X), or float32 probabilities of shape (Z, Y, X, C).
    """
    stack = np.moveaxis(np.asarray(block), axis, 0)
    step = len(stack) if not max_slices else max(1, int(max_slices))
    if proba:
        out = np.empty(stack.shape + (int(segmenter.num_classes),), dtype=np.float32)
        for start in range(0, len(stack), step):
            out[start : start + step] = segmenter.predict_proba(stack[start : start + step])
    else:
        out = np.empty(stack.shape, dtype=np.uint8)
        for start in range(0, len(stack), step):
            out[start : start + step] = segmenter.segment(stack[start : start + step])
    return np.moveaxis(out, 0, axis)


def argmax_uint8(proba: np.ndarray, step: int = 8) -> np.ndarray:
    """``argmax`` over the last axis as uint8, a few slices at a time (no int64 volume-sized temporary)."""
    labels = np.empty(proba.shape[:-1], dtype=np.uint8)
    for start in range(0, proba.shape[0], step):
        labels[start : start + step] = np.argmax(proba[start : start + step], axis=-1)
    return labels


def segmenter_slices(segmenter, plane_shape, budget_gb: float, *, proba: bool = False) -> int:
    """How many slices of ``plane_shape`` the segmenter may take at once within ``budget_gb``.

    The segmenter's working set per slice pixel is estimated as ``20 + 4 * C`` bytes
    (normalised float32 copy and its temporaries, the padded copy, the float32 class
    accumulator and the argmax), ``20 + 8 * C`` when probabilities are returned (accumulator
    and result), on the plane padded to at least one patch.

    Raises
    ------
    CtsegSettingsError
        If a single slice needs more than ``budget_gb``.
    """
    size = int(getattr(segmenter, "input_shape", 1))
    pixels = max(plane_shape[0], size) * max(plane_shape[1], size)
    per_slice = pixels * (_SEGMENTER_BYTES_PER_PIXEL + (8 if proba else 4) * int(segmenter.num_classes))
    count = int(budget_gb * _GB // per_slice)
    if count < 1:
        raise CtsegSettingsError(
            f"segmenting one {plane_shape[0]} x {plane_shape[1]} slice needs about {per_slice / _GB:.3g} GB, "
            f"more than the {budget_gb:.3g} GB left for it under max_gb; raise --max-gb or crop the volume"
        )
    return count


def combine_labels(labels: list[np.ndarray], probas: list[np.ndarray], method: str = "vote") -> np.ndarray:
    """Combine per-axis results into one label volume.

    Parameters
    ----------
    labels : list of ndarray of shape S, dtype uint8
        One label array per axis (used by ``"vote"``).
    probas : list of ndarray of shape S + (C,), dtype uint8
        Quantised probabilities per axis (:func:`ctseg_helpers.io.probabilities.quantise`), same order.
    method : {"vote", "mean"}
        Majority vote with ties to the tied class of highest summed probability (then the
        lowest class), or highest mean probability (then lowest class).

    Returns
    -------
    ndarray of shape S, dtype uint8

    Raises
    ------
    CtsegSettingsError
        For an unknown method, or no / mismatched inputs.

    Examples
    --------
    >>> a = np.array([1, 1, 2], np.uint8); b = np.array([1, 2, 0], np.uint8)
    >>> pa = np.array([[0, 255, 0], [0, 200, 55], [0, 50, 205]], np.uint8)
    >>> pb = np.array([[0, 255, 0], [0, 10, 245], [240, 0, 15]], np.uint8)
    >>> combine_labels([a, b], [pa, pb], "vote")
    array([1, 2, 0], dtype=uint8)
    """
    if method not in COMBINE_METHODS:
        raise CtsegSettingsError(f"combine must be 'vote' or 'mean', got {method!r}")
    if not probas or len(probas) != len(labels) or any(p.shape[:-1] != probas[0].shape[:-1] for p in probas):
        raise CtsegSettingsError("combine_labels needs one label and one probability array per axis, of equal shapes")
    n_classes = probas[0].shape[-1]
    shape = probas[0].shape[:-1]
    best = np.zeros(shape, dtype=np.uint8)
    best_votes = np.full(shape, -1, dtype=np.int16)
    best_sum = np.full(shape, -1, dtype=np.int32)
    psum = np.empty(shape, dtype=np.int32)
    votes = np.empty(shape, dtype=np.int16)
    for c in range(n_classes):
        psum[...] = 0
        for p in probas:
            psum += p[..., c]
        if method == "vote":
            votes[...] = 0
            for lab in labels:
                votes += lab == c
            better = votes > best_votes
            better |= (votes == best_votes) & (psum > best_sum)
            np.copyto(best_votes, votes, where=better)
        else:
            better = psum > best_sum
        best[better] = c
        np.copyto(best_sum, psum, where=better)
    return best


# ---------------------------------------------------------------------------- rotation about Z
def rotated_plane_shape(plane_shape, angle_deg: float) -> tuple[int, int]:
    """Size ``(rows, cols)`` of a plane rotated by ``angle_deg`` and enlarged to hold it all."""
    rows, cols = plane_shape
    t = math.radians(angle_deg)
    c, s = abs(math.cos(t)), abs(math.sin(t))
    return (max(1, math.ceil(c * rows + s * cols - 1e-6)), max(1, math.ceil(s * rows + c * cols - 1e-6)))


def _rotation(angle_deg: float, out_shape, in_shape):
    """Matrix and offset for scipy's affine_transform: input coordinate of each output pixel."""
    t = math.radians(angle_deg)
    # rounded so that multiples of 90 degrees map pixel centres exactly onto pixel centres
    m = np.round(np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]), 12)
    c_out = (np.asarray(out_shape, float) - 1) / 2
    c_in = (np.asarray(in_shape, float) - 1) / 2
    return m, np.round(c_in - m @ c_out, 9)


def rotate_planes(stack: np.ndarray, angle_deg: float, out_shape, *, order: int, fill=0) -> np.ndarray:
    """Rotate every (Y, X) plane of a (Z, Y, X) stack by ``angle_deg`` about its centre.

    ``rotate_planes(rotate_planes(v, a, big, order=0), -a, v.shape[1:], order=0)`` gives ``v``
    back for multiples of 90 degrees, and up to nearest-neighbour resampling otherwise.

    Parameters
    ----------
    stack : ndarray of shape (Z, Y, X)
    angle_deg : float
        Clockwise in the displayed image (row down, column right): 90 degrees gives
        ``np.rot90(stack, k=-1, axes=(1, 2))``.
    out_shape : (int, int)
        Output plane size; the centres of input and output planes coincide.
    order : int
        Spline order: 1 (bilinear) for images, 0 (nearest) for labels.
    fill : number
        Value for output pixels that fall outside the input plane.

    Returns
    -------
    ndarray of shape (Z,) + out_shape, the input's dtype.
    """
    from scipy.ndimage import affine_transform  # noqa: PLC0415

    matrix, offset = _rotation(angle_deg, out_shape, stack.shape[1:])
    out = np.empty((stack.shape[0], *out_shape), dtype=stack.dtype)
    for k, plane in enumerate(stack):
        work = plane if order == 0 else plane.astype(np.float32)
        res = affine_transform(
            work,
            matrix,
            offset,
            output_shape=tuple(out_shape),
            order=order,
            mode="constant",
            cval=float(fill),
            prefilter=False,
        )
        if order and out.dtype.kind in "iu":
            res = np.rint(res)
        out[k] = res
    return out


__all__ = [
    "COMBINE_METHODS",
    "argmax_uint8",
    "combine_labels",
    "rotate_planes",
    "rotated_plane_shape",
    "segment_block",
    "segmenter_slices",
]
