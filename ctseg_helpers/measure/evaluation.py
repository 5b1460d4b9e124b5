"""Evaluate predicted label maps against manual ones, slice by slice and per volume, from arrays.

A :class:`Case` is one scan (a DICOM series as read) with its predicted and/or manual label
maps stacked in the series' order; :func:`evaluate_cases` measures them. Reading the folders
(label maps paired with DICOM files by stem) and writing the results are the workflow
:mod:`ctseg_helpers.workflows.evaluate`; nothing here opens a file.

Pixel spacing comes from each slice's DICOM header, so distances are in mm and areas in mm².
When the slices form a volume (equally spaced positions, no cine phases; see
:attr:`ctseg_helpers.io.dicom.DicomSeries.is_volume`) and every slice has both label maps, the
metrics are also computed in 3D with spacing ``(slice spacing, row, col)``.

Outputs
-------
``metrics`` (long form): one row per slice and ROI with the metrics of
:data:`ctseg_helpers.measure.metrics.METRIC_NAMES` and the two areas. ``summary``: count, mean,
std, median, quartiles, min and max of each metric per ROI (undefined values, NaN, left out and
counted). ``agreement``: Bland–Altman, correlation and paired t-test of the areas per ROI.

With probability maps (``Case.probabilities``, e.g. a run's ``probabilities.h5``):
``roc_auc``, one row per series and ROI and one pooled over all series (``series_uid``
``all``): the ROC AUC of the ROI's probability against its manual mask, one ROI against the
rest, over the pixels of every slice that has both (:func:`probability_metrics`), and the
expected calibration error over 10 bins; ``calibration``: the reliability bins pooled over all
series, per ROI. Probabilities are binned to 1/255 first, the step a run stores them at, which
makes the pooled values exact for stored maps whatever the number of pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.geometry import no_volume_reason, position_groups
from ctseg_helpers.measure.agreement import agreement_summary
from ctseg_helpers.measure.area import roi_areas_mm2
from ctseg_helpers.measure.metrics import METRIC_NAMES, reliability_bins, roc_auc, roi_metrics

logger = logging.getLogger(__name__)

#: The file each table and figure of an evaluation is saved as (:meth:`Evaluation.tables`,
#: :func:`ctseg_helpers.workflows.evaluate.write_evaluation`).
OUTPUT_FILES = {
    "metrics": "metrics.csv",
    "summary": "summary.csv",
    "agreement": "agreement.csv",
    "volume_metrics": "volume_metrics.csv",
    "roc_auc": "roc_auc.csv",
    "calibration": "calibration.csv",
    "bland_altman": "bland_altman.png",
}

#: Probability levels of stored maps (value / 255); probabilities are binned to them.
_LEVELS = 256
#: Reliability bins of the calibration table.
CALIBRATION_BINS = 10


# --------------------------------------------------------------------------- one scan


@dataclass
class Case:
    """One scan with its predicted and/or manual label maps, stacked in the series' order.

    Attributes
    ----------
    series : DicomSeries
        The scan (``series.images`` float32 (K, rows, cols), HU for CT).
    stems : list of str
        File stem of each slice.
    label_names : tuple of str
        ROI names, label 1 first.
    prediction, truth : ndarray of shape (K, rows, cols) and dtype uint8, or None
        Label maps; zero on slices that have no file (see ``has_prediction``/``has_truth``).
    has_prediction, has_truth : ndarray of shape (K,) and dtype bool
        Which slices have a label file.
    unmatched : list of Path
        Label files whose stem matches no DICOM file of the series (left out).
    truth_files : dict of str to Path
        The manual label file of each slice that has one, by stem.
    probabilities : ndarray of shape (K, rows, cols, C), or None
        Class probabilities of each slice (class 0 background, k ROI k): float in 0..1, or
        uint8 values ``p x 255`` as stored in ``probabilities.h5``; zero on slices without.
    has_probabilities : ndarray of shape (K,) and dtype bool, or None
        Which slices have probabilities (None: all of them when ``probabilities`` is given).
    """

    series: object
    stems: list[str]
    label_names: tuple[str, ...]
    prediction: np.ndarray | None
    truth: np.ndarray | None
    has_prediction: np.ndarray
    has_truth: np.ndarray
    unmatched: list[Path] = field(default_factory=list)
    truth_files: dict[str, Path] = field(default_factory=dict)
    probabilities: np.ndarray | None = field(default=None, repr=False)
    has_probabilities: np.ndarray | None = None

    @property
    def images(self) -> np.ndarray:
        """The scan's pixel values, float32 (K, rows, cols)."""
        return self.series.images

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def modality(self) -> str:
        return self.series.modality

    @property
    def is_volume(self) -> bool:
        """True when the slices form a volume (see ``DicomSeries.is_volume``)."""
        return bool(self.series.is_volume)

    @property
    def volume_reason(self) -> str:
        """Why the slices do not form a volume ("" when they do); see :func:`no_volume_reason`."""
        return "" if self.series.is_volume else no_volume_reason(self.series.positions_mm)

    def summary(self) -> str:
        """A few lines saying what was loaded (slices, spacing, volume or not, label maps)."""
        s = self.series
        k, rows, cols = s.images.shape
        spacing = s.spacing_mm
        lines = [
            f"{k} slice(s) of {rows} x {cols} pixels, {s.modality or 'unknown modality'}, from "
            f"{Path(s.files[0]).parent}",
            f"pixel spacing {spacing[0]:.4g} x {spacing[1]:.4g} mm" if spacing else "no pixel spacing",
            (
                f"a volume: {s.n_positions} slices {s.slice_spacing_mm:.4g} mm apart"
                if self.is_volume
                else f"not a volume: {self.volume_reason}"
            ),
            f"ROIs: {', '.join(self.label_names)}",
        ]
        for name, stack, present in (
            ("predicted", self.prediction, self.has_prediction),
            ("manual", self.truth, self.has_truth),
        ):
            if stack is not None:
                lines.append(f"{name} label maps for {int(present.sum())} of {k} slices")
        if self.unmatched:
            lines.append(f"{len(self.unmatched)} label file(s) match no slice and were left out")
        return "\n".join(lines)

    def slice_spacing_mm(self, index: int) -> tuple[float, float]:
        """(row, col) pixel spacing of slice ``index`` in mm.

        Raises
        ------
        CtsegDataError
            If that DICOM file has no PixelSpacing.
        """
        spacing = self.series.pixel_spacing_mm[index]
        if np.isnan(spacing).any():
            raise CtsegDataError(
                f"{self.series.files[index]}: no PixelSpacing in the DICOM header, so distances and "
                "areas in mm cannot be computed; use files that carry the pixel spacing"
            )
        return float(spacing[0]), float(spacing[1])

    def volume_spacing_mm(self) -> tuple[float, float, float]:
        """(slice, row, col) spacing in mm of the volume.

        Raises
        ------
        CtsegDataError
            If the slices do not form a volume or their pixel spacings differ.
        """
        if not self.is_volume:
            raise CtsegDataError(
                f"{self.series.files[0].parent}: the slices do not form a volume: {self.volume_reason}"
            )
        spacing = self.series.pixel_spacing_mm
        if np.isnan(spacing).any() or not np.allclose(spacing, spacing[0], rtol=1e-3):
            raise CtsegDataError(
                f"{self.series.files[0].parent}: the slices have missing or different pixel spacings, "
                "so they cannot be measured as one volume"
            )
        return (float(self.series.slice_spacing_mm), float(spacing[0, 0]), float(spacing[0, 1]))

    def position_groups(self) -> np.ndarray:
        """Group number of each slice: 0 for every slice of an ordinary stack; one group per
        slice position for a cine series (its phases), so sequences run within a position."""
        s = self.series
        if s.n_phases <= 1 or np.isnan(s.positions_mm).any():
            return np.zeros(len(self.stems), dtype=int)
        groups = np.zeros(len(self.stems), dtype=int)
        for number, (start, stop) in enumerate(position_groups(s.positions_mm)):
            groups[start:stop] = number
        return groups


