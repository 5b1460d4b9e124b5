"""Segmentation metrics with physical spacing: overlap, volume and surface-distance measures.

NumPy and SciPy only (no Keras), for 2D slices and 3D volumes alike.

Conventions used throughout
---------------------------
*Masks.* ``pred`` is the segmentation being judged, ``truth`` the reference (manual) one. Both are
arrays of the same shape, 2D ``(rows, cols)`` or 3D ``(slices, rows, cols)``; any non-zero value
is foreground.

*Spacing.* ``spacing_mm`` gives the distance between neighbouring pixel centres along every array
axis, in millimetres, in array-axis order: ``(row, col)`` for a slice (DICOM ``PixelSpacing``
order) and ``(slice, row, col)`` for a volume. A single number means the same spacing on every
axis. Distances are returned in mm.

*Boundary.* Surface distances use MedPy's convention (``medpy.metric.binary``): the boundary of a
mask is the set of its foreground pixels that a binary erosion with the connectivity-1 structure
(4-neighbourhood in 2D, 6-neighbourhood in 3D; pixels outside the array count as background)
removes, ``boundary = mask XOR erode(mask)``. The distance of a boundary pixel to the other
mask's boundary is the Euclidean distance between pixel centres, computed with
``scipy.ndimage.distance_transform_edt(..., sampling=spacing_mm)``. Results match MedPy's
``hd``, ``hd95`` and ``assd`` to round-off (the tests check this, anisotropic spacing included).
Other conventions (DeepMind's ``surface-distance`` weighs surface elements by their area) give
HD95 and ASSD values that can differ by more than a pixel.

*Empty masks.* A metric that is undefined for the masks given returns ``NaN`` (never a made-up
score); the docstrings say exactly when. In particular, when both masks are empty the overlap
metrics are ``NaN``, so that averaging over slices with ``nanmean`` does not reward slices where
the ROI is simply absent; :func:`compute_metrics` also returns the pixel counts so such slices can
be found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from numbers import Real

import numpy as np
from scipy import ndimage

from ctseg_helpers.errors import CtsegDataError

logger = logging.getLogger(__name__)

#: The metrics :func:`compute_metrics` returns, in the order tables show them.
METRIC_NAMES = (
    "dice",
    "iou",
    "sensitivity",
    "specificity",
    "precision",
    "voe",
    "rvd",
    "hd",
    "hd95",
    "assd",
    "surface_dice",
)

#: Metrics whose values are distances in mm.
DISTANCE_METRICS = ("hd", "hd95", "assd")


# --------------------------------------------------------------------------- input checks


def _check_masks(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise CtsegDataError(
            f"pred and truth masks must have the same shape, got {pred.shape} and {truth.shape}; "
            "compare label maps of the same slice (or volume)"
        )
    if pred.ndim not in (2, 3):
        raise CtsegDataError(f"masks must be 2D (rows, cols) or 3D (slices, rows, cols), got shape {pred.shape}")
    return pred != 0, truth != 0


def _check_spacing(spacing_mm, ndim: int) -> np.ndarray:
    if isinstance(spacing_mm, Real):
        spacing = np.full(ndim, float(spacing_mm))
    else:
        spacing = np.asarray(spacing_mm, dtype=np.float64).ravel()
    if spacing.shape != (ndim,):
        raise CtsegDataError(
            f"spacing_mm must give one spacing per array axis ({ndim} values for {ndim}D masks), got {spacing_mm!r}"
        )
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise CtsegDataError(f"spacing_mm must be positive and finite, got {spacing_mm!r}")
    return spacing


def _check_tolerance(tolerance_mm) -> float:
    tolerance = float(tolerance_mm)
    if not np.isfinite(tolerance) or tolerance < 0:
        raise CtsegDataError(f"tolerance_mm must be a finite distance >= 0 mm, got {tolerance_mm!r}")
    return tolerance


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


# --------------------------------------------------------------------------- overlap metrics


@dataclass(frozen=True)
class ConfusionCounts:
    """Pixel (voxel) counts of a binary comparison.

    Attributes
    ----------
    tp, fp, fn, tn : int
        True positives (in both), false positives (pred only), false negatives (truth only) and
        true negatives (in neither).
    """

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def pred_count(self) -> int:
        """Foreground pixels in the prediction."""
        return self.tp + self.fp

    @property
    def truth_count(self) -> int:
        """Foreground pixels in the reference."""
        return self.tp + self.fn


def confusion_counts(pred, truth) -> ConfusionCounts:
    """Count true/false positives/negatives of two masks.

    Parameters
    ----------
    pred, truth : ndarray of shape (M, N) or (K, M, N), any dtype
        Masks of the same shape; non-zero is foreground.

    Returns
    -------
    ConfusionCounts

    Raises
    ------
    CtsegDataError
        If the shapes differ or the masks are not 2D or 3D.

    Examples
    --------
    >>> confusion_counts([[1, 1, 0]], [[0, 1, 1]])
    ConfusionCounts(tp=1, fp=1, fn=1, tn=0)
    """
    pred, truth = _check_masks(pred, truth)
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    return ConfusionCounts(tp=tp, fp=fp, fn=fn, tn=int(pred.size) - tp - fp - fn)


def dice(pred, truth) -> float:
    """Dice similarity coefficient ``2|P∩T| / (|P| + |T|)``, in 0..1.

    Parameters
    ----------
    pred, truth : ndarray of shape (M, N) or (K, M, N)
        Masks of the same shape; non-zero is foreground.

    Returns
    -------
    float
        ``NaN`` when both masks are empty; ``0.0`` when exactly one is empty.

    Examples
    --------
    >>> dice([[1, 1, 0, 0]], [[0, 1, 1, 0]])
    0.5
    """
    c = confusion_counts(pred, truth)
    return _ratio(2 * c.tp, c.pred_count + c.truth_count)


def iou(pred, truth) -> float:
    """Jaccard index (intersection over union) ``|P∩T| / |P∪T|``, in 0..1.

    Returns ``NaN`` when both masks are empty and ``0.0`` when exactly one is empty.
    See :func:`dice` for the parameters.
    """
    c = confusion_counts(pred, truth)
    return _ratio(c.tp, c.tp + c.fp + c.fn)


#: Another name for :func:`iou`.
jaccard = iou


def sensitivity(pred, truth) -> float:
    """Sensitivity (recall, true-positive rate) ``TP / (TP + FN)``.

    Returns ``NaN`` when ``truth`` is empty (no positives to find). See :func:`dice` for the
    parameters.
    """
    c = confusion_counts(pred, truth)
    return _ratio(c.tp, c.tp + c.fn)


def specificity(pred, truth) -> float:
    """Specificity (true-negative rate) ``TN / (TN + FP)``.

    Returns ``NaN`` when ``truth`` is foreground everywhere (no negatives). It depends on the
    size of the image around the ROI, so compare it only between images of the same size.
    """
    c = confusion_counts(pred, truth)
    return _ratio(c.tn, c.tn + c.fp)


def precision(pred, truth) -> float:
    """Precision (positive predictive value) ``TP / (TP + FP)``.

    Returns ``NaN`` when ``pred`` is empty (nothing was predicted).
    """
    c = confusion_counts(pred, truth)
    return _ratio(c.tp, c.tp + c.fp)


def voe(pred, truth) -> float:
    """Volume overlap error ``1 - IoU``, in 0..1 (0 is perfect).

    Returns ``NaN`` when both masks are empty and ``1.0`` when exactly one is empty.
    """
    value = iou(pred, truth)
    return 1.0 - value if np.isfinite(value) else float("nan")


def rvd(pred, truth) -> float:
    """Signed relative volume (area) difference ``(|P| - |T|) / |T|``.

    Positive when the prediction is larger than the reference (MedPy's ``ravd``). Spacing does
    not matter: it cancels. Returns ``NaN`` when ``truth`` is empty (both empty included).
    """
    c = confusion_counts(pred, truth)
    return _ratio(c.pred_count - c.truth_count, c.truth_count)


# --------------------------------------------------------------------------- surface distances


def boundary(mask) -> np.ndarray:
    """Boundary pixels of a mask (MedPy's convention).

    Parameters
    ----------
    mask : ndarray of shape (M, N) or (K, M, N)
        Non-zero is foreground.

    Returns
    -------
    ndarray of bool, same shape
        Foreground pixels removed by one binary erosion with the connectivity-1 structure;
        pixels outside the array count as background, so foreground on the array edge is
        boundary.
    """
    mask = np.asarray(mask) != 0
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, iterations=1, border_value=0)


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed distances between the boundaries of two masks, in mm.

    Attributes
    ----------
    pred_to_truth_mm : ndarray of shape (B_pred,) and dtype float64
        For each boundary pixel of the prediction, the distance to the nearest boundary pixel
        of the reference.
    truth_to_pred_mm : ndarray of shape (B_truth,) and dtype float64
        The same from the reference to the prediction.
    """

    pred_to_truth_mm: np.ndarray
    truth_to_pred_mm: np.ndarray


def surface_distances(pred, truth, spacing_mm=1.0) -> SurfaceDistances | None:
    """Distances between the two boundaries, both ways (MedPy's boundary convention).

    Parameters
    ----------
    pred, truth : ndarray of shape (M, N) or (K, M, N)
        Masks of the same shape; non-zero is foreground.
    spacing_mm : float or sequence of float
        Pixel spacing per array axis in mm: ``(row, col)`` or ``(slice, row, col)``.

    Returns
    -------
    SurfaceDistances or None
        ``None`` when either mask is empty (distances are undefined).

    Raises
    ------
    CtsegDataError
        If shapes differ, masks are not 2D/3D, or the spacing does not fit.

    Notes
    -----
    The work is done on the bounding box of both masks plus one pixel (clipped to the array),
    which gives the same distances as the whole array, since every boundary pixel lies inside
    it, and is much faster for small ROIs in large images.
    """
    pred, truth = _check_masks(pred, truth)
    spacing = _check_spacing(spacing_mm, pred.ndim)
    if not pred.any() or not truth.any():
        return None
    box = _bounding_box(pred | truth, margin=1)
    pred, truth = pred[box], truth[box]
    pred_border = boundary(pred)
    truth_border = boundary(truth)
    # distance_transform_edt measures distances to the nearest zero, so zeros mark the boundary
    to_truth = ndimage.distance_transform_edt(~truth_border, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~pred_border, sampling=spacing)
    return SurfaceDistances(
        pred_to_truth_mm=to_truth[pred_border].astype(np.float64),
        truth_to_pred_mm=to_pred[truth_border].astype(np.float64),
    )


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(hits[0] - margin, 0), min(hits[-1] + margin + 1, mask.shape[axis])))
    return tuple(box)


