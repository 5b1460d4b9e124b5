"""A NIfTI label volume cut back into one 2D label map per DICOM slice, by geometry.

After ``ctseg segment --nifti`` a user corrects ``segmentation.nii.gz`` in 3D Slicer or
ITK-SNAP and saves it again. The saved volume may store its voxel axes in another order or
direction than ctseg wrote them (Slicer's labelmap export, ``nibabel.as_closest_canonical``),
so slice ``k`` of the array need not be the ``k``-th DICOM file. :func:`read_labels_on_series`
therefore matches by position in space, never by index:

1. the centre of every pixel ``(row r, column c)`` of a DICOM slice, in patient coordinates
   (LPS, mm): ``P + c * col_spacing * row_cosines + r * row_spacing * col_cosines``
   (``ImagePositionPatient`` ``P`` of that slice, the series' ``ImageOrientationPatient``,
   ``PixelSpacing`` = (row spacing, column spacing) of that slice);
2. in NIfTI's world (RAS): x and y change sign (:data:`~ctseg_helpers.io.nifti.LPS_TO_RAS`);
3. in voxel indices: the inverse of the volume's affine, the one nibabel picks (the sform when
   its code is set, else the qform); a volume with neither code set has no place in space and
   is refused;
4. the nearest voxel's value.

**Grid check.** Every pixel centre must lie within :data:`GRID_TOLERANCE_VOXELS` (0.1) voxel of
a voxel centre along each voxel axis, and inside the volume; otherwise the volume was resampled
onto another grid (another reference geometry, a crop, a shift) and nearest-voxel sampling
would move the ROI edges, so it is refused with a :class:`~ctseg_helpers.errors.CtsegDataError`
naming the NIfTI file, the DICOM folder, the first slice that does not fit and what to do. A
volume larger than the scan (more slices, a bigger field of view) on the same grid is accepted:
only the voxels under the scan's pixels are read.

**Values.** Label values are whole numbers 0..255 (0..``num_labels`` when given), in any
NIfTI data type: floats holding whole numbers (``1.0``) are accepted, anything else (``0.5``,
NaN, negative values) is refused naming the value and the slice.

**Cine.** A 4D volume ``(..., phases)`` as :func:`~ctseg_helpers.io.nifti.write_series_nifti`
writes a cine series: each position's images (ordered by trigger time, as
:func:`~ctseg_helpers.io.dicom.read_dicom_series` stacks them) take the volume's phases in
order, the spatial axes are matched by geometry as above. A 4D volume whose number of phases
differs from the series', a 3D volume for a cine series (every phase would get the same label
map) and positions holding different numbers of images are refused.

The module never imports TensorFlow or Keras.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.geometry import position_groups
from ctseg_helpers.io.labels import check_num_labels
from ctseg_helpers.io.nifti import LPS_TO_RAS

if TYPE_CHECKING:
    from ctseg_helpers.io.dicom import DicomSeries

logger = logging.getLogger(__name__)

#: How far (in voxels, along each voxel axis) a DICOM pixel centre may lie from the nearest voxel centre.
GRID_TOLERANCE_VOXELS = 0.1

#: What to do when the label volume is not on the scan's grid (end of the message).
ON_THE_SCANS_GRID = (
    "export the corrected segmentation on the scan's grid: in 3D Slicer export it to a labelmap "
    "with the scan (or the run's segmentation.nii.gz) as reference geometry; in ITK-SNAP save the "
    "segmentation opened over this scan"
)


def _load_label_volume(path: Path):
    """The nibabel image of a 3D or 4D NIfTI label volume with a place in space."""
    import nibabel as nib  # noqa: PLC0415 - keeps `import ctseg_helpers.io` light

    if not path.is_file():
        raise CtsegDataError(f"{path}: no such NIfTI file; check the path")
    try:
        img = nib.load(path)
    except Exception as exc:  # noqa: BLE001 - nibabel raises ImageFileError, OSError, EOFError...
        raise CtsegDataError(f"{path}: cannot read it as NIfTI ({exc}); give a .nii or .nii.gz label volume") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image) or len(img.shape) not in (3, 4):
        shape = getattr(img, "shape", None)
        raise CtsegDataError(
            f"{path}: not a 3D (or cine 4D) NIfTI volume (shape {shape}); give a .nii or .nii.gz label volume"
        )
    if int(img.header["sform_code"]) == 0 and int(img.header["qform_code"]) == 0:
        raise CtsegDataError(
            f"{path}: the volume has no place in space (its qform and sform codes are both 0), so it cannot be "
            f"matched to the DICOM slices; {ON_THE_SCANS_GRID}"
        )
    return img


def _series_geometry(series: DicomSeries, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Row and column cosines (2, 3) and each slice's (row, col) spacing (K, 2); raises without geometry."""
    positions = np.asarray(series.image_positions_mm, dtype=np.float64).reshape(-1, 3)
    spacings = np.asarray(series.pixel_spacing_mm, dtype=np.float64).reshape(-1, 2)
    if (
        series.orientation is None
        or len(positions) != len(series.images)
        or not np.all(np.isfinite(positions))
        or not np.all(np.isfinite(spacings))
    ):
        raise CtsegDataError(
            f"{folder}: slices without ImagePositionPatient, ImageOrientationPatient or PixelSpacing have no "
            "place in space, so no NIfTI volume can be matched to them; convert the corrected label maps "
            "to one PNG per DICOM file in another way"
        )
    cosines = np.asarray(series.orientation, dtype=np.float64).reshape(2, 3)
    return cosines, spacings


