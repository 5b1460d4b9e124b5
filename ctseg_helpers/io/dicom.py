"""Read DICOM files and folders the way users actually have them.

A folder a user selects may hold several series, non-image objects (RT structure sets,
structured reports, presentation states), files with no ``.dcm`` extension or without the
128-byte preamble, stray non-DICOM files and headers with slightly invalid UIDs. This module
reads all of that without fuss, stacks one series in a documented order and raises a
:class:`~ctseg_helpers.errors.CtsegDataError` naming the file or folder for anything it cannot
use.

Stacking order
--------------
Slices are ordered by their position along the slice normal: ``ImagePositionPatient``
projected on the cross product of the two direction cosines of ``ImageOrientationPatient``
(ascending). Images at the same position (at most ``POSITION_TOLERANCE_MM`` apart; cine:
several cardiac phases) are all kept and ordered by ``TriggerTime``, then ``InstanceNumber``,
then file name. When any image of the series lacks position or orientation, the whole series
is ordered by ``InstanceNumber`` (then file name) instead, and a warning says so. Whether the
positions form a 3D stack (a volume) is decided by
:func:`ctseg_helpers.io.geometry.stack_spacing_mm`.

The module never imports TensorFlow or Keras.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config as _pydicom_config

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.geometry import (
    POSITION_TOLERANCE_MM,  # re-exported: the tolerance of the stacking order
    pixel_spacing_array_mm,
    position_groups,
    stack_spacing_mm,
)
from ctseg_helpers.io.naming import natural_key

logger = logging.getLogger(__name__)

_NON_IMAGE_MODALITIES = {
    "RTSTRUCT": "RT structure set",
    "RTPLAN": "RT plan",
    "RTDOSE": "RT dose",
    "RTRECORD": "RT treatment record",
    "SR": "structured report",
    "PR": "presentation state",
    "KO": "key object selection",
    "REG": "registration",
    "SEG": "segmentation object",
    "DOC": "encapsulated document",
}


# --------------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------------


def _median_spacing_mm(pixel_spacing_mm: np.ndarray) -> tuple[float, float] | None:
    """Median of the (row, col) spacings (K, 2) that are known, or None when none is."""
    valid = pixel_spacing_mm[~np.isnan(pixel_spacing_mm).any(axis=1)]
    if not len(valid):
        return None
    return tuple(float(v) for v in np.median(valid, axis=0))


@dataclass(frozen=True, eq=False)
class DicomImage:
    """One DICOM image file, read.

    Attributes
    ----------
    path : Path
    pixels : ndarray of shape (rows, cols) and dtype float32
        Physical values: ``RescaleSlope`` / ``RescaleIntercept`` (or a Modality LUT) applied,
        so CT is in Hounsfield units. MONOCHROME1 images are inverted (see
        :func:`read_dicom_file`) so that higher values are always brighter.
    pixel_spacing_mm : (float, float) or None
        (row spacing, column spacing) in mm from ``PixelSpacing`` (``ImagerPixelSpacing`` for
        projection images without it); None when the file has neither.
    slice_thickness_mm : float or None
    position_mm : float or None
        Position along the slice normal in mm (``ImagePositionPatient`` projected on the cross
        product of the orientation cosines); None without position or orientation.
    image_position_mm : (float, float, float) or None
        ``ImagePositionPatient``: the centre of the first transmitted pixel, in mm.
    orientation : tuple of 6 float or None
        ``ImageOrientationPatient``: row direction cosines, then column direction cosines.
    instance_number : int or None
    trigger_time_ms : float or None
        ``TriggerTime`` (cardiac phase) in ms.
    modality, series_uid, series_description, patient_id, study_uid : str
        Empty strings when absent.
    transfer_syntax : str
        Name of the transfer syntax the pixel data was stored with.
    """

    path: Path
    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None
    position_mm: float | None
    image_position_mm: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    instance_number: int | None
    trigger_time_ms: float | None
    modality: str
    series_uid: str
    series_description: str
    patient_id: str
    study_uid: str
    transfer_syntax: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the pixel array."""
        return tuple(self.pixels.shape)