def _hd(d: SurfaceDistances | None) -> float:
    if d is None:
        return float("nan")
    return float(max(d.pred_to_truth_mm.max(), d.truth_to_pred_mm.max()))


def _hd95(d: SurfaceDistances | None) -> float:
    if d is None:
        return float("nan")
    return float(np.percentile(np.concatenate([d.pred_to_truth_mm, d.truth_to_pred_mm]), 95))


def _assd(d: SurfaceDistances | None) -> float:
    if d is None:
        return float("nan")
    return float(np.concatenate([d.pred_to_truth_mm, d.truth_to_pred_mm]).mean())


def _surface_dice(d: SurfaceDistances | None, n_pred: int, n_truth: int, tolerance: float) -> float:
    if n_pred == 0 and n_truth == 0:
        return float("nan")
    if d is None:
        return 0.0
    close = np.count_nonzero(d.pred_to_truth_mm <= tolerance) + np.count_nonzero(d.truth_to_pred_mm <= tolerance)
    return close / (d.pred_to_truth_mm.size + d.truth_to_pred_mm.size)


def hausdorff(pred, truth, spacing_mm=1.0) -> float:
    """Symmetric Hausdorff distance in mm: the largest boundary-to-boundary distance.

    Boundary convention: MedPy's (see the module docstring). Returns ``NaN`` when either mask
    is empty (the distance is undefined; :func:`dice` is 0 there).

    Parameters
    ----------
    pred, truth : ndarray of shape (M, N) or (K, M, N)
        Masks of the same shape; non-zero is foreground.
    spacing_mm : float or sequence of float
        ``(row, col)`` or ``(slice, row, col)`` spacing in mm.

    Examples
    --------
    Two single pixels 2 mm apart:

    >>> a = np.zeros((5, 5), bool); a[2, 1] = True
    >>> b = np.zeros((5, 5), bool); b[2, 3] = True
    >>> hausdorff(a, b, spacing_mm=(1.0, 1.0))
    2.0
    """
    return _hd(surface_distances(pred, truth, spacing_mm))


