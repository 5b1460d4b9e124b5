"""Evaluate a folder of predicted label maps against manual ones: read the folders, write the results.

Layout
------
A scan is a folder of DICOM files (one series); predicted and manual label maps live in other
folders, one file per DICOM slice with the same file stem (``<stem>.dcm`` <-> ``<stem>.png``,
:mod:`ctseg_helpers.io.naming`), as PNG or NPY (also TIFF/JPEG; see :mod:`ctseg_helpers.io.labels`).
A segmentation run writes its predictions to ``<run folder>/labels/<dicom stem>.png``.

:func:`load_case` / :func:`load_cases` read a scan and its label maps into
:class:`~ctseg_helpers.measure.evaluation.Case` objects; the metrics, summaries and area
agreement are computed from those arrays by :mod:`ctseg_helpers.measure.evaluation` (its
docstring describes the tables); :func:`evaluate_folders` does both, which is what ``ctseg
evaluate`` runs, and :func:`write_evaluation` saves the tables and the Bland–Altman figure
(:data:`~ctseg_helpers.measure.evaluation.OUTPUT_FILES`).

Probability maps (``probabilities=``, the ``probabilities.h5`` of ``ctseg segment
--probabilities``, :mod:`ctseg_helpers.io.probabilities`) are paired with the slices by the
same file stems, stored in the file for each slice; the evaluation then also has the ROC AUC
and calibration tables (``roc_auc.csv``, ``calibration.csv``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.label_names import check_label_names
from ctseg_helpers.io.labels import load_label_values, read_named_label
from ctseg_helpers.io.naming import dicom_stem, find_label_files
from ctseg_helpers.measure.evaluation import OUTPUT_FILES, Case, Evaluation, evaluate_cases

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- finding files


def parse_label_names(labels: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    """ROI names from ``"a,b"`` or a list; None stays None (names are then inferred).

    Raises
    ------
    CtsegDataError
        If a name is empty or repeated.
    """
    if labels is None:
        return None
    names = [n.strip() for n in labels.split(",")] if isinstance(labels, str) else [str(n).strip() for n in labels]
    if not names or any(not n for n in names):
        raise CtsegDataError(f"ROI names must not be empty, got {labels!r}; give them as 'name1,name2'")
    if len(set(names)) != len(names):
        raise CtsegDataError(f"ROI names must be distinct, got {labels!r}")
    return tuple(names)


def _infer_num_labels(folders: list[dict[str, Path]]) -> int:
    top = 0
    for files in folders:
        for path in files.values():
            values = load_label_values(path)
            top = max(top, int(values.max()) if values.size else 0)
    return max(top, 1)


def _stack_labels(files: dict[str, Path], stems: list[str], shape, names: tuple[str, ...], what: str):
    stack = np.zeros((len(stems), *shape), dtype=np.uint8)
    present = np.zeros(len(stems), dtype=bool)
    for index, stem in enumerate(stems):
        path = files.get(stem)
        if path is None:
            continue
        labels = read_named_label(path, names)
        if labels.shape != tuple(shape):
            raise CtsegDataError(
                f"{path}: {what} label map is {labels.shape[0]}x{labels.shape[1]} but its DICOM slice is "
                f"{shape[0]}x{shape[1]}; label maps must have the size of their slice"
            )
        stack[index] = labels
        present[index] = True
    return stack, present


def _label_folders(prediction_dir, truth_dir) -> dict[str, dict[str, Path]]:
    folders = {}
    for what, folder in (("predicted", prediction_dir), ("manual", truth_dir)):
        if folder is not None:
            folders[what] = find_label_files(folder)
    return folders


def _names(label_names, folders) -> tuple[str, ...]:
    names = parse_label_names(label_names)
    if names is not None:
        names = check_label_names(names)
    else:
        num_labels = _infer_num_labels(list(folders.values())) if folders else 1
        names = tuple(f"ROI {i}" for i in range(1, num_labels + 1))
    return names


def _check_matches(folders, stems: set[str], dicom_dir) -> list[Path]:
    """Raise when a label folder matches no DICOM stem; return the unmatched label files."""
    for what, files in folders.items():
        if not stems & set(files):
            folder = next(iter(files.values())).parent
            raise CtsegDataError(
                f"{folder}: none of the {what} label files is named like a DICOM file of {dicom_dir} "
                f"(e.g. {sorted(stems)[0]}.png); label maps must have the same file stem as their "
                "DICOM slice"
            )
    unmatched = [p for files in folders.values() for s, p in files.items() if s not in stems]
    if unmatched:
        logger.warning(
            "%d label file(s) match no DICOM file of %s and are left out: %s",
            len(unmatched),
            dicom_dir,
            ", ".join(p.name for p in unmatched[:10]),
        )
    return unmatched


def _probability_index(path) -> dict[str, tuple]:
    """Stem -> (ProbabilityMaps, slice index) of every slice in a ``probabilities.h5``."""
    from ctseg_helpers.io.probabilities import read_probabilities  # noqa: PLC0415

    index = {}
    for maps in read_probabilities(path, quantised=True):
        for k, stem in enumerate(maps.stems):
            index[stem] = (maps, k)
    return index


def _attach_probabilities(case: Case, index: dict[str, tuple], path: Path) -> None:
    """Fill ``case.probabilities`` from the slices of ``index`` whose stem is one of the case's."""
    k, rows, cols = case.series.images.shape
    n_classes = len(case.label_names) + 1
    proba = np.zeros((k, rows, cols, n_classes), dtype=np.uint8)
    present = np.zeros(k, dtype=bool)
    for i, stem in enumerate(case.stems):
        if stem not in index:
            continue
        maps, j = index[stem]
        if len(maps.class_names) != n_classes:
            raise CtsegDataError(
                f"{path}: {maps.name} holds {len(maps.class_names)} classes {list(maps.class_names)} but the label "
                f"maps have {n_classes - 1} ROI(s) {list(case.label_names)} plus background; give the "
                "probabilities of the run whose label maps are evaluated, or the matching --labels"
            )
        if maps.proba.shape[1:3] != (rows, cols):
            raise CtsegDataError(
                f"{path}: the probabilities of {stem} are {maps.proba.shape[1]}x{maps.proba.shape[2]} but its DICOM "
                f"slice is {rows}x{cols}; give the probabilities.h5 of a run on this DICOM folder"
            )
        proba[i] = maps.proba[j]
        present[i] = True
    case.probabilities = proba
    case.has_probabilities = present


