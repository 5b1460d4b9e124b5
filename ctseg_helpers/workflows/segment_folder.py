"""Segment a DICOM folder and write everything a user looks at, in one run folder.

:func:`run_segmentation` is the one entry point used by ``test.ipynb``, ``ctseg segment`` and
the demo. It checks the user's settings against the model before any work, reads the series,
segments it with :class:`~ctseg_helpers.segment.segmenter.Segmenter`, measures the ROI areas
at native resolution and writes, under ``out_dir/<folder name>_<YYYYmmdd-HHMMSS>/``::

    labels/<dicom name>.png     label map per slice, lossless, values 0..N (0 = background)
    overlays/<dicom name>.jpg   preview: the slice with coloured ROIs
    animation.gif               all slices with the coloured ROIs and a legend
    areas.csv                   ROI area per slice (mm²) with mean and std rows (per position for cine), the
                                ROIs' pixel values, shape (and CT fat fraction), and the slice's uncertainty
    volumes.csv                 ROI volumes (mL), only when the slices form a 3D stack
    segmentation.nii.gz         with nifti=True: the label maps as one NIfTI volume on the scan's grid
    segmentation.dcm            with dicom_seg=True: a DICOM Segmentation object referencing the images
    probabilities.h5            with probabilities=True: every series' class probabilities, 8 bits (1/255 steps)
    probabilities_<ROI>.nii.gz  with probabilities="nifti" instead: one ROI's probabilities on the scan's grid
    run.json                    what was run: model, settings, source folder, outputs, every file written

A folder may hold several series (scans of several patients, or several scans of one): each
is read and segmented as its own stack, unless ``series_uid`` picks one. Label maps and
previews keep their DICOM file names (unique in one folder), so they share ``labels/`` and
``overlays/``; ``areas.csv`` then starts with each slice's series (its number as ``ctseg
inspect`` lists it, SeriesInstanceUID, SeriesDescription), ``volumes.csv`` has one row per
series and ROI (series that form a 3D stack), and each series gets its own
``animation_series<number>.gif``, ``segmentation_series<number>.nii.gz`` and
``segmentation_series<number>.dcm``. A folder of one series gives the outputs above unchanged.

NIfTI (:func:`~ctseg_helpers.io.nifti.write_series_nifti`): a cine series (the same number of
phases at every position) is one 4D volume (positions x phases); a series that fits no regular
grid (uneven positions, positions holding different numbers of images, no positions) gets none,
and one note says why (``SegmentationRun.output_notes``, ``run.json``, a warning).
DICOM-SEG (:func:`~ctseg_helpers.io.dicom_seg.write_dicom_seg`): frames must lie at distinct
positions, so a cine series gets one object per phase (``segmentation_phase<p>.dcm``,
``segmentation_series<number>_phase<p>.dcm``), all in one SEG series. A DICOM-SEG carries the
patient's name and ID, copied from the scan so that PACS and viewers file it with its study, so
it is written only together with ``include_patient_id=True``.

Probabilities (:func:`~ctseg_helpers.io.probabilities.write_probabilities`): one HDF5 file for the
run, one dataset per series, the probabilities the label maps were taken from (one network
pass gives both), quantised to uint8 (``p = value / 255``) and gzip-compressed, chunked per slice.
With ``probabilities="nifti"`` the same values go to one NIfTI volume per ROI and series instead,
on the grid of the label NIfTI (``scl_slope`` 1/255, so a viewer shows 0..1; the background's
probability is 1 minus their sum), for series that fit a NIfTI grid.

Uncertainty: ``areas.csv`` has, per slice, ``uncertainty_entropy`` (mean normalised entropy over
the predicted ROIs and a one-pixel band around them) and, when each pixel's probabilities
average several views (``tta`` or an ensemble), ``uncertainty_disagreement`` (the share of
views that pick another class); see :mod:`ctseg_helpers.measure.uncertainty`. Their ``mean``
and ``std`` rows are left empty. :meth:`SegmentationRun.slices_to_check` ranks the slices by
them and by abrupt area changes.

Existing runs are never touched: each run gets a new folder. With ``overwrite=True`` the run
goes to ``out_dir/<folder name>/`` and replaces the files an earlier run wrote there, finished
or interrupted, when nobody changed them since (each file is recorded as it is written, see
:mod:`ctseg_helpers.io.written` and :func:`previous_outputs`); a file there that ctseg did not
write or that was changed since (a label map corrected by hand) stops the run, naming it, before
anything is deleted. Other files in that folder are left alone. Outputs carry no patient name or
ID from the DICOM headers unless asked (``include_patient_id``: the PatientID in ``run.json``,
and the DICOM-SEG objects); they are named after the DICOM folder and files, so pass
``run_name`` when the folder's name itself identifies the patient.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.geometry import no_volume_reason
from ctseg_helpers.io.label_names import check_label_names
from ctseg_helpers.io.naming import dicom_stem as output_stem  # re-exported: a slice's outputs are named so
from ctseg_helpers.io.naming import output_stems
from ctseg_helpers.io.probabilities import PROBABILITY_FORMATS  # ``probabilities`` True means the first
from ctseg_helpers.segment.segmenter import SegmentSettings

logger = logging.getLogger(__name__)

LABELS_SUBDIR = "labels"
OVERLAYS_SUBDIR = "overlays"
AREAS_CSV = "areas.csv"
VOLUMES_CSV = "volumes.csv"
ANIMATION_GIF = "animation.gif"
#: Animation of series number N when the run segments several series.
SERIES_ANIMATION_GIF = "animation_series{number}.gif"
RUN_JSON = "run.json"
#: The label maps of the series as a NIfTI volume; SERIES_NIFTI when the run segments several series.
NIFTI = "segmentation.nii.gz"
SERIES_NIFTI = "segmentation_series{number}.nii.gz"
#: The DICOM Segmentation object of the series; with several series, and per phase of a cine series.
DICOM_SEG = "segmentation.dcm"
SERIES_DICOM_SEG = "segmentation_series{number}.dcm"
PHASE_DICOM_SEG = "segmentation_phase{phase}.dcm"
SERIES_PHASE_DICOM_SEG = "segmentation_series{number}_phase{phase}.dcm"
#: The class probabilities of every series of the run (one dataset per series).
PROBABILITIES_H5 = "probabilities.h5"
#: With probabilities="nifti": one ROI's probabilities of the series (``roi``: its name, file-safe).
PROBABILITIES_NIFTI = "probabilities_{roi}.nii.gz"
SERIES_PROBABILITIES_NIFTI = "probabilities_series{number}_{roi}.nii.gz"


def _safe_name(text: str, fallback: str = "series") -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return name or fallback


def _probability_nifti_names(number: int | None, names: Sequence[str], several: bool) -> list[str]:
    """File names of a series' per-ROI probability volumes (ROI k's name made file-safe, else ``roi<k>``)."""
    safe = [_safe_name(name, fallback=f"roi{k}") for k, name in enumerate(names, start=1)]
    made_alike = {name for name in safe if safe.count(name) > 1}  # "LV/RV" and "LV RV"
    safe = [f"{name}_{k}" if name in made_alike else name for k, name in enumerate(safe, start=1)]
    if several:
        return [SERIES_PROBABILITIES_NIFTI.format(number=number, roi=roi) for roi in safe]
    return [PROBABILITIES_NIFTI.format(roi=roi) for roi in safe]


def make_run_dir(
    out_dir: str | Path,
    name: str,
    *,
    overwrite: bool = False,
    now: _dt.datetime | None = None,
    outputs: Sequence[str] = (),
) -> Path:
    """Create the folder of one run.

    Parameters
    ----------
    out_dir : path
        Parent folder (``predictions``), created if needed.
    name : str
        Run name, usually the DICOM folder's name; unsafe characters become ``_``.
    overwrite : bool
        False: a new folder ``<name>_<YYYYmmdd-HHMMSS>`` (``-2``, ``-3`` ... appended if that
        exists). True: the folder ``<name>``, reused; the outputs an earlier run wrote in it
        (finished or interrupted) are removed, nothing else (see :func:`previous_outputs`).
    outputs : sequence of str
        With ``overwrite``: the files the new run will write, relative to the run folder
        (``labels/IM_0001.png``); one that exists must be an earlier run's output too.

    Raises
    ------
    CtsegSettingsError
        If ``out_dir`` (or the run folder) exists and is not a folder; with ``overwrite``, as
        :func:`previous_outputs` (then nothing is deleted).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CtsegSettingsError(f"{out_dir}: output folder is a file; choose a folder for the predictions")
    base = _safe_name(name)
    if overwrite:
        run_dir = out_dir / base
        if run_dir.exists() and not run_dir.is_dir():
            raise CtsegSettingsError(
                f"{run_dir}: exists and is not a folder; remove it or choose another output folder"
            )
        _remove_files(run_dir, previous_outputs(run_dir, outputs))
    else:
        stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
        run_dir = out_dir / f"{base}_{stamp}"
        counter = 1
        while run_dir.exists():
            counter += 1
            run_dir = out_dir / f"{base}_{stamp}-{counter}"
    (run_dir / LABELS_SUBDIR).mkdir(parents=True, exist_ok=True)
    return run_dir