@dataclass(frozen=True, eq=False)
class SeriesInfo:
    """One series of a folder, from the headers only (no pixel data read).

    Attributes
    ----------
    series_uid, series_description, modality : str
    files : list of Path
        In stacking order (see the module documentation).
    positions_mm : ndarray of shape (K,) and dtype float64
        Position along the slice normal per file; NaN where unknown.
    trigger_times_ms : ndarray of shape (K,) and dtype float64
        ``TriggerTime`` per file; NaN where absent.
    instance_numbers : list of int or None
    shapes : list of (int, int)
        (rows, cols) per file.
    pixel_spacing_mm : ndarray of shape (K, 2) and dtype float64
        (row, col) spacing per file; NaN where absent.
    slice_thickness_mm : float or None
        Most common ``SliceThickness`` of the series.
    ordered_by : {"position", "instance number"}
        How the files were ordered.
    skipped : list of (Path, str)
        Files of the folder not used for this series, with the reason.
    orientation : tuple of 6 float or None
        Most common ``ImageOrientationPatient`` of the series.
    image_positions_mm : ndarray of shape (K, 3) and dtype float64
        ``ImagePositionPatient`` per file (mm, DICOM patient coordinates, LPS); NaN rows where
        absent. What the NIfTI writer builds its affine from.
    sop_instance_uids : list of str
        ``SOPInstanceUID`` per file ("" where absent): the DICOM-SEG writer checks that the
        files it references are still the images that were segmented.
    """

    series_uid: str
    series_description: str
    modality: str
    files: list[Path]
    positions_mm: np.ndarray
    trigger_times_ms: np.ndarray
    instance_numbers: list[int | None]
    shapes: list[tuple[int, int]]
    pixel_spacing_mm: np.ndarray
    slice_thickness_mm: float | None
    ordered_by: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    orientation: tuple[float, ...] | None = None
    image_positions_mm: np.ndarray = field(default_factory=lambda: np.empty((0, 3)), repr=False)
    sop_instance_uids: list[str] = field(default_factory=list, repr=False)

    @property
    def n_images(self) -> int:
        return len(self.files)

    @property
    def n_positions(self) -> int:
        """Distinct slice positions (every image counts when positions are unknown)."""
        if np.isnan(self.positions_mm).any():
            return self.n_images
        return len(position_groups(self.positions_mm))

    @property
    def n_phases(self) -> int:
        """Most images at one position: cine phases, 1 for an ordinary stack."""
        if np.isnan(self.positions_mm).any() or not self.n_images:
            return 1
        return max(stop - start for start, stop in position_groups(self.positions_mm))

    @property
    def shape(self) -> tuple[int, int] | None:
        """(rows, cols) shared by every image, or None when sizes differ."""
        sizes = set(self.shapes)
        return next(iter(sizes)) if len(sizes) == 1 else None

    @property
    def spacing_mm(self) -> tuple[float, float] | None:
        """Median (row, col) pixel spacing in mm, or None when no file has one."""
        return _median_spacing_mm(self.pixel_spacing_mm)

    def to_dict(self) -> dict:
        """JSON-ready summary (the per-series object of ``ctseg inspect --json``)."""
        shape = self.shape
        spacing = self.spacing_mm
        return {
            "series_uid": self.series_uid,
            "series_description": self.series_description,
            "modality": self.modality,
            "n_images": self.n_images,
            "rows": shape[0] if shape else None,
            "columns": shape[1] if shape else None,
            "spacing_mm": list(spacing) if spacing else None,
            "slice_thickness_mm": self.slice_thickness_mm,
            "n_positions": self.n_positions,
            "n_phases": self.n_phases,
            "ordered_by": self.ordered_by,
            "files": [str(p) for p in self.files],
            "positions_mm": [None if np.isnan(v) else round(float(v), 4) for v in self.positions_mm],
            "skipped": [{"file": str(p), "reason": r} for p, r in self.skipped],
        }


@dataclass(frozen=True, eq=False)
class FolderScan:
    """What a folder holds, from the headers only.

    Attributes
    ----------
    folder : Path
    series : list of SeriesInfo
        Largest series first.
    skipped : list of (Path, str)
        Files that are not DICOM images (non-DICOM files, RT structure sets, reports,
        presentation states, colour (RGB, YBR, PALETTE COLOR) or multi-frame images), with
        the reason.
    damaged : list of (Path, str)
        Files that look like DICOM but cannot be parsed (truncated or corrupt), or whose
        ``RescaleSlope``/``RescaleIntercept`` cannot give pixel values (0, empty, NaN).
    """

    folder: Path
    series: list[SeriesInfo]
    skipped: list[tuple[Path, str]]
    damaged: list[tuple[Path, str]]

    def require_images(self) -> None:
        """Raise CtsegDataError, with what the folder holds instead, when it has no image series."""
        if self.series:
            return
        reasons = Counter(r.split(":")[0] for _, r in self.skipped + self.damaged)
        summary = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        raise CtsegDataError(
            f"{self.folder}: no DICOM images in this folder ({summary}); select a folder of DICOM image files"
        )

    def to_text(self) -> str:
        """Readable summary (what ``ctseg inspect`` prints and notebooks show)."""
        lines = [f"{self.folder}: {len(self.series)} series"]
        for number, info in enumerate(self.series, start=1):
            shape = f"{info.shape[0]}x{info.shape[1]}" if info.shape else "mixed sizes"
            spacing = info.spacing_mm
            spacing_text = f"{spacing[0]:.6g} x {spacing[1]:.6g} mm" if spacing else "no PixelSpacing"
            lines.append(
                f"series {number}: '{info.series_description or '(no description)'}' "
                f"{info.modality or '?'}, {info.n_images} images of {shape}, pixels {spacing_text}"
            )
            lines.append(f"  uid {info.series_uid or '(none)'}")
            if info.n_phases > 1:
                layout = f"{info.n_positions} positions x {info.n_phases} phases (cine)"
            else:
                layout = f"{info.n_positions} positions"
            if not np.isnan(info.positions_mm).any():
                layout += f", {info.positions_mm[0]:.2f} to {info.positions_mm[-1]:.2f} mm along the slice normal"
            if info.slice_thickness_mm is not None:
                layout += f", slice thickness {info.slice_thickness_mm:.4g} mm"
            lines.append(f"  {layout}; ordered by {info.ordered_by}")
            first, last = info.files[0].name, info.files[-1].name
            lines.append(f"  files: {first} ... {last}" if info.n_images > 1 else f"  file: {first}")
        skipped = self.skipped + self.damaged
        if skipped:
            lines.append(f"skipped {len(skipped)} file(s):")
            lines.extend(f"  {path.name}: {reason}" for path, reason in skipped)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython / Jupyter display
        printer.text(repr(self) if cycle else self.to_text())

    def to_dict(self) -> dict:
        """JSON-ready summary, as printed by ``ctseg inspect --json``."""
        return {
            "folder": str(self.folder),
            "series": [s.to_dict() for s in self.series],
            "skipped": [{"file": str(p), "reason": r} for p, r in self.skipped + self.damaged],
        }


