"""Area table and ROI volumes of label maps already on disk, paired with their DICOM files.

:func:`areas_from_folders` is what ``ctseg areas`` runs: it pairs each label map with its DICOM
file by stem (:mod:`ctseg_helpers.io.naming`), reads the DICOM headers (spacings, positions,
series), the label maps and (for the intensity columns) the labelled images' pixel data, and
measures them with :mod:`ctseg_helpers.measure.area` and :mod:`ctseg_helpers.measure.intensity`,
which compute from arrays only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.dicom import read_dicom_file, scan_dicom_folder
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
from ctseg_helpers.measure.intensity import check_fat_window, common_modality, is_ct

logger = logging.getLogger(__name__)


def areas_from_folders(
    labels_dir: str | Path,
    dicom_dir: str | Path,
    label_names: Sequence[str],
    *,
    fov=None,
    matrix_size=None,
    series_uid: str | None = None,
    measures: bool = True,
    fat_window_hu=None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Area table (and volumes, for a 3D stack) from existing label maps and their DICOM files.

    Label maps are matched to DICOM files by name (``IM_0001.dcm`` <-> ``IM_0001.png``), so a
    manual segmentation and a predicted one (``predictions/<run>/labels``) give comparable
    tables. With ``measures`` (the default) each ROI's pixel values, fat fraction (CT) and shape
    follow the areas (see :func:`area_table`), and the labelled images' pixel data are read;
    without, only DICOM headers are read. A folder may hold several series
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
    measures : bool
        Add each ROI's mean, SD and median pixel value (``_hu`` for CT, ``_signal`` otherwise),
        its fat fraction (CT only) and its perimeter and maximum diameter (mm) after the areas.
        The unit is ``hu`` only when every labelled series is CT.
    fat_window_hu : (float, float), optional
        HU window counted as fat (both ends included); default -190 to -30 HU
        (:data:`ctseg_helpers.measure.intensity.FAT_WINDOW_HU`) for CT.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame or None)
        The :func:`area_table` and the :func:`volume_table`; volumes of each series whose every
        slice position is labelled once and equally spaced (for several series one table,
        :func:`series_volume_table`), None when there is no such series.

    Raises
    ------
    CtsegDataError
        If no label map matches a DICOM file, a label map's size differs from its image, an
        image cannot be read (with ``measures``), or ``series_uid`` is not in the folder.
    CtsegSettingsError
        If ``fat_window_hu`` is not a window (low < high), is given without ``measures``, or
        the labelled series are not all CT.
    """
    names = list(check_label_names(label_names))
    if fat_window_hu is not None:
        check_fat_window(fat_window_hu)
        if not measures:
            raise CtsegSettingsError(
                "a fat window (fat_window_hu, --fat-window) needs the intensity columns: "
                "leave out measures=False (--areas-only)"
            )
    label_files = find_label_files(labels_dir)
    scan = scan_dicom_folder(dicom_dir)
    scan.require_images()
    all_series = [s for s in scan.series if series_uid is None or s.series_uid == series_uid]
    if not all_series:
        raise CtsegDataError(
            f"{dicom_dir}: no series with SeriesInstanceUID {series_uid}; it holds "
            + ", ".join(s.series_uid for s in scan.series)
        )
    maps, images, files, positions, spacings, used_stems, used_series = [], [], [], [], [], set(), []
    tags = []
    n_dicom = sum(info.n_images for info in all_series)
    for info in all_series:
        hits = [i for i, f in enumerate(info.files) if dicom_stem(f) in label_files]
        if hits:
            used_series.append((info, hits, (scan.series.index(info) + 1, info.series_uid, info.series_description)))
    modality = _common_modality([info for info, _, _ in used_series], dicom_dir) if measures else None
    if fat_window_hu is not None and used_series and not is_ct(modality):
        kinds = sorted({info.modality or "unknown" for info, _, _ in used_series})
        raise CtsegSettingsError(
            f"{dicom_dir}: a fat window (fat_window_hu, --fat-window) is in Hounsfield units, but the labelled "
            f"series are {', '.join(kinds)}, not all CT: leave the fat window out"
        )
    for info, hits, tag in used_series:
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
            if measures:
                images.append(_pixels(info.files[i]))
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
        maps,
        np.array(spacings),
        names,
        files=files,
        positions_mm=positions,
        series=tags if several else None,
        images=images if measures else None,
        modality=modality,
        fat_window_hu=fat_window_hu,
        shape=measures,
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


def _common_modality(infos, dicom_dir) -> str | None:
    """The one modality of the series measured, or None (intensity columns then say ``signal``)."""
    modality = common_modality(info.modality for info in infos)
    kinds = sorted({(info.modality or "").strip().upper() or "unknown" for info in infos})
    if modality is None and len(kinds) > 1:
        logger.warning(
            "%s: the labelled series are of different modalities (%s): pixel values are given as "
            "'_signal' columns, without HU or fat fraction",
            dicom_dir,
            ", ".join(kinds),
        )
    return modality


def _pixels(path: Path) -> np.ndarray:
    """The pixel values of one labelled DICOM image (HU for CT); its size is that of its header."""
    return read_dicom_file(path).pixels


__all__ = ["areas_from_folders", "find_label_files"]