def hd95(pred, truth, spacing_mm=1.0) -> float:
    """95th percentile of the boundary-to-boundary distances, in mm.

    The percentile (NumPy's linear interpolation) is taken over the distances of both
    directions pooled, as MedPy's ``hd95`` does (DeepMind's takes the larger of the two directed
    percentiles instead). Boundary convention: MedPy's. Returns ``NaN`` when either mask is empty.
    """
    return _hd95(surface_distances(pred, truth, spacing_mm))


def assd(pred, truth, spacing_mm=1.0) -> float:
    """Average symmetric surface distance in mm.

    The mean over the boundary pixels of both masks of their distance to the other mask's
    boundary, ``(sum d(∂P -> ∂T) + sum d(∂T -> ∂P)) / (|∂P| + |∂T|)`` (Heimann et al. 2009; what
    MedPy 0.5's ``assd`` computes; older MedPy averaged the two directed means instead).
    Boundary convention: MedPy's. Returns ``NaN`` when either mask is empty.
    """
    return _assd(surface_distances(pred, truth, spacing_mm))


def surface_dice(pred, truth, spacing_mm=1.0, tolerance_mm: float = 2.0) -> float:
    """Surface Dice (normalised surface distance) at a tolerance in mm, in 0..1.

    The share of boundary pixels of both masks that lie within ``tolerance_mm`` of the other
    mask's boundary: ``(|{b in ∂P : d(b, ∂T) <= tol}| + |{b in ∂T : d(b, ∂P) <= tol}|) /
    (|∂P| + |∂T|)``. Boundary pixels are counted (MedPy's boundary convention, as MONAI's
    ``compute_surface_dice`` does by default), not weighted by surface area as in DeepMind's
    ``surface-distance``.

    Returns ``NaN`` when both masks are empty and ``0.0`` when exactly one is empty.

    Raises
    ------
    CtsegDataError
        If ``tolerance_mm`` is negative or not finite (and as :func:`surface_distances`).
    """
    tolerance = _check_tolerance(tolerance_mm)
    pred_b, truth_b = _check_masks(pred, truth)
    d = surface_distances(pred_b, truth_b, spacing_mm)
    return _surface_dice(d, int(pred_b.any()), int(truth_b.any()), tolerance)