@dataclass(frozen=True, repr=False, eq=False)
class DicomSeries:
    """One series read from a folder, stacked.

    Attributes
    ----------
    images : ndarray of shape (K, rows, cols) and dtype float32
        Physical values (HU for CT) in stacking order.
    files : list of Path
        Source file of each image, same order.
    positions_mm : ndarray of shape (K,) and dtype float64
        Position along the slice normal; NaN where unknown.
    pixel_spacing_mm : ndarray of shape (K, 2) and dtype float64
        (row, col) spacing per image in mm; NaN rows where the file has none.
    slice_thickness_mm : float or None
    trigger_times_ms : ndarray of shape (K,) and dtype float64
        NaN where absent.
    modality, series_uid, series_description : str
    skipped : list of (Path, str)
        Files of the folder that were not used, with the reason.
    n_positions : int
        Number of distinct slice positions.
    n_phases : int
        Images per position (cine phases); 1 for an ordinary stack. When positions hold
        different numbers of images this is the largest count.
    orientation : tuple of 6 float or None
    ordered_by : {"position", "instance number"}
    image_positions_mm : ndarray of shape (K, 3) and dtype float64
        ``ImagePositionPatient`` of each image (mm, LPS), same order; NaN rows where absent.
    sop_instance_uids : list of str
        ``SOPInstanceUID`` of each image, same order ("" where absent).
    """

    images: np.ndarray
    files: list[Path]
    positions_mm: np.ndarray
    pixel_spacing_mm: np.ndarray
    slice_thickness_mm: float | None
    trigger_times_ms: np.ndarray
    modality: str
    series_uid: str
    series_description: str
    skipped: list[tuple[Path, str]]
    n_positions: int
    n_phases: int
    orientation: tuple[float, ...] | None = None
    ordered_by: str = "position"
    image_positions_mm: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    sop_instance_uids: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        rows_cols = "x".join(str(v) for v in self.images.shape[1:])
        return (
            f"DicomSeries({self.modality or '?'} '{self.series_description}', {len(self.images)} images "
            f"of {rows_cols}, {self.n_positions} positions x {self.n_phases} phases, "
            f"spacing_mm={self.spacing_mm}, uid={self.series_uid})"
        )

    @property
    def is_volume(self) -> bool:
        """True for two or more equally spaced distinct positions and one image per position."""
        return self.slice_spacing_mm is not None

    @property
    def slice_spacing_mm(self) -> float | None:
        """Distance between consecutive positions in mm when the series is a volume, else None.

        :func:`ctseg_helpers.io.geometry.stack_spacing_mm` of the positions (its tolerances
        are documented there).
        """
        return stack_spacing_mm(self.positions_mm)

    @property
    def spacing_mm(self) -> tuple[float, float] | None:
        """Median (row, col) pixel spacing in mm, or None when no image has one."""
        return _median_spacing_mm(self.pixel_spacing_mm)

    def cine(self) -> np.ndarray:
        """Images as (n_positions, n_phases, rows, cols) for a cine series.

        Raises
        ------
        CtsegDataError
            If the positions hold different numbers of images.
        """
        if self.n_positions * self.n_phases != len(self.images):
            raise CtsegDataError(
                f"series {self.series_uid}: {len(self.images)} images do not form "
                f"{self.n_positions} positions x {self.n_phases} phases (some positions have fewer "
                "phases); use .images and .positions_mm instead"
            )
        return self.images.reshape(self.n_positions, self.n_phases, *self.images.shape[1:])


# --------------------------------------------------------------------------------------------
# Reading one file
# --------------------------------------------------------------------------------------------


class _ProcessWideOverride:
    """Hold a process-wide setting at one value while any thread needs it.

    A counter keeps the override while any thread is inside the context and restores the
    value found before when the last one leaves.
    """

    def __init__(self, read, write, value) -> None:
        self._read, self._write, self._value = read, write, value
        self._lock = threading.Lock()
        self._depth = 0
        self._previous = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._previous = self._read()
                self._write(self._value)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._write(self._previous)


def _set_validation_mode(mode: int) -> None:
    _pydicom_config.settings.reading_validation_mode = mode


#: Read real-world headers quietly: invalid UIDs and similar value errors are ignored
#: (pydicom's ``reading_validation_mode`` is global; it is restored when the last reader leaves).
_lenient = _ProcessWideOverride(
    lambda: _pydicom_config.settings.reading_validation_mode, _set_validation_mode, _pydicom_config.IGNORE
)

_PYDICOM_LOGGER = logging.getLogger("pydicom")

#: Silence pydicom's log (decoder tracebacks of plugins that failed) while pixel data is
#: decoded: a failure becomes one CtsegDataError that already lists every decoder's reason.
_quiet_pydicom_log = _ProcessWideOverride(lambda: _PYDICOM_LOGGER.level, _PYDICOM_LOGGER.setLevel, logging.CRITICAL + 1)


def _file_head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(132)


def _plausible_bare_start(head: bytes) -> bool:
    """Could a file without preamble start with a DICOM tag? (group 0000..0028, either byte order)."""
    if len(head) < 8:
        return False
    little = int.from_bytes(head[:2], "little")
    big = int.from_bytes(head[:2], "big")
    return any(group <= 0x0028 and group % 2 == 0 for group in (little, big))


def _looks_like_dicom(ds) -> bool:
    """After a forced read: does the dataset hold real DICOM elements?"""
    if getattr(ds, "file_meta", None) is not None and "TransferSyntaxUID" in ds.file_meta:
        return True
    tags = list(ds.keys())
    if not tags:
        return False
    known = sum(1 for tag in tags if tag in pydicom.datadict.DicomDictionary or tag.is_private)
    return "SOPClassUID" in ds or "PixelData" in ds or ("Modality" in ds and known == len(tags))


