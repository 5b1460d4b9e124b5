"""Area table and ROI volumes of label maps already on disk, paired with their DICOM files.

:func:`areas_from_folders` is what ``ctseg areas`` runs: it pairs each label map with its DICOM
file by stem (:mod:`ctseg_helpers.io.naming`), reads the DICOM headers (spacings, positions,
series) and the label maps, and measures them with :mod:`ctseg_helpers.measure.area`, which
computes from arrays only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.dicom import scan_dicom_folder
from ctseg_helpers.io.geometry import stack_spacing_mm
from ctseg_helpers.io.label_names import check_label_names
from ctseg_helpers.io.labels import read_named_label
from ctseg_helpers.io.naming import dicom_stem, find_label_files
from ctseg_helpers.measure.area import (
    area_table,
    pixel_spacings_mm,
    series_volume_table,
    slice_rows,
    volume_table,
)

logger = logging.getLogger(__name__)


def areas_from_folders(
    labels_dir: str | Path,
    dicom_dir: str | Path,
    label_names: Sequence[str],
    *,
    fov=None,
    matrix_size=None,
    series_uid: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Area table (and volumes, for a 3D stack) from existing label maps and their DICOM files.

    Label maps are matched to DICOM files by name (``IM_0001.dcm`` <-> ``IM_0001.png``), so a
    manual segmentation and a predicted one (``predictions/<run>/labels``) give comparable
    tables. Only DICOM headers are read (no pixel data). A folder may hold several series
    (e.g. a training folder of several patients): rows follow each series' stacking order,
    largest series first, and when label maps of more than one series are used the table
    carries each slice's series (its number as ``ctseg inspect`` lists it, SeriesInstanceUID
    and SeriesDescription; see :func:`area_table`), as the table of a segmentation run of
    several series does. DICOM files without a label map are left out with a warning.

    Parameters
    ----------
    labels_dir, dicom_dir : path
    label_names : sequence of str
        ROI names, label 1 first (see :func:`check_label_names`).
    fov, matrix_size : optional
        Fallback spacing, see :func:`pixel_spacings_mm`.
    series_uid : str, optional
        Use only this series of the folder.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame or None)
        The :func:`area_table` and the :func:`volume_table`; volumes of each series whose every
        slice position is labelled once and equally spaced (for several series one table,
        :func:`series_volume_table`), None when there is no such series.

    Raises
    ------
    CtsegDataError
        If no label map matches a DICOM file, a label map's size differs from its image, or
        ``series_uid`` is not in the folder.
    """
    names = list(check_label_names(label_names))
    label_files = find_label_files(labels_dir)
    scan = scan_dicom_folder(dicom_dir)
    scan.require_images()
    all_series = [s for s in scan.series if series_uid is None or s.series_uid == series_uid]
    if not all_series:
        raise CtsegDataError(
            f"{dicom_dir}: no series with SeriesInstanceUID {series_uid}; it holds "
            + ", ".join(s.series_uid for s in scan.series)
        )
    maps, files, positions, spacings, used_stems, used_series = [], [], [], [], set(), []
    tags = []
    n_dicom = 0
    for info in all_series:
        n_dicom += info.n_images
        hits = [i for i, f in enumerate(info.files) if dicom_stem(f) in label_files]
        if not hits:
            continue
        tag = (scan.series.index(info) + 1, info.series_uid, info.series_description)
        used_series.append((info, hits, tag))
        series_spacings = pixel_spacings_mm(
            info.pixel_spacing_mm[hits], info.shapes[hits[0]], fov=fov, matrix_size=matrix_size, source=dicom_dir
        )
        for i, spacing in zip(hits, series_spacings, strict=True):
            stem = dicom_stem(info.files[i])
            path = label_files[stem]
            label_map = read_named_label(path, names)
            if tuple(label_map.shape) != tuple(info.shapes[i]):
                raise CtsegDataError(
                    f"{path}: label map is {label_map.shape[0]}x{label_map.shape[1]} but its image "
                    f"{Path(info.files[i]).name} is {info.shapes[i][0]}x{info.shapes[i][1]}"
                )
            spacings.append(spacing)
            maps.append(label_map)
            files.append(info.files[i])
            positions.append(float(info.positions_mm[i]))
            tags.append(tag)
            used_stems.add(stem)
    if not maps:
        first = scan.series[0].files[0]
        raise CtsegDataError(
            f"{labels_dir}: none of its {len(label_files)} label maps is named like a DICOM file in {dicom_dir} "
            f"(e.g. {dicom_stem(first)}.png for {Path(first).name})"
        )
    if n_dicom > len(maps):
        logger.warning(
            "%s: %d of %d DICOM file(s) have no label map in %s and are left out",
            dicom_dir,
            n_dicom - len(maps),
            n_dicom,
            labels_dir,
        )
    extra = set(label_files) - used_stems
    if extra:
        logger.warning("%s: %d label map(s) match no DICOM file, e.g. %s", labels_dir, len(extra), sorted(extra)[0])
    several = len(used_series) > 1
    table = area_table(
        maps, np.array(spacings), names, files=files, positions_mm=positions, series=tags if several else None
    )
    per_series = []
    for info, hits, tag in used_series:
        # every slice position of the series labelled once (one cine phase at all positions counts)
        if len(hits) != info.n_positions:
            continue
        rows = slice_rows(table)
        rows = rows[rows["series"] == tag[0]] if several else rows
        spacing = stack_spacing_mm(rows["slice_position_mm"].to_numpy(dtype=np.float64))
        if spacing is not None:
            per_series.append((tag, volume_table(rows, spacing)))
    if not several:
        return table, per_series[0][1] if per_series else None
    return table, series_volume_table(per_series)


__all__ = ["areas_from_folders", "find_label_files"]