# --------------------------------------------------------------------------- all at once


def compute_metrics(pred, truth, spacing_mm=1.0, tolerance_mm: float = 2.0) -> dict[str, float]:
    """Every metric of :data:`METRIC_NAMES` for one pair of masks, sharing the work.

    Parameters
    ----------
    pred, truth : ndarray of shape (M, N) or (K, M, N)
        Masks of the same shape; non-zero is foreground.
    spacing_mm : float or sequence of float
        ``(row, col)`` or ``(slice, row, col)`` spacing in mm.
    tolerance_mm : float
        Tolerance of the surface Dice, in mm.

    Returns
    -------
    dict
        The metrics named in :data:`METRIC_NAMES` (distances in mm; empty-mask behaviour as the
        individual functions document) plus ``pred_pixels``, ``truth_pixels`` (counts) and
        ``pred_size_mm``, ``truth_size_mm`` (area in mm² for 2D masks, volume in mm³ for 3D).
    """
    tolerance = _check_tolerance(tolerance_mm)
    pred_b, truth_b = _check_masks(pred, truth)
    spacing = _check_spacing(spacing_mm, pred_b.ndim)
    c = confusion_counts(pred_b, truth_b)
    d = surface_distances(pred_b, truth_b, spacing)
    iou_value = _ratio(c.tp, c.tp + c.fp + c.fn)
    pixel_size = float(np.prod(spacing))
    return {
        "dice": _ratio(2 * c.tp, c.pred_count + c.truth_count),
        "iou": iou_value,
        "sensitivity": _ratio(c.tp, c.tp + c.fn),
        "specificity": _ratio(c.tn, c.tn + c.fp),
        "precision": _ratio(c.tp, c.tp + c.fp),
        "voe": 1.0 - iou_value if np.isfinite(iou_value) else float("nan"),
        "rvd": _ratio(c.pred_count - c.truth_count, c.truth_count),
        "hd": _hd(d),
        "hd95": _hd95(d),
        "assd": _assd(d),
        "surface_dice": _surface_dice(d, c.pred_count, c.truth_count, tolerance),
        "pred_pixels": c.pred_count,
        "truth_pixels": c.truth_count,
        "pred_size_mm": c.pred_count * pixel_size,
        "truth_size_mm": c.truth_count * pixel_size,
    }