def _parse(path: Path, *, headers_only: bool):
    """Read a file with pydicom. Returns (dataset, None) or (None, (kind, reason)).

    ``kind`` is ``"not_dicom"`` or ``"damaged"``. Files without the preamble are parsed only
    when they start like a DICOM data set, so pictures, text and archives are never forced
    through the DICOM parser.
    """
    try:
        head = _file_head(path)
    except OSError as exc:
        return None, ("damaged", f"cannot open the file ({exc.strerror or exc}); check its permissions")
    has_preamble = len(head) == 132 and head[128:132] == b"DICM"
    if not has_preamble and not _plausible_bare_start(head):
        return None, ("not_dicom", "not a DICOM file")
    try:
        ds = pydicom.dcmread(path, force=True, defer_size=1024 if headers_only else None)
        plausible = _looks_like_dicom(ds)
    except Exception as exc:  # noqa: BLE001 - parsing damaged or foreign bytes can fail anywhere
        if has_preamble:
            return None, ("damaged", f"damaged DICOM file (truncated or corrupt): {exc}")
        return None, ("not_dicom", "not a DICOM file")
    if not plausible:
        if has_preamble:
            return None, ("damaged", "damaged DICOM file: no readable data elements")
        return None, ("not_dicom", "not a DICOM file")
    _infer_transfer_syntax(ds)
    return ds, None


def _infer_transfer_syntax(ds) -> None:
    """Give a bare dataset (no file meta, as old scanners wrote) the syntax it was read with."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return
    if implicit:
        syntax = pydicom.uid.ImplicitVRLittleEndian
    else:
        syntax = pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian
    if meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax


def _non_image_reason(ds) -> tuple[str, str] | None:
    """Why a dataset is not a usable 2D image, as (kind, reason); None when it is one.

    ``kind`` is ``"damaged"`` for an image header without pixel data (a truncated file),
    ``"skipped"`` otherwise.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if "Rows" in ds and "Columns" in ds and "BitsAllocated" in ds:
            return "damaged", "truncated DICOM image: the header is there but the pixel data is missing"
        sop = str(ds.get("SOPClassUID", "") or "")
        modality = str(ds.get("Modality", "") or "").upper()
        if sop:
            name = pydicom.uid.UID(sop).name
            what = _NON_IMAGE_MODALITIES.get(modality, name if name != sop else f"SOP class {sop}")
        else:
            what = _NON_IMAGE_MODALITIES.get(modality, "DICOM object")
        return "skipped", f"non-image DICOM ({what}): no pixel data"
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        photometric = str(ds.get("PhotometricInterpretation", "") or "colour")
        return "skipped", (f"colour image ({photometric}, {samples} samples per pixel): ctseg reads greyscale slices")
    if str(ds.get("PhotometricInterpretation", "") or "").strip().upper() == "PALETTE COLOR":
        return "skipped", (
            "colour image (PALETTE COLOR: pixel values index a colour table): ctseg reads greyscale slices"
        )
    frames = _int_or_none(ds.get("NumberOfFrames", None))
    if frames is not None and frames > 1:
        return "skipped", (
            f"multi-frame image ({frames} frames): ctseg reads one slice per file; "
            "export the series as single-frame files"
        )
    return None


def _float_or_none(value) -> float | None:
    try:
        if value is None or value == "":
            return None
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if np.isfinite(result) else None


def _int_or_none(value) -> int | None:
    try:
        if value is None or value == "":
            return None
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _floats(value, n: int) -> tuple[float, ...] | None:
    try:
        if value is None:
            return None
        items = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(items) != n or not all(np.isfinite(items)):
        return None
    return tuple(items)


def _normal(orientation: tuple[float, ...] | None) -> np.ndarray | None:
    if orientation is None:
        return None
    normal = np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:]))
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        return None
    return normal / length


def _spacing(ds) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = _floats(ds.get(keyword, None), 2)
        if spacing is not None and spacing[0] > 0 and spacing[1] > 0:
            return spacing
    return None


@dataclass(frozen=True)
class _Header:
    path: Path
    series_uid: str
    series_description: str
    modality: str
    patient_id: str
    study_uid: str
    rows: int
    columns: int
    pixel_spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None
    image_position_mm: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    instance_number: int | None
    trigger_time_ms: float | None
    transfer_syntax: str
    sop_instance_uid: str = ""


def _header(path: Path, ds) -> _Header:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID", None) if meta is not None else None
    return _Header(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        patient_id=str(ds.get("PatientID", "") or ""),
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        rows=_int_or_none(ds.get("Rows", None)) or 0,
        columns=_int_or_none(ds.get("Columns", None)) or 0,
        pixel_spacing_mm=_spacing(ds),
        slice_thickness_mm=_float_or_none(ds.get("SliceThickness", None)),
        image_position_mm=_floats(ds.get("ImagePositionPatient", None), 3),
        orientation=_floats(ds.get("ImageOrientationPatient", None), 6),
        instance_number=_int_or_none(ds.get("InstanceNumber", None)),
        trigger_time_ms=_float_or_none(ds.get("TriggerTime", None)),
        transfer_syntax=pydicom.uid.UID(str(syntax)).name if syntax else "",
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
    )


def _position(header: _Header, normal: np.ndarray | None) -> float | None:
    if header.image_position_mm is None or normal is None:
        return None
    return float(np.dot(np.asarray(header.image_position_mm), normal))