def _with_probabilities(cases: list[Case], probabilities, dicom_dir) -> list[Case]:
    """Attach the probability maps of a ``probabilities.h5`` to the cases (None: nothing to do)."""
    if probabilities is None:
        return cases
    path = Path(probabilities)
    index = _probability_index(path)
    for case in cases:
        _attach_probabilities(case, index, path)
    if not any(c.has_probabilities.any() for c in cases):
        example = next(iter(index), "(the file holds no slice)")
        raise CtsegDataError(
            f"{path}: none of its {len(index)} probability maps belongs to a slice of {dicom_dir} (slices are "
            f"paired by file stem, e.g. {example}); give the probabilities.h5 of the run that segmented this folder"
        )
    return cases


def _build_case(series, folders, names, unmatched) -> Case:
    stems = [dicom_stem(p) for p in series.files]
    shape = series.images.shape[1:]
    prediction = truth = None
    has_prediction = has_truth = np.zeros(len(stems), dtype=bool)
    if "predicted" in folders:
        prediction, has_prediction = _stack_labels(folders["predicted"], stems, shape, names, "predicted")
    if "manual" in folders:
        truth, has_truth = _stack_labels(folders["manual"], stems, shape, names, "manual")
    truth_files = {stem: folders["manual"][stem] for stem in stems if stem in folders.get("manual", {})}
    return Case(
        series=series,
        stems=stems,
        label_names=names,
        prediction=prediction,
        truth=truth,
        has_prediction=has_prediction,
        has_truth=has_truth,
        unmatched=unmatched,
        truth_files=truth_files,
    )