#: What a run writes in its folder (glob patterns): where ``overwrite`` looks for the recorded
#: outputs of an interrupted run, which has no ``run.json`` listing them.
_RUN_OUTPUT_PATTERNS = (
    f"{LABELS_SUBDIR}/*.png",
    f"{OVERLAYS_SUBDIR}/*.jpg",
    AREAS_CSV,
    VOLUMES_CSV,
    RUN_JSON,
    "animation*.gif",
    "segmentation*.nii.gz",
    "segmentation*.dcm",
    PROBABILITIES_H5,
)


def previous_outputs(run_dir: str | Path, outputs: Sequence[str] = ()) -> list[str]:
    """The files an earlier run wrote in ``run_dir``, which ``overwrite`` replaces; refuse any other.

    A run records every file as soon as it is written (:func:`ctseg_helpers.io.written.record_written`,
    ``.ctseg-written.json`` in the run folder, ``labels/`` and ``overlays/``), so the outputs of a
    run that was interrupted (``kill -9``, a power cut) are known as well as those of a finished
    one, which also lists them in ``run.json`` (``files``). Such a file is replaced only when it is
    unchanged since; so is a file of ``outputs`` (what the new run will write) that exists. A run
    writes each file under a hidden name ``.<process id>.<name>`` first; such partial files of an
    interrupted run are removed too, and so are unfinished copies of the records
    (``.ctseg-written.json.<process id>.tmp``).

    A run folder written by a ctseg that did not record its files (no ``.ctseg-written.json``):
    the files listed in its ``run.json`` count as unchanged when they are not newer than
    ``run.json`` (written last); a label map corrected by hand afterwards is newer, and refused.
    Other files in the folder are left alone.

    Parameters
    ----------
    run_dir : path
        The run folder (missing, or holding no file: nothing to replace).
    outputs : sequence of str
        Files the new run will write, relative to ``run_dir`` (``labels/IM_0001.png``).

    Returns
    -------
    list of str
        Paths relative to ``run_dir`` of the files to delete, ``run.json`` last.

    Raises
    ------
    CtsegSettingsError
        Naming the first file that may not be replaced (not written by ctseg, or changed since),
        or naming the folder when it holds files but no record of a ctseg run.
    """
    from ctseg_helpers.io.written import (  # noqa: PLC0415
        MANIFEST_NAME,
        NEVER_REPLACED,
        check_replaceable,
        written_by_ctseg,
    )

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    partial_files = sorted(
        {  # left by a run killed while writing them: removed without asking
            path.relative_to(run_dir).as_posix()
            for pattern in _RUN_OUTPUT_PATTERNS
            for path in run_dir.glob(str(Path(pattern).with_name(".*")))
            if path.is_file() and not path.is_symlink() and _is_partial(path.name, Path(pattern).name)
        }
    )
    if not any(
        (p.is_file() or p.is_symlink()) and p.relative_to(run_dir).as_posix() not in partial_files
        for p in run_dir.rglob("*")
    ):
        return partial_files
    listed, record_mtime_ns = _recorded_files(run_dir)
    manifests = [run_dir / sub / MANIFEST_NAME for sub in ("", LABELS_SUBDIR, OVERLAYS_SUBDIR)]
    if record_mtime_ns is None and not any(m.is_file() for m in manifests):
        raise CtsegSettingsError(
            f"{run_dir}: holds files that no ctseg run recorded (no {RUN_JSON} listing what it wrote); overwrite "
            "replaces only the files of an earlier ctseg run, so nothing was changed. Choose another run name "
            "or output folder, or move those files away"
        )
    recorded = sorted(
        path.relative_to(run_dir).as_posix()
        for pattern in _RUN_OUTPUT_PATTERNS
        for path in run_dir.glob(pattern)
        if written_by_ctseg(path)
    )
    # a run folder of a ctseg that did not record its files: its run.json is the only record
    old_record = record_mtime_ns is not None and not manifests[0].exists()
    replace = []
    for relative in dict.fromkeys([*listed, *recorded, *outputs]):
        path = run_dir / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts or not (path.is_symlink() or path.exists()):
            continue  # a record cannot reach outside its folder (a link in it is not ctseg's: refused below)
        old_file = old_record and relative in listed and not written_by_ctseg(path)
        if old_file and relative != RUN_JSON and path.is_file() and not path.is_symlink():
            if path.stat().st_mtime_ns > record_mtime_ns:
                raise CtsegSettingsError(
                    f"{path}: changed since ctseg wrote it (newer than the earlier run's {RUN_JSON}); "
                    f"{NEVER_REPLACED}: move it away or choose another run name or output folder"
                )
        elif not (old_file and relative == RUN_JSON):  # ctseg's own and unchanged, or refused naming it
            check_replaceable(path, True, instead="choose another run name or output folder")
        replace.append(relative)
    return sorted(dict.fromkeys([*replace, *partial_files]), key=lambda relative: (relative == RUN_JSON, relative))


def _is_partial(name: str, pattern: str) -> bool:
    """True for an unfinished file of a run: an output (``pattern``) or a record of what it wrote."""
    from ctseg_helpers.io.written import MANIFEST_NAME  # noqa: PLC0415

    match = _PARTIAL.match(name)
    if match:
        return Path(match["name"]).match(pattern)
    return re.fullmatch(rf"{re.escape(MANIFEST_NAME)}\.\d+\.tmp", name) is not None


def _remove_files(run_dir: Path, relatives: Sequence[str]) -> None:
    """Delete the files :func:`previous_outputs` found (``run.json`` last) and forget their records."""
    from ctseg_helpers.io.written import forget_written  # noqa: PLC0415

    removed = []
    for relative in relatives:
        path = run_dir / relative
        path.unlink(missing_ok=True)
        removed.append(path)
    forget_written(*removed)
    if removed:
        logger.info("%s: replaced %d file(s) of an earlier run (overwrite=True)", run_dir, len(removed))


