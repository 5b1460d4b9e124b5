"""A NIfTI label volume read back onto each DICOM slice by geometry (io/nifti_labels.py)."""

from __future__ import annotations

import dataclasses
import gzip

import nibabel as nib
import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.dicom import read_dicom_series
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.io.nifti import write_series_nifti
from ctseg_helpers.io.nifti_labels import ON_THE_SCANS_GRID, read_labels_on_series
from tests.dicom_geometry import oblique_orientation


def _series(folder, *, oblique=False, n=4, rows=6, cols=9):
    """n slices of rows x cols, pixels 0.7 x 1.3 mm, 2.5 mm apart; the files named in reverse order."""
    write_dicom_series(
        folder,
        np.zeros((n, rows, cols)),
        pixel_spacing_mm=(0.7, 1.3),
        slice_thickness_mm=2.5,
        origin_mm=(12.5, -30.0, 44.0),
        orientation=oblique_orientation() if oblique else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        names=[f"IM_{n - k:04d}" for k in range(n)],
    )
    return read_dicom_series(folder)


def _labels(shape, modulo=5):
    """Label maps that differ at every neighbouring voxel, so any misplacement shows."""
    return (np.arange(np.prod(shape)).reshape(shape) * 7 % modulo).astype(np.uint8)


def _write(path, series, labels):
    return write_series_nifti(
        path,
        labels,
        series.image_positions_mm,
        series.positions_mm,
        series.orientation,
        series.pixel_spacing_mm,
        slice_thickness_mm=series.slice_thickness_mm,
        trigger_times_ms=series.trigger_times_ms,
    )


def _resave(path, img, data=None, affine=None, dtype=None):
    """Save ``img``'s data (or ``data``) on its affine (or ``affine``), both transforms set, as Slicer does."""
    out = nib.Nifti1Image(
        np.asanyarray(img.dataobj) if data is None else data, img.affine if affine is None else affine
    )
    out.set_qform(out.affine, code=1)
    out.set_sform(out.affine, code=1)
    if dtype is not None:
        out.set_data_dtype(dtype)
    nib.save(out, path)
    return path


@pytest.fixture(params=["axial", "oblique"])
def scan(request, tmp_path):
    """A series (axial or oblique), its label maps and their NIfTI volume as ctseg segment writes it."""
    series = _series(tmp_path / "scan", oblique=request.param == "oblique")
    labels = _labels(series.images.shape)
    return series, labels, _write(tmp_path / "segmentation.nii.gz", series, labels)


def test_the_written_volume_reads_back_exactly(scan):
    series, labels, path = scan
    result = read_labels_on_series(path, series)
    assert result.dtype == np.uint8 and result.shape == labels.shape
    np.testing.assert_array_equal(result, labels)


@pytest.mark.parametrize(
    "ornt",
    [
        [[1, -1], [2, 1], [0, -1]],  # axes permuted, two of them flipped
        [[2, 1], [0, 1], [1, 1]],  # axes permuted only
        [[0, -1], [1, -1], [2, -1]],  # every axis flipped
    ],
)
def test_a_volume_saved_with_its_axes_reordered_or_flipped_reads_back_exactly(scan, ornt, tmp_path):
    series, labels, path = scan
    reoriented = nib.load(path).as_reoriented(np.array(ornt, dtype=float))
    assert not np.array_equal(np.asanyarray(reoriented.dataobj), np.asanyarray(nib.load(path).dataobj))
    saved = _resave(tmp_path / "reoriented.nii.gz", reoriented, dtype=np.int16)
    np.testing.assert_array_equal(read_labels_on_series(saved, series), labels)


def test_a_volume_made_canonical_by_nibabel_reads_back_exactly(scan, tmp_path):
    series, labels, path = scan
    canonical = tmp_path / "canonical.nii"
    nib.save(nib.as_closest_canonical(nib.load(path)), canonical)
    np.testing.assert_array_equal(read_labels_on_series(canonical, series), labels)


def test_a_larger_volume_on_the_same_grid_is_read_under_the_scan(scan, tmp_path):
    series, labels, path = scan
    img = nib.load(path)
    data = np.pad(np.asanyarray(img.dataobj), 2)  # two more voxels on every side, zeros
    affine = img.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ [2, 2, 2]
    padded = _resave(tmp_path / "padded.nii.gz", img, data=data, affine=affine)
    np.testing.assert_array_equal(read_labels_on_series(padded, series), labels)