def _syntax_text(ds) -> str:
    """'<name> (<uid>)' of the transfer syntax the pixel data was stored with."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID", None) if meta is not None else None
    if not syntax:
        return "unknown (no file meta)"
    name = pydicom.uid.UID(str(syntax)).name
    return f"{name} ({syntax})" if name != str(syntax) else str(syntax)


def _rescale_problem(ds) -> str | None:
    """Why ``RescaleSlope``/``RescaleIntercept`` cannot give physical values; None when they can.

    A Modality LUT, when present, replaces the rescale, so the tags are not checked then.
    """
    if ds.get("ModalityLUTSequence"):
        return None
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if keyword not in ds:
            continue
        value = _float_or_none(ds[keyword].value)
        if keyword == "RescaleSlope" and value == 0:
            return (
                "RescaleSlope is 0, which makes every pixel the same value; fix or remove the "
                "RescaleSlope tag, or re-export the series from the scanner or PACS"
            )
        if value is None:
            raw = ds[keyword].value
            shown = "empty" if raw is None or raw == "" else repr(str(raw))
            return (
                f"{keyword} is {shown}, not a finite number, so no pixel value "
                f"can be computed; fix or remove the {keyword} tag, or re-export the series"
            )
    return None


def _decode(path: Path, ds) -> np.ndarray:
    """Pixel array as physical values.

    Returns
    -------
    ndarray of shape (rows, cols) and dtype float32

    Raises
    ------
    CtsegDataError
        Naming the file: pixel data that cannot be decoded (with the transfer syntax) or that
        does not match Rows x Columns, a rescale or Modality LUT that cannot give physical
        values, NaN or infinite results.
    """
    problem = _rescale_problem(ds)
    if problem is not None:
        raise CtsegDataError(f"{path}: {problem}")
    values = _physical(path, ds, _stored_pixels(path, ds))
    if not np.isfinite(values).all():
        raise CtsegDataError(
            f"{path}: {np.count_nonzero(~np.isfinite(values))} pixel(s) are NaN or infinite (in the "
            "pixel data or after RescaleSlope/RescaleIntercept); fix the file or re-export the series"
        )
    return np.ascontiguousarray(values, dtype=np.float32)


def _stored_pixels(path: Path, ds) -> np.ndarray:
    """Stored pixel values (Rows, Columns), decoded with pydicom's log silenced."""
    try:
        with _quiet_pydicom_log():
            raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean "cannot decode"
        reason = " ".join(str(exc).split())  # pydicom lists each decoder's failure on its own line
        raise CtsegDataError(
            f"{path}: cannot decode the pixel data (transfer syntax {_syntax_text(ds)}): {reason}. "
            "The file may be truncated or corrupt; otherwise convert it to uncompressed DICOM "
            "(e.g. 'gdcmconv --raw' or 'dcmdjpeg') and try again"
        ) from exc
    expected = (_int_or_none(ds.get("Rows", None)), _int_or_none(ds.get("Columns", None)))
    if raw.shape != expected:
        raise CtsegDataError(
            f"{path}: the pixel data decodes to an array of shape {raw.shape}, not one slice of "
            f"Rows x Columns = {expected[0]}x{expected[1]}; Rows, Columns, BitsAllocated or "
            "NumberOfFrames do not match the pixel data: fix the header or re-export the series"
        )
    return raw


def _physical(path: Path, ds, raw: np.ndarray) -> np.ndarray:
    """Stored values (rows, cols) to float32 physical values; MONOCHROME1 inverted."""
    try:
        # Values beyond float32 become inf here and are refused by the caller, without a warning.
        with np.errstate(over="ignore", invalid="ignore"):
            values = _modality_lut(raw, ds).astype(np.float32, copy=False)
            if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
                low, high = _stored_range_physical(ds)
                values = (np.float32(low + high) - values).astype(np.float32)
    except Exception as exc:  # noqa: BLE001 - a broken Modality LUT fails in many ways
        reason = " ".join(str(exc).split())
        raise CtsegDataError(
            f"{path}: cannot turn stored pixel values into physical values with its Modality LUT "
            f"or rescale tags ({type(exc).__name__}: {reason}); fix or remove ModalityLUTSequence, "
            "or re-export the series"
        ) from exc
    return values


def _modality_lut(stored: np.ndarray, ds) -> np.ndarray:
    """Stored values to physical values: Modality LUT, else ``RescaleSlope``/``RescaleIntercept``.

    Unlike pydicom's ``apply_modality_lut``, a lone ``RescaleIntercept`` (or ``RescaleSlope``)
    is applied too, with the missing one taken as slope 1 (or intercept 0), as GDCM and ITK
    read such files: otherwise a CT slice without RescaleSlope would be off by its intercept.
    """
    if ds.get("ModalityLUTSequence") or ("RescaleSlope" in ds) == ("RescaleIntercept" in ds):
        return pydicom.pixels.apply_modality_lut(stored, ds)
    slope = float(ds.get("RescaleSlope", 1.0))
    intercept = float(ds.get("RescaleIntercept", 0.0))
    return stored.astype(np.float64) * slope + intercept


def _stored_range_physical(ds) -> tuple[float, float]:
    """Physical values of the smallest and largest storable pixel value."""
    bits = int(ds.get("BitsStored", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2**bits - 1])
    physical = _modality_lut(stored.astype(np.int64), ds)
    physical = np.asarray(physical, dtype=np.float64)
    return float(physical.min()), float(physical.max())


