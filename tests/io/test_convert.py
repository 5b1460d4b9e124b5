"""convert_to_hdf5: TIFF series/stack, DICOM folder and NIfTI file to chunked HDF5."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile

import ctseg_helpers.io.convert as convert_mod
from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.convert import convert_to_hdf5
from ctseg_helpers.io.datafile import DataFile
from ctseg_helpers.io.dicom_write import write_dicom_series
from tests.dicom_geometry import dicom_world_ras, oblique_orientation, voxel_world


def ct_volume(shape=(6, 10, 12)):
    z, y, x = np.indices(shape)
    return (z * 100 + y * 10 + x - 500).astype(np.int16)


def read_out(path):
    with h5py.File(path, "r") as f:
        return f["data"][:], dict(f["data"].attrs), f["data"].chunks, f["data"].compression


def test_tiff_series_slab_by_slab(tmp_path):
    vol = ct_volume()
    folder = tmp_path / "tiffs"
    folder.mkdir()
    for i, plane in enumerate(vol):
        tifffile.imwrite(folder / f"s{i}.tif", plane)
    result = convert_to_hdf5(folder, tmp_path / "out.h5", chunk_shape=(2, 5, 6), max_gb=2 * 240 / 1e9, progress=False)
    data, attrs, chunks, compression = read_out(tmp_path / "out.h5")
    np.testing.assert_array_equal(data, vol)
    assert data.dtype == np.int16 and chunks == (2, 5, 6) and compression == "gzip"
    assert attrs["source_kind"] == "tiff-series" and "spacing_mm" not in attrs
    assert result.shape == (6, 10, 12) and result.chunk_shape == (2, 5, 6)


def test_multi_page_tiff_stack(tmp_path):
    vol = ct_volume()
    tifffile.imwrite(tmp_path / "stack.tif", vol, photometric="minisblack")
    result = convert_to_hdf5(
        tmp_path / "stack.tif", tmp_path / "out.h5", chunk_mb=0.0005, compression=None, progress=False
    )
    data, attrs, chunks, compression = read_out(tmp_path / "out.h5")
    np.testing.assert_array_equal(data, vol)
    assert compression is None and result.source_kind == "tiff-stack"
    assert np.prod(chunks) * 2 <= 0.0005 * 2**20


def test_dicom_folder_in_stacking_order_with_spacing(tmp_path):
    vol = ct_volume().astype(np.float32)
    names = [f"img{i}" for i in (5, 3, 1, 0, 2, 4)]  # file names out of order on purpose
    write_dicom_series(tmp_path / "dcm", vol, pixel_spacing_mm=(0.7, 0.8), slice_thickness_mm=2.5, names=names)
    result = convert_to_hdf5(tmp_path / "dcm", tmp_path / "out.h5", progress=False)
    data, attrs, _, _ = read_out(tmp_path / "out.h5")
    np.testing.assert_allclose(data, vol)
    assert data.dtype == np.float32 and attrs["modality"] == "CT"
    np.testing.assert_allclose(attrs["spacing_mm"], (2.5, 0.7, 0.8))
    assert result.spacing_mm == pytest.approx((2.5, 0.7, 0.8))


def test_dicom_refusals(tmp_path):
    vol = ct_volume((3, 8, 8)).astype(np.float32)
    both = tmp_path / "two_series"
    write_dicom_series(both, vol, names=["a0", "a1", "a2"], series_uid="1.2.3.1")
    write_dicom_series(both, vol[:2], names=["b0", "b1"], series_uid="1.2.3.2", series_description="other")
    with pytest.raises(CtsegDataError, match="two_series: the folder holds 2 series; name one with --series-uid"):
        convert_to_hdf5(both, tmp_path / "o.h5", progress=False)
    result = convert_to_hdf5(both, tmp_path / "o.h5", series_uid="1.2.3.2", progress=False)
    assert result.shape == (2, 8, 8)
    with pytest.raises(CtsegDataError, match="no series with uid 9.9; run 'ctseg inspect"):
        convert_to_hdf5(both, tmp_path / "o2.h5", series_uid="9.9", progress=False)
    sizes = tmp_path / "sizes"
    write_dicom_series(sizes, vol, names=["s0", "s1", "s2"], series_uid="1.2.3.4")
    write_dicom_series(
        sizes, np.zeros((1, 6, 6), np.float32), names=["s3"], series_uid="1.2.3.4", origin_mm=(0.0, 0.0, 3.0)
    )
    with pytest.raises(CtsegDataError, match="sizes: images of different sizes in series 1.2.3.4"):
        convert_to_hdf5(sizes, tmp_path / "o4.h5", progress=False)
    cine = tmp_path / "cine"
    write_dicom_series(cine, vol, names=["p0a", "p1a", "p2a"], series_uid="1.2.3.3")
    write_dicom_series(cine, vol, names=["p0b", "p1b", "p2b"], series_uid="1.2.3.3")
    with pytest.raises(CtsegDataError, match=r"is a cine series \(3 positions x 2 phases\), not a volume"):
        convert_to_hdf5(cine, tmp_path / "o3.h5", progress=False)
    assert not (tmp_path / "o3.h5").exists()


@pytest.mark.realdata
def test_real_cine_scan_is_refused_with_a_clear_message(sunnybrook, tmp_path):
    with pytest.raises(CtsegDataError, match=r"SCD0000101: series .* is a cine series \(12 positions x 20 phases\)"):
        convert_to_hdf5(sunnybrook / "scans" / "SCD0000101", tmp_path / "o.h5", progress=False)


@pytest.mark.realdata
def test_real_end_diastolic_volume_converts_in_position_order(sunnybrook, tmp_path):
    """One phase of the real cine scan (links to its 12 files) is a proper volume."""
    from ctseg_helpers.io.dicom import read_dicom_file, scan_dicom_folder

    info = scan_dicom_folder(sunnybrook / "scans" / "SCD0000101").series[0]
    first_phase = info.files[:: info.n_phases]
    folder = tmp_path / "phase0"
    folder.mkdir()
    for k, path in enumerate(reversed(first_phase)):  # link names in reverse stacking order
        (folder / f"f{k:02d}.dcm").symlink_to(path)
    result = convert_to_hdf5(folder, tmp_path / "ed.h5", progress=False)
    assert result.shape == (12, 256, 256)
    data, attrs, _, _ = read_out(tmp_path / "ed.h5")
    for k in (0, 5, 11):
        np.testing.assert_array_equal(data[k], read_dicom_file(first_phase[k]).pixels)
    assert 8.0 <= attrs["spacing_mm"][0] <= 10.5
    assert 1.2 < attrs["spacing_mm"][1] < 1.45 and attrs["modality"] == "MR"


def test_nifti_cut_along_axis_2_with_scaling_and_spacing(tmp_path):
    import nibabel as nib

    data = np.random.default_rng(0).integers(-100, 100, (10, 12, 7)).astype(np.int16)
    img = nib.Nifti1Image(data, np.diag([0.5, 0.6, 3.0, 1.0]))
    img.header.set_xyzt_units("mm")
    nib.save(img, tmp_path / "vol.nii.gz")
    convert_to_hdf5(tmp_path / "vol.nii.gz", tmp_path / "out.h5", max_gb=3 * 120 * 2 / 1e9, progress=False)
    out, attrs, _, _ = read_out(tmp_path / "out.h5")
    np.testing.assert_array_equal(out, np.transpose(data, (2, 0, 1)))
    assert out.dtype == np.int16
    np.testing.assert_allclose(attrs["spacing_mm"], (3.0, 0.5, 0.6))

    scaled = nib.Nifti1Image(data, np.eye(4))
    scaled.header.set_slope_inter(0.5, 10.0)
    nib.save(scaled, tmp_path / "scaled.nii")
    convert_to_hdf5(tmp_path / "scaled.nii", tmp_path / "scaled.h5", progress=False)
    out, _, _, _ = read_out(tmp_path / "scaled.h5")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.transpose(data, (2, 0, 1)) * 0.5 + 10.0)


def test_nifti_errors(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)), tmp_path / "four.nii")
    with pytest.raises(CtsegDataError, match=r"four.nii: NIfTI data of shape \(4, 4, 4, 2\); a 3D volume is needed"):
        convert_to_hdf5(tmp_path / "four.nii", tmp_path / "o.h5", progress=False)
    (tmp_path / "junk.nii").write_bytes(b"not nifti at all")
    with pytest.raises(CtsegDataError, match="junk.nii: cannot read it as NIfTI"):
        convert_to_hdf5(tmp_path / "junk.nii", tmp_path / "o.h5", progress=False)
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), tmp_path / "cut.nii")
    raw = (tmp_path / "cut.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(CtsegDataError, match="cut.nii: the volume's data cannot be read"):
        convert_to_hdf5(tmp_path / "cut.nii", tmp_path / "o.h5", progress=False)
    assert not (tmp_path / "o.h5").exists()


def test_source_and_output_refusals(tmp_path):
    vol = ct_volume()
    tifffile.imwrite(tmp_path / "stack.tif", vol, photometric="minisblack")
    with pytest.raises(CtsegDataError, match="out.nc: the output must be an HDF5 file name ending in .h5"):
        convert_to_hdf5(tmp_path / "stack.tif", tmp_path / "out.nc", progress=False)
    (tmp_path / "mine.h5").write_text("precious")
    with pytest.raises(CtsegDataError, match="mine.h5 exists already; choose another name or pass --overwrite"):
        convert_to_hdf5(tmp_path / "stack.tif", tmp_path / "mine.h5", progress=False)
    assert (tmp_path / "mine.h5").read_text() == "precious"
    with pytest.raises(
        CtsegDataError,
        match="mine.h5: not written by ctseg; ctseg never replaces such files, even "
        r"with --overwrite \(overwrite=True\): move it away or choose another "
        "output name",
    ):
        convert_to_hdf5(tmp_path / "stack.tif", tmp_path / "mine.h5", overwrite=True, progress=False)
    assert (tmp_path / "mine.h5").read_text() == "precious"
    with pytest.raises(CtsegDataError, match="nope: no such file or folder"):
        convert_to_hdf5(tmp_path / "nope", tmp_path / "o.h5", progress=False)
    (tmp_path / "vol.raw").write_bytes(b"\0" * 10)
    with pytest.raises(CtsegDataError, match="vol.raw: unknown source; give a folder of TIFF or DICOM files"):
        convert_to_hdf5(tmp_path / "vol.raw", tmp_path / "o.h5", progress=False)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((2, 4, 4, 3), np.uint8), photometric="rgb")
    with pytest.raises(CtsegDataError, match=r"rgb.tif: the TIFF holds an image of shape \(2, 4, 4, 3\)"):
        convert_to_hdf5(tmp_path / "rgb.tif", tmp_path / "o.h5", progress=False)
    (tmp_path / "bad.tif").write_bytes(b"II*\0garbage")
    with pytest.raises(CtsegDataError, match=r"bad.tif: cannot read it as TIFF \(no image in the file"):
        convert_to_hdf5(tmp_path / "bad.tif", tmp_path / "o.h5", progress=False)
    (tmp_path / "text.tif").write_text("this is not a TIFF file")
    with pytest.raises(CtsegDataError, match=r"text.tif: cannot read it as TIFF \(not a TIFF file"):
        convert_to_hdf5(tmp_path / "text.tif", tmp_path / "o.h5", progress=False)


def test_overwrite_replaces_an_unchanged_conversion_only(tmp_path):
    vol = ct_volume()
    tifffile.imwrite(tmp_path / "stack.tif", vol, photometric="minisblack")
    out = tmp_path / "vol.h5"
    convert_to_hdf5(tmp_path / "stack.tif", out, progress=False)
    convert_to_hdf5(tmp_path / "stack.tif", out, dataset="scan", overwrite=True, progress=False)
    with DataFile.open(out) as f:
        assert f.dataset == "scan"
        np.testing.assert_array_equal(f.read_full(), vol)
    with h5py.File(out, "a") as f:  # the user adds a dataset of their own
        f["my_mask"] = np.ones((2, 2), np.uint8)
    with pytest.raises(CtsegDataError, match="vol.h5: changed since ctseg wrote it; ctseg never replaces such files"):
        convert_to_hdf5(tmp_path / "stack.tif", out, overwrite=True, progress=False)
    with h5py.File(out, "r") as f:
        assert "my_mask" in f and "scan" in f


def test_an_interrupted_conversion_leaves_no_partial_output(tmp_path, monkeypatch):
    vol = ct_volume()
    tifffile.imwrite(tmp_path / "stack.tif", vol, photometric="minisblack")

    def broken(self, start, stop):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_mod._TiffStack, "read", broken)
    with pytest.raises(KeyboardInterrupt):
        convert_to_hdf5(tmp_path / "stack.tif", tmp_path / "out.h5", progress=False)
    assert not (tmp_path / "out.h5").exists()


# ------------------------------------------------------------------ position and orientation (affine_ras)
def test_oblique_dicom_records_the_affine_of_its_voxel_centres(tmp_path):
    from ctseg_helpers.io.dicom import read_dicom_file

    vol = np.arange(4 * 6 * 9, dtype=np.float32).reshape(4, 6, 9)  # every slice differs
    files = write_dicom_series(
        tmp_path / "dcm",
        vol,
        pixel_spacing_mm=(0.7, 1.3),
        slice_thickness_mm=2.5,
        origin_mm=(12.5, -30.0, 44.0),
        orientation=oblique_orientation(),
        names=["IM_0004", "IM_0003", "IM_0002", "IM_0001"],
    )
    result = convert_to_hdf5(tmp_path / "dcm", tmp_path / "out.h5", progress=False)
    data, attrs, _, _ = read_out(tmp_path / "out.h5")
    affine = attrs["affine_ras"]
    assert affine.shape == (4, 4) and affine.dtype == np.float64
    np.testing.assert_array_equal(result.affine_ras, affine)
    world = voxel_world(affine, data.shape)  # (z, y, x, 3)
    for path in files:
        pixels = read_dicom_file(path).pixels
        (z,) = [k for k in range(len(data)) if np.array_equal(data[k], pixels)]
        np.testing.assert_allclose(world[z], dicom_world_ras(path, 6, 9), atol=1e-3)


def test_dicom_without_positions_or_off_line_records_no_affine(tmp_path, caplog):
    import pydicom

    vol = ct_volume((3, 8, 8)).astype(np.float32)
    files = write_dicom_series(tmp_path / "nopos", vol, slice_thickness_mm=2.0)
    for path in files:
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
    with caplog.at_level("WARNING"):
        result = convert_to_hdf5(tmp_path / "nopos", tmp_path / "a.h5", progress=False)
    assert result.affine_ras is None and "affine_ras" not in read_out(tmp_path / "a.h5")[1]
    assert "ImagePositionPatient or ImageOrientationPatient is missing; its position and orientation" in caplog.text

    files = write_dicom_series(tmp_path / "shifted", vol, slice_thickness_mm=2.0)
    ds = pydicom.dcmread(files[1])
    ds.ImagePositionPatient = [5.0, 0.0, 2.0]  # still 2 mm along the normal, 5 mm aside
    ds.save_as(files[1])
    caplog.clear()
    with caplog.at_level("WARNING"):
        result = convert_to_hdf5(tmp_path / "shifted", tmp_path / "b.h5", progress=False)
    assert result.affine_ras is None and result.spacing_mm == pytest.approx((2.0, 1.0, 1.0))
    assert "shifted: the slices are not evenly spaced along one line; its position and orientation" in caplog.text


def test_nifti_affine_is_recorded_in_the_hdf5_axis_order(tmp_path, caplog):
    import nibabel as nib

    data = np.random.default_rng(1).integers(0, 1000, (5, 6, 7)).astype(np.int16)
    rotation = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))[0]
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 1.1, 3.0])
    affine[:3, 3] = (-20.0, 35.5, 7.25)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, tmp_path / "vol.nii.gz")
    result = convert_to_hdf5(tmp_path / "vol.nii.gz", tmp_path / "out.h5", progress=False)
    out, attrs, _, _ = read_out(tmp_path / "out.h5")
    nifti_world = voxel_world(nib.load(tmp_path / "vol.nii.gz").affine, data.shape)  # (i, j, k, 3)
    # out[z, y, x] is data[y, x, z]: the same voxel, the same point in space
    np.testing.assert_array_equal(out, np.transpose(data, (2, 0, 1)))
    np.testing.assert_allclose(
        voxel_world(attrs["affine_ras"], out.shape), np.transpose(nifti_world, (2, 0, 1, 3)), atol=1e-4
    )
    np.testing.assert_array_equal(result.affine_ras, attrs["affine_ras"])

    micron = nib.Nifti1Image(data, affine)
    micron.header.set_xyzt_units("micron")
    nib.save(micron, tmp_path / "micron.nii")
    attrs = read_out(convert_to_hdf5(tmp_path / "micron.nii", tmp_path / "um.h5", progress=False).out_path)[1]
    np.testing.assert_allclose(attrs["affine_ras"][:3], result.affine_ras[:3] * 1e-3, atol=1e-9)

    unplaced = nib.Nifti1Image(data, affine)
    unplaced.set_sform(None, code=0)
    unplaced.set_qform(None, code=0)
    nib.save(unplaced, tmp_path / "unplaced.nii")
    with caplog.at_level("WARNING"):
        result = convert_to_hdf5(tmp_path / "unplaced.nii", tmp_path / "u.h5", progress=False)
    assert result.affine_ras is None and result.spacing_mm is not None
    assert "unplaced.nii: qform and sform codes are 0 (no position); affine_ras is not recorded" in caplog.text


def test_tiff_sources_record_no_affine(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", ct_volume(), photometric="minisblack")
    result = convert_to_hdf5(tmp_path / "stack.tif", tmp_path / "out.h5", progress=False)
    assert result.affine_ras is None and "affine_ras" not in read_out(tmp_path / "out.h5")[1]
