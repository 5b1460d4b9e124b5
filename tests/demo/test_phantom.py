"""The synthetic lumbar CT phantom: layout, real DICOM with HU, exact areas, determinism."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.uid import CTImageStorage

from ctseg_helpers.demo.phantom import (
    PHANTOM_INFO,
    PHANTOM_LABELS,
    TRUE_AREAS,
    make_phantom_dataset,
    phantom_series,
    read_true_areas,
)
from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError

SMALL = dict(n_train=5, n_test=3, size=64, slices_per_patient=2)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "phantom"
    info = make_phantom_dataset(out, seed=3, **SMALL)
    return out, info


def _hu(path):
    ds = pydicom.dcmread(path)
    return ds, ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _label(path):
    return np.asarray(Image.open(path))


def test_layout_pairs_every_image_with_a_label(phantom):
    out, info = phantom
    for split, n in (("train", 5), ("test", 3)):
        dicoms = sorted(p.stem for p in (out / split / "dicoms").glob("*.dcm"))
        labels = sorted(p.stem for p in (out / split / "labels").glob("*.png"))
        assert len(dicoms) == n
        assert dicoms == labels
        assert (out / split / TRUE_AREAS).is_file()
    assert json.loads((out / PHANTOM_INFO).read_text()) == info
    assert info["label_names"] == list(PHANTOM_LABELS)
    # 5 training slices at 2 per patient: three patients (2 + 2 + 1), then one test patient.
    assert [(s["split"], s["n_slices"]) for s in info["series"]] == [
        ("train", 2),
        ("train", 2),
        ("train", 1),
        ("test", 3),
    ]


def test_files_are_ct_dicom_with_valid_uids_and_geometry(phantom):
    out, info = phantom
    test_series = info["series"][-1]
    positions = []
    series_uids = set()
    for name in test_series["files"]:
        ds = pydicom.dcmread(out / "test" / "dicoms" / name)
        assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
        assert ds.Modality == "CT"
        assert ds.RescaleType == "HU"
        assert (ds.Rows, ds.Columns) == (64, 64)
        assert [float(v) for v in ds.PixelSpacing] == [test_series["pixel_spacing_mm"]] * 2
        for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID):
            assert uid.is_valid, uid
        positions.append(float(ds.ImagePositionPatient[2]))
        series_uids.add(ds.SeriesInstanceUID)
    assert len(series_uids) == 1  # the test folder is one series a user can select
    assert np.allclose(np.diff(positions), info["slice_thickness_mm"])
    train_uids = {
        pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in (out / "train" / "dicoms").glob("*.dcm")
    }
    assert len(train_uids) == 3  # one series per synthetic patient, for validation by patient


def test_hounsfield_units_are_right_for_each_tissue(phantom):
    out, _ = phantom
    for dcm in sorted((out / "test" / "dicoms").glob("*.dcm")):
        _, hu = _hu(dcm)
        labels = _label(out / "test" / "labels" / f"{dcm.stem}.png")
        assert -1024 <= hu.min() and hu.max() <= 3071
        assert np.median(hu[:4, :]) < -900  # air above the patient
        assert 120 < np.median(hu[labels == 1]) < 1000  # vertebral body: bone
        for muscle in (2, 3, 4, 5):
            assert 0 < np.median(hu[labels == muscle]) < 90
        assert -150 < np.median(hu[labels == 6]) < -50  # subcutaneous fat


def test_labels_match_the_stated_areas_exactly(phantom):
    out, info = phantom
    spacing = {name: s["pixel_spacing_mm"] for s in info["series"] for name in s["files"]}
    for split in ("train", "test"):
        table = pd.read_csv(out / split / TRUE_AREAS, index_col=0)
        assert list(table.columns) == ["file", "slice_position_mm", *PHANTOM_LABELS]
        assert list(table.index[-2:]) == ["mean", "std"]
        rows = table.iloc[:-2]
        assert list(rows.index) == [f"slice number {i + 1}" for i in range(len(rows))]
        for _, row in rows.iterrows():
            labels = _label(out / split / "labels" / row["file"].replace(".dcm", ".png"))
            assert labels.dtype == np.uint8 and set(np.unique(labels)) <= set(range(7))
            counts = np.bincount(labels.ravel(), minlength=7)[1:]
            assert (counts > 0).all()  # every ROI on every slice
            expected = counts * spacing[row["file"]] ** 2
            np.testing.assert_allclose(row[list(PHANTOM_LABELS)].to_numpy(float), expected, rtol=1e-12)
        positions = [
            float(pydicom.dcmread(out / split / "dicoms" / f, stop_before_pixels=True).SliceLocation)
            for f in rows["file"]
        ]
        np.testing.assert_allclose(rows["slice_position_mm"].to_numpy(float), positions)
        np.testing.assert_allclose(
            table.loc["mean", list(PHANTOM_LABELS)].to_numpy(float),
            rows[list(PHANTOM_LABELS)].to_numpy(float).mean(axis=0),
        )


def test_read_true_areas_indexes_rows_by_file(phantom):
    out, info = phantom
    areas = read_true_areas(out / "test")
    assert list(areas.index) == info["series"][-1]["files"]
    assert list(areas.columns) == ["slice_position_mm", *PHANTOM_LABELS]


def test_same_seed_same_data_other_seed_other_data(tmp_path, phantom):
    out, _ = phantom
    again = tmp_path / "again"
    other = tmp_path / "other"
    make_phantom_dataset(again, seed=3, **SMALL)
    make_phantom_dataset(other, seed=4, **SMALL)
    for dcm in sorted((out / "train" / "dicoms").glob("*.dcm")):
        _, hu = _hu(dcm)
        _, hu_again = _hu(again / "train" / "dicoms" / dcm.name)
        _, hu_other = _hu(other / "train" / "dicoms" / dcm.name)
        np.testing.assert_array_equal(hu, hu_again)
        assert not np.array_equal(hu, hu_other)
        lab = out / "train" / "labels" / f"{dcm.stem}.png"
        np.testing.assert_array_equal(_label(lab), _label(again / "train" / "labels" / lab.name))
    pd.testing.assert_frame_equal(pd.read_csv(out / "test" / TRUE_AREAS), pd.read_csv(again / "test" / TRUE_AREAS))


def test_slices_vary_in_shape_position_and_intensity():
    slices, info = phantom_series(6, size=64, seed=0)
    areas = np.array([s.areas_mm2() for s in slices])
    assert (areas.std(axis=0) > 0).all()  # every ROI changes from slice to slice
    centroids = [np.argwhere(s.labels == 1).mean(axis=0) for s in slices]
    assert np.ptp(np.array(centroids), axis=0).max() > 0.5  # the spine moves
    fat_hu = [np.median(s.hu[s.labels == 6]) for s in slices]
    assert np.ptp(fat_hu) > 1.0  # densities vary
    assert all(s.pixel_spacing_mm == info["pixel_spacing_mm"] for s in slices)
    assert slices[-1].areas_mm2()[1] > slices[0].areas_mm2()[1]  # the psoas grows caudally


def test_right_side_of_the_patient_is_on_the_left_of_the_image():
    (s,), _ = phantom_series(1, size=64, seed=0)
    cols = np.arange(64)
    for right, left in ((2, 3), (4, 5)):
        assert cols[np.nonzero(s.labels == right)[1]].mean() < 32 < cols[np.nonzero(s.labels == left)[1]].mean()


def test_an_empty_existing_folder_is_used(tmp_path):
    make_phantom_dataset(tmp_path, seed=0, n_train=1, n_test=1, size=32)
    assert (tmp_path / "train" / "labels" / "phantom_p01_0001.png").is_file()


def test_never_overwrites_existing_data(tmp_path):
    (tmp_path / "mine.txt").write_text("a user's file")
    with pytest.raises(CtsegDataError, match="exists and is not empty; the phantom never overwrites"):
        make_phantom_dataset(tmp_path, **SMALL)
    assert (tmp_path / "mine.txt").read_text() == "a user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_refuses_a_file_as_output_folder(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(CtsegDataError, match="never overwrites data"):
        make_phantom_dataset(target, **SMALL)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_train=0), "at least 1 training and 1 test slice"),
        (dict(n_test=0), "at least 1 training and 1 test slice"),
        (dict(size=16), "at least 32 x 32 pixels"),
        (dict(slices_per_patient=0), "slices_per_patient must be at least 1"),
    ],
)
def test_bad_settings_are_refused(tmp_path, kwargs, message):
    with pytest.raises(CtsegSettingsError, match=message):
        make_phantom_dataset(tmp_path / "p", **{**SMALL, **kwargs})
    assert not (tmp_path / "p").exists()


def test_phantom_series_checks_its_arguments():
    with pytest.raises(CtsegSettingsError, match="at least 1 slice"):
        phantom_series(0)
    with pytest.raises(CtsegSettingsError, match="at least 32 x 32 pixels"):
        phantom_series(2, size=8)


def test_label_writer_refuses_to_replace_a_label(tmp_path):
    from ctseg_helpers.demo.phantom import _write_labels

    (tmp_path / "a.png").write_bytes(b"mine")
    with pytest.raises(CtsegDataError, match="a.png exists already"):
        _write_labels(tmp_path, ["a"], [np.zeros((4, 4), np.uint8)])
    assert (tmp_path / "a.png").read_bytes() == b"mine"


def test_read_true_areas_needs_a_phantom(tmp_path):
    with pytest.raises(CtsegDataError, match="known areas exist only for a phantom"):
        read_true_areas(tmp_path)


def test_the_project_reader_stacks_the_test_series(phantom):
    dicom = pytest.importorskip("ctseg_helpers.io.dicom", reason="io/dicom.py (issue 2) not merged yet")
    out, info = phantom
    series = dicom.read_dicom_series(out / "test" / "dicoms")
    assert series.modality == "CT"
    assert [p.name for p in series.files] == info["series"][-1]["files"]
    assert series.is_volume and series.slice_spacing_mm == pytest.approx(5.0)
    _, hu = _hu(series.files[0])
    np.testing.assert_allclose(series.images[0], hu)
