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
from ctseg_helpers.io.geometry import pixel_spacing_array_mm, stack_spacing_mm
from ctseg_helpers.io.label_names import (  # noqa: F401 - re-exported: measure is where users look
    BACKGROUND_NAME,
    SERIES_COLUMNS,
    TABLE_COLUMNS,
    check_label_names,
    label_names_hint,
)

logger = logging.getLogger(__name__)

#: Relative difference between PixelSpacing and fov / matrix_size above which a warning is logged.
SPACING_TOLERANCE = 0.01

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
    row_mm, col_mm = _check_spacing(pixel_spacing_mm)
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


def _check_spacing(pixel_spacing_mm) -> tuple[float, float]:
    try:
        row_mm, col_mm = (float(v) for v in pixel_spacing_mm)
    except (TypeError, ValueError) as exc:
        raise CtsegSettingsError(f"pixel_spacing_mm must be (row, col) in mm, got {pixel_spacing_mm!r}") from exc
    if not (np.isfinite(row_mm) and np.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise CtsegSettingsError(f"pixel_spacing_mm must be two positive numbers in mm, got {pixel_spacing_mm!r}")
    return row_mm, col_mm


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
) -> pd.DataFrame:
    """Area of every ROI on every slice, with mean and std rows (the manual's CSV shape).

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
        std rows are then over the slices of all series.

    Returns
    -------
    pandas.DataFrame
        Index ``slice number 1`` .. ``slice number K``, ``mean``, ``std`` (named
        :data:`AREA_INDEX_NAME`); columns ``file``, ``slice_position_mm`` and one float column
        per ROI, in mm² (with ``series``: ``series``, ``series_uid`` and ``series_description``
        first).

    Raises
    ------
    CtsegSettingsError
        As :func:`check_label_names`; if the number of spacings, files, positions or series
        differs from the number of slices.
    CtsegDataError
        If a label map holds values above the number of names.
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
    areas = np.zeros((n, len(names)))
    for i, (label_map, sp) in enumerate(zip(maps, spacing, strict=True)):
        try:
            areas[i] = roi_areas_mm2(label_map, sp, len(names))
        except CtsegDataError as exc:
            where = file_names[i] or f"slice {i + 1}"
            high = int(np.max(label_map)) if np.size(label_map) else 0
            hint = f"; {label_names_hint(names, high)}" if high > len(names) else ""
            raise CtsegDataError(f"{where}: {exc}{hint}") from exc
    table = pd.DataFrame(areas, columns=names, index=[f"slice number {i + 1}" for i in range(n)])
    table.insert(0, "slice_position_mm", positions)
    table.insert(0, "file", file_names)
    nan_row = np.full(len(names), np.nan)
    summary = pd.DataFrame(
        [areas.mean(axis=0) if n else nan_row, areas.std(axis=0, ddof=1) if n > 1 else nan_row],
        columns=names,
        index=["mean", "std"],
    )
    summary.insert(0, "slice_position_mm", np.nan)
    summary.insert(0, "file", "")
    if series is not None:
        for column, values in reversed(
            list(zip(SERIES_COLUMNS, zip(*series, strict=True) if n else [()] * 3, strict=True))
        ):
            table.insert(0, column, list(values))
            summary.insert(0, column, "")
    table = pd.concat([table, summary])
    table.index.name = AREA_INDEX_NAME
    return table


def slice_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The per-slice rows of an area table (without ``mean`` and ``std``)."""
    return table.drop(index=["mean", "std"], errors="ignore")


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
    rows = slice_rows(table).drop(columns=[c for c in TABLE_COLUMNS if c in table.columns])
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
    "slice_rows",
    "stack_spacing_mm",
    "volume_table",
]
