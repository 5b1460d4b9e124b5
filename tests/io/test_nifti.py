"""NIfTI volumes read as slices."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.nifti import read_nifti_slices
from tests.dicom_geometry import dicom_world_ras, oblique_orientation, voxel_world


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
    with pytest.raises(
        CtsegDataError,
        match=r"label volume .*lab\.nii\.gz has shape \(6, 5, 3\) but image "
        r"volume .*img\.nii\.gz has shape \(6, 5, 4\)",
    ):
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
    assert warnings == [
        f"{path}: 5 of 768 voxels are NaN or infinite; they are replaced by the minimum finite value {data.min():g}"
    ]
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


# ------------------------------------------------------------------ writing label maps on the DICOM grid


@pytest.fixture()
def oblique_series(tmp_path):
    """4 oblique slices of 6 rows x 9 columns, pixels 0.7 x 1.3 mm, 2.5 mm apart; the folder lists them in
    reverse (IM_0004.dcm is the first slice along the normal), read back with ctseg's reader."""
    from ctseg_helpers.io.dicom import read_dicom_series
    from ctseg_helpers.io.dicom_write import write_dicom_series

    images = np.arange(4 * 6 * 9, dtype=np.float64).reshape(4, 6, 9)
    write_dicom_series(
        tmp_path / "scan",
        images,
        pixel_spacing_mm=(0.7, 1.3),
        slice_thickness_mm=2.5,
        origin_mm=(12.5, -30.0, 44.0),
        orientation=oblique_orientation(),
        names=["IM_0004", "IM_0003", "IM_0002", "IM_0001"],
    )
    return read_dicom_series(tmp_path / "scan")


def test_label_nifti_overlays_the_dicom_images_voxel_for_voxel(oblique_series, tmp_path):
    from ctseg_helpers.io.nifti import dicom_affine, write_series_nifti

    series = oblique_series
    assert [p.name for p in series.files] == ["IM_0004.dcm", "IM_0003.dcm", "IM_0002.dcm", "IM_0001.dcm"]
    labels = (np.arange(4 * 6 * 9).reshape(4, 6, 9) * 7 % 5).astype(np.uint8)  # differs at every voxel
    path = write_series_nifti(
        tmp_path / "labels.nii.gz",
        labels,
        series.image_positions_mm,
        series.positions_mm,
        series.orientation,
        series.pixel_spacing_mm,
        slice_thickness_mm=2.5,
    )
    label_img = nib.load(path)
    data = np.asanyarray(label_img.dataobj)
    assert data.dtype == np.uint8 and data.shape == (9, 6, 4)  # (columns, rows, slices)
    world = voxel_world(label_img.affine, data.shape)
    for k, dicom_file in enumerate(series.files):
        # voxel (i, j, k) is pixel (row j, column i) of the k-th slice: same value, same point in space
        np.testing.assert_array_equal(data[:, :, k].T, labels[k])
        np.testing.assert_allclose(world[:, :, k].transpose(1, 0, 2), dicom_world_ras(dicom_file, 6, 9), atol=1e-3)
    # both transforms a viewer may use are the scanner one
    header = label_img.header
    assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 1)
    np.testing.assert_allclose(label_img.get_qform(), label_img.affine, atol=1e-4)
    np.testing.assert_allclose(label_img.get_sform(), label_img.affine, atol=1e-6)
    assert header.get_xyzt_units() == ("mm", "unknown") and header.get_intent()[0] == "label"
    np.testing.assert_allclose(header.get_zooms(), (1.3, 0.7, 2.5), atol=1e-4)
    # the source images written on the same affine lie exactly under the labels
    image_path = tmp_path / "image.nii.gz"
    affine = dicom_affine(
        series.image_positions_mm[0],
        series.orientation,
        series.spacing_mm,
        (series.image_positions_mm[-1] - series.image_positions_mm[0]) / 3,
    )
    nib.save(nib.Nifti1Image(series.images.transpose(2, 1, 0), affine), image_path)
    image_img = nib.load(image_path)
    np.testing.assert_allclose(image_img.affine, label_img.affine, atol=1e-5)
    for k, dicom_file in enumerate(series.files):
        import pydicom

        ds = pydicom.dcmread(dicom_file)
        stored = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(image_img.get_fdata()[:, :, k].T, stored)


def test_dicom_affine_converts_lps_to_ras_and_runs_its_example():
    import doctest

    import ctseg_helpers.io.nifti as module
    from ctseg_helpers.io.nifti import dicom_affine

    assert doctest.testmod(module).failed == 0
    affine = dicom_affine((1.0, 2.0, 3.0), (0, 1, 0, 0, 0, -1), (2.0, 3.0), (4.0, 0.0, 0.0))  # a sagittal slice
    # column i runs along +y (anterior -> posterior in LPS), row j along -z; the slices step along x
    np.testing.assert_allclose(affine @ [1, 1, 1, 1], [-(1 + 4), -(2 + 3), 3 - 2, 1])


