"""Corrected NIfTI label volumes back into ctseg's training layout (``ctseg import-labels``).

The human-in-the-loop round trip: ``ctseg segment --nifti`` writes ``segmentation.nii.gz``, a
user corrects it in 3D Slicer or ITK-SNAP and saves it as NIfTI, and :func:`import_labels`
turns it into the folder ``ctseg finetune`` and ``ctseg train`` read::

    OUT_DIR/dicoms/<stem>.dcm    a copy of each DICOM file of the series (byte for byte)
    OUT_DIR/labels/<stem>.png    its label map, 8-bit PNG, values 0..N, on the file's own pixel grid

``<stem>`` is the DICOM file's stem (:func:`~ctseg_helpers.io.naming.output_stems`), after an
optional ``prefix`` that keeps the slices of several scans apart in one folder. The label maps
are cut from the volume by geometry (:func:`~ctseg_helpers.io.nifti_labels.read_labels_on_series`),
so a volume saved with its axes reordered or flipped reads back exactly, and one on another
grid is refused.

Which slices: all of the series by default (slices without ROI teach the model where there is
none), or with ``slices_with_labels_only`` only those holding a label value above 0 (a few
corrected slices of a long scan).

Never replacing a user's file (:mod:`ctseg_helpers.io.written`): every file is checked before
any is written; an existing one is refused without ``overwrite``, and with it replaced only when
an earlier ctseg run wrote it and nobody changed it since. With ``overwrite``, the files an
earlier import wrote for slices of this series that are not written now (``slices_with_labels_only``
after a correction removed a slice's ROI) are removed too, so no stale pair stays behind. A file
of another name that would pair with a written one (``labels/<stem>.npy``) is refused. OUT_DIR
may not be (inside) the DICOM folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.dicom import read_dicom_series
from ctseg_helpers.io.naming import dicom_stem, label_stem, output_stems
from ctseg_helpers.io.nifti_labels import read_labels_on_series
from ctseg_helpers.io.written import (
    check_outside_inputs,
    check_replaceable,
    forget_written,
    rename_recorded,
    written_by_ctseg,
)
from ctseg_helpers.workflows.segment_folder import write_label_png

logger = logging.getLogger(__name__)

#: The two subfolders of a training folder (as :func:`ctseg_helpers.io.labels.find_pairs` reads them).
DICOMS_SUBDIR = "dicoms"
LABELS_SUBDIR = "labels"


@dataclass(frozen=True, eq=False)
class ImportedLabels:
    """What :func:`import_labels` wrote.

    Attributes
    ----------
    out_dir : Path
    series_uid : str
    n_series_slices : int
        Images in the series.
    dicom_paths, label_paths : list of Path
        The files written, pairwise, in the series' stacking order.
    roi_slices : dict of int to int
        Label value -> number of written slices that hold it.
    n_empty : int
        Written slices without any ROI.
    removed : list of Path
        Files of an earlier import removed (``overwrite``, slices not written this time).
    """

    out_dir: Path
    series_uid: str
    n_series_slices: int
    dicom_paths: list[Path]
    label_paths: list[Path]
    roi_slices: dict[int, int]
    n_empty: int
    removed: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        """One line: slices written, and on how many slices each ROI value was found."""
        rois = ", ".join(f"ROI {value} on {count}" for value, count in self.roi_slices.items()) or "no ROI"
        removed = f"; {len(self.removed)} file(s) of an earlier import removed" if self.removed else ""
        return (
            f"{len(self.label_paths)} of {self.n_series_slices} slice(s) -> {self.out_dir} "
            f"({DICOMS_SUBDIR}/, {LABELS_SUBDIR}/): {rois}, {self.n_empty} without ROI{removed}"
        )

    def __str__(self) -> str:
        return self.summary()


def _check_prefix(prefix: str) -> str:
    if prefix and (prefix.startswith(".") or any(c in prefix for c in '/\\:*?"<>|') or prefix != prefix.strip()):
        raise CtsegSettingsError(
            f"prefix {prefix!r} cannot start a file name: use letters, digits, '-' and '_' "
            "(no path separator, no leading dot or space)"
        )
    return prefix


def _same_stem_files(folder: Path, stems: set[str], stem_of, own_name) -> list[Path]:
    """Files of ``folder`` whose stem is one of ``stems`` under another name than ctseg writes."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        stem = stem_of(path)
        if stem in stems and path.name != own_name(stem) and not path.name.startswith("."):
            found.append(path)
    return found


