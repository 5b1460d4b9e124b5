"""Segment 3D volumes larger than memory with a 2D model, along one or several axes.

:func:`segment_volume` reads the input volume (an HDF5 dataset or a TIFF series, see
:class:`~ctseg_helpers.io.datafile.DataFile`) in slabs of consecutive slices along each
requested axis, segments every slab's 2D slices with a
:class:`~ctseg_helpers.segment.segmenter.Segmenter` (:func:`~ctseg_helpers.segment.blocks.segment_block`,
the per-chunk function that the Dask backend runs too) and writes label volumes to an HDF5 output.
The array operations (per-chunk segmentation, combining axes, rotation) are in
:mod:`ctseg_helpers.segment.blocks`; this module reads, writes and resumes.

Output file layout
------------------
``labels``
    uint8 ``(z, y, x)``, the input's full shape: the final labels. Voxels outside ``crop`` are
    0 (those chunks are never written and take no disk space).
``axis{a}/labels``, ``axis{a}/proba``
    With several axes or a rotation: the labels of the pass along axis ``a`` and (several
    axes) its class probabilities quantised to uint8 (``round(255 * p)``), in the working
    frame (the crop, rotated about Z when ``rotate_deg`` is set).
``progress/...``
    One uint8 flag per slice of each pass (1 = written); what makes a run resumable.
Root attributes ``ctseg_volume_settings`` (JSON of the settings that define the result) and
``complete`` (True when every pass has finished).

Replacing an output
-------------------
An existing output is resumed when its settings match, and refused otherwise. ``overwrite``
replaces it only when it is ctseg's own (:mod:`ctseg_helpers.io.written`): a finished output is
recorded in its folder's ``.ctseg-written.json`` when the run completes and is replaced only
while unchanged since; an unfinished one (an interrupted run, rewritten in place slab by slab so
no record can match it, and unrecorded) is recognised by its content, the
``ctseg_volume_settings`` attribute with ``complete`` False. Any other file at ``OUT`` (not
HDF5, another program's HDF5, one damaged beyond opening, a finished output changed afterwards)
is never replaced. The same holds for a leftover rotation side file (its dataset carries the
attribute ``ctseg_rotated_input``). A refused resume only reads the file, so it stays as it was.

NIfTI output
------------
With ``nifti_path`` (``--nifti OUT.nii.gz``) the final labels are also written as a NIfTI label
volume (uint8; gzip-compressed for ``.nii.gz``), once they are complete, also when the run was
complete already and is only confirmed (:func:`~ctseg_helpers.io.nifti.write_volume_nifti`:
NIfTI voxel ``(i, j, k)`` is ``labels[k, j, i]``). Its affine is the input dataset's
``affine_ras`` attribute (:mod:`ctseg_helpers.io.convert` records it for DICOM and NIfTI
sources), so the labels overlay the original scan in 3D Slicer or ITK-SNAP. An input with only
``spacing_mm`` gives a diagonal affine from the voxel size (``diag(x, y, z)`` spacing in the
NIfTI's order), with a warning: position and
orientation are unknown, so viewers place the labels at the origin, not on the original scan.
An input with neither (a TIFF source) is refused before any work, and so is a label volume
larger than ``max_gb`` (nibabel writes a NIfTI from memory, 1 byte per voxel). The file is
written under a hidden name beside its place and renamed when complete, and follows the rules
below (a file ctseg did not write is never replaced; ``overwrite`` removes ctseg's own one when
the run starts).

Combining axes
--------------
``combine="vote"``
    Majority vote of the per-axis labels. **Ties** (no class has more votes than every other
    class, e.g. two axes that disagree, or three axes with three different labels) go to the
    tied class with the highest summed probability over the axes; if the sums are equal too,
    to the lowest class number. (CTSegNet sends ties to background, which turns a two-axis
    vote into an intersection.)
``combine="mean"``
    The class with the highest mean probability over the axes (equal means: lowest class).

Probabilities are combined after quantisation to 1/255 steps, so a vote tie-break or a mean
between two classes closer than that is decided by the lower class number. Stitching within
one pass is done in float32 by the Segmenter.

Rotation about Z
----------------
With ``rotate_deg`` every axial (axis-0) plane of the cropped input is rotated by that angle
(bilinear, the plane enlarged to hold the whole rotated image, new corners filled with the
input's minimum) into a side file ``OUT.rotated-input.h5``; passes along axes 1 and 2 then cut
oblique slices through the original volume. The combined labels are rotated back (nearest
neighbour) into the input's frame, and the side file is deleted when the run completes.

Non-finite voxels
-----------------
NaN and +-Inf input voxels are replaced by the minimum finite value of the part segmented
(the crop), before rotation and normalisation, with one warning naming the file and the count;
an input with no finite voxel is refused. Finding that value costs one extra read of the crop,
done only when a slab holds a non-finite voxel. (The Dask backend's workers read the input
themselves and do not apply this rule.)

Memory and disk
---------------
``max_gb`` caps the working set of one slab: half of it for the slab's arrays (raw input,
labels and, when axes are combined, probabilities), half for the Segmenter, which is handed
as many slices at a time as fit (:func:`~ctseg_helpers.segment.blocks.segmenter_slices`).
TensorFlow and the model come on top, and so do HDF5's chunk caches (up to 64 MiB per open
dataset). Measured peak resident memory of the whole process with ``max_gb=1`` (stand-in
network, one axis) is 922-935 MiB for 1, 4 and 16 GB volumes (bench/bench_volume.py,
bench/RESULTS.md).

Before any work the free disk space is compared with the uncompressed size of everything
still to be written (an upper bound: compressed labels are usually far smaller);
:class:`~ctseg_helpers.errors.CtsegDataError` if it is short.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.datafile import (
    DataFile,
    create_dataset,
    fill_nonfinite,
    has_nonfinite,
    nonfinite_fill_value,
    nonfinite_stats,
    slab_thickness,
)
from ctseg_helpers.io.probabilities import quantise
from ctseg_helpers.io.written import check_replaceable, forget_written, record_written, rename_recorded
from ctseg_helpers.segment.blocks import (
    COMBINE_METHODS,
    argmax_uint8,
    combine_labels,
    rotate_planes,
    rotated_plane_shape,
    segment_block,
    segmenter_slices,
)

logger = logging.getLogger(__name__)

SETTINGS_ATTR = "ctseg_volume_settings"
#: Attribute of the rotation side file's dataset, marking it as ctseg's.
SIDE_FILE_ATTR = "ctseg_rotated_input"
_GB = 1e9
#: Share of ``max_gb`` for the slab arrays; the rest is for the segmenter's working set.
_SLAB_SHARE = 0.5
#: Endings of a NIfTI label volume name (``nifti_path``).
NIFTI_SUFFIXES = (".nii.gz", ".nii")


# ---------------------------------------------------------------------------- parsing helpers
def parse_axes(text) -> tuple[int, ...]:
    """Axes to slice along: ``"0,1,2"`` or a sequence of ints -> ``(0, 1, 2)``.

    Raises
    ------
    CtsegSettingsError
        If an axis is not 0, 1 or 2, appears twice, or none is given.
    """
    items = str(text).split(",") if isinstance(text, str) else list(text)
    try:
        axes = tuple(int(str(a).strip()) for a in items if str(a).strip() != "")
    except ValueError:
        axes = (-1,)
    if not axes or any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
        raise CtsegSettingsError(f"axes must be distinct values among 0, 1, 2 (e.g. 0,1,2), got {text!r}")
    return axes


def parse_crop(text) -> tuple[tuple[int | None, int | None], ...] | None:
    """Crop ``"z0:z1,y0:y1,x0:x1"`` (empty bounds allowed, e.g. ``":,100:400,:"``) -> bounds.

    Raises
    ------
    CtsegSettingsError
        If the text is not three ``start:stop`` ranges of integers.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        return tuple((None if a is None else int(a), None if b is None else int(b)) for a, b in text)
    parts = text.split(",")
    bounds = []
    for part in parts:
        ends = part.split(":")
        try:
            if len(ends) != 2:
                raise ValueError
            bounds.append(tuple(int(e) if e.strip() else None for e in ends))
        except ValueError:
            bounds = []
            break
    if len(parts) != 3 or len(bounds) != 3:
        raise CtsegSettingsError(
            f"crop must be three ranges 'z0:z1,y0:y1,x0:x1' (empty ends mean the whole axis), got {text!r}"
        )
    return tuple(bounds)