# --------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """Result of :func:`evaluate_case` / :func:`evaluate_cases`.

    Attributes
    ----------
    metrics : DataFrame
        One row per slice and ROI: ``file`` (stem), ``series_uid``, ``slice_index`` (in its
        series), ``position_mm``, ``roi``,
        ``label``, the metrics (distances in mm), ``truth_area_mm2``, ``pred_area_mm2``,
        ``truth_pixels``, ``pred_pixels``.
    summary : DataFrame
        :func:`summarize_metrics` of ``metrics``.
    agreement : DataFrame
        :func:`area_agreement` of ``metrics`` (may be empty).
    volume_metrics : DataFrame or None
        One row per series and ROI of the 3D metrics (``truth_volume_mm3``, ``pred_volume_mm3``),
        or None when no series forms a volume with label maps on every slice.
    tolerance_mm : float
        Tolerance of the surface Dice.
    label_names : tuple of str
    skipped : list of str
        One note per series left out because no slice of it has both label maps.
    roc_auc : DataFrame or None
        With probability maps: :func:`probability_metrics`' table (ROC AUC and calibration
        error per series and ROI, and pooled, ``series_uid`` ``all``); else None.
    calibration : DataFrame or None
        With probability maps: the reliability bins pooled over all series, per ROI.
    """

    metrics: pd.DataFrame
    summary: pd.DataFrame
    agreement: pd.DataFrame
    volume_metrics: pd.DataFrame | None
    tolerance_mm: float
    label_names: tuple[str, ...]
    skipped: list[str] = field(default_factory=list)
    roc_auc: pd.DataFrame | None = None
    calibration: pd.DataFrame | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables to save, by file name (see :data:`OUTPUT_FILES`); empty ones left out."""
        tables = {OUTPUT_FILES["metrics"]: self.metrics, OUTPUT_FILES["summary"]: self.summary}
        if len(self.agreement):
            tables[OUTPUT_FILES["agreement"]] = self.agreement
        if self.volume_metrics is not None:
            tables[OUTPUT_FILES["volume_metrics"]] = self.volume_metrics
        if self.roc_auc is not None:
            tables[OUTPUT_FILES["roc_auc"]] = self.roc_auc
        if self.calibration is not None:
            tables[OUTPUT_FILES["calibration"]] = self.calibration
        return tables