def read_dicom_file(path: str | Path) -> DicomImage:
    """Read one DICOM image file.

    Files without the preamble or the ``.dcm`` extension, with invalid UIDs or missing
    optional tags are read normally. Compressed transfer syntaxes (JPEG baseline and lossless,
    JPEG-LS, JPEG 2000, RLE) are decoded by the installed pydicom plugins.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    DicomImage
        ``pixels`` is float32 (rows, cols) in physical units: a Modality LUT, else
        ``RescaleSlope``/``RescaleIntercept`` (a lone one applied with the other taken as 1 or
        0). MONOCHROME1 images are inverted as ``low + high - value``, where ``low``/``high``
        are the physical values of the smallest and largest storable pixel value, so that
        bright means a high value.

    Raises
    ------
    CtsegDataError
        If the file does not exist, is not DICOM, is damaged, holds no image (RT structure
        set, report, presentation state), is a colour (RGB, YBR, PALETTE COLOR) or
        multi-frame image, has a ``RescaleSlope`` of 0 or a rescale tag that is not a finite
        number, its pixel data cannot be decoded (the message names the transfer syntax) or
        does not match Rows x Columns, or its physical values are NaN or infinite.
    """
    path = Path(path)
    if not path.is_file():
        raise CtsegDataError(f"{path}: no such file; check the path")
    with _lenient():
        ds, problem = _parse(path, headers_only=False)
        if problem is not None:
            kind, reason = problem
            hint = "replace it with an intact copy" if kind == "damaged" else "select a DICOM image file"
            raise CtsegDataError(f"{path}: {reason}; {hint}")
        problem = _non_image_reason(ds)
        if problem is not None:
            kind, reason = problem
            hint = "replace it with an intact copy" if kind == "damaged" else "select a DICOM image file"
            raise CtsegDataError(f"{path}: {reason}; {hint}")
        header = _header(path, ds)
        pixels = _decode(path, ds)
    return DicomImage(
        path=path,
        pixels=pixels,
        pixel_spacing_mm=header.pixel_spacing_mm,
        slice_thickness_mm=header.slice_thickness_mm,
        position_mm=_position(header, _normal(header.orientation)),
        image_position_mm=header.image_position_mm,
        orientation=header.orientation,
        instance_number=header.instance_number,
        trigger_time_ms=header.trigger_time_ms,
        modality=header.modality,
        series_uid=header.series_uid,
        series_description=header.series_description,
        patient_id=header.patient_id,
        study_uid=header.study_uid,
        transfer_syntax=header.transfer_syntax,
    )


# --------------------------------------------------------------------------------------------
# Scanning a folder
# --------------------------------------------------------------------------------------------


def _names(paths: list[Path], limit: int = 3) -> str:
    """File names (not paths) for a message: 'a.dcm, b.dcm, c.dcm and 4 more'."""
    shown = ", ".join(p.name for p in paths[:limit])
    return f"{shown} and {len(paths) - limit} more" if len(paths) > limit else shown


def _candidate_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
        key=natural_key,
    )


def _check_folder(folder: Path) -> None:
    if not folder.exists():
        raise CtsegDataError(f"{folder}: no such folder; check the path")
    if not folder.is_dir():
        raise CtsegDataError(f"{folder}: is a file, not a folder; select the folder that holds the series")


def _orientation_groups(headers: list[_Header]) -> list[list[_Header]]:
    """Headers grouped by orientation, largest group first; headers without one are left out.

    Orientations equal to 4 decimals count as one, so header round-off does not split them.
    """
    groups: dict[tuple[float, ...], list[_Header]] = {}
    for h in headers:
        if h.orientation is not None:
            groups.setdefault(tuple(round(v, 4) + 0.0 for v in h.orientation), []).append(h)
    return sorted(groups.values(), key=len, reverse=True)


def _main_orientation(headers: list[_Header]) -> tuple[tuple[float, ...] | None, int]:
    """The most common orientation of a series (as stored) and how many distinct ones it has."""
    groups = _orientation_groups(headers)
    return (groups[0][0].orientation if groups else None), len(groups)


def _warn_mixed_orientations(headers: list[_Header]) -> None:
    """Log which files of a series lie in another orientation than the most common one."""
    groups = _orientation_groups(headers)
    if len(groups) < 2:
        return
    odd = [h.path for group in groups[1:] for h in group]
    logger.warning(
        "series %s mixes %d slice orientations; positions are measured along the most common one "
        "(%d files); %d file(s) lie in another orientation: %s; move them (e.g. a localizer) to "
        "another folder",
        headers[0].series_uid,
        len(groups),
        len(groups[0]),
        len(odd),
        _names(odd),
    )


def _series_order(headers: list[_Header]) -> tuple[list[_Header], np.ndarray, str]:
    """Sort headers of one series; returns (sorted headers, positions, ordered_by)."""
    _warn_mixed_orientations(headers)
    normal = _normal(_main_orientation(headers)[0])
    positions = [_position(h, normal) for h in headers]
    inf = float("inf")

    def time_key(i: int) -> tuple:
        h = headers[i]
        return (
            h.trigger_time_ms if h.trigger_time_ms is not None else inf,
            h.instance_number if h.instance_number is not None else inf,
            natural_key(h.path),
        )

    if all(p is not None for p in positions):
        order = sorted(range(len(headers)), key=lambda i: (positions[i], time_key(i)))
        # Images within POSITION_TOLERANCE_MM share a position: order each group by time.
        final: list[int] = []
        for start, stop in position_groups(np.array([positions[i] for i in order])):
            final.extend(sorted(order[start:stop], key=time_key))
        return ([headers[i] for i in final], np.array([positions[i] for i in final], dtype=np.float64), "position")
    if len(headers) > 1:
        lacking = [h.path for h, p in zip(headers, positions, strict=True) if p is None]
        logger.warning(
            "series %s: %d of %d images lack ImagePositionPatient/ImageOrientationPatient (%s); "
            "ordering by InstanceNumber instead",
            headers[0].series_uid,
            len(lacking),
            len(headers),
            _names(lacking),
        )
    order = sorted(range(len(headers)), key=lambda i: time_key(i)[1:])
    return (
        [headers[i] for i in order],
        np.array([np.nan if positions[i] is None else positions[i] for i in order]),
        "instance number",
    )