def resolve_crop(crop, shape) -> tuple[tuple[int, int], ...]:
    """Turn crop bounds (None = whole axis, negative = from the end) into ``(start, stop)`` per axis.

    Raises
    ------
    CtsegSettingsError
        If a range is empty or outside the volume.
    """
    if crop is None:
        return tuple((0, int(n)) for n in shape)
    if len(crop) != 3:
        raise CtsegSettingsError(f"crop needs one (start, stop) range per axis (3), got {crop!r}")
    out = []
    for axis, ((start, stop), n) in enumerate(zip(crop, shape, strict=True)):
        s = 0 if start is None else (start + n if start < 0 else start)
        e = n if stop is None else (stop + n if stop < 0 else stop)
        if not 0 <= s < e <= n:
            raise CtsegSettingsError(f"crop {start}:{stop} on axis {axis} is empty or outside the volume (length {n})")
        out.append((int(s), int(e)))
    return tuple(out)


# ---------------------------------------------------------------------------- the run
@dataclass
class VolumeResult:
    """What :func:`segment_volume` did.

    Attributes
    ----------
    out_path : Path
    labels_dataset : str
        Name of the final label dataset (``"labels"``).
    shape : tuple of 3 int
        Shape of the label volume (the input's shape).
    slabs_done : int
        Slabs segmented in this call.
    slices_skipped : int
        Slices found finished by an earlier, interrupted run and not redone.
    seconds : float
    complete : bool
    already_complete : bool
        The output was complete before this call (nothing was done).
    passes : list of int
        Axes segmented in this call.
    nifti_path : Path or None
        The NIfTI label volume written (``nifti_path``), None when not asked.
    nifti_placed : bool
        True when the NIfTI carries the input's position and orientation (``affine_ras``),
        False when only its voxel size (``spacing_mm``).
    """

    out_path: Path
    labels_dataset: str = "labels"
    shape: tuple = ()
    slabs_done: int = 0
    slices_skipped: int = 0
    seconds: float = 0.0
    complete: bool = False
    already_complete: bool = False
    passes: list = field(default_factory=list)
    nifti_path: Path | None = None
    nifti_placed: bool = False