def test_a_volume_half_a_voxel_off_is_refused(scan, tmp_path):
    series, _, path = scan
    img = nib.load(path)
    affine = img.affine.copy()
    affine[:3, 3] += 0.5 * affine[:3, 0]  # half a column
    shifted = _resave(tmp_path / "shifted.nii.gz", img, affine=affine)
    with pytest.raises(CtsegDataError) as info:
        read_labels_on_series(shifted, series)
    message = str(info.value)
    assert message.startswith(f"{shifted}: the label volume is not on the grid of the scan in {series.files[0].parent}")
    assert "lie up to 0.50 voxel from the volume's voxel centres (at most 0.1 allowed)" in message
    assert message.endswith(ON_THE_SCANS_GRID)
    assert "in 3D Slicer export it to a labelmap with the scan" in message


def test_a_volume_that_does_not_cover_the_scan_is_refused(scan, tmp_path):
    series, _, path = scan
    img = nib.load(path)
    cropped = _resave(tmp_path / "cropped.nii.gz", img, data=np.asanyarray(img.dataobj)[:, 1:, :])
    with pytest.raises(CtsegDataError, match=r"\(shape \(9, 5, 4\)\) does not cover the scan in .*: 9 of 54 pixels"):
        read_labels_on_series(cropped, series)


def test_float_labels_holding_whole_numbers_are_accepted_and_others_refused(scan, tmp_path):
    series, labels, path = scan
    img = nib.load(path)
    data = (np.asanyarray(img.dataobj) > 2).astype(np.float32)  # 0.0 / 1.0
    ones = _resave(tmp_path / "float.nii.gz", img, data=data)
    np.testing.assert_array_equal(read_labels_on_series(ones, series), (labels > 2).astype(np.uint8))
    data[0, 0, 1] = 0.5
    half = _resave(tmp_path / "half.nii.gz", img, data=data)
    second = series.files[1].name
    with pytest.raises(CtsegDataError, match=rf"label values must be whole numbers, found 0\.5 at slice {second}; "):
        read_labels_on_series(half, series)
    data[0, 0, 1] = np.nan
    nan = _resave(tmp_path / "nan.nii.gz", img, data=data)
    with pytest.raises(CtsegDataError, match="found nan at slice .*Export the segmentation as a labelmap"):
        read_labels_on_series(nan, series)


def test_label_values_outside_the_range_are_refused(scan, tmp_path):
    series, _, path = scan
    img = nib.load(path)
    data = np.asanyarray(img.dataobj).astype(np.int16)
    with pytest.raises(CtsegDataError, match=r"label values 3, 4 at slice IM_\d+\.dcm are outside 0\.\.2; fix the"):
        read_labels_on_series(path, series, num_labels=2)
    data[1, 1, 0] = -1
    negative = _resave(tmp_path / "negative.nii.gz", img, data=data)
    with pytest.raises(CtsegDataError, match=r"label values -1 at slice .* outside 0\.\.255; label maps hold 0\.\.255"):
        read_labels_on_series(negative, series)
    with pytest.raises(CtsegSettingsError, match="num_labels must be between 1 and 255"):
        read_labels_on_series(path, series, num_labels=0)
    complex_path = _resave(tmp_path / "complex.nii.gz", img, data=data.astype(np.complex64))
    with pytest.raises(CtsegDataError, match="label values of type complex64 are not numbers; give an integer volume"):
        read_labels_on_series(complex_path, series)


def test_files_that_are_no_usable_label_volume_are_refused(scan, tmp_path):
    series, _, path = scan
    with pytest.raises(CtsegDataError, match="missing.nii.gz: no such NIfTI file; check the path"):
        read_labels_on_series(tmp_path / "missing.nii.gz", series)
    text = tmp_path / "notes.nii"
    text.write_text("not a volume")
    with pytest.raises(CtsegDataError, match=r"notes\.nii: cannot read it as NIfTI \(.*\); give a \.nii or \.nii\.gz"):
        read_labels_on_series(text, series)
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((9, 6), np.uint8), np.eye(4)), flat)
    with pytest.raises(CtsegDataError, match=r"not a 3D \(or cine 4D\) NIfTI volume \(shape \(9, 6\)\)"):
        read_labels_on_series(flat, series)
    nowhere = tmp_path / "nowhere.nii.gz"
    img = nib.Nifti1Image(np.asanyarray(nib.load(path).dataobj), None)
    img.set_qform(None, code=0)
    img.set_sform(None, code=0)
    nib.save(img, nowhere)
    with pytest.raises(CtsegDataError, match="no place in space \\(its qform and sform codes are both 0\\)"):
        read_labels_on_series(nowhere, series)
    flat_affine = nib.load(path).affine.copy()
    flat_affine[:3, 2] = 0.0  # slices of no thickness: no inverse
    singular = tmp_path / "singular.nii.gz"
    img = nib.Nifti1Image(np.asanyarray(nib.load(path).dataobj), None)
    img.set_sform(flat_affine, code=1)  # nibabel cannot make a qform of it: sform only
    nib.save(img, singular)
    with pytest.raises(CtsegDataError, match="the volume's affine cannot be inverted"):
        read_labels_on_series(singular, series)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:400]))
    with pytest.raises(CtsegDataError, match="the volume's data cannot be read .*the file may be truncated"):
        read_labels_on_series(truncated, series)