def test_cine_series_is_one_4d_volume_of_positions_by_phases(tmp_path):
    from ctseg_helpers.io.nifti import write_series_nifti

    positions = np.repeat([0.0, 6.0], 3)  # 2 positions x 3 phases, 40 ms apart
    image_positions = np.column_stack([np.zeros(6), np.zeros(6), positions])
    labels = np.arange(6 * 4 * 5).reshape(6, 4, 5).astype(np.uint8) % 3
    path = write_series_nifti(
        tmp_path / "cine.nii.gz",
        labels,
        image_positions,
        positions,
        (1, 0, 0, 0, 1, 0),
        (0.5, 0.5),
        trigger_times_ms=[0.0, 40.0, 80.0] * 2,
    )
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    assert data.shape == (5, 4, 2, 3)
    for k in range(2):
        for t in range(3):
            np.testing.assert_array_equal(data[:, :, k, t].T, labels[3 * k + t])
    assert img.header.get_xyzt_units() == ("mm", "msec")
    np.testing.assert_allclose(img.header.get_zooms(), (0.5, 0.5, 6.0, 40.0))
    np.testing.assert_allclose(img.affine @ [0, 0, 1, 1], [0, 0, 6.0, 1])


@pytest.mark.parametrize(("thickness", "step"), [(3.0, 3.0), (None, 0.9)])
def test_one_slice_steps_along_its_normal_by_the_thickness_or_the_column_spacing(tmp_path, thickness, step):
    from ctseg_helpers.io.nifti import write_series_nifti

    path = write_series_nifti(
        tmp_path / "one.nii.gz",
        np.ones((1, 3, 4), np.uint8),
        np.array([[5.0, 6.0, 7.0]]),
        [7.0],
        (1, 0, 0, 0, 0, -1),
        (0.8, 0.9),
        slice_thickness_mm=thickness,
    )
    img = nib.load(path)
    assert img.shape == (4, 3, 1)
    # row cosines x, column cosines -z: the normal is x cross -z = +y (LPS), i.e. -y in RAS
    np.testing.assert_allclose(img.affine[:3, 2], [0.0, -step, 0.0])
    np.testing.assert_allclose(img.affine[:3, 3], [-5.0, -6.0, 7.0])


@pytest.mark.parametrize(
    ("positions", "image_positions", "orientation", "spacing", "message"),
    [
        (
            [0.0, 5.0, 15.0],
            [[0, 0, 0], [0, 0, 5], [0, 0, 15]],
            (1, 0, 0, 0, 1, 0),
            (1.0, 1.0),
            r"scan 7: the slices are not evenly spaced along one line \(slice 2 of 3 is 2.5 mm off\), so they fit "
            r"no NIfTI grid; the label PNGs hold every slice",
        ),
        (
            [0.0, 0.0, 5.0],
            [[0, 0, 0], [0, 0, 0], [0, 0, 5]],
            (1, 0, 0, 0, 1, 0),
            (1.0, 1.0),
            r"scan 7: the 2 slice positions hold different numbers of images \(1 to 2\), so they fit no NIfTI grid",
        ),
        (
            [np.nan, np.nan, np.nan],
            [[np.nan] * 3] * 3,
            None,
            (1.0, 1.0),
            "scan 7: slices without ImagePositionPatient/ImageOrientationPatient have no place in space",
        ),
        (
            [0.0, 5.0, 10.0],
            [[0, 0, 0], [0, 0, 5], [0, 0, 10]],
            (1, 0, 0, 0, 1, 0),
            [(1.0, 1.0), (1.0, 1.0), (0.5, 0.5)],
            r"scan 7: the pixel spacing differs between slices \(\[0.5 0.5\] to \[1. 1.\] mm\), so they fit no NIfTI",
        ),
        (
            [0.0, 5.0],
            [[0, 0, 0], [0, 0, 5]],
            (1, 0, 0, 0, 1, 0),
            (1.0, 1.0),
            r"scan 7: 2 slice position\(s\) for label maps of shape \(3, 2, 2\); give one \(M, N\) label map per image",
        ),
    ],
)
def test_series_that_fit_no_grid_are_refused_saying_why(
    tmp_path, positions, image_positions, orientation, spacing, message
):
    from ctseg_helpers.io.nifti import write_series_nifti

    with pytest.raises(CtsegDataError, match=message):
        write_series_nifti(
            tmp_path / "x.nii.gz",
            np.zeros((3, 2, 2), np.uint8),
            np.array(image_positions, float),
            positions,
            orientation,
            spacing,
            source="scan 7",
        )
    assert not (tmp_path / "x.nii.gz").exists()


def test_label_values_beyond_uint8_are_refused(tmp_path):
    from ctseg_helpers.io.nifti import write_series_nifti

    with pytest.raises(CtsegDataError, match=r"scan: label values 0..300 do not fit uint8 \(0..255\)"):
        write_series_nifti(
            tmp_path / "x.nii.gz",
            np.array([[[0, 300]]]),
            np.zeros((1, 3)),
            [0.0],
            (1, 0, 0, 0, 1, 0),
            (1.0, 1.0),
            source="scan",
        )
