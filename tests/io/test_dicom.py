"""Reading DICOM files and folders: hand-built files in tmp_path with exactly known answers."""

from __future__ import annotations

import io
import logging
import shutil
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io import dicom as dicom_module
from ctseg_helpers.io.dicom import read_dicom_file, read_dicom_series, scan_dicom_folder
from ctseg_helpers.io.dicom_write import write_dicom_series

RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
GREYSCALE_PR = "1.2.840.10008.5.1.4.1.1.11.1"


def constant_slices(values, shape=(8, 10)) -> np.ndarray:
    """One constant image per value, so the stacking order can be read off the means."""
    return np.stack([np.full(shape, v, dtype=np.float64) for v in values])


def edit(path, **tags):
    """Set (or with None delete) DICOM attributes of a file in place."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tests write invalid UIDs on purpose
        ds = pydicom.dcmread(path)
        for keyword, value in tags.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(path)


def write_non_image(path, sop_class: str, modality: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "ANON"
    ds.save_as(path, enforce_file_format=True)


# --- ordering --------------------------------------------------------------------------------


def test_shuffled_positions_sort_along_the_normal(tmp_path):
    # Slice k holds value 10 k and lies at z = 2 k mm; file names and instance numbers disagree.
    names = ["e", "b", "d", "a", "c"]
    paths = write_dicom_series(
        tmp_path, constant_slices([0, 10, 20, 30, 40]), names=names, slice_thickness_mm=2.0, origin_mm=(0.0, 0.0, -4.0)
    )
    for path, instance in zip(paths, [3, 5, 1, 4, 2], strict=True):
        edit(path, InstanceNumber=instance)
    series = read_dicom_series(tmp_path)
    assert series.images.dtype == np.float32
    assert series.images.mean(axis=(1, 2)).tolist() == [0, 10, 20, 30, 40]
    assert [p.stem for p in series.files] == names
    np.testing.assert_allclose(series.positions_mm, [-4, -2, 0, 2, 4])
    assert series.ordered_by == "position"
    assert series.is_volume and series.slice_spacing_mm == pytest.approx(2.0)
    assert (series.n_positions, series.n_phases) == (5, 1)


def test_oblique_orientation_projects_positions_on_the_normal(tmp_path):
    angle = np.deg2rad(30)
    row = (1.0, 0.0, 0.0)
    col = (0.0, np.cos(angle), np.sin(angle))
    paths = write_dicom_series(
        tmp_path,
        constant_slices([0, 1, 2, 3]),
        names=["d", "c", "b", "a"],
        slice_thickness_mm=2.5,
        orientation=row + col,
        origin_mm=(10.0, 20.0, 30.0),
    )
    # Reverse the files' instance numbers: the geometry must win.
    for index, path in enumerate(paths):
        edit(path, InstanceNumber=len(paths) - index)
    series = read_dicom_series(tmp_path)
    assert series.images.mean(axis=(1, 2)).tolist() == [0, 1, 2, 3]
    normal = np.cross(row, col)
    start = float(np.dot((10.0, 20.0, 30.0), normal))
    np.testing.assert_allclose(series.positions_mm, start + 2.5 * np.arange(4), atol=1e-3)
    assert series.slice_spacing_mm == pytest.approx(2.5, abs=1e-3)
    assert series.orientation == pytest.approx(row + col, abs=1e-5)
    image = read_dicom_file(paths[0])
    assert image.position_mm == pytest.approx(start, abs=1e-3)


def test_instance_number_is_the_fallback_without_geometry(tmp_path, caplog):
    paths = write_dicom_series(tmp_path, constant_slices([5, 6, 7]), names=["x", "y", "z"])
    for path, instance in zip(paths, [2, 3, 1], strict=True):
        edit(path, InstanceNumber=instance, ImagePositionPatient=None)
    with caplog.at_level(logging.WARNING):
        series = read_dicom_series(tmp_path)
    assert series.images.mean(axis=(1, 2)).tolist() == [7, 5, 6]
    assert series.ordered_by == "instance number"
    assert np.isnan(series.positions_mm).all()
    assert not series.is_volume and series.slice_spacing_mm is None
    assert "3 of 3 images lack ImagePositionPatient/ImageOrientationPatient (x.dcm, y.dcm, z.dcm)" in caplog.text
    assert "ordering by InstanceNumber" in caplog.text


def test_cine_keeps_every_phase_ordered_by_position_then_time(tmp_path):
    uid = generate_uid()
    n_positions, n_phases = 3, 4
    for phase in reversed(range(n_phases)):  # written out of order on purpose
        values = [100 * pos + phase for pos in range(n_positions)]
        paths = write_dicom_series(
            tmp_path,
            constant_slices(values),
            series_uid=uid,
            modality="MR",
            rescale_intercept=0.0,
            slice_thickness_mm=8.0,
            names=[f"img_{pos}_{phase}" for pos in range(n_positions)],
        )
        for path in paths:
            edit(path, TriggerTime=f"{40.0 * phase + 12.5}", InstanceNumber=1)
    series = read_dicom_series(tmp_path)
    assert (series.n_positions, series.n_phases) == (3, 4)
    expected = [100 * pos + phase for pos in range(n_positions) for phase in range(n_phases)]
    assert series.images.mean(axis=(1, 2)).tolist() == expected
    np.testing.assert_allclose(series.trigger_times_ms[:4], [12.5, 52.5, 92.5, 132.5])
    assert not series.is_volume and series.slice_spacing_mm is None
    cine = series.cine()
    assert cine.shape == (3, 4, 8, 10)
    assert cine[2, 1].mean() == 201


def test_cine_with_uneven_phases_cannot_be_reshaped(tmp_path):
    uid = generate_uid()
    write_dicom_series(tmp_path, constant_slices([0, 1]), series_uid=uid, names=["a0", "a1"])
    write_dicom_series(tmp_path, constant_slices([2]), series_uid=uid, names=["b0"])
    series = read_dicom_series(tmp_path)
    assert (series.n_positions, series.n_phases) == (2, 2)
    with pytest.raises(CtsegDataError, match=r"3 images do not form 2 positions x 2 phases"):
        series.cine()


# --- values -------------------------------------------------------------------------------


def test_rescale_slope_and_intercept_give_hounsfield_units(tmp_path):
    hu = np.array([[-1000.0, -500.0], [0.0, 1400.0]])
    paths = write_dicom_series(tmp_path, hu[None], rescale_slope=2.0, rescale_intercept=-2048.0)
    stored = pydicom.dcmread(paths[0]).pixel_array
    np.testing.assert_array_equal(stored, (hu + 2048) / 2)
    image = read_dicom_file(paths[0])
    assert image.pixels.dtype == np.float32
    np.testing.assert_array_equal(image.pixels, hu)
    assert image.modality == "CT"


def test_monochrome1_is_inverted_over_the_stored_range(tmp_path):
    values = np.array([[0.0, 100.0], [200.0, 300.0]])
    paths = write_dicom_series(tmp_path, values[None], rescale_intercept=0.0)
    edit(paths[0], PhotometricInterpretation="MONOCHROME1")
    image = read_dicom_file(paths[0])
    # 16-bit unsigned, identity rescale: the stored range 0..65535 maps onto itself reversed.
    np.testing.assert_array_equal(image.pixels, 65535 - values)


def test_missing_pixel_spacing_is_none_not_a_crash(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2]))
    for path in paths:
        edit(path, PixelSpacing=None, SliceThickness=None)
    assert read_dicom_file(paths[0]).pixel_spacing_mm is None
    series = read_dicom_series(tmp_path)
    assert np.isnan(series.pixel_spacing_mm).all() and series.pixel_spacing_mm.shape == (2, 2)
    assert series.spacing_mm is None and series.slice_thickness_mm is None
    assert scan_dicom_folder(tmp_path).to_dict()["series"][0]["spacing_mm"] is None


def test_geometry_and_identity_fields(tmp_path):
    paths = write_dicom_series(
        tmp_path,
        constant_slices([3]),
        pixel_spacing_mm=(0.7, 0.8),
        slice_thickness_mm=1.5,
        modality="MR",
        patient_id="P7",
        series_description="T1 axial",
        origin_mm=(1.0, 2.0, 3.0),
    )
    edit(paths[0], TriggerTime="250")
    image = read_dicom_file(paths[0])
    assert image.pixel_spacing_mm == (0.7, 0.8)
    assert image.slice_thickness_mm == 1.5
    assert image.image_position_mm == (1.0, 2.0, 3.0)
    assert image.position_mm == pytest.approx(3.0)
    assert image.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert image.instance_number == 1 and image.trigger_time_ms == 250.0
    assert (image.modality, image.patient_id, image.series_description) == ("MR", "P7", "T1 axial")
    assert image.series_uid and image.study_uid
    assert image.shape == (8, 10)


# --- real-world quirks --------------------------------------------------------------------------


def test_file_without_dcm_extension_and_without_preamble(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2, 3]))
    no_extension = paths[0].with_name("IM0001")
    paths[0].rename(no_extension)
    raw = paths[1].read_bytes()
    assert raw[128:132] == b"DICM"
    paths[1].write_bytes(raw[132:])  # no preamble, no "DICM" magic
    assert read_dicom_file(no_extension).pixels.mean() == 1
    assert read_dicom_file(paths[1]).pixels.mean() == 2
    series = read_dicom_series(tmp_path)
    assert series.images.mean(axis=(1, 2)).tolist() == [1, 2, 3]
    assert series.skipped == []


def test_bare_dataset_without_file_meta(tmp_path):
    # Old scanners wrote the data set alone: no preamble, no file meta, implicit VR.
    paths = write_dicom_series(tmp_path, constant_slices([4, 5]))
    ds = pydicom.dcmread(paths[1])
    ds.preamble = None
    del ds.file_meta
    bare = tmp_path / "IM2"
    pydicom.dcmwrite(bare, ds, implicit_vr=True, little_endian=True)
    paths[1].unlink()
    image = read_dicom_file(bare)
    assert image.pixels.mean() == 5
    assert image.transfer_syntax == "Implicit VR Little Endian"
    assert read_dicom_series(tmp_path).images.mean(axis=(1, 2)).tolist() == [4, 5]


def test_invalid_uids_with_leading_zeros_read_silently(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2]))
    for path in paths:
        edit(path, SeriesInstanceUID="1.2.826.0.1.0345.05", StudyInstanceUID="2.16.0124.07")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        series = read_dicom_series(tmp_path)
        image = read_dicom_file(paths[0])
    assert series.series_uid == "1.2.826.0.1.0345.05"
    assert image.study_uid == "2.16.0124.07"


def test_validation_mode_is_restored(tmp_path):
    before = pydicom.config.settings.reading_validation_mode
    write_dicom_series(tmp_path, constant_slices([1]))
    read_dicom_series(tmp_path)
    assert pydicom.config.settings.reading_validation_mode == before


def test_non_image_and_non_dicom_files_are_skipped_and_reported(tmp_path, caplog):
    write_dicom_series(tmp_path, constant_slices([1, 2]))
    write_non_image(tmp_path / "rtstruct.dcm", RT_STRUCT, "RTSTRUCT")
    write_non_image(tmp_path / "report", BASIC_TEXT_SR, "SR")
    write_non_image(tmp_path / "pstate.dcm", GREYSCALE_PR, "PR")
    (tmp_path / "notes.txt").write_text("scanned on Tuesday\n")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    with caplog.at_level(logging.INFO, logger="ctseg_helpers.io.dicom"):
        series = read_dicom_series(tmp_path)
    assert len(series.images) == 2
    reasons = {path.name: reason for path, reason in series.skipped}
    assert set(reasons) == {"rtstruct.dcm", "report", "pstate.dcm", "notes.txt"}
    assert reasons["rtstruct.dcm"] == "non-image DICOM (RT structure set): no pixel data"
    assert reasons["report"] == "non-image DICOM (structured report): no pixel data"
    assert reasons["pstate.dcm"] == "non-image DICOM (presentation state): no pixel data"
    assert reasons["notes.txt"] == "not a DICOM file"
    assert "skipped 4 file(s) that are not DICOM images" in caplog.text
    assert "rtstruct.dcm" in caplog.text


def test_colour_and_multiframe_files_are_skipped_with_a_reason(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2, 3]))
    edit(
        paths[1],
        SamplesPerPixel=3,
        PhotometricInterpretation="RGB",
        PlanarConfiguration=0,
        Rows=8,
        Columns=10,
        PixelData=np.zeros((8, 10, 3), np.uint16).tobytes(),
    )
    edit(paths[2], NumberOfFrames=2, Rows=4)
    scan = scan_dicom_folder(tmp_path)
    reasons = {path.name: reason for path, reason in scan.skipped}
    assert reasons["slice_0002.dcm"].startswith("colour image (RGB, 3 samples per pixel)")
    assert reasons["slice_0003.dcm"].startswith("multi-frame image (2 frames)")
    with pytest.raises(CtsegDataError, match=r"slice_0002\.dcm: colour image .*select a DICOM image file"):
        read_dicom_file(paths[1])
    with pytest.raises(CtsegDataError, match=r"slice_0003\.dcm: multi-frame image \(2 frames\)"):
        read_dicom_file(paths[2])


# --- compressed transfer syntaxes ---------------------------------------------------------------


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=["rle", "jpeg-ls", "jpeg2000"])
def test_compressed_files_decode_losslessly(tmp_path, syntax):
    hu = np.random.default_rng(3).integers(-1000, 1500, size=(1, 64, 64)).astype(np.float64)
    paths = write_dicom_series(tmp_path, hu)
    ds = pydicom.dcmread(paths[0])
    ds.compress(syntax)
    ds.save_as(paths[0])
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == syntax
    image = read_dicom_file(paths[0])
    np.testing.assert_array_equal(image.pixels, hu[0])
    assert image.transfer_syntax == syntax.name


def test_jpeg_baseline_decodes(tmp_path):
    from PIL import Image

    paths = write_dicom_series(tmp_path, constant_slices([0], shape=(32, 32)))
    pixels = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.RescaleIntercept = "0"
    ds.PixelData = pydicom.encaps.encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(paths[0])
    image = read_dicom_file(paths[0])
    assert image.pixels.shape == (32, 32)
    assert np.abs(image.pixels - pixels).max() <= 4  # lossy, but close


def test_undecodable_pixel_data_names_file_and_transfer_syntax(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([0], shape=(16, 16)))
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = pydicom.encaps.encapsulate([b"this is not a JPEG 2000 codestream" * 4])
    ds["PixelData"].VR = "OB"
    ds.save_as(paths[0])
    with pytest.raises(
        CtsegDataError,
        match=r"slice_0001\.dcm: cannot decode the pixel data "
        r"\(transfer syntax JPEG 2000 Image Compression \(Lossless Only\)",
    ):
        read_dicom_file(paths[0])
    with pytest.raises(CtsegDataError, match=r"1\.2\.840\.10008\.1\.2\.4\.90"):
        read_dicom_series(tmp_path)


# --- bad input ---------------------------------------------------------------------------------


def test_truncated_pixel_data_fails_naming_the_file(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2, 3], shape=(32, 32)))
    raw = paths[1].read_bytes()
    paths[1].write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(CtsegDataError, match=r"slice_0002\.dcm: cannot decode the pixel data .*truncated"):
        read_dicom_series(tmp_path)


def test_truncated_header_is_a_damaged_file(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2, 3], shape=(32, 32)))
    raw = paths[2].read_bytes()
    paths[2].write_bytes(raw[: raw.index(b"\xe0\x7f\x10\x00")])  # cut before the pixel data
    scan = scan_dicom_folder(tmp_path)
    assert [p.name for p, _ in scan.damaged] == ["slice_0003.dcm"]
    assert scan.series[0].n_images == 2
    with pytest.raises(
        CtsegDataError,
        match=r"slice_0003\.dcm: truncated DICOM image: the header is there "
        r"but the pixel data is missing; 1 damaged file\(s\)",
    ):
        read_dicom_series(tmp_path)
    with pytest.raises(CtsegDataError, match=r"slice_0003\.dcm: truncated DICOM image.*intact copy"):
        read_dicom_file(paths[2])


def test_corrupt_file_after_the_preamble_is_damaged(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2]))
    raw = paths[0].read_bytes()
    paths[0].write_bytes(raw[:132] + bytes(range(7, 250)) * 3)
    with pytest.raises(CtsegDataError, match=r"slice_0001\.dcm: damaged DICOM file"):
        read_dicom_series(tmp_path)
    with pytest.raises(CtsegDataError, match=r"slice_0001\.dcm: damaged DICOM file.*intact copy"):
        read_dicom_file(paths[0])


def test_file_that_fails_between_scan_and_read(tmp_path, monkeypatch):
    write_dicom_series(tmp_path, constant_slices([1, 2]))
    real_parse = dicom_module._parse

    def parse(path, *, headers_only):
        if not headers_only:
            return None, ("damaged", "damaged DICOM file (truncated or corrupt): boom")
        return real_parse(path, headers_only=headers_only)

    monkeypatch.setattr(dicom_module, "_parse", parse)
    with pytest.raises(CtsegDataError, match=r"slice_0001\.dcm: damaged DICOM file .*boom; replace or remove"):
        read_dicom_series(tmp_path)


def test_two_series_need_a_choice(tmp_path):
    write_dicom_series(
        tmp_path,
        constant_slices([1, 2, 3]),
        series_description="T1 axial",
        series_uid="1.2.3.1",
        names=["t1_a", "t1_b", "t1_c"],
    )
    write_dicom_series(
        tmp_path, constant_slices([7, 8]), series_description="T2 axial", series_uid="1.2.3.2", names=["t2_a", "t2_b"]
    )
    with pytest.raises(
        CtsegDataError,
        match=r"holds 2 series; pick one with series_uid=.*"
        r"'T1 axial' \(CT, 3 images, uid 1\.2\.3\.1\); "
        r"'T2 axial' \(CT, 2 images, uid 1\.2\.3\.2\)",
    ):
        read_dicom_series(tmp_path)
    second = read_dicom_series(tmp_path, series_uid="1.2.3.2")
    assert second.images.mean(axis=(1, 2)).tolist() == [7, 8]
    assert second.series_description == "T2 axial"
    with pytest.raises(CtsegDataError, match=r"no series with uid 9\.9; the folder holds 2 series: 'T1 axial'"):
        read_dicom_series(tmp_path, series_uid="9.9")


def test_different_image_sizes_in_one_series(tmp_path):
    uid = generate_uid()
    write_dicom_series(tmp_path, constant_slices([1, 2], shape=(8, 8)), series_uid=uid, names=["a", "b"])
    write_dicom_series(tmp_path, constant_slices([3], shape=(16, 8)), series_uid=uid, names=["c"], origin_mm=(0, 0, 5))
    with pytest.raises(
        CtsegDataError,
        match=r"images of different sizes in series .*8x8 \(2 files, e\.g\. "
        r"a\.dcm\), 16x8 \(1 files, e\.g\. c\.dcm\)",
    ):
        read_dicom_series(tmp_path)


def test_empty_folder(tmp_path):
    with pytest.raises(CtsegDataError, match=r"the folder is empty; select the folder that holds the DICOM"):
        read_dicom_series(tmp_path)
    (tmp_path / "series1").mkdir()
    with pytest.raises(CtsegDataError, match=r"empty; it has 1 subfolder\(s\) \(series1\): select the one"):
        scan_dicom_folder(tmp_path)


def test_folder_with_no_dicom(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    write_non_image(tmp_path / "rt.dcm", RT_STRUCT, "RTSTRUCT")
    with pytest.raises(
        CtsegDataError,
        match=r"no DICOM images in this folder \(2 not a DICOM file, "
        r"1 non-image DICOM \(RT structure set\)\)",
    ):
        read_dicom_series(tmp_path)


def test_missing_folder_and_file_given_as_folder(tmp_path):
    with pytest.raises(CtsegDataError, match=r"nowhere: no such folder"):
        read_dicom_series(tmp_path / "nowhere")
    paths = write_dicom_series(tmp_path, constant_slices([1]))
    with pytest.raises(CtsegDataError, match=r"is a file, not a folder"):
        read_dicom_series(paths[0])


def test_read_dicom_file_bad_input(tmp_path):
    with pytest.raises(CtsegDataError, match=r"missing\.dcm: no such file"):
        read_dicom_file(tmp_path / "missing.dcm")
    text = tmp_path / "notes.dcm"
    text.write_text("not an image at all\n" * 20)
    with pytest.raises(CtsegDataError, match=r"notes\.dcm: not a DICOM file; select a DICOM image file"):
        read_dicom_file(text)
    write_non_image(tmp_path / "rt.dcm", RT_STRUCT, "RTSTRUCT")
    with pytest.raises(CtsegDataError, match=r"rt\.dcm: non-image DICOM \(RT structure set\): no pixel data"):
        read_dicom_file(tmp_path / "rt.dcm")


def test_scan_reports_series_in_stacking_order(tmp_path):
    paths = write_dicom_series(
        tmp_path, constant_slices([1, 2, 3]), names=["c", "a", "b"], slice_thickness_mm=3.0, pixel_spacing_mm=(0.5, 0.6)
    )
    (tmp_path / "readme.txt").write_text("x")
    data = scan_dicom_folder(tmp_path).to_dict()
    (series,) = data["series"]
    assert series["files"] == [str(p) for p in paths]
    assert series["positions_mm"] == [0.0, 3.0, 6.0]
    assert (series["rows"], series["columns"], series["n_images"]) == (8, 10, 3)
    assert series["spacing_mm"] == [0.5, 0.6]
    assert series["skipped"] == [{"file": str(tmp_path / "readme.txt"), "reason": "not a DICOM file"}]
    assert data["skipped"] == series["skipped"]


def test_text_forms_for_notebooks(tmp_path):
    write_dicom_series(
        tmp_path,
        constant_slices([1, 2]),
        series_description="liver",
        modality="MR",
        pixel_spacing_mm=(0.5, 0.5),
        slice_thickness_mm=3.0,
    )
    series = read_dicom_series(tmp_path)
    assert repr(series).startswith(
        "DicomSeries(MR 'liver', 2 images of 8x10, 2 positions x 1 phases, spacing_mm=(0.5, 0.5), uid="
    )
    scan = scan_dicom_folder(tmp_path)
    text = str(scan)
    assert "series 1: 'liver' MR, 2 images of 8x10, pixels 0.5 x 0.5 mm" in text
    assert "2 positions, 0.00 to 3.00 mm along the slice normal, slice thickness 3 mm; ordered by position" in text

    class Printer:
        def text(self, value):
            self.value = value

    printer = Printer()
    scan._repr_pretty_(printer, cycle=False)
    assert printer.value == text


def test_unequal_gaps_are_not_a_volume(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2, 3]), slice_thickness_mm=2.0)
    edit(paths[2], ImagePositionPatient=["0", "0", "5"])
    series = read_dicom_series(tmp_path)
    np.testing.assert_allclose(series.positions_mm, [0, 2, 5])
    assert (series.n_positions, series.n_phases) == (3, 1)
    assert not series.is_volume and series.slice_spacing_mm is None


def test_unreadable_file_is_reported_not_crashed(tmp_path, monkeypatch):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2]))
    real_head = dicom_module._file_head

    def head(path):
        if path.name == "slice_0002.dcm":
            raise PermissionError(13, "Permission denied")
        return real_head(path)

    monkeypatch.setattr(dicom_module, "_file_head", head)
    scan = scan_dicom_folder(tmp_path)
    assert scan.damaged == [(paths[1], "cannot open the file (Permission denied); check its permissions")]
    with pytest.raises(CtsegDataError, match=r"slice_0002\.dcm: cannot open the file \(Permission denied\)"):
        read_dicom_series(tmp_path)


def test_binary_junk_without_preamble_is_not_dicom(tmp_path):
    junk = tmp_path / "blob"
    # Starts like a DICOM tag (group 0008) but is noise: the forced parse must not crash.
    junk.write_bytes(b"\x08\x00\x05\x00" + np.random.default_rng(1).bytes(3000))
    with pytest.raises(CtsegDataError, match=r"blob: not a DICOM file"):
        read_dicom_file(junk)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x02\x00")
    with pytest.raises(CtsegDataError, match=r"tiny: not a DICOM file"):
        read_dicom_file(tiny)


def test_mixed_orientations_use_the_most_common_one(tmp_path, caplog):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2, 3]), slice_thickness_mm=2.0)
    # A sagittal localizer that kept the axial series' UID; round-off alone must not count.
    edit(paths[0], ImageOrientationPatient=["0", "1", "0", "0", "0", "-1"])
    edit(paths[1], ImageOrientationPatient=["1", "0.0000001", "0", "0", "1", "0"])
    with caplog.at_level(logging.WARNING, logger="ctseg_helpers.io.dicom"):
        series = read_dicom_series(tmp_path)
    assert (
        "mixes 2 slice orientations; positions are measured along the most common one (2 files); "
        "1 file(s) lie in another orientation: slice_0001.dcm; move them"
    ) in caplog.text
    assert series.orientation == pytest.approx((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), abs=1e-6)
    np.testing.assert_allclose(series.positions_mm, [0, 2, 4], atol=1e-6)


# --- issue 11: every bad input gets one clear message ----------------------------------------------


def test_rescale_slope_zero_is_refused_naming_the_file(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2, 3]))
    edit(paths[1], RescaleSlope="0")
    message = (
        r"slice_0002\.dcm: RescaleSlope is 0, which makes every pixel the same value; fix or remove "
        r"the RescaleSlope tag, or re-export the series from the scanner or PACS"
    )
    with pytest.raises(CtsegDataError, match=message + "$"):
        read_dicom_file(paths[1])
    with pytest.raises(CtsegDataError, match=message + r"; 1 damaged file\(s\) in .*replace or remove them"):
        read_dicom_series(tmp_path)
    assert [p.name for p, _ in scan_dicom_folder(tmp_path).damaged] == ["slice_0002.dcm"]


@pytest.mark.parametrize(
    ("keyword", "value", "shown"),
    [
        ("RescaleSlope", "nan", "'nan'"),
        ("RescaleSlope", "", "empty"),
        ("RescaleIntercept", "inf", "'inf'"),
        ("RescaleIntercept", "-1e400", "'-1e400'"),
    ],
    ids=["slope-nan", "slope-empty", "intercept-inf", "intercept-overflow"],
)
def test_non_finite_rescale_is_refused_naming_the_file(tmp_path, keyword, value, shown):
    paths = write_dicom_series(tmp_path, constant_slices([1]))
    edit(paths[0], **{keyword: value})
    with pytest.raises(
        CtsegDataError,
        match=rf"slice_0001\.dcm: {keyword} is {shown}, not a finite number, "
        rf"so no pixel value can be computed; fix or remove the {keyword} "
        r"tag, or re-export the series$",
    ):
        read_dicom_file(paths[0])


def test_rescale_overflowing_float32_is_refused(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1]))
    edit(paths[0], RescaleSlope="1e38")
    with pytest.raises(
        CtsegDataError,
        match=r"slice_0001\.dcm: 80 pixel\(s\) are NaN or infinite \(in the "
        r"pixel data or after RescaleSlope/RescaleIntercept\); fix the file",
    ):
        read_dicom_file(paths[0])


@pytest.mark.parametrize(
    ("tags", "expected"),
    [({"RescaleSlope": None}, 1025.0 - 1024.0), ({"RescaleSlope": "2", "RescaleIntercept": None}, 1025.0 * 2)],
    ids=["intercept-only", "slope-only"],
)
def test_a_lone_rescale_tag_is_applied(tmp_path, tags, expected):
    # Stored value 1025 (1 HU with intercept -1024): the tag left must still apply.
    paths = write_dicom_series(tmp_path, constant_slices([1]))
    edit(paths[0], **tags)
    assert read_dicom_file(paths[0]).pixels.mean() == expected


def test_broken_modality_lut_is_refused_naming_the_file(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1]))
    item = pydicom.Dataset()
    item.add_new("LUTDescriptor", "US", [4096, 0, 16])
    item.add_new("LUTData", "US", [1, 2, 3])  # 4096 entries promised
    item.ModalityLUTType = "HU"
    edit(paths[0], ModalityLUTSequence=pydicom.Sequence([item]))
    with pytest.raises(
        CtsegDataError,
        match=r"slice_0001\.dcm: cannot turn stored pixel values into physical "
        r"values with its Modality LUT or rescale tags \(IndexError: .*\); "
        r"fix or remove ModalityLUTSequence, or re-export the series$",
    ):
        read_dicom_file(paths[0])


def test_palette_colour_is_skipped_and_refused_like_rgb(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2, 3]))
    edit(paths[1], PhotometricInterpretation="PALETTE COLOR")
    reasons = {path.name: reason for path, reason in scan_dicom_folder(tmp_path).skipped}
    assert reasons == {
        "slice_0002.dcm": "colour image (PALETTE COLOR: pixel values index a colour table): "
        "ctseg reads greyscale slices"
    }
    with pytest.raises(
        CtsegDataError,
        match=r"slice_0002\.dcm: colour image \(PALETTE COLOR: pixel values index "
        r"a colour table\): ctseg reads greyscale slices; select a DICOM "
        r"image file$",
    ):
        read_dicom_file(paths[1])


def write_undecodable_jpeg(folder):
    paths = write_dicom_series(folder, constant_slices([0], shape=(16, 16)))
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8 not really a JPEG" * 8])
    ds["PixelData"].VR = "OB"
    ds.save_as(paths[0])
    return paths[0]


def test_undecodable_jpeg_gives_only_ctseg_error(tmp_path, caplog, capsys):
    path = write_undecodable_jpeg(tmp_path)
    pydicom_logger = logging.getLogger("pydicom")
    level_before = pydicom_logger.level
    with caplog.at_level(logging.DEBUG), pytest.raises(CtsegDataError) as raised:
        read_dicom_file(path)
    message = str(raised.value)
    assert message.startswith(
        f"{path}: cannot decode the pixel data (transfer syntax JPEG Baseline (Process 1) "
        "(1.2.840.10008.1.2.4.50)): Unable to decode"
    )
    assert "\n" not in message and message.endswith("and try again")
    assert [r for r in caplog.records if r.name.startswith("pydicom")] == []
    assert capsys.readouterr() == ("", "")
    assert pydicom_logger.level == level_before  # pydicom's own setting is back


@pytest.mark.filterwarnings("ignore:The number of bytes of pixel data is sufficient:UserWarning")
def test_pixel_data_that_does_not_fit_rows_and_columns(tmp_path):
    paths = write_dicom_series(tmp_path, constant_slices([1, 2]))
    for path in paths:
        edit(path, Rows=2)  # 8x10 pixels read as 2x10: pydicom makes 4 frames of them
    with pytest.raises(
        CtsegDataError,
        match=r"slice_0001\.dcm: the pixel data decodes to an array of shape "
        r"\(4, 2, 10\), not one slice of Rows x Columns = 2x10; .*re-export",
    ):
        read_dicom_series(tmp_path)


def test_file_that_changes_size_between_scan_and_read(tmp_path, monkeypatch):
    write_dicom_series(tmp_path, constant_slices([1, 2]))
    monkeypatch.setattr(dicom_module, "_decode", lambda path, ds: np.zeros((3, 3), np.float32))
    with pytest.raises(
        CtsegDataError,
        match=r"slice_0001\.dcm: the image is 3x3 now, but 8x10 when the folder "
        r"was scanned; the file changed while reading",
    ):
        read_dicom_series(tmp_path)


def test_duplicate_images_at_one_position_are_named(tmp_path, caplog):
    paths = write_dicom_series(tmp_path, constant_slices(range(8)))
    shutil.copy(paths[1], tmp_path / "copy_2.dcm")
    shutil.copy(paths[4], tmp_path / "copy_5.dcm")
    with caplog.at_level(logging.WARNING, logger="ctseg_helpers.io.dicom"):
        series = read_dicom_series(tmp_path)
    assert (series.n_positions, series.n_phases, len(series.images)) == (8, 2, 10)
    assert (
        "the 8 positions hold different numbers of images (most hold 1, at most 2); 4 file(s) at the "
        "other positions: copy_2.dcm, slice_0002.dcm, copy_5.dcm and 1 more; remove duplicate copies "
        "of a slice"
    ) in caplog.text
