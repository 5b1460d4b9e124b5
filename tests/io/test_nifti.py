"""NIfTI volumes read as slices."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.nifti import read_nifti_slices


def save(path, data, zooms=(0.8, 0.9, 2.5), dtype=None, scale=None):
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms[: img.ndim] if img.ndim == 3 else (*zooms, 1.0))
    img.header.set_xyzt_units("mm")
    if scale is not None:
        img.header.set_slope_inter(*scale)
    nib.save(img, path)
    return path


def volume(shape=(6, 5, 4)):
    return np.arange(np.prod(shape), dtype=np.float64).reshape(shape)


def test_slices_along_each_axis_with_spacing(tmp_path):
    data = volume()
    path = save(tmp_path / "ct.nii.gz", data, dtype=np.int16)
    result = read_nifti_slices(path)
    assert result.slices.dtype == np.float32 and result.slices.shape == (4, 6, 5)
    np.testing.assert_array_equal(result.slices[1], data[:, :, 1])
    assert result.spacing_mm == pytest.approx((0.8, 0.9))
    assert result.slice_spacing_mm == pytest.approx(2.5)
    assert result.labels is None and len(result) == 4
    along_0 = read_nifti_slices(path, axis=0)
    assert along_0.slices.shape == (6, 5, 4)
    np.testing.assert_array_equal(along_0.slices[2], data[2])
    assert along_0.spacing_mm == pytest.approx((0.9, 2.5)) and along_0.slice_spacing_mm == pytest.approx(0.8)


def test_header_scaling_is_applied(tmp_path):
    stored = np.array([[[0, 1], [2, 3]]], dtype=np.int16)
    path = save(tmp_path / "scaled.nii", stored, scale=(2.0, -1024.0))
    expected = np.moveaxis(stored * 2.0 - 1024.0, 2, 0)  # values -1024, -1022, -1020, -1018
    np.testing.assert_array_equal(read_nifti_slices(path).slices, expected)


def test_labels_come_as_uint8_in_the_same_order(tmp_path):
    data = volume()
    labels = (data % 3).astype(np.uint8)
    image = save(tmp_path / "img.nii.gz", data)
    label = save(tmp_path / "lab.nii.gz", labels)
    result = read_nifti_slices(image, label, axis=1, num_labels=2)
    assert result.labels.dtype == np.uint8 and result.labels.shape == (5, 6, 4)
    np.testing.assert_array_equal(result.labels[3], labels[:, 3, :])
    assert result.label_path == label


def test_float_labels_with_whole_values_are_accepted(tmp_path):
    image = save(tmp_path / "img.nii", volume((2, 2, 2)))
    label = save(tmp_path / "lab.nii", np.ones((2, 2, 2)), dtype=np.float32)
    assert read_nifti_slices(image, label).labels.sum() == 8


def test_shape_mismatch_names_both_files(tmp_path):
    image = save(tmp_path / "img.nii.gz", volume())
    label = save(tmp_path / "lab.nii.gz", np.zeros((6, 5, 3), np.uint8))
    with pytest.raises(CtsegDataError, match=r"label volume .*lab\.nii\.gz has shape \(6, 5, 3\) but image "
                                             r"volume .*img\.nii\.gz has shape \(6, 5, 4\)"):
        read_nifti_slices(image, label)


def test_label_value_errors(tmp_path):
    image = save(tmp_path / "img.nii", volume((2, 2, 2)))
    big = save(tmp_path / "big.nii", np.full((2, 2, 2), 3, np.uint8))
    with pytest.raises(CtsegDataError, match=r"big\.nii: label values 3 are outside 0\.\.2; fix the labels"):
        read_nifti_slices(image, big, num_labels=2)
    frac = save(tmp_path / "frac.nii", np.full((2, 2, 2), 0.5, np.float32))
    with pytest.raises(CtsegDataError, match=r"frac\.nii: label values must be whole numbers"):
        read_nifti_slices(image, frac)
    with pytest.raises(CtsegSettingsError, match=r"num_labels must be between 1 and 255"):
        read_nifti_slices(image, big, num_labels=0)


def test_file_errors(tmp_path):
    with pytest.raises(CtsegDataError, match=r"none\.nii: no such NIfTI file"):
        read_nifti_slices(tmp_path / "none.nii")
    junk = tmp_path / "junk.nii"
    junk.write_bytes(b"not a nifti header" * 30)
    with pytest.raises(CtsegDataError, match=r"junk\.nii: cannot read it as NIfTI"):
        read_nifti_slices(junk)
    four_d = save(tmp_path / "t.nii", np.zeros((2, 2, 2, 3)), zooms=(1.0, 1.0, 1.0))
    with pytest.raises(CtsegDataError, match=r"t\.nii: 4D volume of shape \(2, 2, 2, 3\) \(3 volumes\)"):
        read_nifti_slices(four_d)
    flat = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.float32), np.eye(4)), flat)
    with pytest.raises(CtsegDataError, match=r"flat\.nii: not a NIfTI volume"):
        read_nifti_slices(flat)
    with pytest.raises(CtsegSettingsError, match=r"axis must be 0, 1 or 2"):
        read_nifti_slices(four_d, axis=3)


def test_truncated_gzip_volume(tmp_path):
    path = save(tmp_path / "cut.nii.gz", volume((20, 20, 20)))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw)[:-2000])
    with pytest.raises(CtsegDataError, match=r"cut\.nii\.gz: the volume's data cannot be read .*truncated"):
        read_nifti_slices(path)


def test_single_volume_4d_is_accepted(tmp_path):
    path = save(tmp_path / "one.nii", volume((3, 3, 2))[..., None], zooms=(1.0, 1.0, 3.0))
    result = read_nifti_slices(path)
    assert result.slices.shape == (2, 3, 3) and result.slice_spacing_mm == pytest.approx(3.0)


def _above_half(batch):
    """Stand-in network: class 1 where the normalised value is above 0.5."""
    p = (batch[..., 0] > 0.5).astype(np.float32)
    return np.stack([1 - p, p], axis=-1)


def test_nonfinite_voxels_become_the_minimum_with_one_warning(tmp_path, caplog):
    from ctseg_helpers.prepare.normalize import Normalization
    from ctseg_helpers.segment.segmenter import Segmenter

    data = np.random.default_rng(3).uniform(10.0, 90.0, (16, 16, 3)).astype(np.float32)
    holes = data.copy()
    holes[0, 0, :] = np.nan
    holes[5, 7, 1] = np.inf
    holes[9, 2, 2] = -np.inf
    filled = np.where(np.isfinite(holes), holes, data.min())
    path = save(tmp_path / "holes.nii.gz", holes, dtype=np.float32)
    with caplog.at_level("WARNING"):
        result = read_nifti_slices(path)
    warnings = [r.getMessage() for r in caplog.records if "NaN" in r.getMessage()]
    assert warnings == [f"{path}: 5 of 768 voxels are NaN or infinite; they are replaced by the minimum finite "
                        f"value {data.min():g}"]
    reference = read_nifti_slices(save(tmp_path / "filled.nii.gz", filled, dtype=np.float32))
    np.testing.assert_array_equal(result.slices, reference.slices)
    segmenter = Segmenter(_above_half, input_shape=16, num_classes=2, mode="tile", normalization=Normalization("MR"))
    labels = segmenter.segment(result.slices)
    np.testing.assert_array_equal(labels, segmenter.segment(reference.slices))
    assert labels.any()  # every slice holds a NaN: unreplaced, normalisation would blank them all


def test_a_volume_of_nan_is_refused(tmp_path):
    path = save(tmp_path / "empty.nii", np.full((4, 4, 2), np.nan), dtype=np.float32)
    with pytest.raises(CtsegDataError, match="empty.nii: every voxel is NaN or infinite"):
        read_nifti_slices(path)