class _Region:
    """A box of a DataFile, read in slabs (the crop of the input, or the rotated side file).

    NaN and +-Inf voxels are replaced by the box's minimum finite value: the first slab read
    that holds one starts a scan of the whole box, in slabs of at most ``scan_gb`` GB, for that
    value and the count, which is logged once (:func:`~ctseg_helpers.io.datafile.nonfinite_fill_value`).
    """

    def __init__(self, datafile: DataFile, bounds, scan_gb: float = 0.25):
        self.datafile = datafile
        self.bounds = tuple(bounds)
        self.shape = tuple(e - s for s, e in self.bounds)
        self.scan_gb = scan_gb
        self._fill = None

    def _read_raw(self, axis: int, start: int, stop: int) -> np.ndarray:
        block = [slice(s, e) for s, e in self.bounds]
        s0 = self.bounds[axis][0]
        block[axis] = slice(s0 + start, s0 + stop)
        return self.datafile.read_block(tuple(block))

    def read(self, axis: int, start: int, stop: int) -> np.ndarray:
        block = self._read_raw(axis, start, stop)
        if self._fill is None and has_nonfinite(block):
            self._fill = self._scan_nonfinite()
        return block if self._fill is None else fill_nonfinite(block, self._fill)

    def _scan_nonfinite(self) -> float:
        """Count the box's non-finite voxels and find its minimum finite value, slab by slab."""
        axis = int(np.argmax(self.shape))  # the smallest slices
        thickness = slab_thickness(self.shape, axis, self.datafile.dtype.itemsize + 1, self.scan_gb)
        count, low = 0, None
        for start in range(0, self.shape[axis], thickness):
            n, m = nonfinite_stats(self._read_raw(axis, start, min(start + thickness, self.shape[axis])))
            count += n
            if m is not None:
                low = m if low is None else min(low, m)
        return nonfinite_fill_value(self.datafile.path, count, math.prod(self.shape), low)


def slab_ranges_todo(done: np.ndarray, thickness: int) -> list[tuple[int, int]]:
    """Runs of unfinished slices (``done == 0``), cut into slabs of at most ``thickness``."""
    out = []
    n = len(done)
    i = 0
    while i < n:
        if done[i]:
            i += 1
            continue
        j = i
        while j < n and not done[j] and j - i < thickness:
            j += 1
        out.append((i, j))
        i = j
    return out


def _settings_record(
    *, in_path, dataset, in_shape, in_dtype, axes, crop, rotate_deg, combine, segmenter, model_id
) -> dict:
    return {
        "input": str(Path(in_path).resolve()),
        "dataset": dataset,
        "input_shape": list(in_shape),
        "input_dtype": str(in_dtype),
        "axes": list(axes),
        "crop": [list(b) for b in crop],
        "rotate_deg": float(rotate_deg),
        "combine": combine,
        "model": model_id,
        "segmenter": {
            k: getattr(segmenter, k, None) for k in ("input_shape", "num_classes", "mode", "overlap", "blend", "tta")
        },
        "normalization": _normalization_record(getattr(segmenter, "normalization", None)),
    }


def _normalization_record(norm) -> dict | None:
    """The segmenter's normalisation as plain JSON (None when inputs are used as they are)."""
    if norm is None:
        return None
    data = norm.to_dict()
    return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}


def _unfinished_run(path: Path) -> bool:
    """True when ``path`` is an HDF5 output of an unfinished segment_volume run."""
    import h5py  # noqa: PLC0415

    try:
        with h5py.File(path, "r") as h5:
            return SETTINGS_ATTR in h5.attrs and not bool(h5.attrs.get("complete", False))
    except (OSError, ValueError):
        return False