def _put_in_place(path: Path, replacing: bool, write) -> Path:
    """Write ``path`` through ``write(partial_path)`` beside it, then rename it into place, recorded."""
    partial = path.with_name(f".{os.getpid()}.{path.name}")
    try:
        write(partial)
        if replacing:
            path.unlink()
        return rename_recorded(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def import_labels(
    label_path: str | Path,
    dicom_dir: str | Path,
    out_dir: str | Path,
    *,
    series_uid: str | None = None,
    slices_with_labels_only: bool = False,
    num_labels: int | None = None,
    prefix: str = "",
    overwrite: bool = False,
) -> ImportedLabels:
    """Write the DICOM files of a series and their label maps from a NIfTI volume as a training folder.

    Parameters
    ----------
    label_path : path-like
        The corrected NIfTI label volume (3D, or 4D for a cine series), on the scan's grid.
    dicom_dir : path-like
        The folder of the DICOM series the volume was drawn on.
    out_dir : path-like
        The training folder to write ``dicoms/`` and ``labels/`` into (created if needed).
    series_uid : str, optional
        The series, when ``dicom_dir`` holds several.
    slices_with_labels_only : bool
        Write only the slices holding a label value above 0 (default: every slice).
    num_labels : int, optional
        Number of ROIs: larger label values are refused.
    prefix : str
        Put before every file stem (``p02_IM_0001``), to add several scans to one folder.
    overwrite : bool
        Replace (and remove, see the module documentation) files an earlier ctseg run wrote.

    Returns
    -------
    ImportedLabels

    Raises
    ------
    CtsegDataError
        Anything :func:`~ctseg_helpers.io.dicom.read_dicom_series` or
        :func:`~ctseg_helpers.io.nifti_labels.read_labels_on_series` refuse; no slice holding a
        label with ``slices_with_labels_only``.
    CtsegSettingsError
        ``out_dir`` is (inside) ``dicom_dir``; a ``prefix`` that cannot start a file name; an
        output file exists (without ``overwrite``, or not ctseg's own); a file of another name
        in ``out_dir`` would pair with a written one.
    """
    label_path, dicom_dir, out_dir = Path(label_path), Path(dicom_dir), Path(out_dir)
    prefix = _check_prefix(prefix)
    check_outside_inputs(out_dir, {"DICOM": dicom_dir})
    series = read_dicom_series(dicom_dir, series_uid)
    labels = read_labels_on_series(label_path, series, num_labels=num_labels)
    stems = [prefix + stem for stem in output_stems(series.files)]
    has_roi = labels.reshape(len(labels), -1).max(axis=1) > 0
    keep = np.flatnonzero(has_roi) if slices_with_labels_only else np.arange(len(labels))
    if not keep.size:
        raise CtsegDataError(
            f"{label_path}: no slice of the series in {dicom_dir} holds a label (all voxels under it are 0); "
            "check that this is the corrected volume, or leave out --slices-with-labels-only"
        )
    dicoms_dir, labels_dir = out_dir / DICOMS_SUBDIR, out_dir / LABELS_SUBDIR
    dicom_paths = [dicoms_dir / f"{stems[k]}.dcm" for k in keep]
    label_paths = [labels_dir / f"{stems[k]}.png" for k in keep]
    # everything checked before anything is written
    kept = {stems[k] for k in keep}
    clashes = _same_stem_files(dicoms_dir, kept, dicom_stem, lambda s: f"{s}.dcm") + _same_stem_files(
        labels_dir, kept, label_stem, lambda s: f"{s}.png"
    )
    if clashes:
        stem = dicom_stem(clashes[0]) if clashes[0].parent == dicoms_dir else label_stem(clashes[0])
        raise CtsegSettingsError(
            f"{clashes[0]}: would pair with slice {stem} written by this import ({len(clashes)} such file(s) in "
            f"{out_dir}); move them away, or give --prefix (or another output folder) to keep this scan's slices apart"
        )
    replacing = {
        path
        for path in dicom_paths + label_paths
        if check_replaceable(
            path,
            overwrite,
            what_to_do="pass --overwrite to replace an earlier import of this scan, or give --prefix to add "
            "this scan's slices beside those there",
            instead="choose another output folder or --prefix",
        )
    }
    stale = []
    if overwrite:  # an earlier import's pairs of slices not written now: removed when both files are ctseg's
        for stem in (s for s in stems if s not in kept):
            pair = [p for p in (dicoms_dir / f"{stem}.dcm", labels_dir / f"{stem}.png") if os.path.lexists(p)]
            if all(written_by_ctseg(p) for p in pair):
                stale.extend(pair)
            else:
                logger.warning(
                    "%s: slice %s is not imported this time, but its files there were not written by ctseg "
                    "(or changed since), so they stay; remove them if they are not meant for training",
                    out_dir,
                    stem,
                )
    dicoms_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    for k, dicom_path, png_path in zip(keep, dicom_paths, label_paths, strict=True):
        _put_in_place(dicom_path, dicom_path in replacing, lambda p, k=k: shutil.copyfile(series.files[k], p))
        _put_in_place(png_path, png_path in replacing, lambda p, k=k: write_label_png(p, labels[k]))
    for path in stale:
        path.unlink()
    forget_written(*stale)
    counts = Counter(int(v) for k in keep for v in np.unique(labels[k]) if v > 0)
    return ImportedLabels(
        out_dir=out_dir,
        series_uid=series.series_uid,
        n_series_slices=len(labels),
        dicom_paths=dicom_paths,
        label_paths=label_paths,
        roi_slices=dict(sorted(counts.items())),
        n_empty=int((~has_roi[keep]).sum()),
        removed=stale,
    )


__all__ = ["DICOMS_SUBDIR", "LABELS_SUBDIR", "ImportedLabels", "import_labels"]
