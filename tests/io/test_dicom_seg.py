"""DICOM Segmentation objects written with highdicom: valid, readable, the label maps on their source images."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.dicom import read_dicom_series
from ctseg_helpers.io.dicom_seg import phase_indices, require_highdicom, write_dicom_seg
from ctseg_helpers.io.dicom_write import write_dicom_series

hd = pytest.importorskip("highdicom", reason="highdicom (requirements.txt) is not installed")

NAMES = ["right psoas", "left psoas"]
ORIENTATION = (0.866025, 0.5, 0.0, -0.5, 0.866025, 0.0)  # turned 30 degrees about z


@pytest.fixture()
def series(tmp_path):
    """3 oblique slices of 8 x 10 pixels, 0.6 x 0.9 mm, listed in reverse in the folder, read by ctseg."""
    write_dicom_series(
        tmp_path / "scan",
        np.zeros((3, 8, 10)),
        pixel_spacing_mm=(0.6, 0.9),
        slice_thickness_mm=3.0,
        orientation=ORIENTATION,
        names=["IM_3", "IM_2", "IM_1"],
        patient_id="PAT-42",
        series_description="abdomen",
    )
    return read_dicom_series(tmp_path / "scan")


def label_maps():
    """ROI 1 on slices 1 and 3, ROI 2 on slice 2 only: empty frames are left out of the object."""
    labels = np.zeros((3, 8, 10), np.uint8)
    labels[0, 1:4, 2:6] = 1
    labels[1, 5:8, 0:3] = 2
    labels[2, 0:2, 7:10] = 1
    labels[2, 6, 6] = 1
    return labels


def write(series, path, labels=None, **kwargs):
    kwargs.setdefault("sop_instance_uids", series.sop_instance_uids)
    return write_dicom_seg(
        path,
        label_maps() if labels is None else labels,
        series.files,
        NAMES,
        software_version="0.1.0",
        model_name="psoas_best.keras",
        colors_rgb=[(0.894, 0.102, 0.110), (0.216, 0.494, 0.722)],
        **kwargs,
    )


def test_the_object_passes_dicom3tools_validation(series, tmp_path):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed: 'make test' installs it where it can")
    path = write(series, tmp_path / "seg.dcm")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    report = result.stdout + result.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, report
    assert "Segmentation" in report  # the IOD it was checked against


def test_read_back_the_segments_are_the_rois_and_the_masks_the_label_maps(series, tmp_path):
    path = write(series, tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    assert seg.SegmentationType == "BINARY" and seg.Modality == "SEG"
    assert [d.SegmentLabel for d in seg.SegmentSequence] == NAMES
    for number, description in enumerate(seg.SegmentSequence, start=1):
        assert description.SegmentNumber == number and description.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = description.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("ctseg", "0.1.0")
        for sequence in ("SegmentedPropertyCategoryCodeSequence", "SegmentedPropertyTypeCodeSequence"):
            code = getattr(description, sequence)[0]
            assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("85756007", "SCT", "Tissue")
    masks = seg.get_pixels_by_source_instance(series.sop_instance_uids, combine_segments=True)
    np.testing.assert_array_equal(masks, label_maps())  # per source image, in the series' order
    # with pydicom: the study and patient of the scan, every source image referenced, empty frames left out
    ds = pydicom.dcmread(path)
    source = pydicom.dcmread(series.files[0])
    assert (ds.PatientID, ds.StudyInstanceUID, ds.FrameOfReferenceUID) == (
        "PAT-42",
        source.StudyInstanceUID,
        source.FrameOfReferenceUID,
    )
    (referenced,) = ds.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == series.series_uid
    assert sorted(i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence) == sorted(
        series.sop_instance_uids
    )
    assert int(ds.NumberOfFrames) == 3  # ROI 1 on slices 1 and 3, ROI 2 on slice 2
    assert int(ds.SeriesNumber) == 1001 and ds.SeriesDescription == "ctseg segmentation"
    assert ds.ContentDescription == "ctseg psoas_best.keras"


def test_every_pixel_maps_to_the_same_point_as_on_its_source_image(series, tmp_path):
    seg = hd.seg.segread(write(series, tmp_path / "seg.dcm"))
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        source = pydicom.dcmread(series.files[series.sop_instance_uids.index(source_uid)])
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose([float(v) for v in position], [float(v) for v in source.ImagePositionPatient])


def test_phases_of_a_cine_series_take_one_image_per_position():
    import doctest

    import ctseg_helpers.io.dicom_seg as module

    assert doctest.testmod(module).failed == 0
    assert phase_indices([0.0, 0.0, 0.0, 8.0, 8.0, 8.0]) == [[0, 3], [1, 4], [2, 5]]
    assert phase_indices([0.0, 0.01, 5.0]) == [[0, 2], [1]]  # 0.01 mm apart: one position
    assert phase_indices([np.nan, np.nan]) == [[0, 1]]
    assert phase_indices([]) == []


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            np.zeros((2, 8, 10), np.uint8),
            r"scan: 3 source image\(s\) for label maps of shape \(2, 8, 10\); give one \(M, N\) label map per image",
        ),
        (
            np.full((3, 8, 10), 3, np.uint8),
            r"scan: label values 3..3 but 2 ROI name\(s\); give one name per label value 1..N",
        ),
        (
            np.zeros((3, 10, 8), np.uint8),
            r"IM_3.dcm: the image is 8x10 but its label map 10x8; segment the folder again",
        ),
    ],
)
def test_label_maps_that_do_not_fit_the_images_are_refused(series, tmp_path, labels, message):
    with pytest.raises(CtsegDataError, match=message):
        write(series, tmp_path / "seg.dcm", labels, source="scan")
    assert not (tmp_path / "seg.dcm").exists()


def test_a_source_file_changed_or_gone_since_it_was_segmented_is_named(series, tmp_path):
    with pytest.raises(
        CtsegDataError,
        match=r"IM_1.dcm: the file is no longer the image that was segmented \(its "
        r"SOPInstanceUID changed\); segment the folder again",
    ):
        write(series, tmp_path / "seg.dcm", sop_instance_uids=[*series.sop_instance_uids[:2], "1.2.3"])
    series.files[0].write_bytes(b"not dicom any more")
    with pytest.raises(
        CtsegDataError,
        match=r"IM_3.dcm: not a DICOM file; it was read before and has changed "
        r"since: segment the folder again",
    ):
        write(series, tmp_path / "seg.dcm")
    series.files[0].unlink()
    with pytest.raises(
        CtsegDataError,
        match=r"IM_3.dcm: no such file; it was read before and has been moved or "
        r"removed since",
    ):
        write(series, tmp_path / "seg.dcm")


def test_images_without_a_place_in_space_are_refused(series, tmp_path):
    ds = pydicom.dcmread(series.files[1])
    del ds.ImagePositionPatient
    ds.save_as(series.files[1])
    with pytest.raises(
        CtsegDataError,
        match=r"IM_2.dcm: no ImagePositionPatient; a DICOM-SEG places its frames in "
        r"the scan's space, so it needs them",
    ):
        write(series, tmp_path / "seg.dcm")


def test_images_at_one_position_cannot_share_an_object(tmp_path):
    """Two phases of one position: highdicom refuses, and the message says so (cine is written per phase)."""
    from pydicom.uid import generate_uid

    uid, study = generate_uid(), generate_uid()
    for phase in (1, 2):
        write_dicom_series(
            tmp_path / "cine", np.zeros((1, 8, 10)), names=[f"P{phase}"], series_uid=uid, study_uid=study
        )
    files = sorted((tmp_path / "cine").iterdir())
    frame = pydicom.dcmread(files[0]).FrameOfReferenceUID
    ds = pydicom.dcmread(files[1])
    ds.FrameOfReferenceUID = frame
    ds.save_as(files[1])
    with pytest.raises(
        CtsegDataError,
        match=r"cine phase 1: these images cannot carry a DICOM-SEG \(Plane positions "
        r"must not contain duplicates.\); the label PNGs hold every slice",
    ):
        write_dicom_seg(tmp_path / "seg.dcm", np.ones((2, 8, 10), np.uint8), files, ["LV"], source="cine phase 1")


def test_without_highdicom_the_message_says_how_to_install_it(monkeypatch):
    require_highdicom()
    monkeypatch.setitem(__import__("sys").modules, "highdicom", None)  # import highdicom now fails
    with pytest.raises(
        CtsegSettingsError,
        match=r"needs the highdicom package, which is not installed: run 'pip "
        r"install highdicom==0.28.2'",
    ):
        require_highdicom()
