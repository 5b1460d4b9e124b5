"""Write label maps as a DICOM Segmentation object (DICOM-SEG) that references the segmented images.

A DICOM-SEG is how a PACS, OHIF, 3D Slicer (QuantitativeReporting / DICOM module) and other
DICOM tools take a segmentation: one multi-frame object in the scan's study that points at the
images it was made from. :func:`write_dicom_seg` builds one with `highdicom
<https://highdicom.readthedocs.io>`_ from the label maps of a series and the headers of its
files:

- segmentation type BINARY, one segment per ROI (segment ``n`` is label value ``n``), labelled
  with the ROI's name (the model's label names);
- every segment's category and type is SNOMED CT 85756007 "Tissue" (:data:`SEGMENT_CATEGORY`,
  :data:`SEGMENT_TYPE`): ctseg cannot know what a user's ROI is (a muscle, fat, a blood pool),
  and "Tissue"/"Tissue" is the generic pair of DICOM's segmentation property context groups
  (CID 7150 / 7166) that 3D Slicer also gives a new segment; the ROI's name is in the segment
  label, which viewers show;
- algorithm type AUTOMATIC, algorithm name "ctseg" and the package version (family:
  DCM 123110 "Artificial Intelligence"), and the model file's name as the algorithm parameter;
- patient, study and frame of reference copied from the source images by highdicom: the object
  carries the patient's name and ID exactly as the scan does (so a PACS files it with the
  study), and nothing else;
- empty frames left out (a slice where an ROI is absent has no frame for it; readers treat a
  missing frame as empty).

DICOM-SEG frames must lie at distinct positions, so a cine series (several images per
position) is written as one object per phase (:func:`phase_indices`), all in one SEG series.

The module never imports TensorFlow or Keras; highdicom is imported only when writing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.geometry import position_groups

logger = logging.getLogger(__name__)

#: (code value, coding scheme, meaning) of every segment's SegmentedPropertyCategory.
SEGMENT_CATEGORY = ("85756007", "SCT", "Tissue")
#: (code value, coding scheme, meaning) of every segment's SegmentedPropertyType.
SEGMENT_TYPE = ("85756007", "SCT", "Tissue")
#: Algorithm family (CID 7162) of ctseg's U-Net.
ALGORITHM_FAMILY = ("123110", "DCM", "Artificial Intelligence")

#: Series number of a DICOM-SEG: the source series' number plus this (1000 without one).
SERIES_NUMBER_OFFSET = 1000

#: Type 2 attributes highdicom copies from the first source image; filled in empty when absent.
_COPIED_TYPE2 = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def require_highdicom() -> None:
    """Check that highdicom is installed, before any work.

    Raises
    ------
    CtsegSettingsError
        If it is not, saying how to install it.
    """
    try:
        import highdicom  # noqa: F401, PLC0415
    except ImportError:
        raise CtsegSettingsError(
            "writing DICOM-SEG (dicom_seg=True, --dicom-seg) needs the highdicom package, which is not "
            "installed: run 'pip install highdicom==0.28.2' (it is in requirements.txt), or leave DICOM-SEG off"
        ) from None


def phase_indices(positions_mm: Sequence[float]) -> list[list[int]]:
    """Indices of the images of each phase: the p-th image at every position, for p = 0, 1, ...

    Parameters
    ----------
    positions_mm : sequence of float, in stacking order
        Position along the slice normal of each image (images of one position next to each
        other, in time order, as :func:`~ctseg_helpers.io.dicom.read_dicom_series` stacks them).

    Returns
    -------
    list of list of int
        One list for an ordinary stack (every index); for a cine series one list per phase,
        each holding one image per position (a position with fewer images is absent from the
        last phases). Unknown positions (NaN): one list of every index.

    Examples
    --------
    >>> phase_indices([0.0, 5.0, 10.0])
    [[0, 1, 2]]
    >>> phase_indices([0.0, 0.0, 5.0, 5.0, 10.0])
    [[0, 2, 4], [1, 3]]
    """
    positions = np.asarray(positions_mm, dtype=np.float64).ravel()
    if not positions.size:
        return []
    if not np.all(np.isfinite(positions)):
        return [list(range(positions.size))]
    groups = position_groups(positions)
    n_phases = max(stop - start for start, stop in groups)
    return [[start + p for start, stop in groups if start + p < stop] for p in range(n_phases)]


def _lo(text: str) -> str:
    """A DICOM LO value: at most 64 characters, no backslash or control characters."""
    cleaned = "".join(c for c in str(text).replace("\\", "/") if c.isprintable())
    return cleaned[:64]


def _cielab(rgb: Sequence[float]):
    from highdicom.color import CIELabColor  # noqa: PLC0415

    r, g, b = (int(round(255 * float(v))) for v in rgb)
    return CIELabColor.from_rgb(r, g, b)


def write_dicom_seg(
    path: str | Path,
    labels: np.ndarray,
    source_files: Sequence[str | Path],
    label_names: Sequence[str],
    *,
    sop_instance_uids: Sequence[str] | None = None,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
    series_description: str | None = None,
    software_version: str = "",
    model_name: str | None = None,
    colors_rgb: Sequence[Sequence[float]] | None = None,
    source: str | Path = "series",
) -> Path:
    """Write the label maps of single-frame DICOM images as one DICOM Segmentation object.

    Parameters
    ----------
    path : path-like
        The file to write (``.dcm``).
    labels : ndarray of shape (K, M, N), integer values 0..len(label_names)
        Label map of each source image, on its pixels (0 = background, n = ROI n).
    source_files : sequence of K path-like
        The segmented DICOM images, same order; all of one series, at distinct positions.
    label_names : sequence of str
        ROI names, label 1 first: the segments' labels.
    sop_instance_uids : sequence of K str, optional
        The images' ``SOPInstanceUID`` when they were segmented; the files must still hold them.
    series_instance_uid : str, optional
        UID of the SEG series (a new one by default); give the same one to the objects of the
        phases of one cine series.
    instance_number : int
        The object's number within its SEG series.
    series_description : str, optional
        Default "ctseg segmentation"; cut to 64 characters.
    software_version : str
        ctseg's version (the algorithm version and SoftwareVersions).
    model_name : str, optional
        Recorded as the algorithm parameter ``model``.
    colors_rgb : sequence of (r, g, b) in 0..1, optional
        Each segment's recommended display colour (ctseg's label colours).
    source : str or Path
        How messages name the series.

    Returns
    -------
    Path

    Raises
    ------
    CtsegSettingsError
        If highdicom is not installed.
    CtsegDataError
        If ``labels`` does not match the files (count or image size) or holds values above the
        number of ROIs; a file is missing, unreadable, without ``ImagePositionPatient``,
        ``ImageOrientationPatient`` or ``FrameOfReferenceUID``, or no longer the image that was
        segmented (its ``SOPInstanceUID`` changed); the images do not share one study, series and
        frame of reference; or the images cannot carry a DICOM-SEG (highdicom's
        reason: e.g. images of several series, at repeated positions, or without a frame of
        reference).
    """
    require_highdicom()
    import highdicom as hd  # noqa: PLC0415
    from pydicom.sr.coding import Code  # noqa: PLC0415

    from ctseg_helpers.io.dicom import read_dicom_headers  # noqa: PLC0415

    labels = np.asarray(labels)
    files = [Path(f) for f in source_files]
    names = [str(n) for n in label_names]
    if labels.ndim != 3 or len(labels) != len(files):
        raise CtsegDataError(
            f"{source}: {len(files)} source image(s) for label maps of shape {labels.shape}; "
            "give one (M, N) label map per image"
        )
    if labels.size and (labels.min() < 0 or labels.max() > len(names)):
        raise CtsegDataError(
            f"{source}: label values {labels.min()}..{labels.max()} but {len(names)} ROI name(s); "
            "give one name per label value 1..N"
        )
    datasets = read_dicom_headers(files)
    for file, ds, label in zip(files, datasets, labels, strict=True):
        shape = (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))
        if shape != label.shape:
            raise CtsegDataError(
                f"{file}: the image is {shape[0]}x{shape[1]} but its label map "
                f"{label.shape[0]}x{label.shape[1]}; segment the folder again"
            )
    for file, ds in zip(files, datasets, strict=True):
        missing = [
            k for k in ("ImagePositionPatient", "ImageOrientationPatient", "FrameOfReferenceUID") if not ds.get(k, None)
        ]
        if missing:
            raise CtsegDataError(
                f"{file}: no {'/'.join(missing)}; a DICOM-SEG places its frames in the scan's space, so it "
                "needs them; the label PNGs hold every slice"
            )
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = {str(ds.get(keyword, "")) for ds in datasets}
        if len(values) > 1:
            raise CtsegDataError(
                f"{source}: its {len(files)} images carry {len(values)} different {keyword}s (an anonymiser may "
                "have replaced them image by image), but a DICOM-SEG refers to images of one study, series and "
                "frame of reference; the label PNGs hold every slice"
            )
    if sop_instance_uids is not None:
        for file, ds, uid in zip(files, datasets, sop_instance_uids, strict=True):
            if str(ds.get("SOPInstanceUID", "")) != str(uid):
                raise CtsegDataError(
                    f"{file}: the file is no longer the image that was segmented (its SOPInstanceUID "
                    "changed); segment the folder again"
                )
    for ds in datasets:
        _fill_type2(ds)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="ctseg",
        family=Code(*ALGORITHM_FAMILY),
        version=_lo(software_version or "unknown"),
        source="ctseg",
        parameters={"model": _lo(model_name)} if model_name else None,
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=_lo(name) or f"ROI {number}",
            segmented_property_category=Code(*SEGMENT_CATEGORY),
            segmented_property_type=Code(*SEGMENT_TYPE),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=_cielab(colors_rgb[number - 1]) if colors_rgb is not None else None,
        )
        for number, name in enumerate(names, start=1)
    ]
    first = datasets[0]
    source_number = _int_or_none(first.get("SeriesNumber", None))
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=labels.astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segments,
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=(source_number or 0) + SERIES_NUMBER_OFFSET,
            sop_instance_uid=hd.UID(),
            instance_number=int(instance_number),
            manufacturer="ctseg",
            manufacturer_model_name="ctseg",
            software_versions=_lo(software_version or "unknown"),
            device_serial_number="none",
            content_label="CTSEG",
            content_description=_lo(f"ctseg {model_name}" if model_name else "ctseg automatic segmentation"),
            series_description=_lo(series_description or "ctseg segmentation"),
        )
    except ValueError as exc:
        raise CtsegDataError(
            f"{source}: these images cannot carry a DICOM-SEG ({exc}); the label PNGs hold every slice"
        ) from exc
    path = Path(path)
    seg.save_as(path)
    return path


def _fill_type2(ds) -> None:
    """Give the attributes highdicom copies a value it accepts: empty when absent, or for dates and
    times that are not valid DICOM (anonymised scans carry birth dates such as ``00000000``)."""
    from pydicom.valuerep import DA, TM  # noqa: PLC0415

    for keyword in _COPIED_TYPE2:
        value = ds.get(keyword, None)
        if value is None:
            setattr(ds, keyword, "")
        elif keyword.endswith(("Date", "Time")) and str(value).strip():
            try:
                (DA if keyword.endswith("Date") else TM)(str(value).strip())
            except ValueError:
                logger.info("%s %r is not a valid DICOM date or time; the DICOM-SEG leaves it empty", keyword, value)
                setattr(ds, keyword, "")


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


__all__ = [
    "ALGORITHM_FAMILY",
    "SEGMENT_CATEGORY",
    "SEGMENT_TYPE",
    "SERIES_NUMBER_OFFSET",
    "phase_indices",
    "require_highdicom",
    "write_dicom_seg",
]