def test_slices_without_geometry_are_refused(scan):
    series, _, path = scan
    nowhere = dataclasses.replace(series, orientation=None)
    with pytest.raises(CtsegDataError, match="slices without ImagePositionPatient, ImageOrientationPatient or Pixel"):
        read_labels_on_series(path, nowhere)


# ----------------------------------------------------------------------------------------- cine


@pytest.fixture()
def cine(tmp_path):
    """2 positions x 3 phases of 4 x 5 pixels (phases ordered by file name: p1, p2, p3)."""
    study, uid = "1.2.3.4", "1.2.3.4.5"
    for phase in (1, 2, 3):
        write_dicom_series(
            tmp_path / "cine",
            np.zeros((2, 4, 5)),
            pixel_spacing_mm=(1.5, 1.5),
            slice_thickness_mm=8.0,
            modality="MR",
            names=[f"p{phase}_s{k}" for k in (1, 2)],
            study_uid=study,
            series_uid=uid,
        )
    series = read_dicom_series(tmp_path / "cine")
    assert (series.n_positions, series.n_phases) == (2, 3)
    labels = _labels(series.images.shape, modulo=4)
    return series, labels, _write(tmp_path / "cine.nii.gz", series, labels)


def test_a_cine_4d_volume_reads_back_phase_by_phase(cine, tmp_path):
    series, labels, path = cine
    assert nib.load(path).shape == (5, 4, 2, 3)
    np.testing.assert_array_equal(read_labels_on_series(path, series), labels)
    flipped = tmp_path / "flipped.nii.gz"
    nib.save(nib.load(path).as_reoriented(np.array([[1, -1], [0, 1], [2, -1]], dtype=float)), flipped)
    np.testing.assert_array_equal(read_labels_on_series(flipped, series), labels)


def test_cine_volumes_that_do_not_match_the_series_are_refused(cine, scan, tmp_path):
    series, labels, path = cine
    one_phase = _resave(tmp_path / "3d.nii.gz", nib.load(path), data=np.asanyarray(nib.load(path).dataobj)[..., 0])
    with pytest.raises(CtsegDataError, match=r"a 3D label volume, but the series in .* is a cine series \(2 positions"):
        read_labels_on_series(one_phase, series)
    two = _resave(tmp_path / "two.nii.gz", nib.load(path), data=np.asanyarray(nib.load(path).dataobj)[..., :2])
    with pytest.raises(CtsegDataError, match="a 4D label volume of 2 phases, but the series in .* has 3 image"):
        read_labels_on_series(two, series)
    stack, _, stack_path = scan
    four_d = np.repeat(np.asanyarray(nib.load(stack_path).dataobj)[..., None], 3, axis=3)
    stack_4d = _resave(tmp_path / "stack4d.nii.gz", nib.load(stack_path), data=four_d)
    with pytest.raises(CtsegDataError, match="a 4D label volume of 3 phases, but the series in .* has 1 image"):
        read_labels_on_series(stack_4d, stack)
    series.files[0].unlink()  # one position now holds 2 images, the other 3
    uneven = read_dicom_series(series.files[0].parent)
    with pytest.raises(
        CtsegDataError, match=r"positions of the series in .* hold different numbers of images \(2 to 3"
    ):
        read_labels_on_series(path, uneven)


def test_a_4d_volume_of_one_phase_is_a_3d_volume(scan, tmp_path):
    series, labels, path = scan
    img = nib.load(path)
    single = _resave(tmp_path / "single.nii.gz", img, data=np.asanyarray(img.dataobj)[..., None])
    np.testing.assert_array_equal(read_labels_on_series(single, series), labels)
