"""Read NIfTI volumes (``.nii``, ``.nii.gz``) as a stack of 2D slices, with their labels; write label maps.

Datasets such as the liver tutorial's (LiTS, Medical Segmentation Decathlon) come as one
image volume and one label volume per patient. :func:`read_nifti_slices` cuts both along one
array axis into the ``(K, M, N)`` stacks the rest of ctseg works with.

Slices follow the array's storage order (no reorientation); the in-plane spacing comes from
the header's voxel sizes (``zooms``). NaN and +-Inf image voxels are replaced by the volume's
minimum finite value, with one warning naming the file
(:func:`~ctseg_helpers.io.datafile.replace_nonfinite`).

Writing: :func:`write_series_nifti` writes the label maps of one DICOM series as a NIfTI
label volume that 3D Slicer, ITK-SNAP and other NIfTI viewers overlay on the scan.

- **Affine** (:func:`dicom_affine`): voxel ``(i, j, k)`` is column ``i``, row ``j`` of slice
  ``k``; its DICOM position is ``P_k + i * col_spacing * row_cosines + j * row_spacing *
  col_cosines`` (``ImagePositionPatient`` ``P_k``, ``ImageOrientationPatient``,
  ``PixelSpacing`` = (row spacing, column spacing)). The slice step is the 3D vector
  ``(P_last - P_first) / (K - 1)`` (so a tilted gantry's shear is kept in the sform; the qform,
  which cannot shear, then holds the nearest rotation and zooms), or the
  slice normal times ``SliceThickness`` (the column spacing without one) for one slice. DICOM
  patient coordinates are LPS, NIfTI's are RAS: x and y change sign.
- **Data**: the ``(K, rows, cols)`` label stack stored as ``(cols, rows, K)``, uint8, with the
  qform and sform both set to that affine (code 1, scanner), units mm, intent "label".
- **Cine** series (several images per position, the same number at every position) are
  written as one 4D volume ``(cols, rows, positions, phases)``; the time step is the median
  ``TriggerTime`` step (ms) when known.
- :func:`write_volume_nifti` writes a ``(z, y, x)`` label volume (``ctseg segment-volume
  --nifti``) with a given ``(z, y, x)`` affine; :func:`stack_affine` and :func:`reorder_affine`
  give that affine for a DICOM stack (what ``ctseg convert`` records as ``affine_ras``).
- Series that fit no regular grid (unevenly spaced positions, positions holding different
  numbers of images, slices without ``ImagePositionPatient``/``ImageOrientationPatient``) are
  refused with a :class:`~ctseg_helpers.errors.CtsegDataError` saying why.

The module never imports TensorFlow or Keras.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.datafile import replace_nonfinite
from ctseg_helpers.io.geometry import SPACING_ATOL_MM, SPACING_RTOL, position_groups
from ctseg_helpers.io.labels import check_num_labels

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class NiftiSlices:
    """Slices cut from a NIfTI volume.

    Attributes
    ----------
    slices : ndarray of shape (K, M, N) and dtype float32
        Image values with the header's scaling (``scl_slope``/``scl_inter``) applied; NaN and
        +-Inf voxels replaced by the volume's minimum finite value (with a warning).
    labels : ndarray of shape (K, M, N) and dtype uint8, or None
        Label values, when a label volume was given.
    spacing_mm : (float, float)
        In-plane voxel size (along M, along N) in mm.
    slice_spacing_mm : float
        Voxel size along the cut axis in mm.
    axis : int
        The array axis the volume was cut along.
    affine : ndarray of shape (4, 4)
        The image's voxel-to-world matrix.
    image_path, label_path : Path, Path or None
    """

    slices: np.ndarray
    labels: np.ndarray | None
    spacing_mm: tuple[float, float]
    slice_spacing_mm: float
    axis: int
    affine: np.ndarray
    image_path: Path
    label_path: Path | None = None

    def __len__(self) -> int:
        return len(self.slices)


def _load(path: Path):
    import nibabel as nib  # noqa: PLC0415 - keeps `import ctseg_helpers.io` light

    if not path.is_file():
        raise CtsegDataError(f"{path}: no such NIfTI file; check the path")
    try:
        img = nib.load(path)
    except Exception as exc:  # noqa: BLE001 - nibabel raises ImageFileError, OSError, EOFError...
        raise CtsegDataError(f"{path}: cannot read it as NIfTI ({exc}); give a .nii or .nii.gz volume") from exc
    if not hasattr(img, "dataobj") or len(img.shape) not in (3, 4):
        raise CtsegDataError(f"{path}: not a NIfTI volume; give a .nii or .nii.gz volume")
    shape = img.shape
    if len(shape) == 4:
        if shape[3] != 1:
            raise CtsegDataError(
                f"{path}: 4D volume of shape {shape} ({shape[3]} volumes); give a 3D volume "
                "(split the time/channel axis first)"
            )
    return img


def _data(path: Path, img, dtype) -> np.ndarray:
    try:
        if dtype is not None:
            data = img.get_fdata(dtype=dtype, caching="unchanged")
        else:
            data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - truncated gzip raises EOFError, zlib.error, OSError...
        raise CtsegDataError(f"{path}: the volume's data cannot be read ({exc}); the file may be truncated") from exc
    if data.ndim == 4:
        data = data[..., 0]
    return data


def read_nifti_slices(
    image_path: str | Path, label_path: str | Path | None = None, axis: int = 2, *, num_labels: int | None = None
) -> NiftiSlices:
    """Read a NIfTI image volume (and optionally its label volume) as 2D slices.

    Parameters
    ----------
    image_path : path-like
        3D volume (a 4D volume with one volume is accepted).
    label_path : path-like, optional
        Label volume of the same shape, integer values 0..num_labels.
    axis : {0, 1, 2}
        Array axis to cut along; 2 gives axial slices for most CT volumes.
    num_labels : int, optional
        When given, label values above it are an error.

    Returns
    -------
    NiftiSlices
        ``slices`` float32 (K, M, N) where K is the length of ``axis``; ``labels`` uint8 of the
        same shape or None; ``spacing_mm`` the zooms of the two remaining axes in mm.

    Raises
    ------
    CtsegDataError
        Missing or unreadable file, 4D data, no finite image voxel, image and label shapes
        differ (both files named),
        label values that are negative, not whole numbers or above ``num_labels``/255.
    CtsegSettingsError
        ``axis`` not 0, 1 or 2; ``num_labels`` outside 1..255.
    """
    if axis not in (0, 1, 2):
        raise CtsegSettingsError(f"axis must be 0, 1 or 2 (the array axis to cut along), got {axis!r}")
    image_path = Path(image_path)
    img = _load(image_path)
    volume = replace_nonfinite(image_path, _data(image_path, img, np.float32))
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    unit = img.header.get_xyzt_units()[0]
    scale = {"meter": 1000.0, "micron": 1e-3}.get(unit, 1.0)
    zooms = [z * scale for z in zooms]
    in_plane = [z for i, z in enumerate(zooms) if i != axis]
    labels = None
    label_path = Path(label_path) if label_path is not None else None
    if label_path is not None:
        limit = check_num_labels(num_labels) if num_labels is not None else 255
        lab = _load(label_path)
        if tuple(lab.shape[:3]) != tuple(img.shape[:3]):
            raise CtsegDataError(
                f"label volume {label_path} has shape {tuple(lab.shape)} but image volume {image_path} "
                f"has shape {tuple(img.shape)}; give the label volume made for this image"
            )
        if not np.allclose(lab.affine, img.affine, atol=1e-3):
            logger.warning("%s and %s have different affines; using the image's geometry", label_path, image_path)
        raw = _data(label_path, lab, None)
        if raw.dtype.kind == "f" and not np.array_equal(raw, np.round(raw)):
            raise CtsegDataError(
                f"{label_path}: label values must be whole numbers; found non-integer values "
                "(was the label volume resampled with interpolation?)"
            )
        bad = np.unique(raw[(raw < 0) | (raw > limit)])
        if bad.size:
            shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if len(bad) > 10 else "")
            raise CtsegDataError(
                f"{label_path}: label values {shown} are outside 0..{limit}; fix the labels or the num_labels setting"
            )
        labels = np.ascontiguousarray(np.moveaxis(raw.astype(np.uint8), axis, 0))
    return NiftiSlices(
        slices=np.ascontiguousarray(np.moveaxis(volume, axis, 0)),
        labels=labels,
        spacing_mm=(in_plane[0], in_plane[1]),
        slice_spacing_mm=zooms[axis],
        axis=axis,
        affine=np.asarray(img.affine, dtype=np.float64),
        image_path=image_path,
        label_path=label_path,
    )


#: DICOM (LPS) to NIfTI (RAS) patient coordinates: x and y change sign.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def dicom_affine(
    first_position_mm: Sequence[float],
    orientation: Sequence[float],
    pixel_spacing_mm: Sequence[float],
    slice_step_mm: Sequence[float],
) -> np.ndarray:
    """The NIfTI (RAS) voxel-to-world matrix of a stack of DICOM slices.

    Parameters
    ----------
    first_position_mm : (3,) float
        ``ImagePositionPatient`` of the first slice (LPS, mm): the centre of its first pixel.
    orientation : (6,) float
        ``ImageOrientationPatient``: the row direction cosines, then the column direction cosines.
    pixel_spacing_mm : (2,) float
        ``PixelSpacing``: (row spacing, column spacing) in mm, i.e. the distance between
        neighbouring rows, then between neighbouring columns.
    slice_step_mm : (3,) float
        From one slice's ``ImagePositionPatient`` to the next one's (LPS, mm).

    Returns
    -------
    ndarray of shape (4, 4) and dtype float64
        Maps voxel ``(i, j, k, 1)`` (column i, row j, slice k) to RAS millimetres.

    Examples
    --------
    >>> dicom_affine((10, 20, 30), (1, 0, 0, 0, 1, 0), (0.5, 0.8), (0, 0, 2.5))
    array([[ -0.8,   0. ,   0. , -10. ],
           [  0. ,  -0.5,   0. , -20. ],
           [  0. ,   0. ,   2.5,  30. ],
           [  0. ,   0. ,   0. ,   1. ]])
    """
    row_cosines = np.asarray(orientation[:3], dtype=np.float64)
    col_cosines = np.asarray(orientation[3:6], dtype=np.float64)
    row_spacing, col_spacing = (float(v) for v in pixel_spacing_mm)
    lps = np.eye(4)
    lps[:3, 0] = row_cosines * col_spacing  # along a row: the column index i grows
    lps[:3, 1] = col_cosines * row_spacing  # down a column: the row index j grows
    lps[:3, 2] = np.asarray(slice_step_mm, dtype=np.float64)
    lps[:3, 3] = np.asarray(first_position_mm, dtype=np.float64)
    return LPS_TO_RAS @ lps


def _slice_step_mm(
    source: str,
    positions_mm: np.ndarray,
    orientation: Sequence[float],
    pixel_spacing_mm: Sequence[float],
    slice_thickness_mm: float | None,
) -> np.ndarray:
    """The 3D step between consecutive slices at ``positions_mm`` (K, 3); raises when uneven."""
    if len(positions_mm) == 1:
        normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float))
        normal /= np.linalg.norm(normal)
        return normal * (slice_thickness_mm if slice_thickness_mm else float(pixel_spacing_mm[1]))
    step = (positions_mm[-1] - positions_mm[0]) / (len(positions_mm) - 1)
    expected = positions_mm[0] + np.arange(len(positions_mm))[:, None] * step
    deviation = np.linalg.norm(positions_mm - expected, axis=1)
    tolerance = SPACING_RTOL * float(np.linalg.norm(step)) + SPACING_ATOL_MM
    if not np.all(deviation <= tolerance):
        worst = int(np.argmax(deviation))
        raise CtsegDataError(
            f"{source}: the slices are not evenly spaced along one line (slice {worst + 1} of "
            f"{len(positions_mm)} is {deviation[worst]:.3g} mm off), so they fit no NIfTI grid; "
            "the label PNGs hold every slice"
        )
    return step


def stack_affine(
    image_positions_mm: np.ndarray,
    orientation: Sequence[float],
    pixel_spacing_mm: Sequence[float],
    *,
    slice_thickness_mm: float | None = None,
    source: str | Path = "series",
) -> np.ndarray:
    """The NIfTI (RAS) voxel-to-world matrix of a stack of DICOM slices, one image per position.

    The rule of :func:`write_series_nifti` (which calls it): the slice step is the 3D vector
    ``(P_last - P_first) / (K - 1)``, or for one slice the normal times ``slice_thickness_mm``
    (the column spacing without one); then :func:`dicom_affine`.

    Parameters
    ----------
    image_positions_mm : ndarray of shape (K, 3)
        ``ImagePositionPatient`` of each slice in stacking order (LPS, mm), all known.
    orientation : (6,) float
        ``ImageOrientationPatient`` of the stack.
    pixel_spacing_mm : (2,) float
        (row, column) spacing in mm.
    slice_thickness_mm : float, optional
    source : str or Path
        How messages name the stack.

    Returns
    -------
    ndarray of shape (4, 4) and dtype float64
        Maps voxel ``(i, j, k, 1)`` (column i, row j, slice k) to RAS millimetres.

    Raises
    ------
    CtsegDataError
        If the slices are not evenly spaced along one line.
    """
    positions = np.asarray(image_positions_mm, dtype=np.float64).reshape(-1, 3)
    step = _slice_step_mm(str(source), positions, orientation, pixel_spacing_mm, slice_thickness_mm)
    return dicom_affine(positions[0], orientation, pixel_spacing_mm, step)


def reorder_affine(affine: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """The same voxel-to-world matrix for the array with its axes reordered: ``np.transpose(a, axes)``.

    Parameters
    ----------
    affine : ndarray of shape (4, 4)
        Maps voxel indices of array ``a`` to world coordinates.
    axes : sequence of 3 int
        A permutation of (0, 1, 2): axis ``n`` of the new array is axis ``axes[n]`` of ``a``.

    Returns
    -------
    ndarray of shape (4, 4) and dtype float64
        Maps voxel indices of ``np.transpose(a, axes)`` to the same world points.

    Examples
    --------
    Voxel (3, 2, 1) of the transposed array is voxel (1, 2, 3) of ``a``:

    >>> affine = np.diag([0.5, 0.8, 2.5, 1.0])
    >>> affine @ (1, 2, 3, 1), reorder_affine(affine, (2, 1, 0)) @ (3, 2, 1, 1)
    (array([0.5, 1.6, 7.5, 1. ]), array([0.5, 1.6, 7.5, 1. ]))
    """
    out = np.array(affine, dtype=np.float64)
    out[:, :3] = np.asarray(affine, dtype=np.float64)[:, list(axes)]
    return out


def write_volume_nifti(path: str | Path, labels_zyx: np.ndarray, affine_zyx: np.ndarray) -> Path:
    """Write a ``(z, y, x)`` label volume as a NIfTI label map (uint8) stored ``(x, y, z)``.

    Parameters
    ----------
    path : path-like
        Output file, ``.nii.gz`` (compressed) or ``.nii``.
    labels_zyx : ndarray of shape (Z, Y, X) and dtype uint8
        Held whole in memory (nibabel writes from memory); not copied.
    affine_zyx : ndarray of shape (4, 4)
        Maps ``(z, y, x, 1)`` voxel indices to RAS mm (the ``affine_ras`` that
        :func:`~ctseg_helpers.io.convert.convert_to_hdf5` records).

    Returns
    -------
    Path
        ``path``; NIfTI voxel ``(i, j, k)`` holds ``labels_zyx[k, j, i]`` and the affine is
        ``reorder_affine(affine_zyx, (2, 1, 0))``, set as qform and sform (code 1), units mm,
        intent "label".
    """
    import nibabel as nib  # noqa: PLC0415 - keeps `import ctseg_helpers.io` light

    affine = reorder_affine(affine_zyx, (2, 1, 0))
    img = nib.Nifti1Image(np.asarray(labels_zyx, dtype=np.uint8).transpose(2, 1, 0), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_intent("label")
    img.header["descrip"] = b"ctseg label map"
    img.header.set_xyzt_units("mm")
    img.header.set_zooms(tuple(np.sqrt((affine[:3, :3] ** 2).sum(axis=0))))
    path = Path(path)
    nib.save(img, path)
    return path


def write_series_nifti(
    path: str | Path,
    labels: np.ndarray,
    image_positions_mm: np.ndarray,
    positions_mm: Sequence[float],
    orientation: Sequence[float] | None,
    pixel_spacing_mm: Sequence[float],
    *,
    slice_thickness_mm: float | None = None,
    trigger_times_ms: Sequence[float] | None = None,
    source: str | Path = "series",
    probability: bool = False,
) -> Path:
    """Write the label maps of one DICOM series as a NIfTI label volume on the scan's grid.

    With ``probability`` the maps are one ROI's probabilities quantised to 0..255
    (:func:`~ctseg_helpers.io.probabilities.quantise`) instead: stored as uint8 with the
    header's scale ``scl_slope`` = 1/255, so viewers and nibabel read probabilities 0..1, and
    marked with the intent ``estimate`` named ``probability``.

    Parameters
    ----------
    path : path-like
        Output file, ``.nii.gz`` (compressed) or ``.nii``.
    labels : ndarray of shape (K, M, N), integer values 0..255
        Label maps in the series' stacking order (by position along the slice normal, then
        by trigger time, as :func:`~ctseg_helpers.io.dicom.read_dicom_series` stacks them).
    image_positions_mm : ndarray of shape (K, 3)
        ``ImagePositionPatient`` of each image (LPS, mm); NaN where unknown.
    positions_mm : sequence of K float
        Position of each image along the slice normal (mm); images within
        :data:`~ctseg_helpers.io.geometry.POSITION_TOLERANCE_MM` share a position (cine phases).
    orientation : (6,) float or None
        ``ImageOrientationPatient`` of the series.
    pixel_spacing_mm : (2,) or (K, 2) float
        (row, column) spacing in mm, of the series or of each image (they must agree).
    slice_thickness_mm : float, optional
        The slice step of a series of one position (else the column spacing is used).
    trigger_times_ms : sequence of K float, optional
        ``TriggerTime`` per image (NaN where absent): the time step of a cine volume.
    source : str or Path
        How messages name the series.
    probability : bool
        The maps are quantised probabilities, not label values (see above).

    Returns
    -------
    Path
        ``path``; the file holds a 3D volume ``(N, M, positions)`` or, for a cine series, a
        4D volume ``(N, M, positions, phases)``, uint8, affine :func:`dicom_affine`.

    Raises
    ------
    CtsegDataError
        Naming ``source`` and why, when the images fit no regular grid: a position or the
        orientation unknown, pixel spacings that differ between images, positions holding
        different numbers of images, positions not evenly spaced along one line; or when
        ``labels`` does not match the positions or does not fit uint8.
    """
    import nibabel as nib  # noqa: PLC0415 - keeps `import ctseg_helpers.io` light

    labels = np.asarray(labels)
    positions = np.asarray(positions_mm, dtype=np.float64).ravel()
    image_positions = np.asarray(image_positions_mm, dtype=np.float64).reshape(-1, 3)
    if labels.ndim != 3 or not len(labels) == len(positions) == len(image_positions):
        raise CtsegDataError(
            f"{source}: {len(positions)} slice position(s) for label maps of shape {labels.shape}; "
            "give one (M, N) label map per image"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise CtsegDataError(f"{source}: label values {labels.min()}..{labels.max()} do not fit uint8 (0..255)")
    if orientation is None or not np.all(np.isfinite(image_positions)) or not np.all(np.isfinite(positions)):
        raise CtsegDataError(
            f"{source}: slices without ImagePositionPatient/ImageOrientationPatient have no place in "
            "space, so they fit no NIfTI grid; the label PNGs hold every slice"
        )
    spacings = np.asarray(pixel_spacing_mm, dtype=np.float64).reshape(-1, 2)
    if not np.allclose(spacings, spacings[0], rtol=1e-4, atol=1e-6):
        raise CtsegDataError(
            f"{source}: the pixel spacing differs between slices ({spacings.min(axis=0)} to "
            f"{spacings.max(axis=0)} mm), so they fit no NIfTI grid; the label PNGs hold every slice"
        )
    pixel_spacing_mm = spacings[0]
    groups = position_groups(positions)
    sizes = {stop - start for start, stop in groups}
    if len(sizes) > 1:
        raise CtsegDataError(
            f"{source}: the {len(groups)} slice positions hold different numbers of images "
            f"({min(sizes)} to {max(sizes)}), so they fit no NIfTI grid; the label PNGs hold every slice"
        )
    n_phases = sizes.pop()
    firsts = np.array([start for start, _ in groups])
    affine = stack_affine(
        image_positions[firsts], orientation, pixel_spacing_mm, slice_thickness_mm=slice_thickness_mm, source=source
    )
    # (positions, phases, M, N) -> (N, M, positions, phases): column index first, as NIfTI viewers read
    data = labels.astype(np.uint8).reshape(len(groups), n_phases, *labels.shape[1:]).transpose(3, 2, 0, 1)
    if n_phases == 1:
        data = data[..., 0]
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if probability:
        img.header.set_intent("estimate", name="probability")
        img.header.set_slope_inter(1.0 / 255.0, 0.0)
        img.header["descrip"] = b"ctseg probability = value / 255"
    else:
        img.header.set_intent("label")
        img.header["descrip"] = b"ctseg label map"
    time_step_ms = 1.0
    if n_phases > 1:
        times = np.asarray(trigger_times_ms if trigger_times_ms is not None else [np.nan] * len(positions), float)
        steps = np.diff(times.reshape(len(groups), n_phases), axis=1).ravel()
        steps = steps[np.isfinite(steps) & (steps > 0)]
        time_step_ms = float(np.median(steps)) if steps.size else 1.0
        img.header.set_xyzt_units("mm", "msec")
    else:
        img.header.set_xyzt_units("mm")
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    img.header.set_zooms((*zooms, time_step_ms) if n_phases > 1 else tuple(zooms))
    path = Path(path)
    nib.save(img, path)
    return path


__all__ = [
    "LPS_TO_RAS",
    "NiftiSlices",
    "dicom_affine",
    "read_nifti_slices",
    "reorder_affine",
    "stack_affine",
    "write_series_nifti",
    "write_volume_nifti",
]