def _phase_indices(series: DicomSeries, n_volumes: int | None, path: Path, folder: Path) -> np.ndarray:
    """The phase (4th index) of each image: 0 for a 3D volume, its rank at its position for cine."""
    groups = position_groups(series.positions_mm)
    sizes = sorted({stop - start for start, stop in groups})
    n_phases = sizes[-1]
    if n_volumes is None:
        if n_phases > 1:
            raise CtsegDataError(
                f"{path}: a 3D label volume, but the series in {folder} is a cine series ({len(groups)} positions, "
                f"up to {n_phases} images each), so every phase would get the same label map; give the 4D volume "
                "(positions x phases) ctseg segment --nifti wrote for it, corrected"
            )
        return np.zeros(len(series.images), dtype=int)
    if len(sizes) > 1:
        raise CtsegDataError(
            f"{path}: a 4D (cine) label volume, but the {len(groups)} positions of the series in {folder} hold "
            f"different numbers of images ({sizes[0]} to {sizes[-1]}), so its phases cannot be matched to the images"
        )
    if n_phases != n_volumes:
        raise CtsegDataError(
            f"{path}: a 4D label volume of {n_volumes} phases, but the series in {folder} has {n_phases} image(s) "
            "per position; give the label volume made for this series"
        )
    phases = np.empty(len(series.images), dtype=int)
    for start, stop in groups:
        phases[start:stop] = np.arange(stop - start)
    return phases