def _rotated_input(path: Path) -> bool:
    """True when ``path`` is a rotation side file written by segment_volume."""
    import h5py  # noqa: PLC0415

    try:
        with h5py.File(path, "r") as h5:
            return "data" in h5 and bool(h5["data"].attrs.get(SIDE_FILE_ATTR, False))
    except (OSError, ValueError):
        return False


def _check_replaceable_output(out_path: Path) -> bool:
    """With ``overwrite``: True if ``out_path`` exists and is ctseg's own; refused if it is not."""
    return check_replaceable(
        out_path, True, instead="choose another output name", own_file=_unfinished_run, error_type=CtsegDataError
    )


def _open_output(out_path: Path, record: dict, overwrite: bool):
    """Open (resume) or create the output; returns (h5py.File, resumed)."""
    import h5py  # noqa: PLC0415

    if overwrite and _check_replaceable_output(out_path):
        out_path.unlink()
        forget_written(out_path)
    if not out_path.exists():
        out_path.parent.mkdir(parents=True, exist_ok=True)
        forget_written(out_path)  # a new, unfinished output: recognised by its attributes until it is finished
        h5 = h5py.File(out_path, "w", rdcc_nbytes=64 * 2**20)
        h5.attrs[SETTINGS_ATTR] = json.dumps(record)
        h5.attrs["complete"] = False
        return h5, False
    if not h5py.is_hdf5(out_path):
        raise CtsegDataError(
            f"{out_path} exists and is not an HDF5 file; ctseg never replaces it: choose another output name"
        )
    try:  # read only: a file that is not resumed is left exactly as it is
        with h5py.File(out_path, "r") as h5:
            stored = h5.attrs.get(SETTINGS_ATTR)
            complete = bool(h5.attrs.get("complete", False))
    except OSError as exc:
        raise CtsegDataError(
            f"{out_path} exists but cannot be opened as HDF5 ({exc}); it may have been damaged when a run "
            "was killed while writing, but ctseg cannot tell that it wrote it, so it never replaces it: "
            "delete it yourself to start again, or choose another output name"
        ) from exc
    if stored is None:
        raise CtsegDataError(
            f"{out_path} exists and was not written by ctseg segment-volume; ctseg never replaces it: "
            "choose another output name"
        )
    stored = json.loads(stored)
    diff = sorted(k for k in set(stored) | set(record) if stored.get(k) != record.get(k))
    if diff:
        raise CtsegDataError(
            f"{out_path} holds a run with different settings ({', '.join(diff)}); it is not resumed. "
            "Choose another output name, or pass --overwrite to start again"
        )
    # a finished run is only read (it stays as recorded); an unfinished one is resumed
    return h5py.File(out_path, "r" if complete else "a", rdcc_nbytes=64 * 2**20), True


def _check_nifti_replaceable(nifti_path: Path, overwrite: bool, out_path: Path) -> bool:
    """True when ``nifti_path`` exists and ``overwrite`` may replace it; refused otherwise (as OUT.h5)."""
    return check_replaceable(
        nifti_path,
        overwrite,
        what_to_do=f"choose another NIfTI name, or pass --overwrite (overwrite=True), which starts {out_path.name} "
        "again too",
        instead="choose another NIfTI name",
        error_type=CtsegDataError,
    )


def _nifti_affine(source: DataFile, nifti_path: Path, max_gb: float) -> tuple[np.ndarray, bool]:
    """The ``(z, y, x)`` affine for the NIfTI of ``source``'s labels, and whether it places them in the scanner.

    Checked before any work: the input's ``affine_ras`` (placed), else its ``spacing_mm`` (a
    diagonal affine, with a warning), else refused; and the label volume must fit ``max_gb``.
    """
    import h5py  # noqa: PLC0415

    where = f"{source.path}" + (f" [{source.dataset}]" if source.backend == "hdf5" else "")
    attrs = {}
    if source.backend == "hdf5":
        with h5py.File(source.path, "r") as f:
            attrs = {
                key: f[source.dataset].attrs[key]
                for key in ("affine_ras", "spacing_mm")
                if key in f[source.dataset].attrs
            }
    nbytes = math.prod(source.shape)
    if nbytes > max_gb * _GB:
        raise CtsegSettingsError(
            f"{nifti_path}: the label volume ({nbytes / _GB:.2f} GB as uint8) is larger than the memory cap "
            f"of {max_gb:g} GB (max_gb, --max-gb), and a NIfTI is written from memory in one piece: raise "
            "--max-gb, use ctseg's HDF5 output, or crop the scan before converting it (--crop keeps its shape)"
        )
    if "affine_ras" in attrs:
        affine = np.asarray(attrs["affine_ras"], dtype=np.float64)
        if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise CtsegDataError(
                f"{where}: attribute affine_ras is not a 4 x 4 voxel-to-world matrix (shape {affine.shape}); "
                "convert the scan again with 'ctseg convert', or leave out --nifti"
            )
        return affine, True
    if "spacing_mm" in attrs:
        spacing = np.asarray(attrs["spacing_mm"], dtype=np.float64).ravel()
        if spacing.shape != (3,) or not (np.isfinite(spacing) & (spacing > 0)).all():
            raise CtsegDataError(
                f"{where}: attribute spacing_mm is not three positive voxel sizes in mm (got {spacing}); "
                "convert the scan again with 'ctseg convert', or leave out --nifti"
            )
        logger.warning(
            "%s: only the voxel size (spacing_mm) is known, not the scan's position and orientation (no "
            "affine_ras): %s gets a diagonal affine, and viewers will not overlay it on the original scan",
            where,
            nifti_path,
        )
        # diagonal in the NIfTI's (x, y, z) order: world x along the columns, z along the slices
        return np.diag([*spacing[::-1], 1.0])[:, [2, 1, 0, 3]], False
    raise CtsegSettingsError(
        f"{where}: the scan's voxel size and position are unknown (no affine_ras or spacing_mm attribute), so "
        "its labels cannot be written as NIfTI; convert the scan with 'ctseg convert' from its DICOM or NIfTI "
        "files (TIFF carries neither), or leave out --nifti"
    )