def _series_info(headers: list[_Header], skipped: list[tuple[Path, str]]) -> SeriesInfo:
    ordered, positions, ordered_by = _series_order(headers)
    thicknesses = Counter(h.slice_thickness_mm for h in ordered if h.slice_thickness_mm is not None)
    return SeriesInfo(
        series_uid=ordered[0].series_uid,
        series_description=ordered[0].series_description,
        modality=ordered[0].modality,
        files=[h.path for h in ordered],
        positions_mm=positions,
        trigger_times_ms=np.array(
            [np.nan if h.trigger_time_ms is None else h.trigger_time_ms for h in ordered], dtype=np.float64
        ),
        instance_numbers=[h.instance_number for h in ordered],
        shapes=[(h.rows, h.columns) for h in ordered],
        pixel_spacing_mm=pixel_spacing_array_mm([h.pixel_spacing_mm for h in ordered]),
        slice_thickness_mm=thicknesses.most_common(1)[0][0] if thicknesses else None,
        ordered_by=ordered_by,
        skipped=list(skipped),
        orientation=_main_orientation(ordered)[0],
        image_positions_mm=np.array([h.image_position_mm or (np.nan,) * 3 for h in ordered], dtype=np.float64).reshape(
            -1, 3
        ),
        sop_instance_uids=[h.sop_instance_uid for h in ordered],
    )


def scan_dicom_folder(folder: str | Path) -> FolderScan:
    """List what a folder holds, reading headers only.

    Parameters
    ----------
    folder : path-like
        The folder a user selected; files directly inside it are read (not subfolders).

    Returns
    -------
    FolderScan
        The image series (largest first, files in stacking order) and the files skipped or
        damaged, each with a reason. Skipped and damaged files are also logged as warnings
        (count and the first ten names).

    Raises
    ------
    CtsegDataError
        If the folder does not exist or holds no files.
    """
    folder = Path(folder)
    _check_folder(folder)
    files = _candidate_files(folder)
    if not files:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
        hint = (
            f"; it has {len(subfolders)} subfolder(s) ({', '.join(subfolders[:5])}"
            f"{', ...' if len(subfolders) > 5 else ''}): select the one holding the images"
            if subfolders
            else "; select the folder that holds the DICOM files"
        )
        raise CtsegDataError(f"{folder}: the folder is empty{hint}")
    by_series: dict[str, list[_Header]] = {}
    skipped: list[tuple[Path, str]] = []
    damaged: list[tuple[Path, str]] = []
    with _lenient():
        for path in files:
            ds, problem = _parse(path, headers_only=True)
            if problem is not None:
                kind, reason = problem
                (damaged if kind == "damaged" else skipped).append((path, reason))
                continue
            problem = _non_image_reason(ds)
            if problem is None and (rescale := _rescale_problem(ds)) is not None:
                problem = ("damaged", rescale)
            if problem is not None:
                kind, reason = problem
                (damaged if kind == "damaged" else skipped).append((path, reason))
                continue
            header = _header(path, ds)
            by_series.setdefault(header.series_uid, []).append(header)
    if skipped:
        logger.warning(
            "%s: skipped %d file(s) that are not DICOM images: %s",
            folder,
            len(skipped),
            ", ".join(f"{p.name} ({r})" for p, r in skipped[:10]) + (", ..." if len(skipped) > 10 else ""),
        )
    if damaged:
        logger.warning(
            "%s: %d damaged DICOM file(s): %s", folder, len(damaged), ", ".join(p.name for p, _ in damaged[:10])
        )
    folder_skipped = skipped + damaged
    series = [_series_info(h, folder_skipped) for h in by_series.values()]
    series.sort(key=lambda s: (-s.n_images, s.series_description, s.series_uid))
    return FolderScan(folder=folder, series=series, skipped=skipped, damaged=damaged)


# --------------------------------------------------------------------------------------------
# Reading a series
# --------------------------------------------------------------------------------------------


def _describe_series(series: list[SeriesInfo]) -> str:
    return "; ".join(
        f"'{s.series_description or '(no description)'}' ({s.modality or '?'}, {s.n_images} images, "
        f"uid {s.series_uid or '(none)'})"
        for s in series
    )


def _select_series(scan: FolderScan, series_uid: str | None) -> SeriesInfo:
    folder = scan.folder
    scan.require_images()
    if series_uid is not None:
        for info in scan.series:
            if info.series_uid == series_uid:
                return info
        raise CtsegDataError(
            f"{folder}: no series with uid {series_uid}; the folder holds {len(scan.series)} "
            f"series: {_describe_series(scan.series)}"
        )
    if len(scan.series) > 1:
        raise CtsegDataError(
            f"{folder}: the folder holds {len(scan.series)} series; pick one with series_uid= "
            f"(or --series-uid): {_describe_series(scan.series)}"
        )
    return scan.series[0]


def _check_sizes(folder: Path, info: SeriesInfo) -> None:
    sizes = Counter(info.shapes)
    if len(sizes) > 1:
        examples = []
        for size, count in sizes.most_common():
            example = next(p for p, s in zip(info.files, info.shapes, strict=True) if s == size)
            examples.append(f"{size[0]}x{size[1]} ({count} files, e.g. {example.name})")
        raise CtsegDataError(
            f"{folder}: images of different sizes in series {info.series_uid}: {', '.join(examples)}; "
            "a series must have one image size: move the odd files to another folder"
        )


