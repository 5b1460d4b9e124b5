import numpy as np
import pydicom
import pytest

from ctseg_helpers.io.dicom_write import write_dicom_series


def test_written_series_holds_hounsfield_units_and_geometry(tmp_path):
    images = np.stack([np.full((8, 6), -1000.0), np.full((8, 6), 40.0)])
    paths = write_dicom_series(tmp_path, images, pixel_spacing_mm=(0.7, 0.8), slice_thickness_mm=2.5)
    assert [p.name for p in paths] == ["slice_0001.dcm", "slice_0002.dcm"]
    ds = pydicom.dcmread(paths[1])
    assert ds.preamble is not None and ds.Modality == "CT"
    np.testing.assert_allclose(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept), 40.0)
    assert [float(v) for v in ds.PixelSpacing] == [0.7, 0.8]
    assert [float(v) for v in ds.ImagePositionPatient] == [0.0, 0.0, 2.5]
    assert pydicom.dcmread(paths[0]).SeriesInstanceUID == ds.SeriesInstanceUID


def test_writer_refuses_bad_input_and_overwriting(tmp_path):
    with pytest.raises(ValueError, match=r"images must have shape \(K, M, N\)"):
        write_dicom_series(tmp_path, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="modality must be one of"):
        write_dicom_series(tmp_path, np.zeros((1, 4, 4)), modality="PT")
    with pytest.raises(ValueError, match="1 names given for 2 images"):
        write_dicom_series(tmp_path, np.zeros((2, 4, 4)), names=["a"])
    with pytest.raises(ValueError, match=r"names must be distinct, but 'a' repeat; give one file name per slice"):
        write_dicom_series(tmp_path, np.zeros((3, 4, 4)), names=["a", "b", "a"])
    assert not (tmp_path / "a.dcm").exists()
    with pytest.raises(ValueError, match="do not fit uint16"):
        write_dicom_series(tmp_path, np.full((1, 4, 4), -5000.0))
    write_dicom_series(tmp_path, np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="exist already"):
        write_dicom_series(tmp_path, np.zeros((1, 4, 4)))
    write_dicom_series(tmp_path, np.zeros((1, 4, 4)), overwrite=True)


def test_written_file_passes_dicom3tools_validation(tmp_path):
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    path = write_dicom_series(tmp_path, np.zeros((1, 8, 8)))[0]
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    report = result.stdout + result.stderr
    assert "Error" not in report and "Warning" not in report, report