def _write_labels_nifti(labels, nifti_path: Path, affine: np.ndarray, overwrite: bool, out_path: Path) -> Path:
    """Write the HDF5 dataset ``labels`` to ``nifti_path`` under a hidden name, then rename it into place."""
    from ctseg_helpers.io.nifti import write_volume_nifti  # noqa: PLC0415

    replacing = _check_nifti_replaceable(nifti_path, overwrite, out_path)
    nifti_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in nifti_path.parent.glob(f".*.{nifti_path.name}"):  # left by a killed run
        if re.fullmatch(rf"\.\d+\.{re.escape(nifti_path.name)}", stale.name):
            stale.unlink()
    partial = nifti_path.with_name(f".{os.getpid()}.{nifti_path.name}")
    try:
        write_volume_nifti(partial, labels[...], affine)
        if replacing:
            forget_written(nifti_path)
            nifti_path.unlink()
        rename_recorded(partial, nifti_path)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("wrote %s", nifti_path)
    return nifti_path


def _check_free_disk(folder: Path, needed_bytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed_bytes > free:
        raise CtsegDataError(
            f"{folder}: not enough free disk for the output: up to {needed_bytes / _GB:.2f} GB may be written "
            f"(uncompressed size) and {free / _GB:.2f} GB are free. Free some space, write the output to "
            "another disk, crop the volume, or skip this check (check_disk=False / --no-disk-check)"
        )


def _progress(h5, name: str, length: int) -> object:
    key = f"progress/{name}"
    if key not in h5:
        h5.create_dataset(key, shape=(length,), dtype=np.uint8, fillvalue=0)
    return h5[key]


def segment_volume(
    segmenter,
    in_path: str | Path,
    out_path: str | Path,
    *,
    dataset: str | None = None,
    axes=(0,),
    max_gb: float = 1.0,
    crop=None,
    rotate_deg: float = 0.0,
    combine: str = "vote",
    overwrite: bool = False,
    model_id: str | None = None,
    compression: str | None = "gzip",
    chunk_mb: float = 1.0,
    check_disk: bool = True,
    progress: bool = True,
    dask_client=None,
    dask_halo_px: int = 0,
    dask_plane_chunks: tuple[int, int] | None = None,
    nifti_path: str | Path | None = None,
) -> VolumeResult:
    """Segment a 3D volume slab by slab along one or several axes, resumably.

    Parameters
    ----------
    segmenter : Segmenter
        Applied to the 2D slices of every slab (a :class:`~ctseg_helpers.workflows.dask_backend.SegmenterSpec`
        is accepted too when ``dask_client`` is given).
    in_path : str or Path
        HDF5 file (or TIFF series folder) holding the volume ``(z, y, x)``.
    out_path : str or Path
        HDF5 output (layout in the module docstring). An existing output is resumed when it
        was written by the same settings and model, and refused otherwise unless ``overwrite``.
    dataset : str, optional
        Input dataset name when the file holds several 3D datasets.
    axes : sequence of {0, 1, 2}
        Axes to slice along; several axes are combined with ``combine``.
    max_gb : float
        Memory cap in GB for one slab's working set (see the module docstring).
    crop : three (start, stop) pairs or "z0:z1,y0:y1,x0:x1", optional
        Part of the input to segment; the labels keep the input's shape (0 outside).
    rotate_deg : float
        Rotate about the Z axis (axis 0) before slicing.
    combine : {"vote", "mean"}
    overwrite : bool
        Replace an existing output instead of resuming it.
    model_id : str, optional
        Identifies the model in the recorded settings (the CLI uses the model file's SHA-256),
        so a run is never resumed with another model.
    compression : {"gzip", "lzf", None}
        Compression of the output datasets.
    chunk_mb : float
        Target chunk size of the output datasets in MiB.
    check_disk : bool
        Compare free disk space with the size still to be written before any work.
    progress : bool
        Show a progress bar over slabs.
    dask_client : dask.distributed.Client, optional
        Run the slab passes on a Dask cluster (:mod:`ctseg_helpers.workflows.dask_backend`).
    dask_halo_px, dask_plane_chunks
        With Dask: split slice planes into blocks of ``dask_plane_chunks`` pixels with a halo of
        ``dask_halo_px`` pixels of context on each side (default: whole planes, no halo).
    nifti_path : str or Path, optional
        Also write the final labels as a NIfTI label volume here (``.nii.gz`` or ``.nii``),
        placed with the input's ``affine_ras`` (see the module docstring).

    Returns
    -------
    VolumeResult

    Raises
    ------
    CtsegDataError
        If the input cannot be read or holds no finite voxel, the output exists and cannot be
        resumed, it is the input itself, or the disk is too full; with ``nifti_path``, if the
        NIfTI file exists (without ``overwrite``, or not ctseg's own) or the input's
        ``affine_ras``/``spacing_mm`` attribute is malformed.
    CtsegSettingsError
        For bad axes, crop, combine method or memory cap; with ``nifti_path``, for a name not
        ending in ``.nii.gz``/``.nii``, an input with neither ``affine_ras`` nor ``spacing_mm``,
        or a label volume larger than ``max_gb``.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    t0 = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    axes = parse_axes(axes)
    if combine not in COMBINE_METHODS:
        raise CtsegSettingsError(f"combine must be 'vote' or 'mean', got {combine!r}")
    if not max_gb > 0:
        raise CtsegSettingsError(f"max_gb must be a positive number of GB, got {max_gb}")
    if out_path.exists() and in_path.exists() and out_path.resolve() == in_path.resolve():
        raise CtsegDataError(f"{out_path}: the output cannot be the input file; choose another output name")
    if overwrite:  # refused before any work; replaced in _open_output
        _check_replaceable_output(out_path)
    if nifti_path is not None:
        nifti_path = Path(nifti_path)
        if not nifti_path.name.lower().endswith(NIFTI_SUFFIXES):
            raise CtsegSettingsError(f"{nifti_path}: the NIfTI output's name must end in .nii.gz or .nii")
        _check_nifti_replaceable(nifti_path, overwrite, out_path)
    rotate_deg = float(rotate_deg or 0.0)
    rotating = rotate_deg % 360.0 != 0.0
    n_classes = int(segmenter.num_classes)
    result = VolumeResult(out_path=out_path)
    side_path = out_path.with_name(out_path.name + ".rotated-input.h5")

    with DataFile.open(in_path, dataset) as source:
        bounds = resolve_crop(parse_crop(crop), source.shape)
        crop_shape = tuple(e - s for s, e in bounds)
        result.shape = source.shape
        if nifti_path is not None:  # the labels keep the input's shape (crop or not), so the input's affine
            nifti_affine, result.nifti_placed = _nifti_affine(source, nifti_path, max_gb)
        if rotating:
            plane = rotated_plane_shape(crop_shape[1:], rotate_deg)
            work_shape = (crop_shape[0], *plane)
        else:
            work_shape = crop_shape
        separate = len(axes) > 1 or rotating  # per-axis datasets, then a finishing pass
        record = _settings_record(
            in_path=in_path,
            dataset=source.dataset,
            in_shape=source.shape,
            in_dtype=source.dtype,
            axes=axes,
            crop=bounds,
            rotate_deg=rotate_deg,
            combine=combine,
            segmenter=segmenter,
            model_id=model_id,
        )
        if check_disk:
            existing = out_path.stat().st_size if out_path.exists() and not overwrite else 0
            work_voxels = math.prod(work_shape)
            needed = math.prod(crop_shape)  # final labels
            if nifti_path is not None:
                needed += math.prod(source.shape)  # the NIfTI, uncompressed at most
            if separate:
                needed += len(axes) * work_voxels * (1 + (n_classes if len(axes) > 1 else 0))
            if rotating:
                needed += work_voxels * source.dtype.itemsize
            folder = out_path.absolute().parent
            while not folder.exists():  # the output folder is created later
                folder = folder.parent
            _check_free_disk(folder, needed - existing)

        h5, resumed = _open_output(out_path, record, overwrite)
        try:
            if overwrite and nifti_path is not None and _check_nifti_replaceable(nifti_path, True, out_path):
                forget_written(nifti_path)  # ctseg's own, of an earlier run: not left beside the new one
                nifti_path.unlink()
            if resumed and h5.attrs.get("complete", False):
                logger.info("%s is complete already; nothing to do", out_path)
                result.complete = result.already_complete = True
                if nifti_path is not None:
                    result.nifti_path = _write_labels_nifti(h5["labels"], nifti_path, nifti_affine, overwrite, out_path)
                return result
            if resumed:
                logger.info("resuming the interrupted run in %s", out_path)
            out_opts = {"chunk_mb": chunk_mb, "compression": compression}
            if "labels" not in h5:
                create_dataset(h5, "labels", source.shape, np.uint8, **out_opts)
            labels_out = DataFile.from_h5py(h5["labels"])

            # ---- the working volume: the crop of the input, or its rotation in a side file
            region = _Region(source, bounds, scan_gb=max_gb * _SLAB_SHARE)
            side = None
            if rotating:
                side = _prepare_rotated(region, work_shape, rotate_deg, side_path, h5, compression, chunk_mb, progress)
                work = _Region(side, [(0, n) for n in work_shape])
            else:
                work = region
            try:
                align = source.chunk_shape
                # ---- one pass per axis
                for axis in axes:
                    keep_proba = len(axes) > 1
                    if separate:
                        group = h5.require_group(f"axis{axis}")
                        if "labels" not in group:
                            create_dataset(group, "labels", work_shape, np.uint8, **out_opts)
                        if keep_proba and "proba" not in group:
                            create_dataset(group, "proba", work_shape + (n_classes,), np.uint8, **out_opts)
                    done = _progress(h5, f"axis{axis}", work_shape[axis])
                    flags = done[:]
                    result.slices_skipped += int(flags.sum())
                    # half the cap for the slab arrays: raw slab and labels, and with probabilities
                    # kept float32 probabilities, one float32 temporary and the uint8 quantised copy;
                    # the other half for the segmenter, fed a bounded number of slices at a time
                    per_voxel = source.dtype.itemsize + 1 + (9 * n_classes if keep_proba else 0)
                    thickness = slab_thickness(
                        work_shape,
                        axis,
                        per_voxel,
                        max_gb * _SLAB_SHARE,
                        align[axis] if align and not rotating else None,
                    )
                    plane = tuple(n for a, n in enumerate(work_shape) if a != axis)
                    at_once = segmenter_slices(segmenter, plane, max_gb * (1 - _SLAB_SHARE), proba=keep_proba)
                    todo = slab_ranges_todo(flags, thickness)
                    logger.info(
                        "axis %d: %d slabs of up to %d slices to segment (%d already done)",
                        axis,
                        len(todo),
                        thickness,
                        int(flags.sum()),
                    )

                    def write(start, stop, labels, proba, *, axis=axis, keep_proba=keep_proba, done=done):
                        offset = [0, 0, 0]
                        offset[axis] = start
                        if separate:
                            DataFile.from_h5py(h5[f"axis{axis}/labels"]).write_block(offset, labels)
                            if keep_proba:
                                index = [slice(None)] * 4
                                index[axis] = slice(start, stop)
                                h5[f"axis{axis}/proba"][tuple(index)] = quantise(proba)
                        else:
                            offset = [o + b[0] for o, b in zip(offset, bounds, strict=True)]
                            labels_out.write_block(offset, labels)
                        h5.flush()
                        done[start:stop] = 1  # recorded only once the slab is written
                        h5.flush()

                    if dask_client is not None:
                        from ctseg_helpers.workflows.dask_backend import run_pass  # noqa: PLC0415

                        run_pass(
                            dask_client,
                            segmenter,
                            work,
                            axis,
                            todo,
                            write,
                            proba=keep_proba,
                            halo_px=dask_halo_px,
                            plane_chunks=dask_plane_chunks,
                            progress=progress,
                            max_slices=at_once,
                        )
                        result.slabs_done += len(todo)
                        result.passes.append(axis)
                        continue
                    seg = segment_block
                    for start, stop in tqdm(todo, desc=f"axis {axis}", unit="slab", disable=not progress):
                        block = work.read(axis, start, stop)
                        if keep_proba:
                            proba = seg(block, segmenter, axis, proba=True, max_slices=at_once)
                            labels = argmax_uint8(proba)
                        else:
                            proba = None
                            labels = seg(block, segmenter, axis, max_slices=at_once)
                        del block
                        write(start, stop, labels, proba)
                        result.slabs_done += 1
                    result.passes.append(axis)

                # ---- combine the axes and/or rotate back, along axis 0 of the working frame
                if separate:
                    _finish(
                        h5,
                        axes,
                        work_shape,
                        crop_shape,
                        bounds,
                        labels_out,
                        combine,
                        n_classes,
                        rotating,
                        rotate_deg,
                        max_gb,
                        progress,
                        postprocessing=getattr(segmenter, "postprocessing", None),
                    )
            finally:
                if side is not None:
                    side.close()
            h5.attrs["complete"] = True
            h5.flush()
        finally:
            h5.close()
    if rotating and side_path.exists():
        side_path.unlink()
    record_written(out_path)  # finished: from now on only this exact file may be replaced
    if nifti_path is not None:
        import h5py  # noqa: PLC0415

        with h5py.File(out_path, "r") as h5:
            result.nifti_path = _write_labels_nifti(h5["labels"], nifti_path, nifti_affine, overwrite, out_path)
    result.complete = True
    result.seconds = time.perf_counter() - t0
    return result


def _prepare_rotated(region, work_shape, angle, side_path, h5, compression, chunk_mb, progress):
    """Write the cropped input ``region`` rotated about Z into the side file (resumable); return it open."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    dtype = region.datafile.dtype
    done = _progress(h5, "rotate", work_shape[0])
    flags = done[:]
    if "rotate_fill" not in h5.attrs:
        fill = None
        thickness = slab_thickness(region.shape, 0, dtype.itemsize, 0.25)
        for start in range(0, region.shape[0], thickness):
            low = region.read(0, start, min(start + thickness, region.shape[0])).min()
            fill = low if fill is None else min(fill, low)
        h5.attrs["rotate_fill"] = fill
    fill = h5.attrs["rotate_fill"]
    if side_path.exists() and flags.any():
        side = DataFile.open(side_path, "data", mode="r+")
    else:
        flags[:] = 0
        done[:] = 0
        # a leftover side file of an earlier run is replaced; any other file there is refused
        replacing = check_replaceable(
            side_path, True, instead="choose another output name", own_file=_rotated_input, error_type=CtsegDataError
        )
        side = DataFile.create(
            side_path,
            work_shape,
            dtype,
            chunk_mb=chunk_mb,
            compression=compression,
            overwrite=replacing,
            attrs={SIDE_FILE_ATTR: True},
        )
    try:
        per_voxel = 2 * dtype.itemsize + 8
        thickness = slab_thickness(region.shape, 0, per_voxel, 0.5)
        for start, stop in tqdm(slab_ranges_todo(flags, thickness), desc="rotating", unit="slab", disable=not progress):
            planes = region.read(0, start, stop)
            side.write_slab(0, start, rotate_planes(planes, angle, work_shape[1:], order=1, fill=fill))
            side.flush()
            done[start:stop] = 1
            h5.flush()
    finally:
        side.close()
    # reopened read-only: Dask workers in this process may then open it too
    return DataFile.open(side_path, "data")


def _finish(
    h5,
    axes,
    work_shape,
    crop_shape,
    bounds,
    labels_out,
    combine,
    n_classes,
    rotating,
    angle,
    max_gb,
    progress,
    postprocessing=None,
):
    """Combine the per-axis results and rotate back, slab by slab along axis 0 (resumable).

    The model's post-processing, applied per slice by the segmenter along each axis, is applied
    again (per slice along axis 0) to the combination of several axes.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    done = _progress(h5, "finish", work_shape[0])
    flags = done[:]
    several = len(axes) > 1
    # the per-axis labels (and probabilities), then combine_labels: 7 bytes of running best,
    # 6 of per-class sums and votes, about 6 of boolean temporaries; 2 for the rotated output
    per_voxel = len(axes) * (1 + (n_classes if several else 0)) + (19 if several else 0) + 2
    thickness = slab_thickness(work_shape, 0, per_voxel, max_gb)
    for start, stop in tqdm(slab_ranges_todo(flags, thickness), desc="combining", unit="slab", disable=not progress):
        labels = [h5[f"axis{a}/labels"][start:stop] for a in axes]
        if several:
            probas = [h5[f"axis{a}/proba"][start:stop] for a in axes]
            combined = combine_labels(labels, probas, combine)
            del probas
            if postprocessing is not None and not postprocessing.is_identity:
                combined = postprocessing.apply(combined)
        else:
            combined = labels[0]
        del labels
        if rotating:
            combined = rotate_planes(combined, -angle, crop_shape[1:], order=0)
        labels_out.write_block((bounds[0][0] + start, bounds[1][0], bounds[2][0]), combined)
        h5.flush()
        done[start:stop] = 1
        h5.flush()


__all__ = [
    "NIFTI_SUFFIXES",
    "VolumeResult",
    "parse_axes",
    "parse_crop",
    "resolve_crop",
    "segment_volume",
    "slab_ranges_todo",
    "slab_thickness",
]