def _recorded_files(run_dir: Path) -> tuple[list[str], int | None]:
    """The files listed in ``run_dir/run.json`` and its modification time; ``([], None)`` without one."""
    record_path = run_dir / RUN_JSON
    try:
        record = json.loads(record_path.read_text())
        files = record["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise TypeError("files is not a list of names")
        return files, record_path.stat().st_mtime_ns
    except (OSError, ValueError, KeyError, TypeError):
        return [], None


def _partial_name(name: str) -> str:
    """Name of a file a run is writing: ``.<process id>.<name>`` (hidden, same extension)."""
    return f".{os.getpid()}.{name}"


_PARTIAL = re.compile(r"^\.\d+\.(?P<name>.+)$")


def _write_recorded(path: Path, write) -> Path:
    """Write one file of a run through ``write(partial_path)``, then put it in place, recorded as ctseg's.

    The file is written under :func:`_partial_name` beside ``path`` and renamed into place,
    recorded just before (:func:`ctseg_helpers.io.written.rename_recorded`): a run killed at any
    moment leaves each of its files whole and recorded, or a partial file that the next
    ``overwrite`` removes. Whatever ``write`` raises propagates, with the partial file removed.
    """
    from ctseg_helpers.io.written import rename_recorded  # noqa: PLC0415

    unfinished = path.with_name(_partial_name(path.name))
    try:
        write(unfinished)
        return rename_recorded(unfinished, path)
    finally:
        unfinished.unlink(missing_ok=True)


def _planned_outputs(
    stems: Sequence[str],
    outputs: Sequence[SeriesOutput],
    all_series,
    *,
    previews: bool,
    animation: bool,
    nifti: bool,
    dicom_seg: bool,
    probabilities: str | None = None,
    names: Sequence[str] = (),
) -> list[str]:
    """The files a run may write, relative to its folder (for overwrite's check before anything is deleted)."""
    several = len(outputs) > 1
    planned = [f"{LABELS_SUBDIR}/{stem}.png" for stem in stems]
    planned += [f"{OVERLAYS_SUBDIR}/{stem}.jpg" for stem in stems] if previews else []
    planned += [AREAS_CSV, VOLUMES_CSV, RUN_JSON]
    planned += [PROBABILITIES_H5] if probabilities == "hdf5" else []
    for out, series in zip(outputs, all_series, strict=True):
        if probabilities == "nifti":
            planned += _probability_nifti_names(out.number, names, several)
        if animation:
            planned.append(SERIES_ANIMATION_GIF.format(number=out.number) if several else ANIMATION_GIF)
        if nifti:
            planned.append(SERIES_NIFTI.format(number=out.number) if several else NIFTI)
        if dicom_seg:
            from ctseg_helpers.io.dicom_seg import phase_indices  # noqa: PLC0415

            n_phases = len(phase_indices(series.positions_mm))
            planned.append(SERIES_DICOM_SEG.format(number=out.number) if several else DICOM_SEG)
            planned += [
                SERIES_PHASE_DICOM_SEG.format(number=out.number, phase=p)
                if several
                else PHASE_DICOM_SEG.format(phase=p)
                for p in range(1, n_phases + 1)
            ]
    return planned


def write_label_png(path: str | Path, labels: np.ndarray) -> Path:
    """Write a label map as a lossless 8-bit greyscale PNG holding the label values 0..N.

    Raises
    ------
    CtsegDataError
        If ``labels`` is not 2D or holds values outside 0..255.
    """
    from PIL import Image  # noqa: PLC0415

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise CtsegDataError(f"{path}: a label map must be 2D (M, N), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise CtsegDataError(f"{path}: label values {labels.min()}..{labels.max()} do not fit an 8-bit PNG (0..255)")
    path = Path(path)
    Image.fromarray(labels.astype(np.uint8)).save(path, format="PNG", optimize=False, compress_level=3)
    return path


def write_overlay_jpg(
    path: str | Path, image: np.ndarray, labels: np.ndarray, *, alpha: float = 0.45, quality: int = 90
) -> Path:
    """Write a JPG preview: the grey slice with the ROIs in their label colours (show/colors.py)."""
    from PIL import Image  # noqa: PLC0415

    from ctseg_helpers.show.colors import overlay  # noqa: PLC0415

    rgb = np.round(overlay(image, labels, alpha) * 255).astype(np.uint8)
    path = Path(path)
    Image.fromarray(rgb).save(path, format="JPEG", quality=quality)
    return path


def write_table_csv(table: pd.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write an area or volume table as CSV (index included, 4 decimals).

    The table is written beside ``path`` under a hidden name and renamed over it, so a run
    stopped half-way never leaves a truncated table (or half of an earlier one).

    Raises
    ------
    CtsegSettingsError
        If the file exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise CtsegSettingsError(f"{path} exists already; choose another file name or allow overwriting")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{os.getpid()}.{path.name}.tmp")
    try:
        table.to_csv(tmp, float_format="%.4f")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass
class SeriesOutput:
    """What :func:`run_segmentation` produced for one series of the folder.

    Attributes
    ----------
    number : int or None
        The series' number as ``ctseg inspect`` lists it (1 = most images); None when
        ``series_uid`` picked it.
    series_uid, series_description : str
    files : list of Path
        Source DICOM files, in stacking order.
    label_paths, overlay_paths : list of Path
    volumes : pandas.DataFrame or None
        ROI volumes (mL) when its slices form a 3D stack.
    volume_note : str
        Why there are no volumes ("" when there are).
    animation_gif : Path or None
    images : ndarray of shape (K, M, N), float32
    labels : ndarray of shape (K, M, N), uint8
    pixel_spacing_mm : ndarray of shape (K, 2)
    nifti_path : Path or None
        The NIfTI label volume (``nifti=True``), None when not asked or not possible.
    dicom_seg_paths : list of Path
        The DICOM-SEG object(s) (``dicom_seg=True``): one, or one per phase of a cine series.
    probability_nifti_paths : list of Path
        One probability volume per ROI (``probabilities="nifti"``), empty when not asked or not possible.
    output_notes : list of str
        Why an output that was asked for was not written.
    """

    number: int | None
    series_uid: str
    series_description: str
    files: list[Path]
    label_paths: list[Path]
    overlay_paths: list[Path]
    volumes: pd.DataFrame | None
    volume_note: str
    animation_gif: Path | None
    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    pixel_spacing_mm: np.ndarray = field(repr=False)
    nifti_path: Path | None = None
    dicom_seg_paths: list[Path] = field(default_factory=list)
    probability_nifti_paths: list[Path] = field(default_factory=list)
    output_notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        """``series 2 'T1 axial'``, as in tables and messages."""
        number = f"series {self.number}" if self.number is not None else "series"
        return f"{number} '{self.series_description or '(no description)'}'"


@dataclass
class SegmentationRun:
    """What :func:`run_segmentation` produced.

    Attributes
    ----------
    run_dir : Path
        The run's folder.
    files : list of Path
        Source DICOM files, in stacking order (series after series).
    label_paths, overlay_paths : list of Path
        One label PNG and one preview JPG per slice (``overlay_paths`` empty without previews).
    areas : pandas.DataFrame
        Area table (mm²), see :func:`ctseg_helpers.measure.area.area_table`; with several
        series its first columns name each slice's series.
    volumes : pandas.DataFrame or None
        ROI volumes (mL) when the slices form a 3D stack; with several series one row per
        series and ROI, for the series that form one.
    areas_csv, volumes_csv, animation_gif, run_json : Path or None
        ``animation_gif`` is the first series' animation when there are several.
    label_names : tuple of str
    images : ndarray of shape (K, M, N), float32
        The slices as read (rescaled values); with several series a list of the K (M, N)
        slices (each series' stack is in ``series``).
    labels : ndarray of shape (K, M, N), uint8
        The label maps (a list with several series, as ``images``).
    pixel_spacing_mm : ndarray of shape (K, 2)
        Spacing used for the areas.
    series : list of SeriesOutput
        Each series segmented (one for a folder of one series).
    nifti_paths, dicom_seg_paths : list of Path
        The NIfTI volumes and DICOM-SEG objects written (empty when not asked).
    output_notes : list of str
        Why an output that was asked for was not written for a series (one note each).
    probabilities_path : Path or None
        ``probabilities.h5`` (``probabilities=True`` or ``"hdf5"``), read back with
        :func:`ctseg_helpers.io.probabilities.read_probabilities`.
    probability_nifti_paths : list of Path
        The per-ROI probability volumes of every series (``probabilities="nifti"``).
    """

    run_dir: Path
    files: list[Path]
    label_paths: list[Path]
    overlay_paths: list[Path]
    areas: pd.DataFrame
    volumes: pd.DataFrame | None
    areas_csv: Path
    volumes_csv: Path | None
    animation_gif: Path | None
    run_json: Path
    label_names: tuple[str, ...]
    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    pixel_spacing_mm: np.ndarray = field(repr=False)
    volume_note: str = ""
    series: list[SeriesOutput] = field(default_factory=list, repr=False)
    nifti_paths: list[Path] = field(default_factory=list)
    dicom_seg_paths: list[Path] = field(default_factory=list)
    output_notes: list[str] = field(default_factory=list)
    probabilities_path: Path | None = None
    probability_nifti_paths: list[Path] = field(default_factory=list)

    def area_view(self) -> pd.DataFrame:
        """``areas`` without the pixel-value, shape and uncertainty columns: what a table of areas shows.

        The series, file and position columns, then one area column (mm²) per ROI; every row,
        the summary rows included. ``areas`` (and ``areas.csv``) keep everything.
        """
        from ctseg_helpers.measure.area import TABLE_COLUMNS, roi_columns  # noqa: PLC0415

        return self.areas[[c for c in self.areas.columns if c in TABLE_COLUMNS] + roi_columns(self.areas)]

    def measures_view(self) -> pd.DataFrame:
        """The other columns of ``areas``: each ROI's pixel values, shape (and CT fat fraction),
        then the slice's uncertainty, after the file column."""
        from ctseg_helpers.measure.area import roi_columns  # noqa: PLC0415

        skip = set(roi_columns(self.areas)) | {"slice_position_mm", "series_uid", "series_description"}
        return self.areas[[c for c in self.areas.columns if c not in skip]]

    def slices_to_check(self, n: int = 5, **kwargs) -> pd.DataFrame:
        """The ``n`` slices most worth checking, highest score first, with the reasons.

        Ranks by the uncertainty columns of ``areas`` and abrupt area changes; see
        :func:`ctseg_helpers.measure.uncertainty.slices_to_check` (its keyword arguments are
        passed on). ``slice_index`` indexes ``images`` and ``labels``.
        """
        from ctseg_helpers.measure.uncertainty import slices_to_check  # noqa: PLC0415

        return slices_to_check(self.areas, self.label_names, n, **kwargs)

    def show_slices_to_check(self, n: int = 5, *, alpha: float = 0.4, columns: int = 5, **kwargs):
        """A figure of the slices :meth:`slices_to_check` lists, with their ROIs and the reasons.

        Slices of different sizes (several series) are padded to the largest, bottom and right.
        Returns None (and logs why) when no slice needs a look.
        """
        from textwrap import fill  # noqa: PLC0415

        from ctseg_helpers.show.plots import sample_stack_grid  # noqa: PLC0415

        check = self.slices_to_check(n, **kwargs)
        if check.empty:
            logger.info("no slice stands out: no uncertainty above 0 and no abrupt area change")
            return None
        chosen = check["slice_index"].to_list()
        images = [np.asarray(self.images[i], dtype=np.float32) for i in chosen]
        labels = [np.asarray(self.labels[i]) for i in chosen]
        rows = max(im.shape[0] for im in images)
        cols = max(im.shape[1] for im in images)
        image_stack = np.stack(
            [np.pad(im, ((0, rows - im.shape[0]), (0, cols - im.shape[1])), constant_values=im.min()) for im in images]
        )
        label_stack = np.stack([np.pad(lab, ((0, rows - lab.shape[0]), (0, cols - lab.shape[1]))) for lab in labels])
        titles = [
            f"{rank}. {row.file}\n{fill(row.reasons, 38)}" for rank, row in enumerate(check.itertuples(), start=1)
        ]
        return sample_stack_grid(
            image_stack,
            label_stack,
            list(self.label_names),
            n_samples=len(chosen),
            alpha=alpha,
            columns=columns,
            titles=titles,
        )

    def animation_html(self, **kwargs) -> str:
        """The slices with their ROIs as a compact animated preview (for a notebook), naming the GIF.

        With several series: one animation per series, each under a heading naming it.
        """
        from html import escape  # noqa: PLC0415

        from ctseg_helpers.show.animation import make_animation, to_html  # noqa: PLC0415

        if len(self.series) <= 1:
            anim = make_animation(self.images, self.labels, list(self.label_names), title=self.run_dir.name, **kwargs)
            return to_html(anim, gif_path=self.animation_gif)
        parts = []
        for out in self.series:
            if not out.files:
                continue
            anim = make_animation(
                out.images, out.labels, list(self.label_names), title=f"{self.run_dir.name} {out.title}", **kwargs
            )
            parts.append(
                f"<h4>{escape(out.title)}: {len(out.files)} slice(s)</h4>\n{to_html(anim, gif_path=out.animation_gif)}"
            )
        return "\n".join(parts)

    def show_animation(self, **kwargs):
        """Display object of :meth:`animation_html` (the last line of a notebook cell shows it)."""
        from IPython.display import HTML  # noqa: PLC0415

        return HTML(self.animation_html(**kwargs))

    def volume_report(self):
        """The volume table (mL), or a sentence saying why there is none (for a notebook).

        With several series of which some form no stack: the table and the reasons for the others.
        """
        if self.volumes is not None and not self.volume_note:
            return self.volumes
        if self.volumes is None:
            from IPython.display import Markdown  # noqa: PLC0415

            return Markdown(f"No ROI volumes: {self.volume_note}.")
        from html import escape  # noqa: PLC0415

        from IPython.display import HTML  # noqa: PLC0415

        return HTML(f"{self.volumes.to_html()}<p>No ROI volumes for {escape(self.volume_note)}.</p>")

    def summary(self) -> str:
        """A few lines saying what was written where."""
        several = len(self.series) > 1
        what = f"{len(self.files)} slice(s) of {len(self.series)} series" if several else f"{len(self.files)} slice(s)"
        lines = [
            f"{what} segmented -> {self.run_dir}",
            f"  label maps: {self.run_dir / LABELS_SUBDIR}/ (PNG, values 0..{len(self.label_names)})",
        ]
        if self.overlay_paths:
            lines.append(f"  previews:   {self.run_dir / OVERLAYS_SUBDIR}/ (JPG)")
        if several and self.animation_gif:
            pattern = self.run_dir / SERIES_ANIMATION_GIF.format(number="<number>")
            lines.append(f"  animations: {pattern} (one per series)")
        elif self.animation_gif:
            lines.append(f"  animation:  {self.animation_gif}")
        lines.append(f"  areas (mm2): {self.areas_csv}")
        if self.volumes_csv:
            lines.append(f"  volumes (mL): {self.volumes_csv}")
        lines.extend(f"  NIfTI:      {path}" for path in self.nifti_paths)
        if len(self.dicom_seg_paths) > 3:
            lines.append(f"  DICOM-SEG:  {len(self.dicom_seg_paths)} files, {self.dicom_seg_paths[0]} ...")
        else:
            lines.extend(f"  DICOM-SEG:  {path}" for path in self.dicom_seg_paths)
        if self.probabilities_path:
            lines.append(f"  probabilities: {self.probabilities_path} (uint8, p = value / 255)")
        if self.probability_nifti_paths:
            first = self.probability_nifti_paths[0]
            more = (
                f" ... ({len(self.probability_nifti_paths)} files, one per ROI)"
                if len(self.probability_nifti_paths) > 1
                else ""
            )
            lines.append(f"  probabilities: {first}{more} (NIfTI, p = value / 255)")
        lines.extend(f"  note: {note}" for note in self.output_notes)
        if several:
            lines.extend(
                f"  {out.title}: {len(out.files)} slice(s), uid {out.series_uid or '(none)'}" for out in self.series
            )
        return "\n".join(lines)


def check_settings(
    model_settings,
    *,
    labels_list: Sequence[str] | None = None,
    input_shape: int | None = None,
    source: str | Path = "model",
) -> tuple[str, ...]:
    """Check the user's settings against a model's stored settings; return the ROI names.

    Parameters
    ----------
    model_settings : ModelSettings
    labels_list : sequence of str, optional
        ROI names, label 1 first; a first name ``background`` followed by one name per ROI is
        dropped (:func:`ctseg_helpers.io.label_names.check_label_names`). Default: the names
        stored with the model, else ``ROI 1``, ``ROI 2``, ...
    input_shape : int, optional
        The input size the user expects; must equal the model's.

    Raises
    ------
    CtsegSettingsError
        If ``input_shape`` or the number of names differs from the model's, stating both values;
        names refused by ``check_label_names``.
    """
    if input_shape is not None and int(input_shape) != model_settings.input_shape:
        raise CtsegSettingsError(
            f"{source}: input_shape={input_shape} in your settings but the model was trained with "
            f"input_shape={model_settings.input_shape}; set input_shape = {model_settings.input_shape}"
        )
    stored = tuple(model_settings.label_names)
    if labels_list is None:
        names = stored or tuple(f"ROI {i + 1}" for i in range(model_settings.num_labels))
        return check_label_names(names)
    counted = f"the model was trained with {model_settings.num_labels} label(s)"
    counted += f" {list(stored)}" if stored else ""
    names = check_label_names(
        labels_list,
        model_settings.num_labels,
        setting=f"{source}: labels_list",
        counted=counted,
        example=stored or None,
    )
    if stored and names != stored:
        logger.warning(
            "%s: labels_list %s differs from the names the model was trained with %s; using yours",
            source,
            list(names),
            list(stored),
        )
    return names


def run_segmentation(
    model_path: str | Path,
    dicom_dir: str | Path,
    out_dir: str | Path = "predictions",
    labels_list: Sequence[str] | None = None,
    fov: float | Sequence[float] | None = None,
    matrix_size: int | Sequence[int] | None = None,
    *,
    input_shape: int | None = None,
    series_uid: str | None = None,
    mode: str | None = SegmentSettings.mode,
    overlap: float = SegmentSettings.overlap,
    blend: str = SegmentSettings.blend,
    batch_size: int = SegmentSettings.batch_size,
    tta: bool = SegmentSettings.tta,
    overwrite: bool = False,
    run_name: str | None = None,
    previews: bool = True,
    animation: bool = True,
    include_patient_id: bool = False,
    nifti: bool = False,
    dicom_seg: bool = False,
    probabilities: bool | str = False,
    measures: bool = True,
    fat_window_hu: tuple[float, float] | None = None,
    progress: bool = True,
    segmenter=None,
) -> SegmentationRun:
    """Segment a DICOM folder with a trained model and write label maps, previews, animation and areas.

    Parameters
    ----------
    model_path : path
        A ``.keras`` model saved by ctseg (loaded in Keras safe mode).
    dicom_dir : path
        Folder of DICOM images. Every series in it is segmented, each as its own stack (see
        the module documentation for the outputs of several series).
    out_dir : path
        Parent folder of the run folders (``predictions``).
    labels_list : sequence of str, optional
        ROI names, label 1 first; must have one name per ROI the model knows (a first name
        ``background`` followed by one name per ROI is dropped).
    fov, matrix_size : optional
        Field of view (mm) and image size (pixels), used when a slice has no PixelSpacing.
    input_shape : int, optional
        Checked against the model's input size when given.
    series_uid : str, optional
        Segment only this series of the folder (its outputs are those of a folder of one series).
    mode, overlap, blend, batch_size, tta
        See :class:`~ctseg_helpers.segment.segmenter.Segmenter`; the defaults are those of
        :class:`~ctseg_helpers.segment.segmenter.SegmentSettings` (``mode``: the model's
        training fit).
    overwrite : bool
        Write to ``out_dir/<name>`` replacing an earlier run's outputs there, instead of a new
        time-stamped folder.
    run_name : str, optional
        Name of the run folder (default: the DICOM folder's name).
    previews, animation : bool
        Write the JPG previews / the animated GIF.
    include_patient_id : bool
        Record the DICOM PatientID in ``run.json`` (off by default); needed for ``dicom_seg``.
    nifti : bool
        Also write each series' label maps as a NIfTI volume on the scan's grid
        (``segmentation.nii.gz``; see the module documentation for cine and uneven series).
    dicom_seg : bool
        Also write each series' label maps as a DICOM Segmentation object referencing the
        segmented images (``segmentation.dcm``); it carries the patient's name and ID as the
        scan does, so it needs ``include_patient_id=True``, and the highdicom package.
    probabilities : bool or {"hdf5", "nifti"}
        Also write the class probabilities of every series, uint8, ``p = value / 255`` (within
        half of the 1/255 step of the network's): ``"hdf5"`` (or True) one ``probabilities.h5``
        for the run (:mod:`ctseg_helpers.io.probabilities`; what ``ctseg evaluate`` reads);
        ``"nifti"`` one volume per ROI and series on the scan's grid, for a viewer
        (``probabilities_<ROI>.nii.gz``, the header's scale making them 0..1).
    measures : bool
        Add each ROI's pixel values (mean, SD, median), perimeter and maximum diameter, and for
        CT its fat fraction, to ``areas.csv`` (:mod:`ctseg_helpers.measure.intensity`).
    fat_window_hu : (float, float), optional
        CT only: the HU window counted as fat (default -190..-30 HU).
    progress : bool
        Show a progress bar.
    segmenter : Segmenter, optional
        A Segmenter already built from ``model_path`` (:meth:`Segmenter.from_model_file`), to
        segment many folders with one model load; ``mode`` ... ``tta`` are then its own.

    Returns
    -------
    SegmentationRun

    Raises
    ------
    CtsegSettingsError
        Settings that disagree with the model, ``dicom_seg`` without ``include_patient_id``
        or without highdicom, an unknown ``probabilities`` format, or a fat window without
        ``measures`` (before anything is read or written) or for series that are not all CT.
    CtsegDataError
        An unusable model file or DICOM folder (any of its series), an unknown ``series_uid``,
        or slices without spacing and no ``fov``; nothing is written then.
    """
    from ctseg_helpers.io.dicom import read_dicom_series, scan_dicom_folder  # noqa: PLC0415
    from ctseg_helpers.measure.area import (  # noqa: PLC0415
        area_table,
        pixel_spacings_mm,
        series_volume_table,
        slice_rows,
        volume_table,
    )
    from ctseg_helpers.measure.intensity import check_fat_window, common_modality, is_ct  # noqa: PLC0415
    from ctseg_helpers.segment.ensemble import read_ensemble_settings  # noqa: PLC0415
    from ctseg_helpers.segment.segmenter import Segmenter, mode_for_fit  # noqa: PLC0415

    if dicom_seg:
        _check_dicom_seg_allowed(include_patient_id)
    probability_format = _probability_format(probabilities)
    if fat_window_hu is not None:
        fat_window_hu = check_fat_window(fat_window_hu)
        if not measures:
            raise CtsegSettingsError(
                "a fat window (fat_window_hu, --fat-window) needs the intensity columns: leave out "
                "measures=False (--areas-only)"
            )
    model_path = Path(model_path)
    settings = read_ensemble_settings(model_path)
    names = check_settings(settings, labels_list=labels_list, input_shape=input_shape, source=model_path)
    dicom_dir = Path(dicom_dir)
    if not dicom_dir.is_dir():
        raise CtsegDataError(f"{dicom_dir}: DICOM folder not found; pick the folder that holds the scan's .dcm files")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CtsegSettingsError(f"{out_dir}: output folder is a file; choose a folder for the predictions")
    name = run_name or dicom_dir.resolve().name
    if overwrite and (out_dir / _safe_name(name)).resolve() == dicom_dir.resolve():
        # overwrite reuses out_dir/<name>: that would write into (and clear labels/*.png of) the scan's folder
        raise CtsegSettingsError(
            f"{dicom_dir}: with overwrite the run folder would be the DICOM folder itself, and files there "
            "(e.g. manual label maps in labels/) would be replaced; choose another output folder or a run_name"
        )
    if dicom_dir.resolve() in (out_dir.resolve(), *out_dir.resolve().parents):
        raise CtsegSettingsError(
            f"{out_dir}: the output folder is inside the DICOM folder {dicom_dir} being segmented; predictions "
            "are never written into a folder the run reads: choose an output folder outside it"
        )
    if overwrite:  # before any work: an earlier run's file that may not be replaced stops the run
        previous_outputs(out_dir / _safe_name(name))

    # every series of the folder, each its own stack, unless series_uid picks one
    infos = None
    if series_uid is None:
        scan = scan_dicom_folder(dicom_dir)
        scan.require_images()
        infos = scan.series
    if infos is None or len(infos) == 1:
        all_series = [read_dicom_series(dicom_dir, series_uid=series_uid, progress=progress)]
        numbers = [None if series_uid is not None else 1]
    else:
        logger.info("%s holds %d series; each is segmented as its own stack", dicom_dir, len(infos))
        all_series = [read_dicom_series(dicom_dir, series_uid=info.series_uid, progress=progress) for info in infos]
        numbers = list(range(1, len(infos) + 1))
    several = len(all_series) > 1
    modality = common_modality(s.modality for s in all_series) if measures else None
    if fat_window_hu is not None and not is_ct(modality):
        raise CtsegSettingsError(
            f"{dicom_dir}: a fat window (fat_window_hu, --fat-window) is in Hounsfield units, but the series "
            "are not all CT: leave the fat window out"
        )
    outputs = []  # filled in step by step: read and checked, segmented, written
    for series, number in zip(all_series, numbers, strict=True):
        images = np.asarray(series.images, dtype=np.float32)
        files = [Path(f) for f in series.files]
        source = f"{dicom_dir} (series {number}, uid {series.series_uid})" if several else dicom_dir
        spacings = pixel_spacings_mm(
            series.pixel_spacing_mm, images.shape[1:], fov=fov, matrix_size=matrix_size, source=source
        )
        outputs.append(
            SeriesOutput(
                number=number,
                series_uid=series.series_uid,
                series_description=series.series_description,
                files=files,
                label_paths=[],
                overlay_paths=[],
                volumes=None,
                volume_note="",
                animation_gif=None,
                images=images,
                labels=None,
                pixel_spacing_mm=spacings,
            )
        )
    all_files = [f for out in outputs for f in out.files]
    stem_list = output_stems(all_files)  # unique over all series
    all_stems = iter(stem_list)

    if segmenter is None:
        segmenter = Segmenter.from_model_file(
            model_path,
            mode=mode or mode_for_fit(settings.fit_mode),
            overlap=overlap,
            blend=blend,
            batch_size=batch_size,
            tta=tta,
        )
    elif (segmenter.input_shape, segmenter.num_classes) != (settings.input_shape, settings.num_labels + 1):
        raise CtsegSettingsError(
            f"the segmenter given takes input_shape={segmenter.input_shape} with {segmenter.num_classes} classes "
            f"but {model_path} has input_shape={settings.input_shape} with {settings.num_labels + 1}: "
            "build it with Segmenter.from_model_file(model_path)"
        )
    scores, stored_proba = [], []
    for out in outputs:
        if several:
            logger.info("segmenting %s (%d slice(s))", out.title, len(out.files))
        out.labels, score, proba = _segment_series(
            segmenter, out, keep_proba=probability_format is not None, progress=progress
        )
        scores.append(score)
        stored_proba.append(proba)

    planned = _planned_outputs(
        stem_list,
        outputs,
        all_series,
        previews=previews,
        animation=animation,
        nifti=nifti,
        dicom_seg=dicom_seg,
        probabilities=probability_format,
        names=names,
    )
    run_dir = make_run_dir(out_dir, name, overwrite=overwrite, outputs=planned)
    if previews:
        (run_dir / OVERLAYS_SUBDIR).mkdir(exist_ok=True)
    from tqdm.auto import tqdm  # noqa: PLC0415

    written_bar = tqdm(  # the files of hundreds of slices take seconds: not a silent wait
        total=len(all_files),
        desc="writing label maps" + (" and previews" if previews else ""),
        unit="slice",
        disable=not progress,
    )
    for out in outputs:  # every file is recorded once written: an interrupted run's files are known as ctseg's
        stems = [next(all_stems) for _ in out.files]
        for stem, image, lab in zip(stems, out.images, out.labels, strict=True):
            out.label_paths.append(
                _write_recorded(run_dir / LABELS_SUBDIR / f"{stem}.png", partial(write_label_png, labels=lab))
            )
            if previews:
                out.overlay_paths.append(
                    _write_recorded(
                        run_dir / OVERLAYS_SUBDIR / f"{stem}.jpg", partial(write_overlay_jpg, image=image, labels=lab)
                    )
                )
            written_bar.update()
    written_bar.close()

    areas = area_table(
        [lab for out in outputs for lab in out.labels],
        np.concatenate([o.pixel_spacing_mm for o in outputs]),
        names,
        files=all_files,
        positions_mm=np.concatenate([np.asarray(s.positions_mm, dtype=np.float64) for s in all_series]),
        series=[(o.number, o.series_uid, o.series_description) for o in outputs for _ in o.files] if several else None,
        images=[image for out in outputs for image in out.images] if measures else None,
        modality=modality,
        fat_window_hu=fat_window_hu,
        shape=measures,
    )
    areas = _join_uncertainty(areas, pd.concat(scores, ignore_index=True), all_files)
    areas_csv = _write_recorded(run_dir / AREAS_CSV, partial(write_table_csv, areas))
    rows = slice_rows(areas)
    for out, series in zip(outputs, all_series, strict=True):
        spacing = series.slice_spacing_mm
        if spacing is not None:
            out.volumes = volume_table(rows[rows["series"] == out.number] if several else rows, spacing)
        else:
            out.volume_note = no_volume_reason(series.positions_mm)
    if several:
        volumes = series_volume_table(
            [((o.number, o.series_uid, o.series_description), o.volumes) for o in outputs if o.volumes is not None]
        )
        volume_note = "; ".join(f"{o.title}: {o.volume_note}" for o in outputs if o.volume_note)
    else:
        volumes, volume_note = outputs[0].volumes, outputs[0].volume_note
    volumes_csv = (
        _write_recorded(run_dir / VOLUMES_CSV, partial(write_table_csv, volumes)) if volumes is not None else None
    )

    if animation:
        from ctseg_helpers.show.animation import make_animation, save_gif  # noqa: PLC0415

        for out in outputs:
            if not out.files:
                continue
            gif = run_dir / (SERIES_ANIMATION_GIF.format(number=out.number) if several else ANIMATION_GIF)
            title = f"{run_dir.name} {out.title}" if several else run_dir.name
            anim = make_animation(out.images, out.labels, list(names), title=title)
            out.animation_gif = _write_recorded(gif, partial(save_gif, anim, final_path=gif))

    for out, series in zip(outputs, all_series, strict=True):
        where = f"{dicom_dir} {out.title}" if several else str(dicom_dir)
        if nifti:
            _write_nifti(run_dir / (SERIES_NIFTI.format(number=out.number) if several else NIFTI), out, series, where)
        if dicom_seg:
            _write_dicom_seg(run_dir, out, series, names, model_path, several, where)
    probabilities_path = None
    if probability_format == "hdf5":
        probabilities_path = _write_probabilities(
            run_dir / PROBABILITIES_H5, outputs, all_series, stored_proba, names, stem_list
        )
    elif probability_format == "nifti":
        for out, series, proba in zip(outputs, all_series, stored_proba, strict=True):
            where = f"{dicom_dir} {out.title}" if several else str(dicom_dir)
            _write_probability_nifti(run_dir, out, series, proba, names, several, where)
    del stored_proba
    output_notes = [note for out in outputs for note in out.output_notes]
    for note in output_notes:
        logger.warning("%s", note)

    first = all_series[0]
    record = {
        "ctseg_version": _version(),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "model": str(model_path.resolve()),
        "model_settings": settings.to_dict(),
        "dicom_dir": str(dicom_dir.resolve()),
        "series_uid": None if several else getattr(first, "series_uid", None),
        "series_description": None if several else getattr(first, "series_description", None),
        "n_slices": sum(len(o.files) for o in outputs),
        "label_names": list(names),
        "segmenter": {
            "mode": segmenter.mode,
            "overlap": segmenter.overlap,
            "blend": segmenter.blend,
            "batch_size": segmenter.batch_size,
            "tta": segmenter.tta,
            "target_spacing_mm": segmenter.target_spacing_mm,
            "postprocessing": segmenter.postprocessing.to_dict() if segmenter.postprocessing else None,
            "views": segmenter.n_views,
        },
        "fov": fov,
        "measures": measures,
        "fat_window_hu": list(fat_window_hu) if fat_window_hu is not None else None,
        "matrix_size": matrix_size,
        "slice_spacing_mm": None if several else first.slice_spacing_mm,
        "skipped_files": [[str(p), str(reason)] for p, reason in (getattr(first, "skipped", None) or [])],
        "outputs": {
            "labels": LABELS_SUBDIR,
            "overlays": OVERLAYS_SUBDIR if previews else None,
            "areas": AREAS_CSV,
            "volumes": VOLUMES_CSV if volumes_csv else None,
            "animation": (
                ([o.animation_gif.name for o in outputs if o.animation_gif] or None)
                if several
                else (ANIMATION_GIF if outputs[0].animation_gif else None)
            ),
            "nifti": (
                (
                    [o.nifti_path.name for o in outputs if o.nifti_path]
                    if several
                    else (outputs[0].nifti_path.name if outputs[0].nifti_path else None)
                )
                if nifti
                else None
            ),
            "dicom_seg": [p.name for o in outputs for p in o.dicom_seg_paths] if dicom_seg else None,
            "probabilities": (
                PROBABILITIES_H5
                if probabilities_path
                else ([p.name for o in outputs for p in o.probability_nifti_paths] or None)
            ),
        },
    }
    if output_notes:
        record["output_notes"] = output_notes
    if several:
        record["series"] = [
            {
                "number": o.number,
                "series_uid": o.series_uid,
                "series_description": o.series_description,
                "n_slices": len(o.files),
                "slice_spacing_mm": s.slice_spacing_mm,
                "files": [f.name for f in o.files],
                "animation": o.animation_gif.name if o.animation_gif else None,
                "nifti": o.nifti_path.name if o.nifti_path else None,
                "dicom_seg": [p.name for p in o.dicom_seg_paths],
                "probabilities": [p.name for p in o.probability_nifti_paths],
            }
            for o, s in zip(outputs, all_series, strict=True)
        ]
    if include_patient_id:
        from ctseg_helpers.io.dicom import read_dicom_file  # noqa: PLC0415

        if several:
            for entry, o in zip(record["series"], outputs, strict=True):
                entry["patient_id"] = read_dicom_file(o.files[0]).patient_id if o.files else None
        else:
            files = outputs[0].files
            record["patient_id"] = read_dicom_file(files[0]).patient_id if files else None
    written = [
        p
        for o in outputs
        for p in (
            *o.label_paths,
            *o.overlay_paths,
            o.animation_gif,
            o.nifti_path,
            *o.dicom_seg_paths,
            *o.probability_nifti_paths,
        )
    ]
    written += [areas_csv, volumes_csv, probabilities_path]
    record["files"] = sorted(Path(p).absolute().relative_to(run_dir.absolute()).as_posix() for p in written if p)
    record["files"].append(RUN_JSON)
    run_json = run_dir / RUN_JSON
    text = json.dumps(record, indent=2, default=_json_default)
    _write_recorded(run_json, lambda path: path.write_text(text))  # a record is whole, or not there
    logger.info("segmentation of %s written to %s", dicom_dir, run_dir)
    return SegmentationRun(
        run_dir=run_dir,
        files=[f for o in outputs for f in o.files],
        label_paths=[p for o in outputs for p in o.label_paths],
        overlay_paths=[p for o in outputs for p in o.overlay_paths],
        areas=areas,
        volumes=volumes,
        areas_csv=areas_csv,
        volumes_csv=volumes_csv,
        animation_gif=next((o.animation_gif for o in outputs if o.animation_gif), None),
        run_json=run_json,
        label_names=names,
        images=_stack([o.images for o in outputs]),
        labels=_stack([o.labels for o in outputs]),
        pixel_spacing_mm=np.concatenate([o.pixel_spacing_mm for o in outputs]),
        volume_note=volume_note,
        series=outputs,
        nifti_paths=[o.nifti_path for o in outputs if o.nifti_path],
        dicom_seg_paths=[p for o in outputs for p in o.dicom_seg_paths],
        output_notes=output_notes,
        probabilities_path=probabilities_path,
        probability_nifti_paths=[p for o in outputs for p in o.probability_nifti_paths],
    )


def _probability_format(probabilities) -> str | None:
    """``"hdf5"`` for True or a known format name, None for False/None; refuse anything else (before work)."""
    if probabilities is None or probabilities is False:
        return None
    if probabilities is True:
        return PROBABILITY_FORMATS[0]
    if isinstance(probabilities, str) and probabilities.lower() in PROBABILITY_FORMATS:
        return probabilities.lower()
    raise CtsegSettingsError(
        f"probabilities (--probabilities) must be True/False or one of {list(PROBABILITY_FORMATS)}, got "
        f"{probabilities!r}; use 'hdf5' (probabilities.h5, what ctseg evaluate reads) or 'nifti' (one "
        "volume per ROI for a viewer)"
    )


def _segment_series(segmenter, out: SeriesOutput, *, keep_proba: bool, progress: bool):
    """One pass of the network over a series: label maps, per-slice uncertainty, and the
    quantised probabilities when they are to be written (else None)."""
    from ctseg_helpers.io.probabilities import quantise  # noqa: PLC0415
    from ctseg_helpers.measure.uncertainty import slice_uncertainty  # noqa: PLC0415

    labels = np.empty(out.images.shape, dtype=np.uint8)
    proba = np.empty((*out.images.shape, segmenter.num_classes), dtype=np.uint8) if keep_proba else None
    frames = []
    groups = segmenter.predict_groups(out.images, pixel_spacing_mm=out.pixel_spacing_mm, progress=progress, views=True)
    for group in groups:
        where = slice(group.start, group.start + len(group.labels))
        labels[where] = group.labels
        if proba is not None:
            proba[where] = quantise(group.proba)
        frames.append(slice_uncertainty(group.proba, group.labels, disagreement=group.disagreement))
    score = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"uncertainty_entropy": []})
    return labels, score, proba


def _join_uncertainty(areas: pd.DataFrame, scores: pd.DataFrame, files: Sequence[Path]) -> pd.DataFrame:
    """The area table with the per-slice uncertainty columns; the summary rows (mean, std) left NaN.

    ``scores`` has one row per slice of ``files``, in order; rows of ``areas`` are matched by
    file (the table keeps file names only, which may repeat across series, so in order).
    """
    from ctseg_helpers.measure.area import slice_rows  # noqa: PLC0415

    rows = list(slice_rows(areas).index)
    names = [Path(f).name for f in files]
    if len(rows) != len(scores) or list(areas.loc[rows, "file"]) != names:
        raise RuntimeError("the area table's slices are not those segmented")  # ctseg's own mistake, never a user's
    areas = areas.copy()
    for column in scores.columns:
        areas[column] = np.nan
        areas.loc[rows, column] = scores[column].to_numpy(dtype=np.float64)
    return areas


def _write_probabilities(
    path: Path,
    outputs: Sequence[SeriesOutput],
    all_series,
    probas: Sequence[np.ndarray],
    names: Sequence[str],
    stems: Sequence[str],
) -> Path:
    """``probabilities.h5``: one dataset per series (``series_<number>``, ``series`` when picked by UID)."""
    from ctseg_helpers.io.probabilities import ProbabilityMaps, write_probabilities  # noqa: PLC0415

    stems = iter(stems)
    maps = []
    for out, series, proba in zip(outputs, all_series, probas, strict=True):
        maps.append(
            ProbabilityMaps(
                name=f"series_{out.number}" if out.number is not None else "series",
                proba=proba,
                class_names=("background", *names),
                files=[f.name for f in out.files],
                stems=[next(stems) for _ in out.files],
                pixel_spacing_mm=out.pixel_spacing_mm,
                positions_mm=np.asarray(series.positions_mm, dtype=np.float64),
                series_uid=out.series_uid or "",
                series_description=out.series_description or "",
            )
        )
    return _write_recorded(path, partial(write_probabilities, series=maps))


def _check_dicom_seg_allowed(include_patient_id: bool) -> None:
    """DICOM-SEG is written only when identifiers may be, and highdicom is there (before any work)."""
    if not include_patient_id:
        raise CtsegSettingsError(
            "dicom_seg (--dicom-seg): a DICOM-SEG carries the patient's name and ID, copied from the scan so "
            "that PACS and viewers file it with its study, but include_patient_id is off (outputs carry no "
            "patient identifiers unless asked); set include_patient_id=True (--include-patient-id) to write "
            "it, or write NIfTI instead (nifti=True, --nifti), which carries none"
        )
    from ctseg_helpers.io.dicom_seg import require_highdicom  # noqa: PLC0415

    require_highdicom()


def _series_nifti_writer(out: SeriesOutput, series, where: str, **options):
    """``write_series_nifti`` bound to the series' geometry: call it with (path, labels=...)."""
    from ctseg_helpers.io.nifti import write_series_nifti  # noqa: PLC0415

    return partial(
        write_series_nifti,
        image_positions_mm=series.image_positions_mm,
        positions_mm=series.positions_mm,
        orientation=series.orientation,
        pixel_spacing_mm=out.pixel_spacing_mm,
        slice_thickness_mm=series.slice_thickness_mm,
        trigger_times_ms=series.trigger_times_ms,
        source=where,
        **options,
    )


def _write_probability_nifti(
    run_dir: Path, out: SeriesOutput, series, proba: np.ndarray, names: Sequence[str], several: bool, where: str
) -> None:
    """One NIfTI volume per ROI of the series' quantised probabilities, or a note saying why there is none."""
    write = _series_nifti_writer(out, series, where, probability=True)
    for k, file_name in enumerate(_probability_nifti_names(out.number, names, several), start=1):
        try:
            out.probability_nifti_paths.append(
                _write_recorded(run_dir / file_name, partial(write, labels=proba[..., k]))
            )
        except CtsegDataError as exc:
            out.output_notes.append(f"no probability NIfTI for {exc}")
            return


def _write_nifti(path: Path, out: SeriesOutput, series, where: str) -> None:
    """The series' NIfTI label volume, or a note saying why there is none."""
    try:
        out.nifti_path = _write_recorded(path, partial(_series_nifti_writer(out, series, where), labels=out.labels))
    except CtsegDataError as exc:
        out.output_notes.append(f"no NIfTI for {exc}")


def _write_dicom_seg(
    run_dir: Path, out: SeriesOutput, series, names: Sequence[str], model_path: Path, several: bool, where: str
) -> None:
    """The series' DICOM-SEG object(s), one per phase of a cine series, or a note saying why not."""
    from pydicom.uid import generate_uid  # noqa: PLC0415

    from ctseg_helpers.io.dicom_seg import phase_indices, write_dicom_seg  # noqa: PLC0415
    from ctseg_helpers.show.colors import label_color  # noqa: PLC0415

    phases = phase_indices(series.positions_mm)
    seg_uid = generate_uid()
    description = f"ctseg {out.series_description}" if out.series_description else "ctseg segmentation"
    for phase, indices in enumerate(phases, start=1):
        if len(phases) == 1:
            name = SERIES_DICOM_SEG.format(number=out.number) if several else DICOM_SEG
        else:
            name = (
                SERIES_PHASE_DICOM_SEG.format(number=out.number, phase=phase)
                if several
                else PHASE_DICOM_SEG.format(phase=phase)
            )
        try:
            path = _write_recorded(
                run_dir / name,
                partial(
                    write_dicom_seg,
                    labels=out.labels[indices],
                    source_files=[out.files[i] for i in indices],
                    label_names=names,
                    sop_instance_uids=[series.sop_instance_uids[i] for i in indices]
                    if series.sop_instance_uids
                    else None,
                    series_instance_uid=seg_uid,
                    instance_number=phase,
                    series_description=description,
                    software_version=_version(),
                    model_name=model_path.name,
                    colors_rgb=[label_color(n) for n in range(1, len(names) + 1)],
                    source=where if len(phases) == 1 else f"{where} phase {phase}",
                ),
            )
        except CtsegDataError as exc:
            reason = str(exc)
            out.output_notes.append(
                f"no DICOM-SEG for {reason}" if reason.startswith(where) else f"no DICOM-SEG for {where}: {reason}"
            )
            return
        out.dicom_seg_paths.append(path)


def _stack(arrays: list[np.ndarray]):
    """The (K, M, N) array of one series; for several, a list of the K slices (views, no copy)."""
    if len(arrays) == 1:
        return arrays[0]
    return [image for a in arrays for image in a]


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _version() -> str:
    from ctseg_helpers import __version__  # noqa: PLC0415

    return __version__


__all__ = [
    "DICOM_SEG",
    "NIFTI",
    "PROBABILITIES_H5",
    "SegmentationRun",
    "SeriesOutput",
    "check_settings",
    "make_run_dir",
    "output_stem",
    "output_stems",
    "previous_outputs",
    "run_segmentation",
    "write_label_png",
    "write_overlay_jpg",
    "write_table_csv",
]