def roi_metrics(
    pred_labels, truth_labels, num_labels: int, spacing_mm=1.0, tolerance_mm: float = 2.0
) -> list[dict[str, float]]:
    """:func:`compute_metrics` for each ROI of two label maps.

    Parameters
    ----------
    pred_labels, truth_labels : ndarray of shape (M, N) or (K, M, N) and integer dtype
        Label maps: 0 is background, ``1..num_labels`` are the ROIs.
    num_labels : int
        Number of ROIs (>= 1).
    spacing_mm, tolerance_mm
        As :func:`compute_metrics`.

    Returns
    -------
    list of dict
        One dict per ROI, label 1 first, each with a ``label`` key (the label value) added.

    Raises
    ------
    CtsegDataError
        If ``num_labels`` < 1, or a label map holds values outside ``0..num_labels``.
    """
    if int(num_labels) < 1:
        raise CtsegDataError(f"num_labels must be at least 1, got {num_labels}")
    pred_labels = np.asarray(pred_labels)
    truth_labels = np.asarray(truth_labels)
    _check_masks(pred_labels, truth_labels)
    for name, labels in (("pred_labels", pred_labels), ("truth_labels", truth_labels)):
        if labels.size and (labels.min() < 0 or labels.max() > num_labels):
            raise CtsegDataError(
                f"{name} holds label values {labels.min()}..{labels.max()} but num_labels is "
                f"{num_labels}; give the right number of ROIs"
            )
    rows = []
    for value in range(1, int(num_labels) + 1):
        row = {"label": value}
        row.update(compute_metrics(pred_labels == value, truth_labels == value, spacing_mm, tolerance_mm))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- ROC and AUC


