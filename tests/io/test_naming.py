"""File naming: DICOM and label stems, output names, natural order, label folders."""

import logging

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.naming import (
    DICOM_SUFFIXES,
    LABEL_SUFFIXES,
    dicom_stem,
    find_label_files,
    has_dicom_suffix,
    label_stem,
    natural_key,
    output_stems,
)


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("IM_0001.dcm", "IM_0001"),
        ("scan.DCM", "scan"),
        ("x.dicom", "x"),
        ("y.Dic", "y"),
        ("a.b.ima", "a.b"),
        ("IM0001", "IM0001"),
        ("1.2.840.113619.2.1", "1.2.840.113619.2.1"),
        ("IM_0001.png", "IM_0001.png"),
        (".dcm", ".dcm"),
    ],
)
def test_dicom_stem_drops_only_a_dicom_suffix(name, stem):
    assert dicom_stem(f"/some/folder/{name}") == stem


def test_every_dicom_suffix_in_any_case_is_one():
    assert DICOM_SUFFIXES == (".dcm", ".dicom", ".dic", ".ima")
    for suffix in DICOM_SUFFIXES:
        assert has_dicom_suffix(f"a{suffix}") and has_dicom_suffix(f"a{suffix.upper()}")
        assert dicom_stem(f"a{suffix.upper()}") == "a"
    assert not has_dicom_suffix("a.dcm.png") and not has_dicom_suffix("dcm")


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("IM_1.png", "IM_1"),
        ("IM_1.NPY", "IM_1"),
        ("a.b.tiff", "a.b"),
        ("a.tif", "a"),
        ("a.JPEG", "a"),
        ("a.jpg", "a"),
        ("a.dcm", None),
        ("notes.txt", None),
        ("png", None),
    ],
)
def test_label_stem(name, stem):
    assert label_stem(f"labels/{name}") == stem


def test_output_stems_are_unique_and_never_take_another_files_name(caplog):
    with caplog.at_level(logging.WARNING):
        assert output_stems(["a/IM1.dcm", "b/IM1.dcm", "IM2"]) == ["IM1", "IM1_2", "IM2"]
    assert "two DICOM files are both named IM1; the second one's outputs are named IM1_2" in caplog.text
    assert output_stems(["a/IM1.dcm", "b/IM1.dcm", "IM1_2.dcm"]) == ["IM1", "IM1_3", "IM1_2"]
    assert output_stems(["IM1", "IM1.dcm"]) == ["IM1", "IM1_2"]  # with and without suffix
    assert output_stems([]) == []


def test_natural_key_orders_numbers_by_value_and_ignores_case_and_folders():
    names = ["scan/IM10.dcm", "IM9.dcm", "other/im2.dcm", "IM1.dcm", "IM_b", "IM_A"]
    assert sorted(names, key=natural_key) == ["IM1.dcm", "other/im2.dcm", "IM9.dcm", "scan/IM10.dcm", "IM_A", "IM_b"]


def test_find_label_files_by_stem_skipping_other_files(tmp_path):
    for name in ("IM_10.png", "IM_2.npy", "IM_3.TIF"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub.png").mkdir()  # a folder, not a label map
    found = find_label_files(tmp_path)
    assert found == {"IM_10": tmp_path / "IM_10.png", "IM_2": tmp_path / "IM_2.npy", "IM_3": tmp_path / "IM_3.TIF"}
    assert list(found) == ["IM_10", "IM_2", "IM_3"]  # sorted by stem


def test_find_label_files_errors(tmp_path):
    with pytest.raises(CtsegDataError, match="nope: no such label folder; check the path"):
        find_label_files(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    expected = ", ".join(LABEL_SUFFIXES)
    with pytest.raises(
        CtsegDataError,
        match=f"no label files \\({expected}\\) in the folder; select the folder that "
        r"holds the label maps, named like their DICOM files \(IM_0001.png",
    ):
        find_label_files(tmp_path)
    np.save(tmp_path / "a.npy", np.zeros((2, 2), np.uint8))
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(CtsegDataError, match=r"two label files for slice 'a' \(a.npy and a.png\); keep one of them"):
        find_label_files(tmp_path)


def test_the_old_places_use_these_rules():
    from ctseg_helpers.io import labels
    from ctseg_helpers.workflows import areas
    from ctseg_helpers.workflows import segment_folder as outputs

    assert labels.LABEL_SUFFIXES is LABEL_SUFFIXES
    assert areas.find_label_files is find_label_files
    assert outputs.output_stem is dicom_stem and outputs.output_stems is output_stems
