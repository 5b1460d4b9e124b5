"""Cross-sectional area of each ROI on each slice (mm²) and ROI volumes of 3D stacks (mL).

Areas are pixel counts times the pixel area, computed on label maps at the slices' native
resolution. The pixel spacing comes from the DICOM ``PixelSpacing``; the user's ``fov`` (mm) and
``matrix_size`` (pixels) are the fallback when it is absent. When both exist and disagree by
more than 1 %, a warning is logged and ``PixelSpacing`` is used.

The area table has the user manual's shape::

                     file          slice_position_mm  LV     myocardium
    slice number 1   IM_0001.dcm   -12.5              812.4  402.1
    slice number 2   IM_0002.dcm   -2.5               901.0  415.9
    mean                           NaN                856.7  409.0
    std                            NaN                62.6   9.8

Areas are in mm²; ``std`` is the sample standard deviation over slices (ddof=1; NaN for a
single slice). A table of several DICOM series starts with the columns ``series`` (its number
as ``ctseg inspect`` lists it), ``series_uid`` and ``series_description``; its mean and std
rows are over all slices.

With the slices' pixel values (``area_table(..., images=, modality=, shape=True)``) the table
goes on, after the area columns, with each ROI's pixel values (``LV_mean_hu``, ``LV_sd_hu``,
``LV_median_hu`` for CT; ``_signal`` instead of ``_hu`` for MR), its fat fraction on CT
(``LV_fat_fraction``, share of pixels in -190..-30 HU by default) and shape
(``LV_perimeter_mm``, ``LV_max_diameter_mm``): :mod:`ctseg_helpers.measure.intensity`.

A cine series (phases at the same slice position) gets one mean and one std row per slice
position, over its phases (``mean @ 12.5 mm``, ``std @ 12.5 mm``), instead of rows pooled over
all positions and phases; :func:`slice_rows` and :func:`summary_rows` pick the rows.

When the slices form a 3D stack (distinct, equally spaced positions: one rule for all of ctseg,
:func:`ctseg_helpers.io.geometry.stack_spacing_mm`, re-exported here), ROI volumes are given in
a separate table in millilitres: sum of the slice areas times the distance between slices
(Cavalieri's estimator).

Everything here computes from arrays and tables; the table of label maps already on disk,
paired with their DICOM files by stem, is :func:`ctseg_helpers.workflows.areas.areas_from_folders`.

ROI names are label 1 first; a list that starts with ``background`` (as the user manual writes
``labels_list``) has that name dropped (:func:`check_label_names`, the one rule every part of
ctseg that takes ROI names uses).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.geometry import pixel_spacing_array_mm, position_groups, stack_spacing_mm
from ctseg_helpers.io.label_names import (  # noqa: F401 - re-exported: measure is where users look
    BACKGROUND_NAME,
    SERIES_COLUMNS,
    TABLE_COLUMNS,
    check_label_names,
    label_names_hint,
)
from ctseg_helpers.measure.intensity import (
    FAT_WINDOW_HU,
    check_fat_window,
    check_pixel_spacing,
    intensity_unit,
    is_ct,
    measure_names,
    roi_measures,
)

logger = logging.getLogger(__name__)

#: Relative difference between PixelSpacing and fov / matrix_size above which a warning is logged.
SPACING_TOLERANCE = 0.01

#: Every measure column suffix an area table may have (CT and other units).
_ALL_MEASURES = frozenset(measure_names("hu", fat=True, shape=True) + measure_names("signal"))

#: Index name of area tables (the CSV's first column header); says the unit of the ROI columns.
AREA_INDEX_NAME = "slice (areas in mm2)"


def roi_areas_mm2(labels: np.ndarray, pixel_spacing_mm: Sequence[float], num_labels: int) -> np.ndarray:
    """Area of each ROI in one label map.

    Parameters
    ----------
    labels : ndarray of shape (M, N) and integer dtype
        Label map; 0 is background, 1..num_labels the ROIs.
    pixel_spacing_mm : (float, float)
        Row and column spacing in mm.
    num_labels : int
        Number of ROIs (background excluded).

    Returns
    -------
    ndarray of shape (num_labels,) and dtype float64
        Area of label 1, 2, ... in mm²; 0.0 for a label absent from the map.

    Raises
    ------
    CtsegDataError
        If ``labels`` is not a 2D integer array or holds values outside 0..num_labels.
    CtsegSettingsError
        If the spacing is not two positive finite numbers or ``num_labels`` < 1.

    Examples
    --------
    >>> mask = np.zeros((20, 20), np.uint8); mask[5:15, 5:15] = 1
    >>> roi_areas_mm2(mask, (0.5, 0.5), 1)
    array([25.])
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise CtsegDataError(f"a label map must be 2D (M, N), got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise CtsegDataError(f"a label map must hold integers, got dtype {labels.dtype}")
    if int(num_labels) < 1:
        raise CtsegSettingsError(f"num_labels must be at least 1, got {num_labels}")
    row_mm, col_mm = check_pixel_spacing(pixel_spacing_mm)
    if not labels.size:
        return np.zeros(num_labels, dtype=np.float64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high > num_labels:
        raise CtsegDataError(
            f"label map holds values {low}..{high} but num_labels={num_labels} "
            f"allows only 0..{num_labels}: check the number of labels"
        )
    counts = np.bincount(labels.ravel().astype(np.int64, copy=False), minlength=num_labels + 1)
    return counts[1 : num_labels + 1].astype(np.float64) * row_mm * col_mm


def _pair(value, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    values = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise CtsegSettingsError(f"{name} must be a positive number or a (rows, cols) pair, got {value!r}")
    return float(values[0]), float(values[1])


def pixel_spacings_mm(
    spacings_mm,
    image_shape: tuple[int, int],
    *,
    fov: float | Sequence[float] | None = None,
    matrix_size: int | Sequence[int] | None = None,
    source: str | Path = "the images",
) -> np.ndarray:
    """Pixel spacing of every slice, with the ``fov`` / ``matrix_size`` fallback.

    Parameters
    ----------
    spacings_mm : array-like of shape (K, 2)
        ``PixelSpacing`` (row, col) of each slice in mm; a row of NaN (or None) where a slice
        has none.
    image_shape : (rows, cols)
        Size of the slices in pixels.
    fov : float or (float, float), optional
        Field of view in mm (rows, cols); one number for a square field of view.
    matrix_size : int or (int, int), optional
        Image size in pixels that ``fov`` spans; defaults to ``image_shape``.
    source : str or Path
        Folder named in messages.

    Returns
    -------
    ndarray of shape (K, 2) and dtype float64
        Spacing in mm. A warning is logged (once) when PixelSpacing and fov / matrix_size
        disagree by more than 1 %; PixelSpacing wins.

    Raises
    ------
    CtsegDataError
        If a slice has no PixelSpacing and no ``fov`` is given.
    CtsegSettingsError
        If ``fov`` or ``matrix_size`` are not positive, or ``matrix_size`` differs from the
        image size when it is needed as the fallback.
    """
    fov_mm = _pair(fov, "fov")
    matrix = _pair(matrix_size, "matrix_size")
    rows, cols = int(image_shape[0]), int(image_shape[1])
    spacings = pixel_spacing_array_mm(spacings_mm)
    missing = ~np.all(np.isfinite(spacings) & (spacings > 0), axis=1)
    fallback = None
    if fov_mm is not None:
        if matrix is not None and missing.any() and (round(matrix[0]), round(matrix[1])) != (rows, cols):
            raise CtsegSettingsError(
                f"{source}: matrix_size={matrix_size} but the images are {rows}x{cols} pixels; "
                "set matrix_size to the image size in pixels (or leave it out)"
            )
        matrix = matrix or (float(rows), float(cols))
        fallback = np.array([fov_mm[0] / matrix[0], fov_mm[1] / matrix[1]])
    if missing.any():
        if fallback is None:
            raise CtsegDataError(
                f"{source}: {int(missing.sum())} of {len(spacings)} slice(s) have no PixelSpacing; "
                "give the field of view with fov (mm) and matrix_size (pixels) so areas can be measured"
            )
        logger.info(
            "%s: %d slice(s) without PixelSpacing use fov/matrix_size = %s mm",
            source,
            int(missing.sum()),
            fallback.round(4).tolist(),
        )
        spacings[missing] = fallback
    if fallback is not None and (~missing).any():
        given = spacings[~missing]
        rel = np.abs(given - fallback) / given
        if np.any(rel > SPACING_TOLERANCE):
            logger.warning(
                "%s: PixelSpacing %s mm differs from fov/matrix_size = %s mm by up to %.1f%%; using PixelSpacing",
                source,
                given[np.argmax(rel.max(axis=1))].round(4).tolist(),
                fallback.round(4).tolist(),
                100 * rel.max(),
            )
    return spacings


def area_table(
    labels,
    pixel_spacing_mm,
    label_names: Sequence[str],
    *,
    files: Sequence[str | Path] | None = None,
    positions_mm: Sequence[float] | None = None,
    series: Sequence[tuple[int, str, str]] | None = None,
    images=None,
    modality: str | None = None,
    fat_window_hu: Sequence[float] | None = None,
    shape: bool = False,
) -> pd.DataFrame:
    """Area of every ROI on every slice, with mean and std rows (the manual's CSV shape).

    Optionally, the pixel values (mean, SD, median), the CT fat fraction and the shape
    (perimeter, maximum diameter) of every ROI, in columns after the areas; the measures and
    their conventions are those of :mod:`ctseg_helpers.measure.intensity`.

    Parameters
    ----------
    labels : ndarray of shape (K, M, N) or sequence of K arrays (M, N), integer dtype
        Label maps, values 0..len(label_names).
    pixel_spacing_mm : (float, float) or array-like of shape (K, 2)
        One spacing for all slices, or one per slice (mm).
    label_names : sequence of str
        ROI names, label 1 first; they become the column names. A first name ``background``
        is dropped (see :func:`check_label_names`).
    files : sequence of str or Path, optional
        Source file of each slice (only the file name is kept).
    positions_mm : sequence of float, optional
        Slice position along the slice normal (mm); NaN where unknown.
    series : sequence of (int, str, str), optional
        ``(number, SeriesInstanceUID, SeriesDescription)`` of each slice's series, for a table
        of several series; they become the first columns (:data:`SERIES_COLUMNS`). The mean and
        std rows are then over the slices of all series (per series and position for cine).
    images : ndarray of shape (K, M, N) or sequence of K arrays (M, N), optional
        The slices' pixel values as read from DICOM (HU for CT). Adds the columns
        ``<roi>_mean_<unit>``, ``<roi>_sd_<unit>`` and ``<roi>_median_<unit>`` for every ROI,
        the unit ``hu`` when ``modality`` is CT and ``signal`` otherwise.
    modality : str, optional
        DICOM ``Modality`` of the images (``"CT"``, ``"MR"``, ...); None when unknown (or mixed).
    fat_window_hu : (float, float), optional
        HU window counted as fat for ``<roi>_fat_fraction`` (0..1). With CT ``images`` the
        column is always added, with :data:`FAT_WINDOW_HU` (-190, -30) when this is None.
    shape : bool
        Add ``<roi>_perimeter_mm`` and ``<roi>_max_diameter_mm`` for every ROI.

    Returns
    -------
    pandas.DataFrame
        Index ``slice number 1`` .. ``slice number K``, then the summary rows (named
        :data:`AREA_INDEX_NAME`); columns ``file``, ``slice_position_mm`` and one float column
        per ROI, in mm² (with ``series``: ``series``, ``series_uid`` and ``series_description``
        first), then the measures of ROI 1 (in the order of
        :func:`ctseg_helpers.measure.intensity.measure_names`), of ROI 2, ...

        Summary rows: ``mean`` and ``std`` (sample SD, ddof=1) of each column over the slices,
        where a slice's NaN (an ROI absent from it has no mean pixel value or fat fraction) is
        left out, so the mean of an intensity column is over the slices that show the ROI; a
        column with fewer than two values has std NaN. An area, perimeter or diameter of an
        absent ROI is 0.0 and is counted. Their ``slice_position_mm`` and ``file`` are empty.

        Cine (a slice position repeated within a series, within
        :data:`ctseg_helpers.io.geometry.POSITION_TOLERANCE_MM`: the phases of a cine series):
        the summary rows are over the phases of each position instead, one ``mean @ <pos> mm``
        and ``std @ <pos> mm`` pair per position (``mean series <n> @ <pos> mm`` with several
        series; ``@ unknown position`` for slices without a position), in the order the
        positions first appear, with the position (mean over its phases) in
        ``slice_position_mm`` and the series in the series columns. Use :func:`slice_rows` and
        :func:`summary_rows` rather than the labels.

    Raises
    ------
    CtsegSettingsError
        As :func:`check_label_names`; if the number of spacings, files, positions, series or
        images differs from the number of slices; if ``fat_window_hu`` is given without CT
        ``images`` or is not a valid window.
    CtsegDataError
        If a label map holds values above the number of names, or an image's size differs
        from its label map's.
    """
    names = list(check_label_names(label_names))
    maps = list(labels)
    n = len(maps)
    spacing = np.asarray(pixel_spacing_mm, dtype=np.float64)
    spacing = np.broadcast_to(spacing, (n, 2)) if spacing.shape == (2,) else spacing
    if spacing.shape != (n, 2):
        raise CtsegSettingsError(
            f"pixel_spacing_mm must be (row, col) or one pair per slice ({n}, 2); got shape {spacing.shape}"
        )
    file_names = [Path(f).name for f in files] if files is not None else [""] * n
    positions = np.asarray(positions_mm, dtype=np.float64) if positions_mm is not None else np.full(n, np.nan)
    if len(file_names) != n or positions.shape != (n,):
        raise CtsegSettingsError(f"{n} label maps but {len(file_names)} file names and {positions.size} positions")
    if series is not None and len(series) != n:
        raise CtsegSettingsError(f"{n} label maps but the series of {len(series)} slices")
    slices = list(images) if images is not None else None
    if slices is not None and len(slices) != n:
        raise CtsegSettingsError(f"{n} label maps but {len(slices)} images")
    window = _fat_window(fat_window_hu, images is not None, modality)
    measures = measure_names(
        intensity_unit(modality) if images is not None else None, fat=window is not None, shape=shape
    )
    areas = np.zeros((n, len(names)))
    values = np.zeros((n, len(names), len(measures)))
    for i, (label_map, sp) in enumerate(zip(maps, spacing, strict=True)):
        where = file_names[i] or f"slice {i + 1}"
        try:
            areas[i] = roi_areas_mm2(label_map, sp, len(names))
        except CtsegDataError as exc:
            high = int(np.max(label_map)) if np.size(label_map) else 0
            hint = f"; {label_names_hint(names, high)}" if high > len(names) else ""
            raise CtsegDataError(f"{where}: {exc}{hint}") from exc
        if measures:
            try:
                values[i] = roi_measures(
                    label_map,
                    sp,
                    len(names),
                    image=slices[i] if slices is not None else None,
                    fat_window_hu=window,
                    shape=shape,
                )
            except CtsegDataError as exc:
                raise CtsegDataError(f"{where}: {exc}") from exc
    columns = names + [f"{name}_{m}" for name in names for m in measures]
    data = np.concatenate([areas, values.reshape(n, len(names) * len(measures))], axis=1)
    table = pd.DataFrame(data, columns=columns, index=[f"slice number {i + 1}" for i in range(n)])
    table.insert(0, "slice_position_mm", positions)
    table.insert(0, "file", file_names)
    tags = list(series) if series is not None else None
    groups = _summary_groups(positions, [t[0] for t in tags] if tags is not None else None, several=tags is not None)
    summary_index, summary_data, summary_positions, summary_tags = [], [], [], []
    for label, members, position in groups:
        mean, std = _mean_std(data[members])
        summary_index += [f"mean{label}", f"std{label}"]
        summary_data += [mean, std]
        summary_positions += [position, position]
        tag = tags[members[0]] if (tags is not None and label) else ("", "", "")
        summary_tags += [tag, tag]
    summary = pd.DataFrame(summary_data, columns=columns, index=summary_index)
    summary.insert(0, "slice_position_mm", summary_positions)
    summary.insert(0, "file", "")
    if series is not None:
        for k, column in reversed(list(enumerate(SERIES_COLUMNS))):
            table.insert(0, column, [t[k] for t in tags])
            summary.insert(0, column, [t[k] for t in summary_tags])
    table = pd.concat([table, summary])
    table.index.name = AREA_INDEX_NAME
    table.attrs["roi_columns"] = list(names)  # for roi_columns, whatever columns are joined on later
    return table


def _fat_window(fat_window_hu, with_images: bool, modality: str | None) -> tuple[float, float] | None:
    """The fat window to measure with: the user's, the default for CT images, or None."""
    if fat_window_hu is None:
        return FAT_WINDOW_HU if with_images and is_ct(modality) else None
    window = check_fat_window(fat_window_hu)
    if not with_images:
        raise CtsegSettingsError(
            f"fat_window_hu={fat_window_hu!r} needs the images (pixel values in HU) to measure a fat fraction"
        )
    if not is_ct(modality):
        raise CtsegSettingsError(
            f"fat_window_hu={fat_window_hu!r} is a window of Hounsfield units, but the images are "
            f"{modality or 'of unknown modality'}, not CT: leave the fat window out"
        )
    return window


def _mean_std(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample SD (ddof=1) of each column over rows, NaN left out; NaN below 1 / 2 values."""
    finite = ~np.isnan(data)
    count = finite.sum(axis=0)
    total = np.where(finite, data, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
        squares = np.where(finite, (data - mean) ** 2, 0.0).sum(axis=0)
        std = np.where(count > 1, np.sqrt(squares / (count - 1)), np.nan)
    return mean, std


def _summary_groups(positions: np.ndarray, series_numbers, *, several: bool) -> list[tuple[str, list[int], float]]:
    """(label suffix, row indices, position) of each summary pair: all rows, or per position for cine."""
    n = len(positions)
    keys = list(series_numbers) if series_numbers is not None else [None] * n
    per_series: dict = {}
    for i, key in enumerate(keys):
        per_series.setdefault(key, []).append(i)
    groups = []
    cine = False
    for key, rows in per_series.items():
        rows = np.asarray(rows)
        known = rows[np.isfinite(positions[rows])]
        order = known[np.argsort(positions[known], kind="stable")]
        runs = [sorted(order[a:b].tolist()) for a, b in position_groups(positions[order])]
        cine = cine or len(runs) < len(known)
        unknown = rows[~np.isfinite(positions[rows])].tolist()
        where = f" series {key}" if several else ""
        groups += [
            (f"{where} @ {_position_text(positions[run].mean())} mm", run, positions[run].mean()) for run in runs
        ]
        if unknown:
            groups.append((f"{where} @ unknown position", unknown, np.nan))
    if not cine:
        return [("", list(range(n)), np.nan)]
    return sorted(groups, key=lambda group: group[1][0])


def _position_text(position_mm: float) -> str:
    """A position for a row label, to 0.01 mm: ``12.5``, ``-3``, ``0``."""
    return f"{round(float(position_mm), 2) + 0.0:g}"


def _is_summary(label) -> bool:
    text = str(label)
    return text in ("mean", "std") or text.startswith(("mean ", "std "))


def slice_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The per-slice rows of an area table (without the ``mean`` and ``std`` rows, cine's included)."""
    return table[[not _is_summary(label) for label in table.index]]


def summary_rows(table: pd.DataFrame, which: str | None = None) -> pd.DataFrame:
    """The summary rows of an area table: ``mean`` and ``std``, or one pair per position for cine.

    Parameters
    ----------
    table : pandas.DataFrame
        An :func:`area_table`.
    which : {None, "mean", "std"}
        Only the mean rows, or only the std rows; None for both.

    Returns
    -------
    pandas.DataFrame
        The rows, in table order. For a non-cine table ``summary_rows(table, "mean")`` is the
        one row ``mean``; for cine one row per position (``mean @ 12.5 mm``, ...).
    """
    rows = table[[_is_summary(label) for label in table.index]]
    if which is None:
        return rows
    if which not in ("mean", "std"):
        raise CtsegSettingsError(f"which must be 'mean', 'std' or None, got {which!r}")
    return rows[[str(label).split(" ")[0] == which for label in rows.index]]


def roi_columns(table: pd.DataFrame) -> list[str]:
    """The area columns of an area table (one per ROI, mm²), without the measure columns.

    For a table :func:`area_table` made (and its copies and row selections), its ROI names, even
    when other columns were joined on later (e.g. a segmentation run's ``uncertainty_*``). For
    a table read back from CSV, the columns that are neither the file, position and series
    columns (:data:`TABLE_COLUMNS`) nor ``<roi>_<measure>`` for one of them and a measure of
    :mod:`ctseg_helpers.measure.intensity` (``LV_mean_hu``, ``LV_perimeter_mm``, ...).
    """
    known = table.attrs.get("roi_columns")
    if known is not None and all(c in table.columns for c in known):
        return list(known)
    candidates = [c for c in table.columns if c not in TABLE_COLUMNS]
    measures = {f"{roi}_{m}" for roi in candidates for m in _ALL_MEASURES}
    return [c for c in candidates if c not in measures]


def volume_table(table: pd.DataFrame, slice_spacing_mm: float) -> pd.DataFrame:
    """ROI volumes (mL) of a 3D stack from its area table.

    Parameters
    ----------
    table : pandas.DataFrame
        An :func:`area_table` whose slices form one stack (each position once).
    slice_spacing_mm : float
        Distance between neighbouring slice positions (not the slice thickness).

    Returns
    -------
    pandas.DataFrame
        One row per ROI (index ``roi``): ``volume_ml`` (sum of areas x spacing / 1000),
        ``slices_with_roi`` and ``slice_spacing_mm``.

    Raises
    ------
    CtsegSettingsError
        If ``slice_spacing_mm`` is not a positive number.
    """
    if not (np.isfinite(slice_spacing_mm) and slice_spacing_mm > 0):
        raise CtsegSettingsError(f"slice_spacing_mm must be a positive distance in mm, got {slice_spacing_mm}")
    rows = slice_rows(table)[roi_columns(table)]
    volumes = pd.DataFrame(
        {
            "volume_ml": rows.sum(axis=0).to_numpy() * float(slice_spacing_mm) / 1000.0,
            "slices_with_roi": (rows > 0).sum(axis=0).to_numpy(),
            "slice_spacing_mm": float(slice_spacing_mm),
        },
        index=pd.Index(rows.columns, name="roi"),
    )
    return volumes


def series_volume_table(volumes: Sequence[tuple[tuple[int, str, str], pd.DataFrame]]) -> pd.DataFrame | None:
    """The :func:`volume_table` of several series in one table.

    Parameters
    ----------
    volumes : sequence of ((number, SeriesInstanceUID, SeriesDescription), DataFrame)
        Each series' volume table.

    Returns
    -------
    pandas.DataFrame or None
        One row per series and ROI (index ``roi``), the series in :data:`SERIES_COLUMNS` first;
        None when ``volumes`` is empty.
    """
    frames = []
    for (number, uid, description), table in volumes:
        frame = table.copy()
        for column, value in reversed(list(zip(SERIES_COLUMNS, (number, uid, description), strict=True))):
            frame.insert(0, column, value)
        frames.append(frame)
    return pd.concat(frames) if frames else None


__all__ = [
    "AREA_INDEX_NAME",
    "BACKGROUND_NAME",
    "SERIES_COLUMNS",
    "area_table",
    "check_label_names",
    "label_names_hint",
    "series_volume_table",
    "pixel_spacings_mm",
    "roi_areas_mm2",
    "roi_columns",
    "slice_rows",
    "stack_spacing_mm",
    "summary_rows",
    "volume_table",
]
