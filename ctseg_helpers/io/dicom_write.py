"""Write images as a valid DICOM series (CT Image Storage or MR Image Storage).

Used by the demo phantom, by tests that need real DICOM files, and by anyone who wants to
hand a synthetic volume to another DICOM tool. Files are written with the DICOM preamble,
explicit VR little endian, fresh valid UIDs and the geometry tags ctseg reads.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

_SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}


def write_dicom_series(
    folder: str | Path,
    images: np.ndarray,
    *,
    pixel_spacing_mm: tuple[float, float] = (1.0, 1.0),
    slice_thickness_mm: float = 1.0,
    modality: str = "CT",
    names: Sequence[str] | None = None,
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    rescale_intercept: float = -1024.0,
    rescale_slope: float = 1.0,
    series_description: str = "ctseg series",
    body_part: str = "ABDOMEN",
    patient_id: str = "ANON",
    study_uid: str | None = None,
    series_uid: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write a stack of 2D images as one DICOM series, one file per slice.

    Parameters
    ----------
    folder : path
        Output folder, created if needed.
    images : ndarray of shape (K, M, N), real dtype
        Physical values (Hounsfield units for CT). They are stored as uint16 pixel data with
        ``RescaleSlope``/``RescaleIntercept``, so values are rounded to ``rescale_slope`` steps
        and must lie within ``rescale_intercept .. rescale_intercept + 65535 * rescale_slope``.
    pixel_spacing_mm : (row, col) spacing in mm.
    slice_thickness_mm : float
        Also the distance between consecutive slices along the slice normal.
    modality : {"CT", "MR"}
    names : sequence of str, optional
        File stems (``<name>.dcm``); default ``slice_0001`` ... in stacking order.
    origin_mm, orientation
        ImagePositionPatient of the first slice and ImageOrientationPatient (row, col cosines).
    body_part : str
        BodyPartExamined (an unpaired part, so no Laterality is needed).
    overwrite : bool
        Refuse to replace existing files unless True.

    Returns
    -------
    list of Path
        The files written, in slice order.

    Raises
    ------
    ValueError
        If the images are not a 3D stack, the names do not match the number of slices or
        repeat, values
        do not fit the stored range, or a file exists and ``overwrite`` is False.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (K, M, N), got {images.shape}")
    if modality not in _SOP_CLASS:
        raise ValueError(f"modality must be one of {sorted(_SOP_CLASS)}, got {modality!r}")
    names = list(names) if names is not None else [f"slice_{i + 1:04d}" for i in range(len(images))]
    if len(names) != len(images):
        raise ValueError(f"{len(names)} names given for {len(images)} images")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # a later slice would silently replace an earlier one's file
        raise ValueError(
            f"names must be distinct, but {', '.join(map(repr, repeated[:5]))} repeat; give one file name per slice"
        )
    stored = np.round((images.astype(np.float64) - rescale_intercept) / rescale_slope)
    if stored.size and (stored.min() < 0 or stored.max() > 65535):
        raise ValueError(
            "image values do not fit uint16 with rescale intercept "
            f"{rescale_intercept} and slope {rescale_slope}: range {images.min()}..{images.max()}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.dcm" for name in names]
    if not overwrite:
        existing = [p.name for p in paths if p.exists()]
        if existing:
            raise ValueError(
                f"{folder}: {len(existing)} file(s) exist already, e.g. {existing[0]}; "
                "pass overwrite=True or choose another folder"
            )
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    row_cos = np.array(orientation[:3], dtype=float)
    col_cos = np.array(orientation[3:], dtype=float)
    normal = np.cross(row_cos, col_cos)
    now = _dt.datetime.now()
    for index, (path, pixels) in enumerate(zip(paths, stored.astype(np.uint16), strict=True)):
        position = np.asarray(origin_mm, dtype=float) + index * slice_thickness_mm * normal
        ds = _dataset(path, modality, pixels, now)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName = f"{patient_id}^"  # PN form Family^Given
        ds.PatientID = patient_id
        ds.SeriesDescription = series_description
        ds.BodyPartExamined = body_part
        ds.SeriesNumber = 1
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [f"{v:.6g}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6g}" for v in orientation]
        ds.SliceLocation = f"{float(position @ normal):.6g}"
        ds.PixelSpacing = [f"{v:.6g}" for v in pixel_spacing_mm]
        ds.SliceThickness = f"{slice_thickness_mm:.6g}"
        ds.RescaleIntercept = f"{rescale_intercept:.6g}"
        ds.RescaleSlope = f"{rescale_slope:.6g}"
        if modality == "CT":
            ds.RescaleType = "HU"
            ds.KVP = "120"
        ds.save_as(path, enforce_file_format=True)
    return paths


def _dataset(path: Path, modality: str, pixels: np.ndarray, now: _dt.datetime) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _SOP_CLASS[modality]
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyID = "1"
    ds.Manufacturer = "ctseg"
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


__all__ = ["write_dicom_series"]