def evaluate_case(case: Case, tolerance_mm: float = 2.0, progress: bool = False) -> Evaluation:
    """Metrics of the predicted against the manual label maps of one scan.

    Parameters
    ----------
    case : Case
        With both ``prediction`` and ``truth``; slices that lack either are left out.
    tolerance_mm : float
        Tolerance of the surface Dice in mm.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Evaluation

    Raises
    ------
    CtsegDataError
        If the case lacks predictions or manual labels, no slice has both, or a slice has no
        pixel spacing.
    """
    return evaluate_cases([case], tolerance_mm, progress)


def evaluate_cases(cases: list[Case], tolerance_mm: float = 2.0, progress: bool = False) -> Evaluation:
    """:func:`evaluate_case` over several scans (series), pooled into one evaluation.

    ``metrics`` and ``volume_metrics`` get a ``series_uid`` column; the summary and the area
    agreement pool the slices of all scans. A series where no slice has both a predicted and a
    manual label map (e.g. one that was not segmented) is left out with one warning naming it
    (also in ``Evaluation.skipped``).

    Raises
    ------
    CtsegDataError
        As :func:`evaluate_case`; also when ``cases`` is empty, the cases name their ROIs
        differently, or no series at all has a slice with both label maps.
    """
    if not cases:
        raise CtsegDataError("nothing to evaluate: no scan has label maps")
    names = cases[0].label_names
    if any(c.label_names != names for c in cases):
        raise CtsegDataError("the scans to evaluate together must use the same ROI names")
    for case in cases:
        if case.prediction is None or case.truth is None:
            raise CtsegDataError(
                "evaluation needs both predicted and manual label maps; give prediction_dir and truth_dir"
            )
    evaluable = [bool((c.has_prediction & c.has_truth).any()) for c in cases]
    usable = [c for c, ok in zip(cases, evaluable, strict=True) if ok]
    if not usable:
        folder = Path(cases[0].series.files[0]).parent
        raise CtsegDataError(
            f"{folder}: no slice of series {_few([c.series.series_uid for c in cases])} has both a predicted "
            "and a manual label map (files are paired by stem); check that the two label folders belong to "
            "this scan"
        )
    skipped = [_skip_note(c) for c, ok in zip(cases, evaluable, strict=True) if not ok]
    for note in skipped:
        logger.warning("%s", note)
    frames, volumes = [], []
    for case in usable:
        frames.append(_slice_metrics(case, tolerance_mm, progress))
        volume = _volume_metrics(case, tolerance_mm)
        if volume is not None:
            volumes.append(volume)
    metrics = pd.concat(frames, ignore_index=True)
    with_proba = [c for c in usable if c.probabilities is not None]
    roc_table, calibration = probability_metrics(with_proba) if with_proba else (None, None)
    return Evaluation(
        metrics=metrics,
        summary=summarize_metrics(metrics),
        agreement=area_agreement(metrics),
        volume_metrics=pd.concat(volumes, ignore_index=True) if volumes else None,
        tolerance_mm=float(tolerance_mm),
        label_names=names,
        skipped=skipped,
        roc_auc=roc_table,
        calibration=calibration,
    )


