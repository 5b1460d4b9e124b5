"""Read NIfTI volumes (``.nii``, ``.nii.gz``) as a stack of 2D slices, with their labels.

Datasets such as the liver tutorial's (LiTS, Medical Segmentation Decathlon) come as one
image volume and one label volume per patient. :func:`read_nifti_slices` cuts both along one
array axis into the ``(K, M, N)`` stacks the rest of ctseg works with.

Slices follow the array's storage order (no reorientation); the in-plane spacing comes from
the header's voxel sizes (``zooms``). NaN and +-Inf image voxels are replaced by the volume's
minimum finite value, with one warning naming the file
(:func:`~ctseg_helpers.io.datafile.replace_nonfinite`). The module never imports TensorFlow or Keras.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.datafile import replace_nonfinite
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
        raise CtsegDataError(
            f"{path}: cannot read it as NIfTI ({exc}); give a .nii or .nii.gz volume"
        ) from exc
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
        raise CtsegDataError(
            f"{path}: the volume's data cannot be read ({exc}); the file may be truncated"
        ) from exc
    if data.ndim == 4:
        data = data[..., 0]
    return data


def read_nifti_slices(image_path: str | Path, label_path: str | Path | None = None, axis: int = 2,
                      *, num_labels: int | None = None) -> NiftiSlices:
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
            logger.warning("%s and %s have different affines; using the image's geometry",
                           label_path, image_path)
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
                f"{label_path}: label values {shown} are outside 0..{limit}; "
                "fix the labels or the num_labels setting"
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


__all__ = ["NiftiSlices", "read_nifti_slices"]