def load_case(
    dicom_dir: str | Path,
    prediction_dir: str | Path | None = None,
    truth_dir: str | Path | None = None,
    label_names=None,
    series_uid: str | None = None,
    probabilities: str | Path | None = None,
) -> Case:
    """Read a scan (one series) and the label maps that belong to its slices.

    Parameters
    ----------
    dicom_dir : path-like
        Folder holding the DICOM series.
    prediction_dir, truth_dir : path-like or None
        Folders of predicted and manual label maps named like the DICOM files; either may be
        None. Slices without a file are allowed (see ``Case.has_truth``); label files without a
        DICOM slice are left out with a warning.
    label_names : str ("a,b"), sequence of str or None
        ROI names, label 1 first; a first name ``background`` is dropped
        (:func:`ctseg_helpers.io.label_names.check_label_names`). None: as many ROIs as the
        largest label value found, named ``ROI 1``, ``ROI 2`` ...
    series_uid : str, optional
        Series to read when the folder holds several.
    probabilities : path-like, optional
        A run's ``probabilities.h5``; its maps are paired with the slices by file stem
        (``Case.probabilities``).

    Returns
    -------
    Case

    Raises
    ------
    CtsegDataError
        As :func:`ctseg_helpers.io.dicom.read_dicom_series` (several series and no
        ``series_uid`` included) and :func:`ctseg_helpers.io.labels.read_label`; if a label
        folder is missing or empty, a label map's size differs from its slice, or no label file
        matches a DICOM file; if the probability file cannot be read, holds another number of
        classes or other slice sizes, or none of its maps belongs to a slice of the series.
    """
    from ctseg_helpers.io.dicom import read_dicom_series  # noqa: PLC0415

    series = read_dicom_series(dicom_dir, series_uid)
    folders = _label_folders(prediction_dir, truth_dir)
    names = _names(label_names, folders)
    unmatched = _check_matches(folders, {dicom_stem(p) for p in series.files}, dicom_dir)
    case = _build_case(series, folders, names, unmatched)
    return _with_probabilities([case], probabilities, dicom_dir)[0]


def load_cases(
    dicom_dir: str | Path,
    prediction_dir: str | Path | None = None,
    truth_dir: str | Path | None = None,
    label_names=None,
    probabilities: str | Path | None = None,
) -> list[Case]:
    """Like :func:`load_case`, for every series of the folder that has label maps.

    A test folder often holds slices of several patients (one series each); each series becomes
    one :class:`Case`, so volumes and spacings are never mixed. Series without any label file are
    skipped (logged).

    Raises
    ------
    CtsegDataError
        As :func:`load_case`.
    """
    from ctseg_helpers.io.dicom import read_dicom_series, scan_dicom_folder  # noqa: PLC0415

    scan = scan_dicom_folder(dicom_dir)
    folders = _label_folders(prediction_dir, truth_dir)
    names = _names(label_names, folders)
    all_stems = {dicom_stem(p) for info in scan.series for p in info.files}
    if not all_stems:
        raise CtsegDataError(f"{dicom_dir}: no DICOM images in the folder; select the folder of the scan")
    unmatched = _check_matches(folders, all_stems, dicom_dir)
    labelled = set().union(*(set(files) for files in folders.values())) if folders else all_stems
    cases = []
    for info in scan.series:
        if not {dicom_stem(p) for p in info.files} & labelled:
            logger.info("series %s (%d images) has no label maps; skipped", info.series_uid, info.n_images)
            continue
        series = read_dicom_series(dicom_dir, info.series_uid)
        cases.append(_build_case(series, folders, names, unmatched))
    return _with_probabilities(cases, probabilities, dicom_dir)


# --------------------------------------------------------------------------- whole folders


def evaluate_folders(
    prediction_dir: str | Path,
    truth_dir: str | Path,
    dicom_dir: str | Path,
    label_names=None,
    tolerance_mm: float = 2.0,
    progress: bool = False,
    probabilities: str | Path | None = None,
) -> Evaluation:
    """:func:`load_cases` then :func:`evaluate_cases`: what ``ctseg evaluate`` runs.

    Every series of ``dicom_dir`` with label maps is evaluated (a test folder may hold several
    patients); slices are paired by file stem across the three folders. With
    ``probabilities`` (a run's ``probabilities.h5``, paired by stem as well) the evaluation
    also has ``roc_auc`` and ``calibration``
    (:func:`~ctseg_helpers.measure.evaluation.probability_metrics`).

    Raises
    ------
    CtsegDataError
        As :func:`load_cases` and :func:`evaluate_cases`.
    """
    cases = load_cases(dicom_dir, prediction_dir, truth_dir, label_names, probabilities)
    return evaluate_cases(cases, tolerance_mm=tolerance_mm, progress=progress)


