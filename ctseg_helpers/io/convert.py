"""Convert a scan to a chunked HDF5 volume for :class:`~ctseg_helpers.io.datafile.DataFile`.

Sources, detected from the path:

- a folder of 2D TIFF files (one slice per file, natural name order) - read slab by slab;
- a multi-page TIFF file (one slice per page) - read page by page;
- a folder of DICOM files (one series; name it with ``series_uid`` when there are several) -
  read file by file in the stacking order of :func:`~ctseg_helpers.io.dicom.scan_dicom_folder`,
  as float32 physical values (HU for CT);
- a NIfTI file (``.nii``, ``.nii.gz``) - read slab by slab from the file's array proxy, cut
  along array axis 2 as :func:`~ctseg_helpers.io.nifti.read_nifti_slices` does with
  ``axis=2`` (output ``(k, i, j)``).

Memory stays bounded by ``max_gb`` for every source except compressed multi-page TIFF stacks
that tifffile cannot read page by page and gzipped NIfTI files, where nibabel decompresses the
stream up to each slab (memory stays bounded, time grows). The HDF5 dataset ``data`` carries
the attributes ``source``, ``source_kind`` and, where the source says, ``spacing_mm``
(``(z, y, x)`` voxel size in mm), ``affine_ras`` and ``modality``.

``affine_ras`` (float64, 4 x 4) maps the dataset's voxel indices ``(z, y, x, 1)`` (the order of
``data[z, y, x]``; the centre of a voxel is its integer index) to NIfTI world coordinates in mm
(RAS: x grows towards the patient's right, y anterior, z superior), so that
``affine_ras @ (z, y, x, 1)`` is the voxel centre's position in the scanner. It is recorded

- for a DICOM folder, from ``ImagePositionPatient``, ``ImageOrientationPatient`` and
  ``PixelSpacing`` (:func:`~ctseg_helpers.io.nifti.stack_affine`, the affine of ctseg's NIfTI
  label maps, with the voxel axes in HDF5 order): DICOM's LPS patient coordinates with x and y
  negated. Not recorded, with a warning, when a slice has no position, the series no
  orientation, the pixel spacing differs between slices or the slices are not evenly spaced
  along one line;
- for a NIfTI file, from its own affine (sform, else qform; not when both codes are 0), in mm
  and with its voxel axes ``(i, j, k)`` reordered as stored, ``(k, i, j)``;
- never for TIFF sources, which carry no position.

``ctseg segment-volume --nifti`` writes its labels with this affine, so they overlay the
original scan in NIfTI viewers (3D Slicer, ITK-SNAP).

An existing output is replaced only with ``overwrite`` and only when an earlier ctseg run
wrote it and nobody changed it since (:mod:`ctseg_helpers.io.written`: the conversion is
recorded in the output folder's ``.ctseg-written.json`` when it finishes); any other file is
refused, ``overwrite`` or not.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.datafile import (
    HDF5_SUFFIXES,
    TIFF_SUFFIXES,
    DataFile,
    tiff_series_files,
)
from ctseg_helpers.io.geometry import no_volume_reason, stack_spacing_mm

logger = logging.getLogger(__name__)

_GB = 1e9


@dataclass
class ConvertResult:
    """What :func:`convert_to_hdf5` wrote.

    Attributes
    ----------
    out_path : Path
    dataset : str
    source_kind : {"tiff-series", "tiff-stack", "dicom", "nifti"}
    shape : tuple of 3 int
    dtype : str
    chunk_shape : tuple of 3 int
    spacing_mm : tuple of 3 float or None
    affine_ras : ndarray of shape (4, 4) and dtype float64, or None
        ``(z, y, x, 1)`` voxel indices to RAS mm (see the module docstring); None when unknown.
    """

    out_path: Path
    dataset: str
    source_kind: str
    shape: tuple
    dtype: str
    chunk_shape: tuple
    spacing_mm: tuple | None = None
    affine_ras: np.ndarray | None = None


class _Source:
    """A readable source: ``shape``, ``dtype``, ``read(start, stop)`` along axis 0, metadata."""

    kind = ""
    spacing_mm = None
    affine_ras = None
    modality = None

    def close(self):
        pass


class _TiffSeries(_Source):
    kind = "tiff-series"

    def __init__(self, folder: Path):
        self.datafile = DataFile.open(folder)
        self.shape, self.dtype = self.datafile.shape, self.datafile.dtype

    def read(self, start, stop):
        return self.datafile.read_slab(0, start, stop)

    def close(self):
        self.datafile.close()


class _TiffStack(_Source):
    kind = "tiff-stack"

    def __init__(self, path: Path):
        import tifffile  # noqa: PLC0415

        try:
            self.tif = tifffile.TiffFile(path)
        except Exception as exc:  # noqa: BLE001 - tifffile raises TiffFileError, ValueError, OSError
            raise CtsegDataError(f"{path}: cannot read it as TIFF ({exc})") from exc
        try:
            if not self.tif.series:
                raise CtsegDataError(f"{path}: cannot read it as TIFF (no image in the file; it may be damaged)")
            series = self.tif.series[0]
            shape = tuple(series.shape)
            if len(shape) == 2:
                shape = (1, *shape)
            if len(shape) != 3:
                raise CtsegDataError(
                    f"{path}: the TIFF holds an image of shape {tuple(series.shape)}; a grey-level "
                    "stack (slices, rows, cols) is needed (colour and multi-channel TIFFs are not volumes)"
                )
            self.shape, self.dtype = shape, np.dtype(series.dtype)
            self.pages = series.pages if len(series.pages) == shape[0] else None
            if self.pages is None:
                logger.warning("%s: the stack is not stored page by page; it is read whole", path)
                self._whole = series.asarray()
        except BaseException:
            self.tif.close()
            raise

    def read(self, start, stop):
        if self.pages is None:
            return np.asarray(self._whole[start:stop])
        return np.stack([self.pages[i].asarray() for i in range(start, stop)])

    def close(self):
        self.tif.close()


class _Dicom(_Source):
    kind = "dicom"

    def __init__(self, folder: Path, series_uid: str | None):
        from ctseg_helpers.io.dicom import scan_dicom_folder  # noqa: PLC0415

        scan = scan_dicom_folder(folder)
        scan.require_images()
        if series_uid is None and len(scan.series) > 1:
            listing = "; ".join(
                f"{s.series_uid} ({s.series_description or 'no description'}, {s.n_images} images)" for s in scan.series
            )
            raise CtsegDataError(
                f"{folder}: the folder holds {len(scan.series)} series; name one with --series-uid: {listing}"
            )
        matches = [s for s in scan.series if series_uid in (None, s.series_uid)]
        if not matches:
            raise CtsegDataError(
                f"{folder}: no series with uid {series_uid}; run 'ctseg inspect {folder}' to list them"
            )
        info = matches[0]
        if info.n_phases > 1:
            raise CtsegDataError(
                f"{folder}: series {info.series_uid} is a cine series ({info.n_positions} positions x "
                f"{info.n_phases} phases), not a volume; convert one phase at a time from separate folders"
            )
        if info.shape is None:
            raise CtsegDataError(
                f"{folder}: images of different sizes in series {info.series_uid}; a volume needs one image size"
            )
        self.files = list(info.files)
        self.shape = (len(self.files), *info.shape)
        self.dtype = np.dtype(np.float32)
        self.modality = info.modality or None
        spacing = info.spacing_mm
        positions = info.positions_mm
        gap = stack_spacing_mm(positions)
        if gap is None and len(positions) > 1 and not np.isnan(positions).any():
            logger.warning("%s: %s; spacing_mm along z is not recorded", folder, no_volume_reason(positions))
        if spacing is not None and (gap or info.slice_thickness_mm):
            self.spacing_mm = (float(gap or info.slice_thickness_mm), *spacing)
        self.affine_ras = _dicom_affine_zyx(folder, info)

    def read(self, start, stop):
        from ctseg_helpers.io.dicom import read_dicom_file  # noqa: PLC0415

        return np.stack([read_dicom_file(p).pixels for p in self.files[start:stop]]).astype(np.float32)


def _dicom_affine_zyx(folder: Path, info) -> np.ndarray | None:
    """``affine_ras`` of a DICOM series (``(z, y, x)`` = (slice, row, column)), or None with a warning."""
    from ctseg_helpers.io.nifti import reorder_affine, stack_affine  # noqa: PLC0415

    positions = np.asarray(info.image_positions_mm, dtype=np.float64).reshape(-1, 3)
    spacings = np.asarray(info.pixel_spacing_mm, dtype=np.float64).reshape(-1, 2)
    if info.orientation is None or not len(positions) or not np.isfinite(positions).all():
        reason = "ImagePositionPatient or ImageOrientationPatient is missing"
    elif not np.isfinite(spacings).all() or not np.allclose(spacings, spacings[0], rtol=1e-4, atol=1e-6):
        reason = "PixelSpacing is missing or differs between slices"
    else:
        try:
            affine = stack_affine(
                positions, info.orientation, spacings[0], slice_thickness_mm=info.slice_thickness_mm, source=folder
            )
        except CtsegDataError:
            reason = "the slices are not evenly spaced along one line"
        else:
            # dicom_affine's voxel (i, j, k) is (column, row, slice); the HDF5 stores (slice, row, column)
            return reorder_affine(affine, (2, 1, 0))
    logger.warning("%s: %s; its position and orientation (affine_ras) are not recorded", folder, reason)
    return None


class _Nifti(_Source):
    kind = "nifti"

    def __init__(self, path: Path):
        import nibabel as nib  # noqa: PLC0415

        try:
            img = nib.load(path)
        except Exception as exc:  # noqa: BLE001 - nibabel raises several types
            raise CtsegDataError(f"{path}: cannot read it as NIfTI ({exc}); give a .nii or .nii.gz volume") from exc
        shape = tuple(img.shape)
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise CtsegDataError(f"{path}: NIfTI data of shape {tuple(img.shape)}; a 3D volume is needed")
        self.proxy = img.dataobj
        slope, inter = getattr(self.proxy, "slope", 1.0), getattr(self.proxy, "inter", 0.0)
        scaled = not (slope in (1.0, None) and inter in (0.0, None))
        self.dtype = np.dtype(np.float32) if scaled else np.dtype(img.get_data_dtype())
        self.shape = (shape[2], shape[0], shape[1])
        self.four_d = len(img.shape) == 4
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
        unit = img.header.get_xyzt_units()[0]
        scale = {"meter": 1000.0, "micron": 1e-3}.get(unit, 1.0)
        self.spacing_mm = (zooms[2] * scale, zooms[0] * scale, zooms[1] * scale)
        if int(img.header["sform_code"]) > 0 or int(img.header["qform_code"]) > 0:
            from ctseg_helpers.io.nifti import reorder_affine  # noqa: PLC0415

            affine = np.array(img.affine, dtype=np.float64)
            affine[:3] *= scale
            # stored as data[k, i, j] (see read): axis 0 is the NIfTI's k, axis 1 its i, axis 2 its j
            self.affine_ras = reorder_affine(affine, (2, 0, 1))
        else:
            logger.warning("%s: qform and sform codes are 0 (no position); affine_ras is not recorded", path)
        self.path = path

    def read(self, start, stop):
        try:
            index = (slice(None), slice(None), slice(start, stop)) + ((0,) if self.four_d else ())
            data = np.asarray(self.proxy[index])
        except Exception as exc:  # noqa: BLE001 - truncated files raise EOFError, zlib.error, OSError
            raise CtsegDataError(
                f"{self.path}: the volume's data cannot be read ({exc}); the file may be truncated"
            ) from exc
        return np.ascontiguousarray(np.transpose(data, (2, 0, 1))).astype(self.dtype, copy=False)


def _open_source(src: Path, series_uid: str | None) -> _Source:
    name = src.name.lower()
    if not src.exists():
        raise CtsegDataError(f"{src}: no such file or folder")
    if src.is_dir():
        if tiff_series_files(src):
            return _TiffSeries(src)
        return _Dicom(src, series_uid)
    if name.endswith((".nii", ".nii.gz")):
        return _Nifti(src)
    if src.suffix.lower() in TIFF_SUFFIXES:
        return _TiffStack(src)
    raise CtsegDataError(
        f"{src}: unknown source; give a folder of TIFF or DICOM files, a multi-page .tif, or a .nii/.nii.gz file"
    )


def convert_to_hdf5(
    src: str | Path,
    out_path: str | Path,
    *,
    dataset: str = "data",
    chunk_shape=None,
    chunk_mb: float | None = None,
    compression: str | None = "gzip",
    overwrite: bool = False,
    series_uid: str | None = None,
    max_gb: float = 0.5,
    progress: bool = True,
) -> ConvertResult:
    """Copy a TIFF series/stack, DICOM folder or NIfTI file into a chunked HDF5 volume.

    Parameters
    ----------
    src : str or Path
        The source (see the module docstring).
    out_path : str or Path
        ``.h5``/``.hdf5`` file to create.
    dataset : str
        Name of the dataset in the output.
    chunk_shape : tuple of 3 int, optional
        HDF5 chunk shape ``(z, y, x)``; give this or ``chunk_mb``.
    chunk_mb : float, optional
        Target chunk size in MiB (:func:`~ctseg_helpers.io.datafile.estimate_chunk_shape`);
        1 MiB when neither is given.
    compression : {"gzip", "lzf", None}
    overwrite : bool
        Replace an existing output file that an earlier ctseg run wrote and nobody changed since.
    series_uid : str, optional
        DICOM series to convert when the folder holds several.
    max_gb : float
        Memory for one slab of slices copied at a time, in GB.
    progress : bool
        Show a progress bar over slices.

    Returns
    -------
    ConvertResult

    Raises
    ------
    CtsegDataError
        If the source cannot be read or is not a volume, the output is not an ``.h5`` file name,
        or it exists and ``overwrite`` is False, or it exists and was not written by ctseg (or
        was changed since). An interrupted conversion removes its partial output.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    from ctseg_helpers.io.written import (  # noqa: PLC0415
        check_replaceable,
        forget_written,
        rename_recorded,
    )

    src, out_path = Path(src), Path(out_path)
    if out_path.suffix.lower() not in HDF5_SUFFIXES:
        raise CtsegDataError(f"{out_path}: the output must be an HDF5 file name ending in .h5 or .hdf5")
    replacing = check_replaceable(out_path, overwrite, instead="choose another output name", error_type=CtsegDataError)
    source = _open_source(src, series_uid)
    try:
        attrs = {"source": str(src.resolve()), "source_kind": source.kind}
        if source.spacing_mm is not None:
            attrs["spacing_mm"] = np.asarray(source.spacing_mm, dtype=np.float64)
        if source.affine_ras is not None:
            attrs["affine_ras"] = np.asarray(source.affine_ras, dtype=np.float64)
        if source.modality:
            attrs["modality"] = source.modality
        if chunk_shape is None and chunk_mb is None:
            chunk_mb = 1.0
        per_slice = math.prod(source.shape[1:]) * source.dtype.itemsize
        # Written beside the output under a hidden name and renamed when complete: a run killed
        # half-way leaves OUT.h5 as it was (or absent), never a damaged file in its place.
        for stale in out_path.parent.glob(f".*.{out_path.name}"):  # left by a killed conversion
            if re.fullmatch(rf"\.\d+\.{re.escape(out_path.name)}", stale.name):
                stale.unlink()
        partial = out_path.with_name(f".{os.getpid()}.{out_path.name}")
        try:
            out = DataFile.create(
                partial,
                source.shape,
                source.dtype,
                dataset=dataset,
                chunk_shape=chunk_shape,
                chunk_mb=chunk_mb,
                compression=compression,
                overwrite=True,
                attrs=attrs,
            )
        except OSError as exc:  # name the file the user asked for, not the hidden partial one
            if exc.errno is None:
                raise
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(out_path)) from None
        try:
            step = max(1, int(max_gb * _GB // per_slice))
            if out.chunk_shape and step >= out.chunk_shape[0]:
                step -= step % out.chunk_shape[0]
            with tqdm(total=source.shape[0], desc=f"converting {src.name}", unit="slice", disable=not progress) as bar:
                for start in range(0, source.shape[0], step):
                    stop = min(start + step, source.shape[0])
                    out.write_slab(0, start, source.read(start, stop))
                    bar.update(stop - start)
            result = ConvertResult(
                out_path=out_path,
                dataset=dataset,
                source_kind=source.kind,
                shape=out.shape,
                dtype=str(out.dtype),
                chunk_shape=out.chunk_shape,
                spacing_mm=source.spacing_mm,
                affine_ras=source.affine_ras,
            )
        except BaseException:
            out.close()
            partial.unlink(missing_ok=True)
            raise
        out.close()
        if replacing:
            forget_written(out_path)
            out_path.unlink()
        rename_recorded(partial, out_path)
    finally:
        source.close()
    logger.info("wrote %s: %s %s, chunks %s", out_path, result.shape, result.dtype, result.chunk_shape)
    return result


__all__ = ["ConvertResult", "convert_to_hdf5"]