def _warn_uneven_positions(folder: Path, info: SeriesInfo) -> None:
    """Log the files at positions holding another number of images than most (duplicates)."""
    if info.n_positions * info.n_phases == info.n_images:
        return
    groups = position_groups(info.positions_mm)
    common = Counter(stop - start for start, stop in groups).most_common(1)[0][0]
    odd = [info.files[i] for start, stop in groups if stop - start != common for i in range(start, stop)]
    logger.warning(
        "%s: the %d positions hold different numbers of images (most hold %d, at most %d); "
        "%d file(s) at the other positions: %s; remove duplicate copies of a slice, or move "
        "stray images to another folder",
        folder,
        info.n_positions,
        common,
        info.n_phases,
        len(odd),
        _names(odd),
    )


def read_dicom_series(folder: str | Path, series_uid: str | None = None, *, progress: bool = False) -> DicomSeries:
    """Read one series from a folder and stack it in order.

    Parameters
    ----------
    folder : path-like
        Folder holding the files (not its subfolders).
    series_uid : str, optional
        SeriesInstanceUID to read when the folder holds several series.
    progress : bool
        Show a progress bar while reading pixel data.

    Returns
    -------
    DicomSeries
        ``images`` float32 (K, rows, cols) ordered by position along the slice normal, then
        trigger time (see the module documentation).

    Raises
    ------
    CtsegDataError
        Missing or empty folder; no DICOM images in it; several series and no (or an unknown)
        ``series_uid`` (the message lists each series); a damaged file (including a
        ``RescaleSlope`` of 0 or a rescale tag that is not a finite number); images of
        different sizes in the series; pixel data that cannot be decoded; any other problem
        :func:`read_dicom_file` refuses.

    Notes
    -----
    Logged warnings name the files concerned: images in another orientation than most of
    the series, images without position, positions holding more (duplicates) or fewer
    images than most.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415 - keeps import of this module light

    folder = Path(folder)
    scan = scan_dicom_folder(folder)
    if scan.damaged:
        path, reason = scan.damaged[0]
        raise CtsegDataError(
            f"{path}: {reason}; {len(scan.damaged)} damaged file(s) in {folder}"
            f" ({', '.join(p.name for p, _ in scan.damaged[:10])}); replace or remove them"
        )
    info = _select_series(scan, series_uid)
    _check_sizes(folder, info)
    rows, cols = info.shapes[0]
    images = np.empty((info.n_images, rows, cols), dtype=np.float32)
    with _lenient():
        for index, path in enumerate(tqdm(info.files, desc="reading DICOM", unit="file", disable=not progress)):
            ds, problem = _parse(path, headers_only=False)
            if problem is not None:
                raise CtsegDataError(f"{path}: {problem[1]}; replace or remove the file")
            pixels = _decode(path, ds)
            if pixels.shape != (rows, cols):
                raise CtsegDataError(
                    f"{path}: the image is {pixels.shape[0]}x{pixels.shape[1]} now, but "
                    f"{rows}x{cols} when the folder was scanned; the file changed while reading: "
                    "try again once it is no longer being written"
                )
            images[index] = pixels
    _warn_uneven_positions(folder, info)
    return DicomSeries(
        images=images,
        files=list(info.files),
        positions_mm=info.positions_mm.copy(),
        pixel_spacing_mm=info.pixel_spacing_mm.copy(),
        slice_thickness_mm=info.slice_thickness_mm,
        trigger_times_ms=info.trigger_times_ms.copy(),
        modality=info.modality,
        series_uid=info.series_uid,
        series_description=info.series_description,
        skipped=list(info.skipped),
        n_positions=info.n_positions,
        n_phases=info.n_phases,
        orientation=info.orientation,
        ordered_by=info.ordered_by,
        image_positions_mm=info.image_positions_mm.copy(),
        sop_instance_uids=list(info.sop_instance_uids),
    )


def read_dicom_headers(files: list[str | Path]) -> list[pydicom.Dataset]:
    """The headers of DICOM files as pydicom datasets, without their pixel data.

    Read as leniently as :func:`read_dicom_series` reads them (invalid UIDs and similar value
    errors ignored), for writers that copy or reference the source images (DICOM-SEG).

    Parameters
    ----------
    files : list of path-like

    Returns
    -------
    list of pydicom.Dataset
        One per file, same order; large values such as ``PixelData`` are read only if accessed.

    Raises
    ------
    CtsegDataError
        If a file is missing or cannot be read as DICOM (naming it).
    """
    datasets = []
    with _lenient():
        for path in map(Path, files):
            if not path.is_file():
                raise CtsegDataError(
                    f"{path}: no such file; it was read before and has been moved or removed since: "
                    "put it back, or segment the folder again"
                )
            ds, problem = _parse(path, headers_only=True)
            if problem is not None:
                raise CtsegDataError(
                    f"{path}: {problem[1]}; it was read before and has changed since: segment the folder again"
                )
            for element in ds.iterall():  # values are converted on first access: do it here, leniently
                if element.keyword not in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
                    _ = element.value
            datasets.append(ds)
    return datasets


__all__ = [
    "DicomImage",
    "DicomSeries",
    "FolderScan",
    "SeriesInfo",
    "read_dicom_file",
    "read_dicom_headers",
    "read_dicom_series",
    "scan_dicom_folder",
    "POSITION_TOLERANCE_MM",
]
