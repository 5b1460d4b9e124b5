"""Quality-control figures and tables: Bland–Altman, intensity histogram, sample grid, areas.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
figure list to leak in long sessions; Jupyter shows the figure when it is a cell's last value)
or a pandas table. Numbers come from :mod:`ctseg_helpers.measure`; nothing here computes a
statistic of its own. Colours follow :mod:`ctseg_helpers.show.colors` (label 1 is always red).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.measure.agreement import bland_altman, correlation
from ctseg_helpers.measure.metrics import DISTANCE_METRICS, METRIC_NAMES
from ctseg_helpers.show.colors import label_color, legend_handles, overlay

logger = logging.getLogger(__name__)


def save_figure(figure: Figure, path: str | Path, overwrite: bool = False, dpi: int = 150) -> Path:
    """Save a figure (PNG, PDF or SVG by extension), never replacing a user's file.

    The figure is drawn into a hidden file beside ``path`` and renamed into place, recorded as
    ctseg's just before (:func:`ctseg_helpers.io.written.rename_recorded`): an interrupted save
    never leaves half a file, nor a file of its own that a later ``overwrite`` would refuse.

    Parameters
    ----------
    figure : Figure
    path : path-like
        The file to write, ending in a format matplotlib writes (``.png``, ``.pdf``, ``.svg``
        ...); its folder is created if needed.
    overwrite : bool
        Replace a file that ctseg saved there and nobody changed since (recorded by
        :mod:`ctseg_helpers.io.written`); any other existing file is never replaced.
    dpi : int

    Returns
    -------
    Path
        The file written, recorded as written by ctseg.

    Raises
    ------
    CtsegDataError
        If the file name has no image format matplotlib writes; if the file exists and
        ``overwrite`` is False, or with ``overwrite`` it exists and ctseg did not write it or it
        was changed since.
    """
    from ctseg_helpers.io.written import check_replaceable  # noqa: PLC0415

    path = Path(path)
    fmt = _figure_format(figure, path)
    check_replaceable(
        path,
        overwrite,
        what_to_do="choose another file name or allow overwriting (overwrite=True)",
        instead="choose another file name",
        error_type=CtsegDataError,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save_in_place(path, lambda tmp: figure.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight"))


def _save_in_place(path: Path, write) -> Path:
    """Write ``path`` through ``write(tmp)`` into a hidden file beside it, then rename it into place,
    recorded as ctseg's; a file already there (checked replaceable by the caller) is replaced."""
    from ctseg_helpers.io.written import forget_written, rename_recorded  # noqa: PLC0415

    tmp = path.with_name(f".{os.getpid()}.{path.name}")
    try:
        write(tmp)
        if os.path.lexists(path):
            path.unlink()
            forget_written(path)
        return rename_recorded(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _figure_format(figure: Figure, path: Path) -> str:
    """The image format of ``path``'s extension, refused when matplotlib cannot write it."""
    formats = figure.canvas.get_supported_filetypes()
    fmt = path.suffix[1:].lower()
    if fmt not in formats:
        raise CtsegDataError(
            f"{path}: a figure is saved as one of {', '.join('.' + f for f in sorted(formats))}; "
            "end the file name with one of them"
        )
    return fmt


def save_outputs(
    out_dir: str | Path,
    figures: dict | None = None,
    tables: dict | None = None,
    overwrite: bool = False,
    dpi: int = 150,
) -> list[Path]:
    """Save figures (PNG/PDF/SVG) and tables (CSV) into a folder, all or nothing.

    Parameters
    ----------
    out_dir : path-like
        Created if needed.
    figures : dict of str to Figure or None
        File name -> figure; None values (a step that did not apply) are skipped.
    tables : dict of str to DataFrame or None
        File name -> table, written with ``DataFrame.to_csv(index=False)``; None skipped.
    overwrite : bool
        Replace files that an earlier ctseg run saved there and nobody changed since (recorded
        by :mod:`ctseg_helpers.io.written`); other existing files are never replaced. Either
        way an existing file that may not be replaced stops the saving before anything is
        written.

    Returns
    -------
    list of Path
        Files written, figures first; each is recorded as written by ctseg.

    Raises
    ------
    CtsegDataError
        If ``out_dir`` is a file, a figure's name has no image format matplotlib writes, a file
        exists and ``overwrite`` is False, or with ``overwrite`` a file exists that ctseg did not
        write or that was changed since.
    """
    from ctseg_helpers.io.written import check_replaceable  # noqa: PLC0415

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CtsegDataError(f"{out_dir}: is a file, not a folder; choose an output folder")
    figures = {k: v for k, v in (figures or {}).items() if v is not None}
    tables = {k: v for k, v in (tables or {}).items() if v is not None}
    existing = [out_dir / name for name in [*figures, *tables] if os.path.lexists(out_dir / name)]
    if existing and not overwrite:
        raise CtsegDataError(
            f"{existing[0]}: exists already (from an earlier run?); choose another output folder or "
            "allow overwriting (overwrite=True, --overwrite)"
        )
    for path in existing:
        check_replaceable(path, overwrite, instead="choose another output folder", error_type=CtsegDataError)
    for name, figure in figures.items():
        _figure_format(figure, out_dir / name)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [save_figure(fig, out_dir / name, overwrite=True, dpi=dpi) for name, fig in figures.items()]
    for name, table in tables.items():
        written.append(_save_in_place(out_dir / name, lambda tmp, table=table: table.to_csv(tmp, index=False)))
    logger.info("saved %d file(s) in %s", len(written), out_dir)
    return written


def _roi_names(metrics: pd.DataFrame, label_names) -> list[str]:
    present = list(dict.fromkeys(metrics["roi"]))
    if label_names is None:
        return present
    return [n for n in label_names if n in present] + [n for n in present if n not in label_names]


def bland_altman_figure(metrics: pd.DataFrame, label_names=None, unit: str = "mm²") -> Figure:
    """Bland–Altman plot and manual-vs-predicted scatter of ROI areas, one column per ROI.

    Parameters
    ----------
    metrics : DataFrame
        Long-form per-slice metrics with ``roi``, ``truth_area_mm2`` and ``pred_area_mm2``
        (as :func:`ctseg_helpers.measure.evaluation.evaluate_case` gives).
    label_names : sequence of str, optional
        ROI order; by default the order in ``metrics``.
    unit : str
        Unit shown on the axes.

    Returns
    -------
    Figure
        Top row: predicted vs manual area with the identity line and Pearson r. Bottom row:
        difference (predicted - manual) against the mean of the two, with the bias and the
        95 % limits of agreement. Slices where both areas are 0 are left out; an ROI with
        fewer than 2 slices gets a note instead of a plot.

    Raises
    ------
    CtsegDataError
        If the table lacks the area columns.
    """
    needed = {"roi", "truth_area_mm2", "pred_area_mm2"}
    if not needed <= set(metrics.columns):
        raise CtsegDataError(
            f"the metrics table needs the columns {sorted(needed)} for a Bland–Altman plot; "
            f"it has {sorted(metrics.columns)}"
        )
    names = _roi_names(metrics, label_names)
    n = max(len(names), 1)
    figure = Figure(figsize=(4.2 * n, 7.5), layout="constrained")
    axes = figure.subplots(2, n, squeeze=False)
    for column, roi in enumerate(names):
        rows = metrics[(metrics["roi"] == roi) & ((metrics["truth_area_mm2"] > 0) | (metrics["pred_area_mm2"] > 0))]
        top, bottom = axes[0, column], axes[1, column]
        colour = _colour_of(roi, label_names, column)
        if len(rows) < 2:
            for ax in (top, bottom):
                ax.text(
                    0.5,
                    0.5,
                    f"{roi}: fewer than 2 slices\nshow this ROI",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
                ax.set_axis_off()
            continue
        manual = rows["truth_area_mm2"].to_numpy(float)
        predicted = rows["pred_area_mm2"].to_numpy(float)
        ba = bland_altman(manual, predicted)
        top.scatter(manual, predicted, s=18, color=colour, alpha=0.8)
        high = max(manual.max(), predicted.max()) * 1.05
        top.plot([0, high], [0, high], color="0.4", lw=1, ls="--", label="identity")
        title = f"{roi} (n = {ba.n})"
        if ba.n >= 3:
            corr = correlation(manual, predicted)
            title += f", r = {corr.pearson_r:.3f}"
        top.set_title(title)
        top.set_xlabel(f"manual area ({unit})")
        top.set_ylabel(f"predicted area ({unit})")
        top.set_xlim(-0.03 * high, high)
        top.set_ylim(-0.03 * high, high)
        top.set_aspect("equal")
        bottom.scatter(ba.means, ba.differences, s=18, color=colour, alpha=0.8)
        bottom.axhline(ba.mean_difference, color="k", lw=1.2, label=f"bias {ba.mean_difference:+.1f} {unit}")
        for value, name in ((ba.upper_loa, "upper"), (ba.lower_loa, "lower")):
            bottom.axhline(
                value, color="k", lw=1, ls="--", label="95% limits of agreement" if name == "upper" else None
            )
            bottom.annotate(
                f"{value:+.1f}",
                xy=(1.0, value),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=8,
            )
        bottom.axhline(0.0, color="0.6", lw=0.8, ls=":")
        bottom.set_xlabel(f"mean of manual and predicted ({unit})")
        bottom.set_ylabel(f"predicted - manual ({unit})")
        bottom.legend(fontsize=8, loc="best")
    figure.suptitle("Area agreement: predicted vs manual")
    return figure


def _colour_of(roi: str, label_names, fallback_index: int):
    if label_names is not None and roi in list(label_names):
        return label_color(list(label_names).index(roi) + 1)
    return label_color(fallback_index + 1)


def intensity_histogram(
    images: np.ndarray,
    modality: str = "CT",
    labels: np.ndarray | None = None,
    label_names=None,
    bins: int = 100,
    value_range: tuple[float, float] | None = None,
) -> Figure:
    """Histogram of pixel values (HU for CT), overall and per ROI.

    Parameters
    ----------
    images : ndarray of shape (K, M, N) or (M, N), real dtype
        Physical values: Hounsfield units for CT, scanner units for MR.
    modality : str
        ``"CT"`` labels the axis in HU; anything else in scanner units.
    labels : ndarray of the same shape, optional
        Label map; each ROI's values are drawn in its colour.
    label_names : sequence of str, optional
        ROI names, label 1 first.
    bins : int
        Number of bins (>= 2).
    value_range : (float, float), optional
        Range of the histogram; by default the 0.1th to 99.9th percentile of the values.

    Returns
    -------
    Figure
        Log-scaled counts.

    Raises
    ------
    CtsegDataError
        If ``labels`` has another shape than ``images``, the images are empty or ``bins`` < 2.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.size == 0:
        raise CtsegDataError("no image values to draw a histogram of; the scan is empty")
    if int(bins) < 2:
        raise CtsegDataError(f"bins must be at least 2, got {bins}")
    if labels is not None and np.shape(labels) != images.shape:
        raise CtsegDataError(f"labels {np.shape(labels)} and images {images.shape} must have the same shape")
    if value_range is None:
        low, high = np.percentile(images, [0.1, 99.9])
        value_range = (float(low), float(high) if high > low else float(low) + 1.0)
    is_ct = (modality or "").upper() == "CT"
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.subplots()
    ax.hist(images.ravel(), bins=int(bins), range=value_range, color="0.55", label="all pixels", log=True)
    if labels is not None:
        labels = np.asarray(labels)
        names = list(label_names or [])
        for value in np.unique(labels[labels > 0]):
            name = names[value - 1] if value - 1 < len(names) else f"ROI {value}"
            ax.hist(
                images[labels == value],
                bins=int(bins),
                range=value_range,
                histtype="step",
                lw=1.6,
                color=label_color(int(value)),
                label=name,
                log=True,
            )
    ax.set_xlabel("Hounsfield units (HU)" if is_ct else f"signal intensity ({modality or 'scanner'} units)")
    ax.set_ylabel("pixels")
    ax.set_title("Intensity histogram")
    ax.legend(fontsize=8)
    return figure


def sample_indices(n_slices: int, n_samples: int) -> np.ndarray:
    """Evenly spaced slice indices (first and last included), at most ``n_slices`` of them."""
    n = max(1, min(int(n_samples), int(n_slices)))
    return np.unique(np.round(np.linspace(0, n_slices - 1, n)).astype(int))


def _panel_title(index: int, n_slices: int, titles, file_names) -> str:
    """A sample grid panel's title: ``titles[index]``, else the slice number (from 1) and its file."""
    if titles is not None:
        return str(titles[index])
    number = f"slice {index + 1} / {n_slices}"
    return number if file_names is None else f"{number}\nfile: {file_names[index]}"


def sample_stack_grid(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    label_names=None,
    n_samples: int = 12,
    alpha: float = 0.4,
    columns: int = 4,
    titles=None,
    *,
    file_names=None,
) -> Figure:
    """Grid of evenly spaced slices of a stack, with the label overlay.

    Parameters
    ----------
    images : ndarray of shape (K, M, N)
    labels : ndarray of shape (K, M, N) and integer dtype, optional
    label_names : sequence of str, optional
        Legend entries, label 1 first.
    n_samples : int
        Number of slices shown (all when the stack is smaller).
    alpha : float
        Overlay opacity, 0..1.
    columns : int
        Grid columns.
    titles : sequence of str, optional
        One per slice of the stack, each panel's whole title (several lines allowed).
    file_names : sequence of str, optional
        One per slice of the stack (e.g. the DICOM files' stems). Without ``titles``, each panel
        is titled with its slice number, counted from 1 as the slice browser counts, and its
        file: ``slice 3 / 40`` then ``file: IM_0003``, so that a stem made of digits is not read
        as a slice number. Without either, the title is the slice number alone.

    Returns
    -------
    Figure

    Raises
    ------
    CtsegDataError
        If the stack is not 3D, or the labels, titles or file names do not match it.
    """
    images = np.asarray(images)
    if images.ndim != 3 or len(images) == 0:
        raise CtsegDataError(f"images must be a stack of shape (K, M, N) with K >= 1, got {images.shape}")
    if labels is not None and np.shape(labels) != images.shape:
        raise CtsegDataError(f"labels {np.shape(labels)} and images {images.shape} must have the same shape")
    for name, values in (("titles", titles), ("file_names", file_names)):
        if values is not None and len(values) != len(images):
            raise CtsegDataError(f"{name} must give one entry per slice ({len(images)}), got {len(values)}")
    chosen = sample_indices(len(images), n_samples)
    columns = max(1, min(int(columns), len(chosen)))
    rows = int(np.ceil(len(chosen) / columns))
    figure = Figure(figsize=(3 * columns, 3 * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, index in zip(axes.ravel(), chosen, strict=False):
        shown = overlay(images[index], labels[index], alpha) if labels is not None else images[index]
        ax.imshow(shown, cmap="gray", interpolation="nearest")
        ax.set_title(_panel_title(index, len(images), titles, file_names), fontsize=9)
    if labels is not None and label_names:
        figure.legend(
            handles=legend_handles(list(label_names)),
            loc="outside lower center",
            ncols=min(len(label_names), 6),
            fontsize=8,
        )
    return figure


def area_vs_slice_figure(areas: pd.DataFrame, label_names=None, unit: str = "mm²") -> Figure:
    """ROI area along the stack, prediction (solid) and manual (dashed), abrupt jumps marked.

    Parameters
    ----------
    areas : DataFrame
        As :func:`ctseg_helpers.measure.evaluation.slice_areas` returns: ``slice_index``,
        ``group``, ``source``, ``roi``, ``area_mm2``, ``jump``.
    label_names : sequence of str, optional
        ROI order; one panel per ROI.

    Returns
    -------
    Figure
        Flagged slices carry a black ``x`` and their index; lines break between slice
        positions of a cine series.

    Raises
    ------
    CtsegDataError
        If a column is missing.
    """
    needed = {"slice_index", "group", "source", "roi", "area_mm2", "jump"}
    if not needed <= set(areas.columns):
        raise CtsegDataError(f"the areas table needs the columns {sorted(needed)}; it has {sorted(areas.columns)}")
    names = [n for n in (label_names or []) if n in set(areas["roi"])] or list(dict.fromkeys(areas["roi"]))
    figure = Figure(figsize=(9, 2.8 * max(len(names), 1) + 0.3), layout="constrained")
    axes = figure.subplots(max(len(names), 1), 1, squeeze=False)[:, 0]
    for ax, roi in zip(axes, names, strict=False):
        colour = _colour_of(roi, label_names, names.index(roi))
        part = areas[areas["roi"] == roi]
        flagged_total = 0
        for source, style in (("prediction", "-"), ("truth", "--")):
            rows = part[part["source"] == source]
            for g, (_, group) in enumerate(rows.groupby("group")):
                ax.plot(
                    group["slice_index"],
                    group["area_mm2"],
                    style,
                    color=colour if source == "prediction" else "0.3",
                    marker="." if source == "prediction" else None,
                    lw=1.4,
                    label=("predicted" if source == "prediction" else "manual") if g == 0 else None,
                )
            jumps = rows[rows["jump"]]
            flagged_total += len(jumps)
            if len(jumps):
                ax.plot(
                    jumps["slice_index"],
                    jumps["area_mm2"],
                    "x",
                    color="k",
                    ms=8,
                    mew=2,
                    label=f"abrupt jump ({source})",
                )
                for _, row in jumps.iterrows():
                    ax.annotate(
                        str(int(row["slice_index"])),
                        (row["slice_index"], row["area_mm2"]),
                        textcoords="offset points",
                        xytext=(3, 5),
                        fontsize=7,
                    )
        ax.set_title(f"{roi}: {flagged_total} abrupt jump(s) flagged")
        ax.set_ylabel(f"area ({unit})")
        ax.legend(fontsize=8, loc="best")
    axes[-1].set_xlabel("slice index (stacking order)")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def metric_table(summary: pd.DataFrame, metrics=METRIC_NAMES, digits: int = 3) -> pd.DataFrame:
    """Readable table of a metrics summary: one row per ROI, ``mean ± std (median)`` per metric.

    Parameters
    ----------
    summary : DataFrame
        As :func:`ctseg_helpers.measure.evaluation.summarize_metrics` returns.
    metrics : sequence of str
        Metrics to show, in order; distances get "(mm)" in their column name.
    digits : int
        Significant digits.

    Returns
    -------
    DataFrame of str
        Index: ROI names; the ``n`` column gives the number of slices where the first metric
        is defined.

    Raises
    ------
    CtsegDataError
        If the summary lacks a column or a requested metric.
    """
    needed = {"roi", "metric", "n", "mean", "std", "median"}
    if not needed <= set(summary.columns):
        raise CtsegDataError(f"the summary table needs the columns {sorted(needed)}; it has {sorted(summary.columns)}")
    unknown = [m for m in metrics if m not in set(summary["metric"])]
    if unknown:
        raise CtsegDataError(f"the summary has no metric(s) {unknown}; choose from {sorted(set(summary['metric']))}")

    def fmt(value):
        return "–" if not np.isfinite(value) else f"{value:.{digits}g}"

    table = {}
    for roi, group in summary.groupby("roi", sort=False):
        by_metric = group.set_index("metric")
        row = {"n": int(by_metric.loc[metrics[0], "n"])}
        for name in metrics:
            r = by_metric.loc[name]
            column = f"{name} (mm)" if name in DISTANCE_METRICS else name
            row[column] = f"{fmt(r['mean'])} ± {fmt(r['std'])} ({fmt(r['median'])})"
        table[roi] = row
    frame = pd.DataFrame.from_dict(table, orient="index")
    frame.index.name = "ROI"
    return frame


__all__ = [
    "save_figure",
    "save_outputs",
    "bland_altman_figure",
    "intensity_histogram",
    "sample_indices",
    "sample_stack_grid",
    "area_vs_slice_figure",
    "metric_table",
]