def _voxel_coordinates(
    inverse: np.ndarray, position_mm: np.ndarray, cosines: np.ndarray, spacing_mm: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Continuous voxel indices (rows, cols, 3) of the pixel centres of one DICOM slice."""
    to_voxel = inverse @ LPS_TO_RAS  # LPS millimetres -> voxel indices
    origin = to_voxel[:3, :3] @ position_mm + to_voxel[:3, 3]
    along_row = to_voxel[:3, :3] @ (cosines[0] * spacing_mm[1])  # one column further
    down_column = to_voxel[:3, :3] @ (cosines[1] * spacing_mm[0])  # one row further
    rows = np.arange(shape[0], dtype=np.float64)[:, None, None]
    cols = np.arange(shape[1], dtype=np.float64)[None, :, None]
    return origin + rows * down_column + cols * along_row


def _checked_values(values: np.ndarray, limit: int, path: Path, where: str) -> np.ndarray:
    """``values`` as uint8, or a CtsegDataError naming the first values that are no label."""
    if values.dtype.kind == "f":
        fractional = values[~(np.isfinite(values) & (values == np.round(values)))]
        if fractional.size:
            shown = ", ".join(f"{v:g}" for v in np.unique(fractional)[:5])
            raise CtsegDataError(
                f"{path}: label values must be whole numbers, found {shown} at slice {where}; was the label volume "
                "resampled with interpolation? Export the segmentation as a labelmap (values 0..N)"
            )
    elif values.dtype.kind not in "iub":
        raise CtsegDataError(f"{path}: label values of type {values.dtype} are not numbers; give an integer volume")
    bad = np.unique(values[(values < 0) | (values > limit)])
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if len(bad) > 10 else "")
        raise CtsegDataError(
            f"{path}: label values {shown} at slice {where} are outside 0..{limit}; "
            + (
                "fix the labels (the model has only these ROIs) or give the right number of ROIs"
                if limit < 255
                else "label maps hold 0..255"
            )
        )
    return values.astype(np.uint8)


def read_labels_on_series(
    label_path: str | Path,
    series: DicomSeries,
    *,
    num_labels: int | None = None,
    tolerance_voxels: float = GRID_TOLERANCE_VOXELS,
) -> np.ndarray:
    """The label map under each slice of a DICOM series, read from a NIfTI label volume by geometry.

    Parameters
    ----------
    label_path : path-like
        NIfTI label volume (``.nii``/``.nii.gz``), 3D, or 4D (positions x phases) for a cine
        series; on the scan's grid in any axis order and direction (see the module documentation).
    series : DicomSeries
        From :func:`~ctseg_helpers.io.dicom.read_dicom_series`; every slice needs
        ``ImagePositionPatient``, ``ImageOrientationPatient`` and ``PixelSpacing``.
    num_labels : int, optional
        Number of ROIs: values above it are refused (default: up to 255).
    tolerance_voxels : float
        How far a pixel centre may lie from the nearest voxel centre, in voxels along each axis.

    Returns
    -------
    ndarray of shape (K, rows, cols) and dtype uint8
        The label map of ``series.files[k]`` at index ``k``, on that slice's pixel grid.

    Raises
    ------
    CtsegDataError
        Missing or unreadable file; not a 3D/4D volume; no qform and no sform; an affine that
        cannot be inverted; slices without position, orientation or spacing; a pixel centre
        farther than ``tolerance_voxels`` from a voxel centre or outside the volume (the NIfTI
        file, the DICOM folder and the slice named); cine phases that do not match; label values
        that are not whole numbers or outside 0..``num_labels`` (0..255).
    CtsegSettingsError
        ``num_labels`` outside 1..255.
    """
    label_path = Path(label_path)
    limit = check_num_labels(num_labels) if num_labels is not None else 255
    folder = Path(series.files[0]).parent if series.files else Path("the DICOM folder")
    img = _load_label_volume(label_path)
    cosines, spacings = _series_geometry(series, folder)
    n_volumes = img.shape[3] if len(img.shape) == 4 and img.shape[3] > 1 else None
    phases = _phase_indices(series, n_volumes, label_path, folder)
    try:
        inverse = np.linalg.inv(np.asarray(img.affine, dtype=np.float64))
    except np.linalg.LinAlgError:
        raise CtsegDataError(
            f"{label_path}: the volume's affine cannot be inverted (a voxel axis of length 0); {ON_THE_SCANS_GRID}"
        ) from None
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - truncated gzip raises EOFError, zlib.error, OSError...
        raise CtsegDataError(
            f"{label_path}: the volume's data cannot be read ({' '.join(str(exc).split())}); the file may be truncated"
        ) from exc
    if data.ndim == 4 and n_volumes is None:
        data = data[..., 0]
    volume_shape = np.array(data.shape[:3])
    out = np.empty(series.images.shape, dtype=np.uint8)
    positions = np.asarray(series.image_positions_mm, dtype=np.float64).reshape(-1, 3)
    for k, path in enumerate(series.files):
        where = Path(path).name
        voxels = _voxel_coordinates(inverse, positions[k], cosines, spacings[k], series.images.shape[1:])
        nearest = np.rint(voxels)
        off = float(np.abs(voxels - nearest).max())
        if off > tolerance_voxels:
            raise CtsegDataError(
                f"{label_path}: the label volume is not on the grid of the scan in {folder}: the pixel centres "
                f"of slice {where} lie up to {off:.2f} voxel from the volume's voxel centres (at most "
                f"{tolerance_voxels:g} allowed); {ON_THE_SCANS_GRID}"
            )
        outside = np.any((nearest < 0) | (nearest > volume_shape - 1), axis=-1)
        if outside.any():
            raise CtsegDataError(
                f"{label_path}: the label volume (shape {tuple(int(n) for n in volume_shape)}) does not cover the "
                f"scan in {folder}: {int(outside.sum())} of {outside.size} pixels of slice {where} lie outside it; "
                f"{ON_THE_SCANS_GRID}"
            )
        i, j, z = (nearest[..., axis].astype(np.intp) for axis in range(3))
        values = data[i, j, z, phases[k]] if n_volumes is not None else data[i, j, z]
        out[k] = _checked_values(np.asarray(values), limit, label_path, where)
    logger.debug("%s: %d slice label maps read by geometry onto %s", label_path, len(out), folder)
    return out


__all__ = ["GRID_TOLERANCE_VOXELS", "ON_THE_SCANS_GRID", "read_labels_on_series"]
