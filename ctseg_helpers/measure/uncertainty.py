"""How sure the model was, per slice, and which slices a reader should check first.

NumPy/SciPy and pandas only; nothing here runs a model or opens a file.

Scores (each in 0..1, higher = less sure)
-----------------------------------------
``uncertainty_entropy``
    The mean, over the slice's *ROI region*, of the normalised entropy of each pixel's class
    probabilities, ``H(p) / log(C)`` (:func:`normalised_entropy`): 0 where one class has
    probability 1, 1 where all C classes are equally likely.
``uncertainty_disagreement``
    When several probability sets are at hand (test-time views, or the fold models of an
    ensemble): the mean, over the same region, of the share of sets whose most probable class
    differs from the consensus (the arg-max of their mean) (:func:`view_disagreement`). 0 when
    every set agrees on every pixel.

The *ROI region* of a slice is every pixel predicted as any ROI (label > 0) plus a band one
pixel wide around them (a binary dilation with the 3 x 3 square, so diagonal neighbours count;
pixels outside the slice do not exist): uncertainty lives at the ROI's edges, and a band keeps
an ROI whose border is unsure from scoring as sure just because its inside is. Background far
from any ROI is left out, so a slice's score does not shrink with the field of view. A slice
with no ROI pixel has no region: its scores are NaN (an ROI that vanishes inside the stack is
caught by the area jumps of :func:`slices_to_check` instead).

Check list
----------
:func:`slices_to_check` ranks the slices of a segmentation run by these scores combined with the
abrupt area changes of :func:`ctseg_helpers.measure.evaluation.area_jumps`, and returns the top
few with the reasons in words.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.geometry import position_groups
from ctseg_helpers.measure.area import slice_rows
from ctseg_helpers.measure.evaluation import area_jumps

logger = logging.getLogger(__name__)

#: The per-slice score columns, in the order tables show them.
UNCERTAINTY_COLUMNS = ("uncertainty_entropy", "uncertainty_disagreement")

#: Width in pixels of the band around the predicted ROIs that counts in the region.
BAND_PX = 1


def _as_proba(proba, name: str = "proba") -> np.ndarray:
    array = np.asarray(proba)
    if array.ndim < 1 or array.shape[-1] < 2:
        raise CtsegDataError(f"{name} must hold class probabilities on its last axis (C >= 2); got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):  # quantised probabilities (value / 255)
        raise CtsegDataError(
            f"{name} has integer dtype {array.dtype}; divide quantised probabilities by their scale first "
            "(read_probabilities does)"
        )
    return array.astype(np.float32, copy=False)


def normalised_entropy(proba) -> np.ndarray:
    """Entropy of each pixel's class probabilities, divided by its largest value ``log(C)``.

    Parameters
    ----------
    proba : ndarray of shape (..., C), float
        Class probabilities on the last axis. Each pixel's values are divided by their sum
        first, so quantised probabilities that sum to 1 only within rounding are fine.

    Returns
    -------
    ndarray of shape (...), dtype float32
        In 0..1: 0 for a one-hot pixel, 1 for a uniform one. A pixel whose probabilities are
        all 0 gets NaN.

    Raises
    ------
    CtsegDataError
        If ``proba`` has fewer than 2 classes, an integer dtype, or negative values.

    Examples
    --------
    >>> normalised_entropy([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]).round(6).tolist()
    [0.0, 1.0]
    """
    p = _as_proba(proba)
    if p.size and np.nanmin(p) < 0:
        raise CtsegDataError(f"probabilities must not be negative; the smallest is {np.nanmin(p)}")
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / p.sum(axis=-1, keepdims=True)
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    entropy = -terms.sum(axis=-1) / np.log(p.shape[-1])
    entropy = np.where(np.isnan(p).any(axis=-1), np.nan, entropy)
    return (np.clip(entropy, 0.0, 1.0) + 0.0).astype(np.float32)  # + 0.0: no -0.0


def view_disagreement(view_proba) -> np.ndarray:
    """Share of probability sets whose most probable class differs from the consensus, per pixel.

    Parameters
    ----------
    view_proba : ndarray of shape (V, ..., C) or sequence of V arrays (..., C)
        Class probabilities of the same pixels from V views (test-time views, ensemble members).
        The consensus is the arg-max of their mean.

    Returns
    -------
    ndarray of shape (...), dtype float32
        In 0..(V-1)/V; 0 where every view picks the consensus class.

    Raises
    ------
    CtsegDataError
        If fewer than 2 views are given or their shapes differ.

    Examples
    --------
    >>> agree, disagree = [0.2, 0.8], [0.7, 0.3]
    >>> view_disagreement([[agree, agree], [agree, disagree]]).tolist()
    [0.0, 0.5]
    """
    views = [_as_proba(v, "each view") for v in view_proba]
    if len(views) < 2:
        raise CtsegDataError(f"disagreement needs at least 2 probability sets (views or models); got {len(views)}")
    if any(v.shape != views[0].shape for v in views):
        raise CtsegDataError(
            f"the probability sets must have one shape; got {sorted({v.shape for v in views})} (one per view)"
        )
    consensus = np.argmax(np.mean(views, axis=0), axis=-1)
    dissent = sum((np.argmax(v, axis=-1) != consensus).astype(np.float32) for v in views)
    return (dissent / np.float32(len(views))).astype(np.float32)


def roi_region(labels, band_px: int = BAND_PX) -> np.ndarray:
    """The pixels whose uncertainty counts: any ROI (label > 0) and a band ``band_px`` wide around it.

    Parameters
    ----------
    labels : ndarray of shape (M, N) or (K, M, N), integer dtype
        Predicted label maps; a stack is dilated slice by slice, never across slices.
    band_px : int
        Band width in pixels (dilation with the 3 x 3 square, ``band_px`` times), >= 0.

    Returns
    -------
    ndarray of bool, same shape as ``labels``

    Raises
    ------
    CtsegSettingsError
        If ``band_px`` is negative or not a whole number.

    Examples
    --------
    >>> labels = np.zeros((5, 5), int); labels[2, 2] = 1
    >>> int(roi_region(labels).sum()), int(roi_region(labels, band_px=0).sum())
    (9, 1)
    """
    if isinstance(band_px, bool) or not isinstance(band_px, (int, np.integer)) or band_px < 0:
        raise CtsegSettingsError(f"band_px must be a whole number of pixels >= 0, got {band_px!r}")
    mask = np.asarray(labels) > 0
    if band_px == 0 or not mask.any():
        return mask
    structure = np.ones((3, 3), bool) if mask.ndim == 2 else np.ones((1, 3, 3), bool)
    return ndimage.binary_dilation(mask, structure=structure, iterations=int(band_px))


def slice_uncertainty(proba, labels, *, disagreement=None, band_px: int = BAND_PX) -> pd.DataFrame:
    """Per-slice uncertainty scores (see the module docstring).

    Parameters
    ----------
    proba : ndarray of shape (K, M, N, C), float
        Class probabilities (the mean over views when there are several).
    labels : ndarray of shape (K, M, N), integer dtype
        The predicted label maps (after post-processing): they define each slice's ROI region.
    disagreement : ndarray of shape (K, M, N) or (V, K, M, N, C), optional
        The views' disagreement per pixel (0..1, e.g. ``Prediction.disagreement`` of the
        Segmenter), or the V views' probabilities, from which :func:`view_disagreement` takes
        it. None: no disagreement column.
    band_px : int
        Width of the band around the ROIs, as :func:`roi_region`.

    Returns
    -------
    DataFrame
        K rows (one per slice, in order), column ``uncertainty_entropy`` and, with
        ``disagreement``, ``uncertainty_disagreement``; NaN for a slice without ROI pixels.

    Raises
    ------
    CtsegDataError
        If the shapes of ``proba``, ``labels`` and ``disagreement`` do not fit together.
    """
    p = _as_proba(proba)
    labels = np.asarray(labels)
    if p.ndim != 4 or labels.shape != p.shape[:-1]:
        raise CtsegDataError(
            f"proba must be (K, M, N, C) and labels (K, M, N) with the same K, M, N; got {p.shape} and {labels.shape}"
        )
    region = roi_region(labels, band_px)
    d = None
    if disagreement is not None:
        d = np.asarray(disagreement)
        if d.ndim == 5:
            d = view_disagreement(d)
        if d.shape != labels.shape:
            raise CtsegDataError(f"disagreement must have the shape of labels {labels.shape}; got {d.shape}")
    entropy = np.full(len(p), np.nan)
    dissent = np.full(len(p), np.nan)
    for k, inside in enumerate(region):  # only the region's pixels: usually a small part of the slice
        if inside.any():
            entropy[k] = float(np.mean(normalised_entropy(p[k][inside]), dtype=np.float64))
            if d is not None:
                dissent[k] = float(np.mean(d[k][inside], dtype=np.float64))
    columns = {"uncertainty_entropy": entropy}
    if d is not None:
        columns["uncertainty_disagreement"] = dissent
    return pd.DataFrame(columns)


# --------------------------------------------------------------------------- the check list


def _jump_groups(positions_mm: np.ndarray) -> np.ndarray:
    """Group of each slice along which areas are compared: one group for a stack; per position
    (its phases) when positions repeat (a cine series)."""
    groups = np.zeros(positions_mm.size, dtype=int)
    if positions_mm.size == 0 or np.isnan(positions_mm).any():
        return groups
    runs = position_groups(positions_mm)
    if all(stop - start == 1 for start, stop in runs):
        return groups
    for number, (start, stop) in enumerate(runs):
        groups[start:stop] = number
    return groups


def slices_to_check(
    table: pd.DataFrame,
    roi_names: Sequence[str],
    n: int = 5,
    *,
    jump_weight: float = 0.5,
    rel_threshold: float = 0.5,
    min_fraction: float = 0.1,
) -> pd.DataFrame:
    """The ``n`` slices most worth a look, with the reasons in words.

    Each slice scores the mean of its uncertainty scores (``uncertainty_entropy`` and, where
    present, ``uncertainty_disagreement``; NaN ones left out, 0 when all are NaN) plus
    ``jump_weight`` for each ROI whose area changes abruptly from the slice before
    (:func:`~ctseg_helpers.measure.evaluation.area_jumps`, along the stack of each series, along
    the phases of each position for a cine series). Slices scoring 0 are never listed.

    Parameters
    ----------
    table : DataFrame
        A segmentation run's area table (:func:`ctseg_helpers.measure.area.area_table`, as in
        ``areas.csv``) with the uncertainty columns joined on; its summary rows (``mean``,
        ``std``, see :func:`~ctseg_helpers.measure.area.slice_rows`) are ignored. Columns
        used: one per ROI name (area in mm²), ``file``, ``slice_position_mm`` and ``series``
        when present, the uncertainty columns when present.
    roi_names : sequence of str
        The ROI columns.
    n : int
        How many slices to return at most, >= 1.
    jump_weight : float
        What an area jump adds to the score, >= 0 (0.5: a jump outranks any entropy below 0.5).
    rel_threshold, min_fraction : float
        As :func:`~ctseg_helpers.measure.evaluation.area_jumps`.

    Returns
    -------
    DataFrame
        At most ``n`` rows, highest score first, indexed like ``table`` (``slice number k``);
        columns ``file``, ``series`` (when the table has it), ``slice_index`` (0-based row of
        the slice in the table), ``score``, the uncertainty columns present, ``jumps`` (the
        ROIs whose area jumps, comma separated) and ``reasons`` (one sentence).

    Raises
    ------
    CtsegSettingsError
        If ``n`` < 1, ``jump_weight`` < 0, or an ROI name is not a column of ``table``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise CtsegSettingsError(f"n must be a whole number >= 1 (slices to list), got {n!r}")
    if not jump_weight >= 0:
        raise CtsegSettingsError(f"jump_weight must be >= 0, got {jump_weight}")
    missing = [name for name in roi_names if name not in table.columns]
    if missing:
        raise CtsegSettingsError(
            f"ROI(s) {missing} are not columns of the area table (columns: {list(table.columns)}); "
            "pass the run's label names"
        )
    rows = slice_rows(table)
    present = [c for c in UNCERTAINTY_COLUMNS if c in rows.columns]
    scores = rows[present].to_numpy(dtype=np.float64) if present else np.zeros((len(rows), 0))
    counted = np.isfinite(scores).sum(axis=1)
    uncertainty = np.where(np.isfinite(scores), scores, 0.0).sum(axis=1) / np.maximum(counted, 1)
    positions = (
        rows["slice_position_mm"].to_numpy(dtype=np.float64)
        if "slice_position_mm" in rows
        else np.full(len(rows), np.nan)
    )
    series = rows["series"].to_numpy() if "series" in rows else np.zeros(len(rows), dtype=int)
    jumps = [[] for _ in range(len(rows))]
    for value in pd.unique(series):
        in_series = np.flatnonzero(series == value)
        groups = _jump_groups(positions[in_series])
        for group in np.unique(groups):
            members = in_series[groups == group]
            for name in roi_names:
                flags = area_jumps(rows[name].to_numpy(dtype=np.float64)[members], rel_threshold, min_fraction)
                for index in members[flags]:
                    jumps[index].append(name)
    score = uncertainty + jump_weight * np.array([len(j) for j in jumps], dtype=np.float64)
    order = [i for i in np.argsort(-score, kind="stable") if score[i] > 0][:n]
    out = pd.DataFrame(index=rows.index[order])
    out["file"] = rows["file"].to_numpy()[order] if "file" in rows else ""
    if "series" in rows:
        out["series"] = series[order]
    out["slice_index"] = np.asarray(order, dtype=int)
    out["score"] = score[order]
    for column in present:
        out[column] = rows[column].to_numpy(dtype=np.float64)[order]
    out["jumps"] = [", ".join(jumps[i]) for i in order]
    out["reasons"] = [_reasons(rows, i, jumps[i], present) for i in order]
    return out


def _reasons(rows: pd.DataFrame, index: int, jumps: list[str], present: list[str]) -> str:
    words = {"uncertainty_entropy": "entropy", "uncertainty_disagreement": "views disagree on"}
    parts = []
    for column in present:
        value = float(rows[column].iloc[index])
        if np.isfinite(value) and value > 0:
            if column == "uncertainty_disagreement":
                parts.append(f"{words[column]} {value:.0%} of ROI pixels")
            else:
                parts.append(f"{words[column]} {value:.2f}")
    for name in jumps:
        area = float(rows[name].iloc[index])
        before = float(rows[name].iloc[index - 1]) if index > 0 else float("nan")
        parts.append(f"{name} area jumps {before:.0f} -> {area:.0f} mm²")
    return "; ".join(parts)


__all__ = [
    "BAND_PX",
    "UNCERTAINTY_COLUMNS",
    "normalised_entropy",
    "roi_region",
    "slice_uncertainty",
    "slices_to_check",
    "view_disagreement",
]