def write_evaluation(evaluation: Evaluation, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Write the evaluation's tables and its Bland–Altman figure into a folder.

    Files: ``metrics.csv``, ``summary.csv``, ``agreement.csv`` (when any ROI has 2 or more
    slices), ``volume_metrics.csv`` (when the slices form a volume), ``roc_auc.csv`` and
    ``calibration.csv`` (with probability maps) and ``bland_altman.png``.

    Parameters
    ----------
    evaluation : Evaluation
    out_dir : path-like
        Created if needed.
    overwrite : bool
        Replace the files of an earlier evaluation that ctseg wrote and nobody changed since
        (see :mod:`ctseg_helpers.io.written`); such a file this evaluation does not write
        (e.g. ``volume_metrics.csv``) is removed, so the folder holds one evaluation. Files
        ctseg did not write, or changed, are never replaced or removed. By default existing
        files are never replaced.

    Returns
    -------
    list of Path
        The files written (recorded as written by ctseg).

    Raises
    ------
    CtsegDataError
        If one of the files exists and ``overwrite`` is False, or with ``overwrite`` one of
        them was not written by ctseg or was changed since (nothing is written then), or
        ``out_dir`` is a file.
    """
    from ctseg_helpers.io.written import forget_written, written_by_ctseg  # noqa: PLC0415
    from ctseg_helpers.show.plots import bland_altman_figure, save_outputs  # noqa: PLC0415 - imports matplotlib

    figure = bland_altman_figure(evaluation.metrics, label_names=evaluation.label_names)
    written = save_outputs(
        out_dir, figures={OUTPUT_FILES["bland_altman"]: figure}, tables=evaluation.tables(), overwrite=overwrite
    )
    if overwrite:
        stale = [
            Path(out_dir) / name
            for name in OUTPUT_FILES.values()
            if Path(out_dir) / name not in written and written_by_ctseg(Path(out_dir) / name)
        ]
        for path in stale:
            path.unlink()
            logger.info("%s: removed, a file of the earlier evaluation that this one does not write", path)
        forget_written(*stale)
    logger.info("evaluation written to %s", out_dir)
    return written


def slices_to_check_in_run(areas_csv: str | Path, label_names, n: int = 5, *, missing_ok: bool = False, **kwargs):
    """The ``n`` slices of a segmentation run most worth checking, from its ``areas.csv``.

    For a run folder on disk (e.g. in ``visualize.ipynb``); a :class:`SegmentationRun` in
    memory has :meth:`~ctseg_helpers.workflows.segment_folder.SegmentationRun.slices_to_check`.
    Ranks as :func:`ctseg_helpers.measure.uncertainty.slices_to_check` (keyword arguments passed
    on); the ``file`` column names the DICOM file of each slice.

    Parameters
    ----------
    areas_csv : path-like
        A run's ``areas.csv``, or the run folder holding it.
    label_names : str ("a,b") or sequence of str
        The ROI names, label 1 first (the area columns).
    missing_ok : bool
        Return an empty table (and log why) when there is no ``areas.csv``: label maps that no
        ctseg run wrote (a manual segmentation) have no uncertainty to rank by.

    Raises
    ------
    CtsegDataError
        If the file is missing (unless ``missing_ok``) or is not an area table of these ROIs.
    """
    import pandas as pd  # noqa: PLC0415

    from ctseg_helpers.errors import CtsegSettingsError  # noqa: PLC0415
    from ctseg_helpers.measure.uncertainty import slices_to_check  # noqa: PLC0415

    path = Path(areas_csv)
    path = path / "areas.csv" if path.is_dir() else path
    if not path.is_file() and missing_ok:
        logger.info("%s: no area table of a ctseg run there, so no slices ranked to check", path)
        return pd.DataFrame(columns=["file", "slice_index", "score", "jumps", "reasons"])
    if not path.is_file():
        raise CtsegDataError(
            f"{path}: no area table there; give the areas.csv of a 'ctseg segment' run (or its folder)"
        )
    names = check_label_names(parse_label_names(label_names) or ())
    table = pd.read_csv(path, index_col=0, keep_default_na=False, na_values=[""])
    try:
        return slices_to_check(table, names, n, **kwargs)
    except CtsegSettingsError as exc:
        raise CtsegDataError(f"{path}: {exc}") from exc


__all__ = [
    "find_label_files",
    "parse_label_names",
    "load_case",
    "load_cases",
    "evaluate_folders",
    "write_evaluation",
    "slices_to_check_in_run",
]