def _few(names: list[str], shown: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 7 more``."""
    text = ", ".join(str(n) for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _skip_note(case: Case) -> str:
    """One line saying which series is left out of an evaluation, and why."""
    s = case.series
    n_truth, n_pred = int(case.has_truth.sum()), int(case.has_prediction.sum())
    where = (
        f"series {s.series_uid or '(no uid)'} ('{s.series_description or '(no description)'}', "
        f"{len(case.stems)} slice(s), e.g. {Path(s.files[0]).name})"
    )
    if n_pred == 0:
        return (
            f"{where}: {n_truth} manual label map(s) but no predicted one; left out of the evaluation "
            "(segment that series too to evaluate it)"
        )
    if n_truth == 0:
        return f"{where}: {n_pred} predicted label map(s) but no manual one; left out of the evaluation"
    return (
        f"{where}: no slice has both a predicted and a manual label map ({n_pred} predicted, {n_truth} "
        "manual); left out of the evaluation"
    )


def _slice_metrics(case: Case, tolerance_mm: float, progress: bool) -> pd.DataFrame:
    from tqdm.auto import tqdm  # noqa: PLC0415

    folder = Path(case.series.files[0]).parent
    both = np.flatnonzero(case.has_prediction & case.has_truth)  # not empty: evaluate_cases checked
    missing = np.flatnonzero(case.has_truth & ~case.has_prediction)
    if missing.size:
        files = [
            case.truth_files[case.stems[i]].name if case.stems[i] in case.truth_files else case.stems[i]
            for i in missing
        ]
        logger.warning(
            "%s: %d slice(s) with a manual label map have no prediction and are left out: %s",
            folder,
            missing.size,
            _few(files),
        )
    rows = []
    for index in tqdm(both, desc="evaluating", unit="slice", disable=not progress):
        spacing = case.slice_spacing_mm(index)
        per_roi = roi_metrics(case.prediction[index], case.truth[index], case.num_labels, spacing, tolerance_mm)
        for result in per_roi:
            row = {
                "file": case.stems[index],
                "series_uid": case.series.series_uid,
                "slice_index": int(index),
                "position_mm": float(case.series.positions_mm[index]),
                "roi": case.label_names[result["label"] - 1],
                "label": result["label"],
            }
            row.update({name: result[name] for name in METRIC_NAMES})
            row.update(
                truth_area_mm2=result["truth_size_mm"],
                pred_area_mm2=result["pred_size_mm"],
                truth_pixels=result["truth_pixels"],
                pred_pixels=result["pred_pixels"],
            )
            rows.append(row)
    return pd.DataFrame(rows)


def _volume_metrics(case: Case, tolerance_mm: float) -> pd.DataFrame | None:
    if not case.is_volume:
        logger.info("no per-volume metrics for series %s: %s", case.series.series_uid, case.volume_reason)
        return None
    if not (case.has_prediction.all() and case.has_truth.all()):
        logger.info(
            "no per-volume metrics for series %s: not every slice has both a predicted and a manual label map",
            case.series.series_uid,
        )
        return None
    try:
        spacing = case.volume_spacing_mm()
    except CtsegDataError as exc:
        logger.warning("no per-volume metrics: %s", exc)
        return None
    rows = []
    for result in roi_metrics(case.prediction, case.truth, case.num_labels, spacing, tolerance_mm):
        row = {
            "series_uid": case.series.series_uid,
            "roi": case.label_names[result["label"] - 1],
            "label": result["label"],
        }
        row.update({name: result[name] for name in METRIC_NAMES})
        row.update(
            truth_volume_mm3=result["truth_size_mm"],
            pred_volume_mm3=result["pred_size_mm"],
            n_slices=len(case.stems),
            slice_spacing_mm=spacing[0],
        )
        rows.append(row)
    return pd.DataFrame(rows)


def summarize_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per ROI and metric: how many slices define it, and its mean, std, median, quartiles.

    Parameters
    ----------
    metrics : DataFrame
        Long-form metrics with a ``roi`` column and the columns of ``METRIC_NAMES``.

    Returns
    -------
    DataFrame
        Columns ``roi``, ``metric``, ``n`` (slices where the metric is defined), ``n_undefined``
        (NaN, e.g. ROI absent from both maps), ``mean``, ``std`` (ddof=1), ``median``, ``q1``,
        ``q3``, ``min``, ``max``; ROIs in their order of appearance, metrics in
        ``METRIC_NAMES`` order.
    """
    rows = []
    for roi, group in metrics.groupby("roi", sort=False):
        for name in METRIC_NAMES:
            values = group[name].to_numpy(dtype=np.float64)
            valid = values[np.isfinite(values)]
            stats = {
                "mean": np.nan,
                "std": np.nan,
                "median": np.nan,
                "q1": np.nan,
                "q3": np.nan,
                "min": np.nan,
                "max": np.nan,
            }
            if valid.size:
                stats.update(
                    mean=valid.mean(),
                    std=valid.std(ddof=1) if valid.size > 1 else np.nan,
                    median=np.median(valid),
                    q1=np.percentile(valid, 25),
                    q3=np.percentile(valid, 75),
                    min=valid.min(),
                    max=valid.max(),
                )
            rows.append(
                {
                    "roi": roi,
                    "metric": name,
                    "n": int(valid.size),
                    "n_undefined": int(values.size - valid.size),
                    **stats,
                }
            )
    return pd.DataFrame(
        rows, columns=["roi", "metric", "n", "n_undefined", "mean", "std", "median", "q1", "q3", "min", "max"]
    )


def area_agreement(metrics: pd.DataFrame) -> pd.DataFrame:
    """Agreement of manual and predicted ROI areas per ROI (Bland–Altman, correlation, t-test).

    Slices where the ROI is absent from both maps are left out (they would add (0, 0) pairs
    that shrink the limits of agreement). ROIs with fewer than 2 pairs are left out with a
    logged message.

    Parameters
    ----------
    metrics : DataFrame
        With columns ``roi``, ``truth_area_mm2``, ``pred_area_mm2``.

    Returns
    -------
    DataFrame
        One row per ROI: ``roi`` and the keys of
        :func:`ctseg_helpers.measure.agreement.agreement_summary` (areas in mm²).
    """
    rows = []
    for roi, group in metrics.groupby("roi", sort=False):
        used = group[(group["truth_area_mm2"] > 0) | (group["pred_area_mm2"] > 0)]
        if len(used) < 2:
            logger.info("ROI %s: fewer than 2 slices show it; no area agreement", roi)
            continue
        rows.append({"roi": roi, **agreement_summary(used["truth_area_mm2"], used["pred_area_mm2"])})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- probabilities


def _level_counts(case: Case) -> tuple[np.ndarray, np.ndarray, int]:
    """Per ROI, pixels of each probability level (0..255) that are foreground / background in truth.

    Returns ``(positive, negative, n_slices)`` with the counts of shape (L, 256), over the slices
    that have both probabilities and a manual label map.
    """
    proba = np.asarray(case.probabilities)
    k, rows, cols = case.truth.shape
    if proba.shape != (k, rows, cols, case.num_labels + 1):
        raise CtsegDataError(
            f"{Path(case.series.files[0]).parent}: probabilities of shape {proba.shape} do not fit {k} slices of "
            f"{rows} x {cols} pixels with {case.num_labels + 1} classes (background + {list(case.label_names)})"
        )
    present = case.has_probabilities if case.has_probabilities is not None else np.ones(k, dtype=bool)
    used = np.flatnonzero(present & case.has_truth)
    positive = np.zeros((case.num_labels, _LEVELS), dtype=np.int64)
    negative = np.zeros((case.num_labels, _LEVELS), dtype=np.int64)
    for index in used:
        levels = proba[index]
        if levels.dtype != np.uint8:
            levels = np.rint(np.clip(levels.astype(np.float32), 0.0, 1.0) * (_LEVELS - 1)).astype(np.uint8)
        truth = case.truth[index]
        for label in range(1, case.num_labels + 1):
            inside = truth == label
            scores = levels[..., label]
            positive[label - 1] += np.bincount(scores[inside], minlength=_LEVELS)
            negative[label - 1] += np.bincount(scores[~inside], minlength=_LEVELS)
    return positive, negative, len(used)


def _level_scores(positive: np.ndarray, negative: np.ndarray):
    """(scores, truth, weights): each probability level once per class, weighted by its pixel count."""
    levels = np.arange(_LEVELS) / (_LEVELS - 1)
    return (
        np.r_[levels, levels],
        np.r_[np.ones(_LEVELS, bool), np.zeros(_LEVELS, bool)],
        np.r_[positive, negative].astype(np.float64),
    )


def probability_metrics(cases: list[Case], n_bins: int = CALIBRATION_BINS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ROC AUC and calibration of the cases' probability maps against their manual label maps.

    Each ROI is scored one against the rest: its probability channel against the mask of the
    manual label map's pixels of that ROI, over the pixels of every slice with both
    probabilities and a manual label map. Probabilities are binned to 1/255 (exact for the
    stored uint8 maps), so pooling any number of pixels costs 256 counts per ROI.

    Parameters
    ----------
    cases : list of Case
        With ``truth`` and ``probabilities``.
    n_bins : int
        Bins of the reliability table and the expected calibration error.

    Returns
    -------
    roc_auc : DataFrame
        One row per series and ROI, then one per ROI pooled over all series (``series_uid``
        ``all``): ``series_uid``, ``roi``, ``label``, ``n_slices``, ``n_pixels``,
        ``n_foreground``, ``roc_auc`` (NaN when the manual maps hold only one class, e.g. no
        pixel of that ROI), ``ece`` (expected calibration error, 0..1).
    calibration : DataFrame
        Pooled over all series, per ROI and bin: ``roi``, ``label``, ``bin_low``, ``bin_high``,
        ``n_pixels``, ``mean_predicted``, ``observed`` (share that is the ROI in truth).

    Raises
    ------
    CtsegDataError
        If a case has no manual label maps or no probabilities, or they do not fit its slices.

    """
    if not cases:
        raise CtsegDataError("ROC AUC needs at least one series with probabilities; none was given")
    rows, totals = [], None
    total_slices = 0
    for case in cases:
        if case.truth is None or case.probabilities is None:
            raise CtsegDataError("ROC AUC needs manual label maps and probabilities for every series given")
        positive, negative, n_slices = _level_counts(case)
        total_slices += n_slices
        totals = (positive, negative) if totals is None else (totals[0] + positive, totals[1] + negative)
        rows += _probability_rows(case.series.series_uid, case.label_names, positive, negative, n_slices, n_bins)
    names = cases[0].label_names
    rows += _probability_rows("all", names, *totals, total_slices, n_bins)
    calibration = []
    for label, roi in enumerate(names, start=1):
        scores, truth, weights = _level_scores(totals[0][label - 1], totals[1][label - 1])
        bins = reliability_bins(scores, truth, n_bins, weights)
        for b in range(n_bins):
            calibration.append(
                {
                    "roi": roi,
                    "label": label,
                    "bin_low": bins.edges[b],
                    "bin_high": bins.edges[b + 1],
                    "n_pixels": int(bins.counts[b]),
                    "mean_predicted": bins.mean_predicted[b],
                    "observed": bins.observed[b],
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(calibration)


def _probability_rows(series_uid, names, positive, negative, n_slices: int, n_bins: int) -> list[dict]:
    rows = []
    for label, roi in enumerate(names, start=1):
        scores, truth, weights = _level_scores(positive[label - 1], negative[label - 1])
        n_pixels = int(weights.sum())
        rows.append(
            {
                "series_uid": series_uid,
                "roi": roi,
                "label": label,
                "n_slices": n_slices,
                "n_pixels": n_pixels,
                "n_foreground": int(positive[label - 1].sum()),
                "roc_auc": roc_auc(scores, truth, weights) if n_pixels else float("nan"),
                "ece": reliability_bins(scores, truth, n_bins, weights).expected_calibration_error,
            }
        )
    return rows


# --------------------------------------------------------------------------- areas along the stack


def area_jumps(areas_mm2, rel_threshold: float = 0.5, min_fraction: float = 0.1) -> np.ndarray:
    """Flag abrupt changes of an ROI's area from one slice to the next.

    Slice ``k`` is flagged when ``|A[k] - A[k-1]|`` exceeds both ``rel_threshold`` times the
    larger of the two areas and ``min_fraction`` times the ROI's largest area in the sequence
    (so that changes of a few pixels in a tiny ROI are not flagged). An ROI that appears or
    vanishes from one slice to the next (a 100 % change) is flagged too: at the ends of an
    organ that is expected, inside it it usually means a slice the model missed.

    Parameters
    ----------
    areas_mm2 : array_like of shape (K,)
        Areas in slice order (mm²).
    rel_threshold : float
        Relative change that counts as abrupt, > 0.
    min_fraction : float
        Smallest change, as a share of the largest area, that can be flagged, >= 0.

    Returns
    -------
    ndarray of shape (K,) and dtype bool
        True at the second slice of each abrupt change; the first slice is never flagged.

    Raises
    ------
    CtsegDataError
        If the thresholds are out of range.

    Examples
    --------
    >>> area_jumps([100.0, 105.0, 20.0, 100.0]).tolist()
    [False, False, True, True]
    """
    if not rel_threshold > 0:
        raise CtsegDataError(f"rel_threshold must be > 0, got {rel_threshold}")
    if not min_fraction >= 0:
        raise CtsegDataError(f"min_fraction must be >= 0, got {min_fraction}")
    areas = np.asarray(areas_mm2, dtype=np.float64).ravel()
    flags = np.zeros(areas.size, dtype=bool)
    if areas.size < 2:
        return flags
    change = np.abs(np.diff(areas))
    larger = np.maximum(areas[1:], areas[:-1])
    floor = min_fraction * areas.max()
    flags[1:] = (change > rel_threshold * larger) & (change > floor) & (change > 0)
    return flags


def slice_areas(case: Case, rel_threshold: float = 0.5, min_fraction: float = 0.1) -> pd.DataFrame:
    """Area of every ROI on every slice, for prediction and manual labels, with abrupt jumps.

    Parameters
    ----------
    case : Case
    rel_threshold, min_fraction : float
        As :func:`area_jumps`. Jumps are looked for along the stack, within each slice position
        for a cine series (along its phases).

    Returns
    -------
    DataFrame
        Long form, columns ``slice_index``, ``file``, ``position_mm``, ``group``, ``source``
        (``"prediction"`` or ``"truth"``), ``roi``, ``label``, ``area_mm2``, ``jump`` (bool).
        Slices without a label file of that source are left out.

    Raises
    ------
    CtsegDataError
        If the case has no label maps, or a labelled slice has no pixel spacing.
    """
    sources = [
        (n, s, p)
        for n, s, p in (("prediction", case.prediction, case.has_prediction), ("truth", case.truth, case.has_truth))
        if s is not None
    ]
    if not sources:
        raise CtsegDataError("areas need label maps; give a prediction or truth folder")
    groups = case.position_groups()
    frames = []
    for source, stack, present in sources:
        indices = np.flatnonzero(present)
        if indices.size == 0:
            continue
        areas = np.stack([roi_areas_mm2(stack[i], case.slice_spacing_mm(i), case.num_labels) for i in indices])
        for value, roi in enumerate(case.label_names, start=1):
            frame = pd.DataFrame(
                {
                    "slice_index": indices,
                    "file": [case.stems[i] for i in indices],
                    "position_mm": case.series.positions_mm[indices],
                    "group": groups[indices],
                    "source": source,
                    "roi": roi,
                    "label": value,
                    "area_mm2": areas[:, value - 1],
                }
            )
            frame["jump"] = False
            for _, part in frame.groupby("group"):
                frame.loc[part.index, "jump"] = area_jumps(part["area_mm2"], rel_threshold, min_fraction)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


__all__ = [
    "OUTPUT_FILES",
    "Case",
    "Evaluation",
    "evaluate_case",
    "evaluate_cases",
    "summarize_metrics",
    "area_agreement",
    "area_jumps",
    "probability_metrics",
    "slice_areas",
]
