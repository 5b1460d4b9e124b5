"""check_data: the report on a training folder."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from PIL import Image

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.prepare.check import check_data, resolve_split_dir


def make_split(split, labels: dict, shape=(4, 5), suffix=".png"):
    """A split with one DICOM per label name; labels maps name -> array (or None: no label)."""
    (split / "dicoms").mkdir(parents=True)
    (split / "labels").mkdir()
    names = sorted(labels)
    write_dicom_series(
        split / "dicoms",
        np.zeros((len(names), *shape)),
        names=names,
        pixel_spacing_mm=(0.5, 0.5),
        modality="MR",
        rescale_intercept=0.0,
    )
    for name, array in labels.items():
        if array is not None:
            Image.fromarray(np.asarray(array, np.uint8)).save(split / "labels" / f"{name}{suffix}")
    return split


def lab(*rows):
    return np.array(rows, dtype=np.uint8)


GOOD = {
    "a": lab([0, 0, 1, 1, 0], [0, 2, 2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]),
    "b": lab([0, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0]),
}


def test_counts_of_slices_and_pixels_per_label(tmp_path):
    report = check_data(make_split(tmp_path / "train", GOOD), 2, progress=False)
    assert report.ok and report.problems == [] and report.warnings == []
    assert report.n_pairs == 2
    assert report.label_values == [0, 1, 2]
    assert report.pixels_per_label == {0: 15 + 16, 1: 3 + 4, 2: 2}
    assert report.slices_per_label == {0: 2, 1: 2, 2: 1}
    assert report.labels_never_seen == []
    assert report.image_sizes == {"4x5": 2} and report.modalities == {"MR": 2}
    assert report.pixel_spacing_mm == (0.5, 0.5) and report.n_without_spacing == 0


def test_labels_never_seen_is_a_warning(tmp_path):
    report = check_data(make_split(tmp_path, GOOD), 4, progress=False)
    assert report.ok
    assert report.labels_never_seen == [3, 4]
    assert report.warnings == [
        "label value(s) 3, 4 never seen in any label: the model cannot learn them (check num_labels)"
    ]


def test_problems_that_stop_training(tmp_path):
    labels = dict(GOOD)
    labels["c"] = lab([0, 5, 5, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 9], [0, 0, 0, 0, 0])
    labels["d"] = None  # image without label
    split = make_split(tmp_path, labels)
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(split / "labels" / "b.png")  # wrong size
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(split / "labels" / "orphan.png")
    (split / "labels" / "broken.png").write_bytes(b"garbage")
    write_dicom_series(split / "dicoms", np.zeros((1, 4, 5)), names=["broken"], modality="MR")
    report = check_data(split, 2, progress=False)
    assert not report.ok
    assert report.out_of_range == [("c", [5, 9])]
    assert report.images_without_labels == ["d.dcm"]
    assert report.labels_without_images == ["orphan.png"]
    assert report.shape_mismatches == [("b", (4, 5), (3, 3))]
    assert [name for name, _ in report.unreadable] == ["broken.png"]
    assert report.problems == [
        "1 image(s) without a label: d.dcm",
        "1 label(s) without an image: orphan.png",
        "1 label(s) with values outside 0..2: c (5, 9)",
        "1 label(s) whose size differs from the image: b (image 4x5, label 3x3)",
        f"1 unreadable file(s): broken.png: {report.unreadable[0][1]}",
    ]
    assert report.label_values == [0, 1, 2, 5, 9]


def test_unreadable_image_is_a_problem(tmp_path):
    split = make_split(tmp_path, GOOD)
    (split / "dicoms" / "a.dcm").write_text("this is not DICOM")
    report = check_data(split, 2, progress=False)
    path = split / "dicoms" / "a.dcm"
    assert report.unreadable == [("a.dcm", f"{path}: not a DICOM file; select a DICOM image file")]
    assert report.n_pairs == 2 and not report.ok


def test_no_pairs_at_all(tmp_path):
    split = make_split(tmp_path, {"a": None})
    np.save(split / "labels" / "z.npy", np.zeros((4, 5), np.uint8))
    report = check_data(split, 1, progress=False)
    assert report.n_pairs == 0 and report.labels_never_seen == []
    assert report.problems[0] == (
        "no image/label pairs: no file in 'dicoms/' has a label with the same name in 'labels/'"
    )


def test_jpeg_snapping_mixed_modalities_missing_spacing_and_ignored_files(tmp_path):
    truth = (np.random.default_rng(0).random((32, 32)) > 0.5).astype(np.uint8) * 2
    split = make_split(tmp_path, {"j": truth}, shape=(32, 32), suffix=".jpg")
    Image.fromarray(truth).save(split / "labels" / "j.jpg", quality=90)
    write_dicom_series(split / "dicoms", np.zeros((1, 32, 32)), names=["k"], modality="CT")
    np.save(split / "labels" / "k.npy", np.zeros((32, 32), np.uint8))
    ds = pydicom.dcmread(split / "dicoms" / "k.dcm")
    del ds.PixelSpacing
    ds.save_as(split / "dicoms" / "k.dcm")
    (split / "labels" / "README.txt").write_text("drawn by hand")
    raw = np.asarray(Image.open(split / "labels" / "j.jpg"))
    n_snapped = int(np.count_nonzero(raw > 2))
    assert n_snapped > 0
    report = check_data(split, 2, progress=False)
    assert report.jpeg_pixels_snapped == n_snapped
    assert report.modalities == {"MR": 1, "CT": 1}
    assert report.n_without_spacing == 1
    assert report.warnings == [
        f"{n_snapped} JPEG label pixel(s) snapped to the nearest valid value (save labels as PNG)",
        "1 image(s) without PixelSpacing: areas in mm² cannot be computed for them",
        "1 file(s) in 'labels/' ignored (not a label format): README.txt",
    ]
    # Training (load_slices) refuses CT next to MR, so the check must call it a problem, not a warning.
    assert not report.ok
    assert report.problems == [
        "mixes CT with other modalities (MR (1), CT (1)): CT is normalised in Hounsfield units and other "
        "scans per image, so train one model per kind of scan (move the other images and their labels to "
        "another folder)"
    ]


def test_mixed_modalities_without_ct_are_only_a_warning(tmp_path):
    split = make_split(tmp_path, GOOD)
    ds = pydicom.dcmread(split / "dicoms" / "b.dcm")
    ds.Modality = "OT"
    ds.save_as(split / "dicoms" / "b.dcm")
    report = check_data(split, 2, progress=False)
    assert report.ok and report.warnings == ["mixed modalities: MR (1), OT (1)"]


def test_text_and_dict_forms(tmp_path):
    report = check_data(make_split(tmp_path, GOOD), 2, progress=False)
    text = str(report)
    assert "pairs: 2" in text and "label values expected: 0..2; seen: 0, 1, 2" in text
    assert "No problems found." in text
    assert "    2        1           2" in text  # value, slices, pixels
    data = json.loads(json.dumps(report.to_dict()))
    assert data["n_pairs"] == 2 and data["label_values"] == [0, 1, 2] and data["problems"] == []
    assert data["pixels_per_label"] == {"0": 31, "1": 7, "2": 2} and data["ok"] is True
    assert repr(report).startswith("DataReport(split_dir=") and "problems=0" in repr(report)

    class Printer:
        def text(self, value):
            self.value = value

    printer = Printer()
    report._repr_pretty_(printer, cycle=False)
    assert printer.value == text


def test_problem_text_lists_them(tmp_path):
    split = make_split(tmp_path, {"a": GOOD["a"], "b": None})
    text = check_data(split, 2, progress=False).to_text()
    assert "Problems (must be fixed before training):\n  - 1 image(s) without a label: b.dcm" in text


def test_long_lists_are_cut_at_ten(tmp_path):
    names = {f"n{i:02d}": None for i in range(12)}
    names["x"] = GOOD["a"]
    report = check_data(make_split(tmp_path, names), 2, progress=False)
    assert report.problems == [
        "12 image(s) without a label: n00.dcm, n01.dcm, n02.dcm, n03.dcm, n04.dcm, "
        "n05.dcm, n06.dcm, n07.dcm, n08.dcm, n09.dcm, ... (12 in all)"
    ]


def test_bad_settings_and_layout(tmp_path):
    with pytest.raises(CtsegSettingsError, match=r"num_labels must be between 1 and 255"):
        check_data(tmp_path, 0)
    with pytest.raises(CtsegDataError, match=r"has no 'dicoms/' folder"):
        check_data(tmp_path, 1)


def test_resolve_split_dir_accepts_main_or_train_folder(tmp_path):
    split = make_split(tmp_path / "train", GOOD)
    assert resolve_split_dir(tmp_path) == split
    assert resolve_split_dir(split) == split
    with pytest.raises(CtsegDataError, match=r"neither this folder nor .*train holds 'dicoms/' and 'labels/'"):
        resolve_split_dir(split / "dicoms")
    with pytest.raises(CtsegDataError, match=r"missing: no such folder"):
        resolve_split_dir(tmp_path / "missing")