def _check_scores(probabilities, truth, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    scores = np.asarray(probabilities, dtype=np.float64).ravel()
    positives = (np.asarray(truth) != 0).ravel()
    if scores.size != positives.size:
        raise CtsegDataError(
            f"probabilities ({np.asarray(probabilities).shape}) and truth "
            f"({np.asarray(truth).shape}) must have the same number of pixels"
        )
    if not np.all(np.isfinite(scores)):
        raise CtsegDataError("probabilities must be finite; the map holds NaN or infinite values")
    if weights is None:
        return scores, positives, None
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.size != scores.size:
        raise CtsegDataError(f"weights ({np.asarray(weights).shape}) must have one value per pixel ({scores.size})")
    if not np.all(np.isfinite(w)) or (w.size and w.min() < 0):
        raise CtsegDataError("weights must be finite and >= 0 (they count pixels)")
    return scores, positives, w


def roc_curve(probabilities, truth, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic of a probability map against a reference mask.

    Parameters
    ----------
    probabilities : ndarray, any shape, real dtype
        Predicted probability (or any score) of the ROI per pixel, e.g. ``proba[..., k]`` from a
        segmenter's ``predict_proba``.
    truth : ndarray, same number of elements
        Reference mask of that ROI; non-zero is foreground.
    weights : ndarray, same number of elements, optional
        How many pixels each element stands for (>= 0): a histogram of scores can be given as
        one element per score level and class with its pixel count, which gives the curve of
        the pixels it counts exactly. Default: 1 each.

    Returns
    -------
    fpr, tpr, thresholds : ndarray of shape (T,) and dtype float64
        False- and true-positive rates when pixels with ``probability >= threshold`` are called
        foreground, for every distinct score (descending), starting at ``(0, 0)`` with threshold
        ``+inf``. CTSegNet's ``ROC(thresh)`` gives one such point per call (with ``>``); this
        gives the whole curve at once.

    Raises
    ------
    CtsegDataError
        If the sizes differ, scores or weights are not finite, a weight is negative, or
        ``truth`` holds only one class (the curve is undefined then).
    """
    scores, positives, w = _check_scores(probabilities, truth, weights)
    w_pos = positives.astype(np.float64) if w is None else np.where(positives, w, 0.0)
    w_all = np.ones_like(scores) if w is None else w
    n_pos = float(w_pos.sum())
    n_neg = float(w_all.sum()) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise CtsegDataError(
            "the ROC curve needs both foreground and background pixels in truth; "
            f"truth has {n_pos:g} foreground and {n_neg:g} background pixels"
        )
    order = np.argsort(-scores, kind="mergesort")
    scores = scores[order]
    # the last index of each run of equal scores: a threshold there includes the whole run
    ends = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(w_pos[order])[ends]
    fps = np.cumsum(w_all[order])[ends] - tps
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, scores[ends]]
    return fpr, tpr, thresholds


def roc_auc(probabilities, truth, weights=None) -> float:
    """Area under the ROC curve (trapezoidal rule over :func:`roc_curve`), in 0..1.

    Equals the probability that a random foreground pixel scores higher than a random background
    pixel (ties count half). Returns ``NaN`` when ``truth`` holds only one class (counting the
    pixels of positive weight), e.g. a slice without the ROI. Parameters as :func:`roc_curve`.

    Raises
    ------
    CtsegDataError
        If the sizes differ, scores or weights are not finite, or a weight is negative.
    """
    scores, positives, w = _check_scores(probabilities, truth, weights)
    counted = positives if w is None else positives[w > 0]
    if counted.all() or not counted.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(scores, positives, w)
    return float(np.trapezoid(tpr, fpr))


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class ReliabilityBins:
    """Result of :func:`reliability_bins`: predicted probability against observed frequency.

    Attributes
    ----------
    edges : ndarray of shape (B + 1,)
        Bin edges in 0..1; bin b holds ``edges[b] <= p < edges[b + 1]`` (the last includes 1).
    counts : ndarray of shape (B,)
        Pixels (sum of weights) in each bin.
    mean_predicted : ndarray of shape (B,)
        Mean predicted probability in each bin (NaN for an empty bin).
    observed : ndarray of shape (B,)
        Share of those pixels that are foreground in truth (NaN for an empty bin).
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_predicted: np.ndarray
    observed: np.ndarray

    @property
    def expected_calibration_error(self) -> float:
        """``sum_b counts_b / N x |observed_b - mean_predicted_b|``, in 0..1; NaN without pixels."""
        total = self.counts.sum()
        if total == 0:
            return float("nan")
        used = self.counts > 0
        gaps = np.abs(self.observed[used] - self.mean_predicted[used])
        return float(np.sum(self.counts[used] * gaps) / total)


def reliability_bins(probabilities, truth, n_bins: int = 10, weights=None) -> ReliabilityBins:
    """Calibration of a probability map: pixels binned by predicted probability (reliability diagram).

    A well calibrated model's pixels predicted at 0.8 are foreground 80 % of the time, so
    ``observed`` follows ``mean_predicted``; :attr:`ReliabilityBins.expected_calibration_error`
    sums the gaps weighted by the pixels in each bin.

    Parameters
    ----------
    probabilities : ndarray, any shape
        Predicted probability of the ROI per pixel, in 0..1.
    truth : ndarray, same number of elements
        Reference mask of that ROI; non-zero is foreground.
    n_bins : int
        Equal-width bins over 0..1, >= 1.
    weights : ndarray, same number of elements, optional
        Pixels each element stands for, as :func:`roc_curve`.

    Returns
    -------
    ReliabilityBins
        Empty bins have NaN means; with no pixel at all every bin is empty.

    Raises
    ------
    CtsegDataError
        As :func:`roc_curve` (except that one class in truth is fine), if a probability lies
        outside 0..1, or ``n_bins`` < 1.

    Examples
    --------
    >>> bins = reliability_bins([0.9, 0.9, 0.1, 0.1], [1, 0, 0, 0], n_bins=2)
    >>> bins.observed.tolist(), round(bins.expected_calibration_error, 3)
    ([0.0, 0.5], 0.25)
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise CtsegDataError(f"n_bins must be a whole number >= 1, got {n_bins!r}")
    scores, positives, w = _check_scores(probabilities, truth, weights)
    if scores.size and (scores.min() < 0 or scores.max() > 1):
        raise CtsegDataError(f"probabilities must lie in 0..1 for calibration; got {scores.min():g}..{scores.max():g}")
    w = np.ones_like(scores) if w is None else w
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.minimum((scores * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(index, weights=w, minlength=n_bins)
    sums = np.bincount(index, weights=w * scores, minlength=n_bins)
    hits = np.bincount(index, weights=w * positives, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.where(counts > 0, sums / counts, np.nan)
        observed = np.where(counts > 0, hits / counts, np.nan)
    return ReliabilityBins(edges=edges, counts=counts, mean_predicted=mean_predicted, observed=observed)


def expected_calibration_error(probabilities, truth, n_bins: int = 10, weights=None) -> float:
    """Expected calibration error (ECE) of a probability map, in 0..1 (0 = perfectly calibrated).

    ``reliability_bins(...).expected_calibration_error``; NaN when there are no pixels.
    Parameters and errors as :func:`reliability_bins`.

    Examples
    --------
    >>> expected_calibration_error([0.75, 0.75, 0.75, 0.75], [1, 1, 1, 0])
    0.0
    """
    return reliability_bins(probabilities, truth, n_bins, weights).expected_calibration_error


# --------------------------------------------------------------------------- CTSegNet's stats


def snr(image, mask) -> float:
    """Signal-to-noise ratio of an image with respect to a segmentation (CTSegNet's definition).

    ``SNR = |mu1 - mu0| / sqrt((s0**2 + s1**2) / 2)``, where ``mu1, s1`` are the mean and
    (population) standard deviation of the image inside the mask and ``mu0, s0`` outside it.
    It says how separable the two phases are by intensity alone.

    Parameters
    ----------
    image : ndarray of shape (M, N) or (K, M, N), real dtype
        Raw image values (HU for CT).
    mask : ndarray of the same shape
        Segmentation; non-zero is the "signal" phase.

    Returns
    -------
    float
        Unitless. ``NaN`` when the mask is empty or covers the whole image; ``inf`` when both
        phases are perfectly uniform with different means.

    Raises
    ------
    CtsegDataError
        If the shapes differ.
    """
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask) != 0
    if image.shape != mask.shape:
        raise CtsegDataError(f"image {image.shape} and mask {mask.shape} must have the same shape")
    inside, outside = image[mask], image[~mask]
    if inside.size == 0 or outside.size == 0:
        return float("nan")
    noise = np.sqrt((inside.var() + outside.var()) / 2.0)
    signal = abs(inside.mean() - outside.mean())
    if noise == 0:
        return float("inf") if signal > 0 else float("nan")
    return float(signal / noise)


@dataclass(frozen=True)
class Fidelity:
    """Result of :func:`fidelity`.

    Attributes
    ----------
    fidelity : float
        Share (0..1) of the slices counted whose IoU exceeds the tolerance.
    mean_iou : float
        Mean IoU over the slices counted.
    iou_per_slice : ndarray of shape (K,) and dtype float64
        IoU of every slice (``NaN`` where both masks are empty).
    n_counted : int
        Number of slices the share is taken over.
    """

    fidelity: float
    mean_iou: float
    iou_per_slice: np.ndarray
    n_counted: int


def fidelity(pred_stack, truth_stack, tolerance: float = 0.95, empty: str = "agree") -> Fidelity:
    """Share of slices segmented with an IoU above a tolerance (CTSegNet's "fidelity").

    Parameters
    ----------
    pred_stack, truth_stack : ndarray of shape (K, M, N)
        Masks of K slices; non-zero is foreground.
    tolerance : float
        IoU a slice must exceed (strictly), in 0..1; CTSegNet's default 0.95.
    empty : {"agree", "skip"}
        Slices where both masks are empty: ``"agree"`` counts them as faithful (IoU taken as
        1, which is what CTSegNet's +1 smoothing of the IoU gives); ``"skip"`` leaves them out.

    Returns
    -------
    Fidelity
        ``fidelity`` and ``mean_iou`` are ``NaN`` when no slice is counted.

    Raises
    ------
    CtsegDataError
        If the stacks are not 3D of the same shape, the tolerance is outside 0..1 or ``empty``
        is not one of the choices.
    """
    pred, truth = _check_masks(pred_stack, truth_stack)
    if pred.ndim != 3:
        raise CtsegDataError(f"fidelity needs stacks of shape (K, M, N), got shape {pred.shape}")
    if not 0.0 <= float(tolerance) <= 1.0:
        raise CtsegDataError(f"tolerance is an IoU and must lie in 0..1, got {tolerance}")
    if empty not in ("agree", "skip"):
        raise CtsegDataError(f"empty must be 'agree' or 'skip', got {empty!r}")
    inter = np.count_nonzero(pred & truth, axis=(1, 2))
    union = np.count_nonzero(pred | truth, axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_slice = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    counted = np.where(np.isnan(per_slice), 1.0, per_slice) if empty == "agree" else per_slice
    counted = counted[np.isfinite(counted)]
    if counted.size == 0:
        return Fidelity(float("nan"), float("nan"), per_slice, 0)
    return Fidelity(
        fidelity=float(np.mean(counted > tolerance)),
        mean_iou=float(np.mean(counted)),
        iou_per_slice=per_slice,
        n_counted=int(counted.size),
    )


__all__ = [
    "METRIC_NAMES",
    "DISTANCE_METRICS",
    "ConfusionCounts",
    "SurfaceDistances",
    "Fidelity",
    "confusion_counts",
    "dice",
    "iou",
    "jaccard",
    "sensitivity",
    "specificity",
    "precision",
    "voe",
    "rvd",
    "boundary",
    "surface_distances",
    "hausdorff",
    "hd95",
    "assd",
    "surface_dice",
    "compute_metrics",
    "roi_metrics",
    "roc_curve",
    "roc_auc",
    "ReliabilityBins",
    "reliability_bins",
    "expected_calibration_error",
    "snr",
    "fidelity",
]
