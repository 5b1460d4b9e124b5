"""run_segmentation end to end on a written DICOM series with a tiny saved model, and its pieces."""

import datetime as dt
import json
import logging
import os
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.io.written import MANIFEST_NAME, record_written, written_by_ctseg
from ctseg_helpers.workflows import run_segmentation
from ctseg_helpers.workflows.segment_folder import (
    make_run_dir,
    output_stem,
    output_stems,
    write_label_png,
    write_table_csv,
)
from tests.dicom_geometry import dicom_world_ras
from tests.segment.tiny_model import make_tiny_model_file

#: The columns ``area_table`` adds per ROI of a CT series (measure/intensity.py).
CT_MEASURES = ("mean_hu", "sd_hu", "median_hu", "fat_fraction", "perimeter_mm", "max_diameter_mm")

#: The run_segmentation options of a test that needs no figures and no progress bars.
QUIET = {"previews": False, "animation": False, "progress": False}


def measure_columns(rois=("soft", "bright")) -> list[str]:
    return [f"{roi}_{measure}" for roi in rois for measure in CT_MEASURES]


NAMES = ["soft", "bright"]


def phantom():
    """3 slices 40x50 in HU: air, a soft-tissue block (label 1) and a bright block (label 2)."""
    images = np.full((3, 40, 50), -1000.0)
    images[:, 5:15, 5:25] = 0.0  # 10 x 20 = 200 px soft tissue on every slice
    for k in range(3):
        images[k, 20:30, 10 : 10 + 4 * (k + 1)] = 400.0  # 10 x 4(k+1) bright pixels
    return images


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return make_tiny_model_file(tmp_path_factory.mktemp("model") / "tiny.keras", label_names=NAMES)


@pytest.fixture()
def dicom_dir(tmp_path):
    write_dicom_series(
        tmp_path / "scan_01",
        phantom(),
        pixel_spacing_mm=(0.5, 0.8),
        slice_thickness_mm=5.0,
        names=["IM_0001", "IM_0002", "IM_0003"],
        patient_id="PAT-12345",
    )
    return tmp_path / "scan_01"


def test_run_segmentation_writes_labels_previews_animation_and_exact_areas(model_file, dicom_dir, tmp_path):
    run = run_segmentation(
        model_file, dicom_dir, tmp_path / "predictions", labels_list=NAMES, input_shape=32, progress=False
    )
    assert run.run_dir.parent == tmp_path / "predictions"
    assert run.run_dir.name.startswith("scan_01_")
    # label maps: lossless PNG named like the DICOM files, values 0..2
    assert [p.name for p in run.label_paths] == ["IM_0001.png", "IM_0002.png", "IM_0003.png"]
    expected = np.zeros((3, 40, 50), np.uint8)
    expected[:, 5:15, 5:25] = 1
    for k in range(3):
        expected[k, 20:30, 10 : 10 + 4 * (k + 1)] = 2
    for path, want in zip(run.label_paths, expected, strict=True):
        with Image.open(path) as im:
            assert im.mode == "L"
            np.testing.assert_array_equal(np.asarray(im), want)
    np.testing.assert_array_equal(run.labels, expected)
    # previews and animation
    assert [p.name for p in run.overlay_paths] == ["IM_0001.jpg", "IM_0002.jpg", "IM_0003.jpg"]
    with Image.open(run.overlay_paths[0]) as im:
        assert im.format == "JPEG" and im.size == (50, 40)
    with Image.open(run.animation_gif) as gif:
        assert gif.n_frames == 3
    # areas: pixel counts x 0.5 x 0.8 mm²
    areas = pd.read_csv(run.areas_csv, index_col=0)
    assert list(areas.index) == ["slice number 1", "slice number 2", "slice number 3", "mean", "std"]
    assert list(areas.columns) == [
        "file",
        "slice_position_mm",
        "soft",
        "bright",
        *measure_columns(),
        "uncertainty_entropy",
    ]
    # the tiny model is sure in the blocks' middles, less so at their edges; mean and std rows stay empty
    entropy = areas["uncertainty_entropy"]
    assert ((entropy.iloc[:3] > 0) & (entropy.iloc[:3] < 1)).all() and entropy.iloc[3:].isna().all()
    np.testing.assert_allclose(areas["soft"].iloc[:3], 200 * 0.4)
    np.testing.assert_allclose(areas["bright"].iloc[:3], [16.0, 32.0, 48.0])
    np.testing.assert_allclose(areas["slice_position_mm"].iloc[:3], [0.0, 5.0, 10.0])
    assert areas.loc["mean", "bright"] == pytest.approx(32.0)
    assert areas.loc["std", "bright"] == pytest.approx(16.0)
    # volumes of the 3D stack, in mL
    volumes = pd.read_csv(run.volumes_csv, index_col=0)
    assert volumes.loc["bright", "volume_ml"] == pytest.approx((16 + 32 + 48) * 5.0 / 1000)
    assert volumes.loc["soft", "volume_ml"] == pytest.approx(3 * 80 * 5.0 / 1000)
    # what was run, without patient identity
    record = json.loads(run.run_json.read_text())
    assert record["n_slices"] == 3 and record["label_names"] == NAMES
    assert record["segmenter"]["mode"] == "tile" and record["segmenter"]["blend"] == "gaussian"
    assert "PAT-12345" not in run.run_json.read_text() and "patient_id" not in record
    assert "PAT-12345" not in run.areas_csv.read_text()
    assert "scan_01" in run.summary() and "areas (mm2)" in run.summary()
    assert re.search(r"data:image/(webp|gif|png);base64", run.animation_html())


def test_each_run_gets_its_own_folder_and_overwrite_replaces_only_its_outputs(model_file, dicom_dir, tmp_path):
    out = tmp_path / "predictions"
    first = run_segmentation(model_file, dicom_dir, out, animation=False, progress=False)
    second = run_segmentation(model_file, dicom_dir, out, animation=False, progress=False)
    assert first.run_dir != second.run_dir and first.areas_csv.exists() and second.areas_csv.exists()
    fixed = run_segmentation(model_file, dicom_dir, out, run_name="fixed", overwrite=True, **QUIET)
    assert fixed.run_dir == out / "fixed"
    (fixed.run_dir / "my_notes.txt").write_text("keep me")
    (fixed.run_dir / "labels" / "OLD_SLICE.png").write_bytes(b"")
    again = run_segmentation(
        model_file, dicom_dir, out, run_name="fixed", overwrite=True, animation=False, progress=False
    )
    assert again.run_dir == fixed.run_dir
    assert (fixed.run_dir / "my_notes.txt").read_text() == "keep me"
    # a file ctseg did not write is never deleted, even among its label maps
    assert sorted(p.name for p in (fixed.run_dir / "labels").iterdir()) == [
        MANIFEST_NAME,
        "IM_0001.png",
        "IM_0002.png",
        "IM_0003.png",
        "OLD_SLICE.png",
    ]
    assert first.labels.tolist() == again.labels.tolist()
    record = json.loads(again.run_json.read_text())
    written = _files(again.run_dir, exclude=("my_notes.txt", "OLD_SLICE.png"))
    assert sorted(record["files"]) == written  # the record lists exactly what the run wrote
    assert all(written_by_ctseg(again.run_dir / name) for name in written)  # each recorded as ctseg's
    assert {"labels/IM_0001.png", "overlays/IM_0003.jpg", "areas.csv", "run.json"} <= set(record["files"])


def test_overwrite_deletes_exactly_what_the_earlier_run_recorded(model_file, dicom_dir, tmp_path):
    out = tmp_path / "predictions"
    run = run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    # an earlier run of another series left other label maps: recorded as ctseg's, so they go
    other = run.run_dir / "labels" / "OTHER_SERIES.png"
    other.write_bytes(b"ctseg wrote this")
    record_written(other)
    again = run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    assert not other.exists()
    assert sorted(json.loads(again.run_json.read_text())["files"]) == _files(again.run_dir)


def _old_run_folder(run):
    """Make a run folder look written by a ctseg that recorded its files in run.json only."""
    for manifest in run.run_dir.rglob(MANIFEST_NAME):
        manifest.unlink()
    stamp = run.run_json.stat().st_mtime_ns
    for name in json.loads(run.run_json.read_text())["files"]:
        os.utime(run.run_dir / name, ns=(stamp - 10**9, stamp - 10**9))


def test_overwrite_of_an_old_run_folder_trusts_its_run_json_for_files_not_newer(model_file, dicom_dir, tmp_path):
    out = tmp_path / "predictions"
    run = run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    record = json.loads(run.run_json.read_text())
    (run.run_dir / "labels" / "OTHER_SERIES.png").write_bytes(b"an earlier run wrote this")
    (tmp_path / "outside.txt").write_text("not in the run folder")
    record["files"] += ["labels/OTHER_SERIES.png", "../../outside.txt", str(tmp_path / "outside.txt")]
    run.run_json.write_text(json.dumps(record))
    _old_run_folder(run)
    again = run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    assert not (run.run_dir / "labels" / "OTHER_SERIES.png").exists()
    assert (tmp_path / "outside.txt").read_text() == "not in the run folder"  # a record cannot reach outside
    assert sorted(json.loads(again.run_json.read_text())["files"]) == _files(again.run_dir)


def test_overwrite_of_an_old_run_folder_refuses_a_label_map_corrected_after_it(model_file, dicom_dir, tmp_path):
    out = tmp_path / "predictions"
    run = run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    _old_run_folder(run)
    corrected = run.run_dir / "labels" / "IM_0002.png"
    write_label_png(corrected, np.ones((40, 50), np.uint8))  # newer than run.json
    before = {p: p.read_bytes() for p in run.run_dir.rglob("*") if p.is_file()}
    with pytest.raises(
        CtsegSettingsError,
        match=r"labels/IM_0002.png: changed since ctseg wrote it \(newer than "
        r"the earlier run's run.json\); ctseg never replaces such files",
    ):
        run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    assert {p: p.read_bytes() for p in run.run_dir.rglob("*") if p.is_file()} == before  # nothing deleted


def test_overwrite_refuses_a_label_map_corrected_by_hand_before_anything_is_deleted(model_file, dicom_dir, tmp_path):
    out = tmp_path / "predictions"
    run = run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    corrected = run.run_dir / "labels" / "IM_0002.png"
    write_label_png(corrected, np.ones((40, 50), np.uint8))
    before = {p: p.read_bytes() for p in run.run_dir.rglob("*") if p.is_file()}
    with pytest.raises(
        CtsegSettingsError,
        match=r"labels/IM_0002.png: changed since ctseg wrote it; ctseg never "
        r"replaces such files, even with --overwrite \(overwrite=True\): "
        "move it away or choose another run name or output folder",
    ):
        run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    assert {p: p.read_bytes() for p in run.run_dir.rglob("*") if p.is_file()} == before
    # moved away: the run replaces the rest
    corrected.rename(tmp_path / "IM_0002_corrected.png")
    again = run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    assert (again.run_dir / "labels" / "IM_0002.png").is_file()


def test_overwrite_refuses_a_users_file_where_the_run_would_write(model_file, dicom_dir, tmp_path):
    out = tmp_path / "predictions"
    run = run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, **QUIET)
    mine = run.run_dir / "overlays" / "IM_0003.jpg"  # no previews in that run: the user's own file
    mine.parent.mkdir()
    mine.write_bytes(b"my own picture")
    with pytest.raises(CtsegSettingsError, match=r"overlays/IM_0003.jpg: not written by ctseg; ctseg never replaces"):
        run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    assert mine.read_bytes() == b"my own picture" and run.run_json.is_file()
    mine.unlink()
    (run.run_dir / "animation.gif").symlink_to(tmp_path / "elsewhere.gif")
    with pytest.raises(CtsegSettingsError, match=r"animation.gif: not written by ctseg"):
        run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, progress=False)
    assert not (tmp_path / "elsewhere.gif").exists()


def test_overwrite_replaces_the_files_of_an_interrupted_run(model_file, dicom_dir, tmp_path):
    # a run killed while writing: label maps recorded, no run.json yet
    out = tmp_path / "predictions"
    run = run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    for name in ("run.json", "areas.csv", "volumes.csv", "labels/IM_0003.png", "overlays/IM_0003.jpg"):
        (run.run_dir / name).unlink()
    (run.run_dir / "overlays" / ".999.IM_0003.jpg").write_bytes(b"\xff\xd8")  # the file it was writing
    (run.run_dir / "labels" / f"{MANIFEST_NAME}.999.tmp").write_text("{")  # its record, half updated
    again = run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    assert sorted(json.loads(again.run_json.read_text())["files"]) == _files(again.run_dir)  # no partial file left
    # a label map of the interrupted run corrected by hand: refused, naming it
    (again.run_dir / "run.json").unlink()
    write_label_png(again.run_dir / "labels" / "IM_0001.png", np.ones((40, 50), np.uint8))
    with pytest.raises(CtsegSettingsError, match="IM_0001.png: changed since ctseg wrote it"):
        run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    assert (again.run_dir / "areas.csv").is_file()
    # a run folder holding only the first file half-written is simply reused
    for path in sorted(again.run_dir.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (again.run_dir / "labels").mkdir(parents=True)
    (again.run_dir / "labels" / ".999.IM_0001.png").write_bytes(b"\x89PNG")
    last = run_segmentation(model_file, dicom_dir, out, run_name="r", overwrite=True, animation=False, progress=False)
    assert _files(last.run_dir) == sorted(json.loads(last.run_json.read_text())["files"])
    assert not list(last.run_dir.rglob(".9*"))


def test_overwrite_into_a_folder_ctseg_never_wrote_is_refused_and_changes_nothing(model_file, dicom_dir, tmp_path):
    # the user's project: --out PROJECT --name train --overwrite must not replace the manual labels
    project = tmp_path / "project"
    manual = project / "train" / "labels"
    manual.mkdir(parents=True)
    (manual / "IM_0001.png").write_bytes(b"manual label")
    (project / "train" / "areas.csv").write_text("my own table")
    with pytest.raises(
        CtsegSettingsError,
        match=r"train: holds files that no ctseg run recorded \(no run.json "
        r"listing what it wrote\); overwrite replaces only",
    ):
        run_segmentation(
            model_file, dicom_dir, project, run_name="train", overwrite=True, animation=False, progress=False
        )
    assert (manual / "IM_0001.png").read_bytes() == b"manual label"
    assert (project / "train" / "areas.csv").read_text() == "my own table"
    assert sorted(p.name for p in (project / "train").iterdir()) == ["areas.csv", "labels"]


def test_an_output_folder_inside_the_dicom_folder_is_refused(model_file, dicom_dir):
    with pytest.raises(CtsegSettingsError, match="the output folder is inside the DICOM folder"):
        run_segmentation(model_file, dicom_dir, dicom_dir / "predictions", animation=False, progress=False)
    with pytest.raises(CtsegSettingsError, match="the output folder is inside the DICOM folder"):
        run_segmentation(model_file, dicom_dir, dicom_dir, animation=False, progress=False)
    assert not (dicom_dir / "predictions").exists()


def test_overwrite_never_makes_the_dicom_folder_the_run_folder(model_file, dicom_dir):
    manual = dicom_dir / "labels"
    manual.mkdir()
    (manual / "IM_0001.png").write_bytes(b"manual label")
    with pytest.raises(CtsegSettingsError, match="the run folder would be the DICOM folder itself"):
        run_segmentation(model_file, dicom_dir, dicom_dir.parent, overwrite=True, animation=False, progress=False)
    assert (manual / "IM_0001.png").read_bytes() == b"manual label"
    assert not (dicom_dir / "areas.csv").exists()


def test_labels_list_defaults_to_the_names_stored_with_the_model(model_file, dicom_dir, tmp_path):
    run = run_segmentation(model_file, dicom_dir, tmp_path, **QUIET)
    assert run.label_names == tuple(NAMES) and list(run.areas.columns[2:4]) == NAMES


def test_other_names_than_the_models_are_used_with_a_warning(model_file, dicom_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        run = run_segmentation(model_file, dicom_dir, tmp_path, labels_list=["a", "b"], **QUIET)
    assert list(run.areas.columns[2:4]) == ["a", "b"]
    assert "differs from the names the model was trained with" in caplog.text


def test_a_loaded_segmenter_can_be_reused_for_many_folders(model_file, dicom_dir, tmp_path):
    from ctseg_helpers.segment import Segmenter

    segmenter = Segmenter.from_model_file(model_file, blend="average")
    runs = [
        run_segmentation(
            model_file,
            dicom_dir,
            tmp_path / "out",
            segmenter=segmenter,
            run_name=f"r{i}",
            **QUIET,
        )
        for i in range(2)
    ]
    assert runs[0].labels.tolist() == runs[1].labels.tolist()
    assert json.loads(runs[0].run_json.read_text())["segmenter"]["blend"] == "average"
    other = Segmenter(lambda b: np.concatenate([b, 1 - b], -1), input_shape=32, num_classes=2)
    with pytest.raises(
        CtsegSettingsError,
        match="the segmenter given takes input_shape=32 with 2 classes but .*tiny.keras has input_shape=32 with 3",
    ):
        run_segmentation(model_file, dicom_dir, tmp_path / "out", segmenter=other, progress=False)


def test_patient_id_is_recorded_only_when_asked(model_file, dicom_dir, tmp_path):
    run = run_segmentation(model_file, dicom_dir, tmp_path, include_patient_id=True, **QUIET)
    assert json.loads(run.run_json.read_text())["patient_id"] == "PAT-12345"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"input_shape": 64},
            "input_shape=64 in your settings but the model was trained with input_shape=32; set input_shape = 32",
        ),
        (
            {"labels_list": ["only_one"]},
            r"labels_list has 1 name\(s\) \['only_one'\] but the model was trained with 2 "
            r"label\(s\) \['soft', 'bright'\]",
        ),
        ({"labels_list": "soft"}, "labels_list must be a list of names, e.g. \\['soft'\\], got the string 'soft'"),
        ({"labels_list": ["x", "x"]}, "labels_list has repeated names"),
    ],
)
def test_settings_that_disagree_with_the_model_fail_before_any_work(model_file, dicom_dir, tmp_path, kwargs, message):
    with pytest.raises(CtsegSettingsError, match=message):
        run_segmentation(model_file, dicom_dir, tmp_path / "predictions", progress=False, **kwargs)
    assert not (tmp_path / "predictions").exists()


def test_a_missing_folder_or_model_is_reported(model_file, tmp_path):
    with pytest.raises(
        CtsegDataError, match="nowhere: DICOM folder not found; pick the folder that holds the scan's .dcm files"
    ):
        run_segmentation(model_file, tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(CtsegDataError, match="missing.keras: model file not found"):
        run_segmentation(tmp_path / "missing.keras", tmp_path, tmp_path / "out")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(
        CtsegSettingsError, match="a_file: output folder is a file; choose a folder for the predictions"
    ):
        run_segmentation(model_file, tmp_path, tmp_path / "a_file")


def test_fov_and_matrix_size_are_used_without_pixel_spacing(model_file, dicom_dir, tmp_path):
    import pydicom

    for path in sorted(dicom_dir.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        del ds.PixelSpacing
        ds.save_as(path)
    with pytest.raises(
        CtsegDataError, match=r"3 of 3 slice\(s\) have no PixelSpacing; give the field of view with fov"
    ):
        run_segmentation(model_file, dicom_dir, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    run = run_segmentation(
        model_file,
        dicom_dir,
        tmp_path / "out",
        fov=(20.0, 50.0),
        matrix_size=(40, 50),
        **QUIET,
    )
    np.testing.assert_allclose(run.areas["soft"].iloc[:3], 200 * 0.5 * 1.0)


# ------------------------------------------------------------------ pieces


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("IM_0001.dcm", "IM_0001"),
        ("scan.DCM", "scan"),
        ("IM0001", "IM0001"),
        ("1.2.840.113619.2.1", "1.2.840.113619.2.1"),
        ("a.b.ima", "a.b"),
        ("x.dicom", "x"),
    ],
)
def test_outputs_are_named_like_the_dicom_file(name, stem):
    assert output_stem(f"/some/folder/{name}") == stem


def test_duplicate_names_are_made_unique_with_a_warning(caplog):
    assert output_stems(["a/IM1.dcm", "b/IM1.dcm", "IM2"]) == ["IM1", "IM1_2", "IM2"]
    assert "two DICOM files are both named IM1" in caplog.text
    # a made-up name never takes another file's own name (its label map would be overwritten)
    assert output_stems(["a/IM1.dcm", "b/IM1.dcm", "IM1_2.dcm"]) == ["IM1", "IM1_3", "IM1_2"]


def test_make_run_dir_never_reuses_a_folder(tmp_path):
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    first = make_run_dir(tmp_path, "my scan/1", now=now)
    second = make_run_dir(tmp_path, "my scan/1", now=now)
    assert first.name == "my_scan_1_20260102-030405" and second.name == "my_scan_1_20260102-030405-2"
    assert (first / "labels").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(CtsegSettingsError, match="file: output folder is a file"):
        make_run_dir(tmp_path / "file", "x")
    (tmp_path / "taken").write_text("")
    with pytest.raises(
        CtsegSettingsError, match="taken: exists and is not a folder; remove it or choose another output folder"
    ):
        make_run_dir(tmp_path, "taken", overwrite=True)


def test_an_output_folder_relative_to_the_working_folder_beside_an_absolute_dicom_path(
    model_file, dicom_dir, tmp_path, monkeypatch
):
    """test.ipynb's default: output_dir "../predictions" from notebooks/, the chooser's absolute path."""
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    run = run_segmentation(model_file, dicom_dir.resolve(), "../predictions", progress=False)
    record = json.loads(run.run_json.read_text())
    assert "labels/IM_0001.png" in record["files"] and "animation.gif" in record["files"]
    assert run.run_dir.resolve().parent == (tmp_path / "predictions").resolve()
    again = run_segmentation(model_file, dicom_dir.resolve(), "../predictions", progress=False, overwrite=True)
    assert again.run_dir.resolve() == (tmp_path / "predictions" / "scan_01").resolve()
    assert run.animation_gif.name == "animation.gif"


def test_the_area_and_measure_views_split_the_area_table(model_file, dicom_dir, tmp_path):
    run = run_segmentation(model_file, dicom_dir, tmp_path, **QUIET)
    assert list(run.area_view().columns) == ["file", "slice_position_mm", "soft", "bright"]
    assert list(run.measures_view().columns) == ["file", *measure_columns(), "uncertainty_entropy"]
    assert list(run.area_view().index) == list(run.areas.index)  # the mean and std rows too


def test_a_fat_window_counts_the_rois_pixels_within_it_and_is_recorded(model_file, dicom_dir, tmp_path):
    """The soft block is 0 HU: all of it inside a -10..10 HU window, none of the 400 HU bright blocks."""
    run = run_segmentation(model_file, dicom_dir, tmp_path, **QUIET, fat_window_hu=(-10, 10))
    rows = run.areas.iloc[:3]
    np.testing.assert_allclose(rows["soft_fat_fraction"], 1.0)
    np.testing.assert_allclose(rows["bright_fat_fraction"], 0.0)
    np.testing.assert_allclose(rows["bright_mean_hu"], 400.0)
    assert json.loads(run.run_json.read_text())["fat_window_hu"] == [-10.0, 10.0]
    plain = run_segmentation(model_file, dicom_dir, tmp_path, **QUIET, measures=False)
    assert list(plain.areas.columns) == ["file", "slice_position_mm", "soft", "bright", "uncertainty_entropy"]


def test_a_fat_window_needs_the_measures_and_a_ct_series(model_file, dicom_dir, tmp_path):
    with pytest.raises(CtsegSettingsError, match=r"a fat window \(fat_window_hu, --fat-window\) needs the intensity"):
        run_segmentation(model_file, dicom_dir, tmp_path, measures=False, fat_window_hu=(-190, -30))
    mr = tmp_path / "mr"
    write_dicom_series(mr, phantom(), pixel_spacing_mm=(0.5, 0.8), slice_thickness_mm=5.0, modality="MR")
    with pytest.raises(CtsegSettingsError, match=r"mr: a fat window .* is in Hounsfield units, but the series are not"):
        run_segmentation(model_file, mr, tmp_path / "out", fat_window_hu=(-190, -30), progress=False)
    assert not (tmp_path / "out").exists()


def test_label_png_is_lossless_and_checked(tmp_path):
    labels = np.arange(12, dtype=np.int64).reshape(3, 4)
    with Image.open(write_label_png(tmp_path / "l.png", labels)) as im:
        np.testing.assert_array_equal(np.asarray(im), labels)
    with pytest.raises(CtsegDataError, match=r"l3.png: a label map must be 2D \(M, N\), got shape \(1, 3, 4\)"):
        write_label_png(tmp_path / "l3.png", labels[None])
    with pytest.raises(CtsegDataError, match="big.png: label values 0..300 do not fit an 8-bit PNG"):
        write_label_png(tmp_path / "big.png", np.array([[0, 300]]))


def test_table_csv_is_not_silently_overwritten(tmp_path):
    table = pd.DataFrame({"a": [1.0]})
    path = write_table_csv(table, tmp_path / "t.csv")
    with pytest.raises(CtsegSettingsError, match="t.csv exists already; choose another file name or allow overwriting"):
        write_table_csv(table, path)
    write_table_csv(table, path, overwrite=True)


def test_real_sunnybrook_cine_series_is_segmented_with_outputs_named_like_its_files(sunnybrook, tmp_path):
    """240 real cine MR images (12 positions x 20 phases): a cine series gets areas but no volume."""
    model = make_tiny_model_file(
        tmp_path / "mr.keras", input_shape=256, num_labels=1, label_names=("LV",), modality="MR", fit_mode="pad"
    )
    scan = sunnybrook / "scans" / "SCD0000101"
    run = run_segmentation(
        model,
        scan,
        tmp_path / "predictions",
        **QUIET,
        nifti=True,
        dicom_seg=True,
        include_patient_id=True,
    )
    dicom_names = sorted(p.name for p in scan.iterdir() if p.suffix == ".dcm")
    assert sorted(p.name for p in run.label_paths) == sorted(n.replace(".dcm", ".png") for n in dicom_names)
    from ctseg_helpers.measure.area import slice_rows

    assert len(slice_rows(run.areas)) == 240 and run.volumes is None and run.volumes_csv is None
    # MR: the pixel values are signal, not HU, and no fat fraction; mean and std per slice position
    from ctseg_helpers.measure.area import summary_rows

    assert "LV_mean_signal" in run.areas.columns and "LV_fat_fraction" not in run.areas.columns
    assert len(summary_rows(run.areas, "mean")) == 12
    # slices are scored (NaN where no ROI is predicted), the summary rows left empty
    scores = slice_rows(run.areas)["uncertainty_entropy"]
    assert scores.notna().any() and scores.dropna().between(0, 1).all()
    assert run.areas.drop(slice_rows(run.areas).index)["uncertainty_entropy"].isna().all()
    assert run.volume_note == "the series is a cine series (12 slice positions x 20 phases), not one 3D stack"
    assert "No ROI volumes: the series is a cine series" in run.volume_report().data
    spacing = run.pixel_spacing_mm[0]
    assert 1.2 < spacing[0] < 1.4
    assert run.areas["LV"].iloc[0] == pytest.approx((run.labels[0] == 1).sum() * spacing[0] * spacing[1])
    # one 4D NIfTI (positions x phases); no DICOM-SEG, as the anonymised images carry a frame of reference each
    import nibabel as nib

    img = nib.load(run.nifti_paths[0])
    assert img.shape == (256, 256, 12, 20)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj)[:, :, 0, 1].T, run.labels[1])
    assert run.dicom_seg_paths == [] and run.output_notes == [
        f"no DICOM-SEG for {scan} phase 1: its 12 images carry 12 different FrameOfReferenceUIDs (an anonymiser may "
        "have replaced them image by image), but a DICOM-SEG refers to images of one study, series and frame of "
        "reference; the label PNGs hold every slice"
    ]


# ------------------------------------------------------------------ a folder of several series


def second_phantom():
    """2 slices 30x44: a 6 x 10 soft-tissue block (label 1) on both, a 5 x 5 bright block (label 2) on slice 2."""
    images = np.full((2, 30, 44), -1000.0)
    images[:, 2:8, 30:40] = 0.0
    images[1, 20:25, 5:10] = 400.0
    return images


@pytest.fixture()
def two_series_dir(dicom_dir):
    """scan_01 with a second series: series 1 (3 slices, 'first') and series 2 (2 slices 1 x 2 mm, 'second')."""
    write_dicom_series(
        dicom_dir,
        second_phantom(),
        pixel_spacing_mm=(1.0, 2.0),
        slice_thickness_mm=3.0,
        names=["B_0001", "B_0002"],
        series_description="second",
        series_uid="1.2.826.0.1.2",
        patient_id="PAT-67890",
    )
    return dicom_dir


def _series_uids(folder):
    from ctseg_helpers.io.dicom import scan_dicom_folder

    return [info.series_uid for info in scan_dicom_folder(folder).series]


def test_every_series_of_a_folder_is_segmented_as_its_own_stack(model_file, two_series_dir, tmp_path):
    run = run_segmentation(model_file, two_series_dir, tmp_path / "predictions", labels_list=NAMES, progress=False)
    first_uid, second_uid = _series_uids(two_series_dir)
    assert second_uid == "1.2.826.0.1.2"
    assert [(s.number, s.series_uid, s.series_description, len(s.files)) for s in run.series] == [
        (1, first_uid, "ctseg series", 3),
        (2, second_uid, "second", 2),
    ]
    # label maps of both series, named like their DICOM files, each on its own grid
    assert sorted(p.name for p in (run.run_dir / "labels").glob("[!.]*")) == [
        "B_0001.png",
        "B_0002.png",
        "IM_0001.png",
        "IM_0002.png",
        "IM_0003.png",
    ]
    second = run.series[1]
    assert second.labels.shape == (2, 30, 44)
    assert [int((second.labels[k] == 1).sum()) for k in range(2)] == [60, 60]
    assert [int((second.labels[k] == 2).sum()) for k in range(2)] == [0, 25]
    with Image.open(run.run_dir / "labels" / "B_0002.png") as im:
        np.testing.assert_array_equal(np.asarray(im), second.labels[1])
    assert sorted(p.name for p in (run.run_dir / "overlays").glob("[!.]*")) == [
        "B_0001.jpg",
        "B_0002.jpg",
        "IM_0001.jpg",
        "IM_0002.jpg",
        "IM_0003.jpg",
    ]
    # one area table: each row names its series; mean and std over all slices
    areas = pd.read_csv(run.areas_csv, index_col=0, keep_default_na=False, na_values=[""])
    assert list(areas.columns) == [
        "series",
        "series_uid",
        "series_description",
        "file",
        "slice_position_mm",
        "soft",
        "bright",
        *measure_columns(),
        "uncertainty_entropy",
    ]
    rows = areas.iloc[:5]
    assert list(rows["series"]) == [1, 1, 1, 2, 2]
    assert list(rows["series_uid"]) == [first_uid] * 3 + [second_uid] * 2
    assert list(rows["series_description"]) == ["ctseg series"] * 3 + ["second"] * 2
    assert list(rows["file"]) == ["IM_0001.dcm", "IM_0002.dcm", "IM_0003.dcm", "B_0001.dcm", "B_0002.dcm"]
    np.testing.assert_allclose(rows["soft"], [80.0, 80.0, 80.0, 120.0, 120.0])
    np.testing.assert_allclose(rows["bright"], [16.0, 32.0, 48.0, 0.0, 50.0])
    assert areas.loc["mean", "bright"] == pytest.approx((16 + 32 + 48 + 0 + 50) / 5)
    # volumes of each stack, one row per series and ROI
    volumes = pd.read_csv(run.volumes_csv).set_index(["series", "roi"])
    assert volumes.loc[(1, "bright"), "volume_ml"] == pytest.approx((16 + 32 + 48) * 5.0 / 1000)
    assert volumes.loc[(2, "bright"), "volume_ml"] == pytest.approx(50 * 3.0 / 1000)
    assert volumes.loc[(2, "soft"), "series_description"] == "second"
    # an animation per series
    assert run.animation_gif == run.run_dir / "animation_series1.gif"
    assert not (run.run_dir / "animation.gif").exists()
    for name, frames in (("animation_series1.gif", 3), ("animation_series2.gif", 2)):
        with Image.open(run.run_dir / name) as gif:
            assert gif.n_frames == frames
    # run.json lists every file the run wrote, and nothing else; and what each series was
    record = json.loads(run.run_json.read_text())
    written = _files(run.run_dir)
    assert sorted(record["files"]) == written
    assert {"animation_series2.gif", "labels/B_0001.png", "overlays/IM_0003.jpg", "volumes.csv"} <= set(written)
    assert record["series_uid"] is None and record["n_slices"] == 5
    assert [(s["number"], s["series_uid"], s["n_slices"], s["animation"]) for s in record["series"]] == [
        (1, first_uid, 3, "animation_series1.gif"),
        (2, second_uid, 2, "animation_series2.gif"),
    ]
    assert record["series"][1]["files"] == ["B_0001.dcm", "B_0002.dcm"]
    # no patient identifiers
    for path in (run.run_json, run.areas_csv, run.volumes_csv):
        assert "PAT-" not in path.read_text()
    # what the notebook shows
    assert run.summary().splitlines()[0] == f"5 slice(s) of 2 series segmented -> {run.run_dir}"
    assert f"series 2 'second': 2 slice(s), uid {second_uid}" in run.summary()
    html = run.animation_html()
    assert "<h4>series 1 &#x27;ctseg series&#x27;: 3 slice(s)</h4>" in html and "series 2 &#x27;second&#x27;" in html
    assert run.volume_report() is run.volumes
    assert len(run.images) == 5 and run.labels[4].shape == (30, 44)


def test_series_uid_picks_one_series_with_the_outputs_of_a_folder_of_one(model_file, two_series_dir, tmp_path):
    run = run_segmentation(
        model_file, two_series_dir, tmp_path, series_uid="1.2.826.0.1.2", previews=False, progress=False
    )
    assert [p.name for p in run.label_paths] == ["B_0001.png", "B_0002.png"]
    assert list(run.areas.columns) == [
        "file",
        "slice_position_mm",
        "soft",
        "bright",
        *measure_columns(),
        "uncertainty_entropy",
    ]
    assert run.animation_gif.name == "animation.gif" and run.labels.shape == (2, 30, 44)
    record = json.loads(run.run_json.read_text())
    assert record["series_uid"] == "1.2.826.0.1.2" and record["series_description"] == "second"
    assert "series" not in record
    with pytest.raises(CtsegDataError, match="no series with uid 9.9"):
        run_segmentation(model_file, two_series_dir, tmp_path, series_uid="9.9", progress=False)


def _files(run_dir, exclude=()):
    """The files of a run folder, relative, without ctseg's records of what it wrote."""
    return sorted(
        p.relative_to(run_dir).as_posix()
        for p in run_dir.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME and p.name not in exclude
    )


def test_overwrite_after_a_run_of_several_series_removes_all_its_files(model_file, two_series_dir, tmp_path):
    out = tmp_path / "predictions"
    first = run_segmentation(
        model_file, two_series_dir, out, run_name="r", overwrite=True, previews=False, progress=False
    )
    assert (first.run_dir / "animation_series2.gif").is_file()
    again = run_segmentation(
        model_file,
        two_series_dir,
        out,
        run_name="r",
        overwrite=True,
        previews=False,
        series_uid="1.2.826.0.1.2",
        progress=False,
    )
    assert _files(again.run_dir) == [
        "animation.gif",
        "areas.csv",
        "labels/B_0001.png",
        "labels/B_0002.png",
        "run.json",
        "volumes.csv",
    ]


def test_a_series_that_is_no_stack_gets_no_volumes_and_says_why(model_file, dicom_dir, tmp_path):
    write_dicom_series(
        dicom_dir, second_phantom()[1:], pixel_spacing_mm=(1.0, 2.0), names=["ONE"], series_description="localizer"
    )
    run = run_segmentation(model_file, dicom_dir, tmp_path, **QUIET, include_patient_id=True)
    assert list(run.volumes["series"].unique()) == [1]
    assert run.volume_note == "series 2 'localizer': a single slice has no volume"
    report = run.volume_report().data
    assert "volume_ml" in report and "No ROI volumes for series 2 &#x27;localizer&#x27;: a single slice" in report
    record = json.loads(run.run_json.read_text())
    assert [s["patient_id"] for s in record["series"]] == ["PAT-12345", "ANON"]  # only when asked
    assert "patient_id" not in record


def test_a_series_without_pixel_spacing_is_named_and_nothing_is_written(model_file, two_series_dir, tmp_path):
    import pydicom

    for path in sorted(two_series_dir.glob("B_*.dcm")):
        ds = pydicom.dcmread(path)
        del ds.PixelSpacing
        ds.save_as(path)
    with pytest.raises(
        CtsegDataError,
        match=r"scan_01 \(series 2, uid 1.2.826.0.1.2\): 2 of 2 slice\(s\) have no "
        r"PixelSpacing; give the field of view",
    ):
        run_segmentation(model_file, two_series_dir, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("labels_list", "message"),
    [
        (
            ["background", "soft"],
            r"labels_list \['background', 'soft'\] names label 1 'background', but the "
            r"background is label 0 and not an ROI",
        ),
        (
            ["background", "a", "b", "c"],
            r"labels_list has 4 name\(s\) \['background', 'a', 'b', 'c'\] but the model "
            r"was trained with 2 label\(s\) \['soft', 'bright'\]; give one name per ROI, "
            r"label 1 first, e.g. \['soft', 'bright'\] "
            r"\(or \['background', 'soft', 'bright'\]\)",
        ),
    ],
)
def test_names_that_do_not_fit_the_model_are_refused_with_counts_and_an_example(
    model_file, dicom_dir, tmp_path, labels_list, message
):
    with pytest.raises(CtsegSettingsError, match=message):
        run_segmentation(model_file, dicom_dir, tmp_path / "predictions", labels_list=labels_list, progress=False)
    assert not (tmp_path / "predictions").exists()


def test_labels_list_with_background_first_as_in_the_manual(model_file, dicom_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        run = run_segmentation(
            model_file,
            dicom_dir,
            tmp_path,
            labels_list=["Background", *NAMES],
            **QUIET,
        )
    assert run.label_names == tuple(NAMES) and list(run.areas.columns[2:4]) == NAMES
    np.testing.assert_allclose(run.areas["bright"].iloc[:3], [16.0, 32.0, 48.0])  # label 2 is 'bright'
    assert "labels_list starts with 'Background', the name of label 0: dropped, so label 1 is 'soft'" in caplog.text


# ------------------------------------------------------------------ NIfTI and DICOM-SEG outputs

OBLIQUE = (0.866025, 0.5, 0.0, -0.5, 0.866025, 0.0)  # turned 30 degrees about z


def _seg_masks(path, series_files):
    """A DICOM-SEG's label maps per source file, read back with highdicom."""
    import highdicom as hd
    import pydicom

    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in series_files]
    seg = hd.seg.segread(path)
    return seg, seg.get_pixels_by_source_instance(uids, combine_segments=True)


@pytest.fixture()
def oblique_dir(tmp_path):
    """The phantom as 3 oblique slices, the folder listing them in reverse (IM_0003 lies first along the normal)."""
    write_dicom_series(
        tmp_path / "oblique",
        phantom(),
        pixel_spacing_mm=(0.5, 0.8),
        slice_thickness_mm=5.0,
        orientation=OBLIQUE,
        origin_mm=(-20.0, 35.0, 110.0),
        names=["IM_0003", "IM_0002", "IM_0001"],
        patient_id="PAT-12345",
    )
    return tmp_path / "oblique"


def test_nifti_and_dicom_seg_put_the_label_maps_on_the_scan(model_file, oblique_dir, tmp_path):
    import nibabel as nib
    import pydicom

    run = run_segmentation(
        model_file,
        oblique_dir,
        tmp_path / "predictions",
        nifti=True,
        dicom_seg=True,
        include_patient_id=True,
        **QUIET,
    )
    assert [p.name for p in run.files] == ["IM_0003.dcm", "IM_0002.dcm", "IM_0001.dcm"]
    assert run.nifti_paths == [run.run_dir / "segmentation.nii.gz"]
    assert run.dicom_seg_paths == [run.run_dir / "segmentation.dcm"] and run.output_notes == []
    # NIfTI: voxel (i, j, k) is pixel (row j, col i) of the k-th slice, at the same point in space
    img = nib.load(run.nifti_paths[0])
    data = np.asanyarray(img.dataobj)
    assert data.shape == (50, 40, 3) and data.dtype == np.uint8
    for k, (dicom_file, png) in enumerate(zip(run.files, run.label_paths, strict=True)):
        with Image.open(png) as im:
            np.testing.assert_array_equal(data[:, :, k].T, np.asarray(im))
        for row, col in ((0, 0), (39, 0), (0, 49), (17, 23)):
            np.testing.assert_allclose(
                img.affine @ [col, row, k, 1], [*dicom_world_ras(dicom_file)[row, col], 1], atol=1e-3
            )
    # DICOM-SEG: one segment per ROI, the masks equal the label maps, in the scan's study, for its patient
    seg, masks = _seg_masks(run.dicom_seg_paths[0], run.files)
    assert [d.SegmentLabel for d in seg.SegmentSequence] == NAMES
    np.testing.assert_array_equal(masks, run.labels)
    source = pydicom.dcmread(run.files[0], stop_before_pixels=True)
    assert (seg.PatientID, seg.StudyInstanceUID) == ("PAT-12345", source.StudyInstanceUID)
    # recorded and summarised
    record = json.loads(run.run_json.read_text())
    assert {"segmentation.nii.gz", "segmentation.dcm"} <= set(record["files"])
    assert record["outputs"]["nifti"] == "segmentation.nii.gz"
    assert record["outputs"]["dicom_seg"] == ["segmentation.dcm"]
    assert f"NIfTI:      {run.nifti_paths[0]}" in run.summary()
    assert f"DICOM-SEG:  {run.dicom_seg_paths[0]}" in run.summary()


def test_dicom_seg_is_refused_before_any_work_unless_identifiers_may_be_written(model_file, dicom_dir, tmp_path):
    with pytest.raises(
        CtsegSettingsError,
        match=r"dicom_seg \(--dicom-seg\): a DICOM-SEG carries the patient's name "
        r"and ID, copied from the scan .* set include_patient_id=True "
        r"\(--include-patient-id\) to write it, or write NIfTI instead",
    ):
        run_segmentation(model_file, dicom_dir, tmp_path / "predictions", dicom_seg=True, progress=False)
    assert not (tmp_path / "predictions").exists()
    run = run_segmentation(model_file, dicom_dir, tmp_path / "predictions", nifti=True, **QUIET)
    assert run.dicom_seg_paths == [] and json.loads(run.run_json.read_text())["outputs"]["dicom_seg"] is None
    for path in (run.run_json, *run.nifti_paths):  # NIfTI carries no identifiers
        assert b"PAT-12345" not in path.read_bytes()


def _write_cine(folder, n_positions=2, n_phases=2):
    """A cine series: the phantom's first slices at n_positions positions 8 mm apart, n_phases phases 40 ms apart."""
    import pydicom
    from pydicom.uid import generate_uid

    series_uid, study_uid = generate_uid(), generate_uid()
    files = []
    for phase in range(n_phases):
        images = phantom()[:n_positions].copy()
        images[:, 32:36, 40 : 40 + 2 * (phase + 1)] = 400.0  # a bright block growing with the phase
        files += write_dicom_series(
            folder,
            images,
            pixel_spacing_mm=(0.5, 0.8),
            slice_thickness_mm=8.0,
            names=[f"P{phase + 1}_S{k + 1}" for k in range(n_positions)],
            series_uid=series_uid,
            study_uid=study_uid,
            series_description="cine",
        )
    frame = pydicom.dcmread(files[0]).FrameOfReferenceUID
    for path in files:
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = frame
        ds.TriggerTime = 40.0 * (int(path.stem[1]) - 1)
        ds.save_as(path)
    return folder


def test_a_cine_series_is_one_4d_nifti_and_one_dicom_seg_per_phase(model_file, tmp_path):
    import nibabel as nib
    import pydicom

    folder = _write_cine(tmp_path / "cine")
    run = run_segmentation(
        model_file,
        folder,
        tmp_path / "predictions",
        nifti=True,
        dicom_seg=True,
        include_patient_id=True,
        **QUIET,
    )
    assert [p.name for p in run.files] == ["P1_S1.dcm", "P2_S1.dcm", "P1_S2.dcm", "P2_S2.dcm"]
    img = nib.load(run.nifti_paths[0])
    assert img.shape == (50, 40, 2, 2) and img.header.get_zooms()[3] == pytest.approx(40.0)
    data = np.asanyarray(img.dataobj)
    for index, (k, t) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        np.testing.assert_array_equal(data[:, :, k, t].T, run.labels[index])
    assert [p.name for p in run.dicom_seg_paths] == ["segmentation_phase1.dcm", "segmentation_phase2.dcm"]
    objects = [pydicom.dcmread(p) for p in run.dicom_seg_paths]
    assert objects[0].SeriesInstanceUID == objects[1].SeriesInstanceUID  # one SEG series
    assert [int(o.InstanceNumber) for o in objects] == [1, 2]
    for phase, path in enumerate(run.dicom_seg_paths):
        files = run.files[phase::2]
        _, masks = _seg_masks(path, files)
        np.testing.assert_array_equal(masks, run.labels[phase::2])
    assert json.loads(run.run_json.read_text())["outputs"]["dicom_seg"] == [
        "segmentation_phase1.dcm",
        "segmentation_phase2.dcm",
    ]


def test_a_series_on_no_regular_grid_gets_no_nifti_and_one_note_saying_why(model_file, dicom_dir, tmp_path, caplog):
    import pydicom

    last = sorted(dicom_dir.glob("*.dcm"))[-1]
    ds = pydicom.dcmread(last)
    ds.ImagePositionPatient = ["0", "0", "12"]  # positions 0, 5, 12 mm
    ds.save_as(last)
    with caplog.at_level(logging.WARNING):
        run = run_segmentation(
            model_file,
            dicom_dir,
            tmp_path / "predictions",
            nifti=True,
            dicom_seg=True,
            include_patient_id=True,
            **QUIET,
        )
    note = (
        f"no NIfTI for {dicom_dir}: the slices are not evenly spaced along one line (slice 2 of 3 is 1 mm "
        "off), so they fit no NIfTI grid; the label PNGs hold every slice"
    )
    assert run.output_notes == [note] and run.nifti_paths == []
    assert [r.getMessage() for r in caplog.records if "no NIfTI" in r.getMessage()] == [note]
    assert not (run.run_dir / "segmentation.nii.gz").exists()
    record = json.loads(run.run_json.read_text())
    assert record["output_notes"] == [note] and record["outputs"]["nifti"] is None
    assert f"note: {note}" in run.summary()
    _, masks = _seg_masks(run.dicom_seg_paths[0], run.files)  # a DICOM-SEG needs no regular grid
    np.testing.assert_array_equal(masks, run.labels)
    # probabilities as NIfTI: none either, one note (not one per ROI)
    run = run_segmentation(
        model_file,
        dicom_dir,
        tmp_path / "again",
        probabilities="nifti",
        **QUIET,
    )
    assert run.output_notes == [note.replace("no NIfTI", "no probability NIfTI", 1)]
    assert run.probability_nifti_paths == [] and not list(run.run_dir.glob("*.nii*"))
    assert json.loads(run.run_json.read_text())["outputs"]["probabilities"] is None


def test_each_series_gets_its_own_nifti_and_dicom_seg_and_overwrite_removes_them(model_file, two_series_dir, tmp_path):
    out = tmp_path / "predictions"
    run = run_segmentation(
        model_file,
        two_series_dir,
        out,
        run_name="r",
        overwrite=True,
        nifti=True,
        dicom_seg=True,
        include_patient_id=True,
        **QUIET,
    )
    names = ["segmentation_series1.nii.gz", "segmentation_series2.nii.gz"]
    assert [p.name for p in run.nifti_paths] == names
    assert [p.name for p in run.dicom_seg_paths] == ["segmentation_series1.dcm", "segmentation_series2.dcm"]
    record = json.loads(run.run_json.read_text())
    assert sorted(record["files"]) == _files(run.run_dir)
    assert all(written_by_ctseg(run.run_dir / name) for name in record["files"])
    assert record["outputs"]["nifti"] == names
    assert [(s["nifti"], s["dicom_seg"]) for s in record["series"]] == [
        ("segmentation_series1.nii.gz", ["segmentation_series1.dcm"]),
        ("segmentation_series2.nii.gz", ["segmentation_series2.dcm"]),
    ]
    _, masks = _seg_masks(run.dicom_seg_paths[1], run.series[1].files)
    np.testing.assert_array_equal(masks, run.series[1].labels)
    again = run_segmentation(model_file, two_series_dir, out, run_name="r", overwrite=True, **QUIET)
    assert not list(again.run_dir.glob("segmentation*"))  # recorded by the first run, so replaced


# ------------------------------------------------------------------ probabilities, uncertainty, slices to check


def test_probabilities_come_from_the_same_pass_as_the_labels_and_are_written_like_every_output(
    model_file, two_series_dir, tmp_path
):
    from ctseg_helpers.io.probabilities import QUANTISATION_STEP, read_probabilities
    from ctseg_helpers.segment import Segmenter

    out = tmp_path / "predictions"
    run = run_segmentation(
        model_file,
        two_series_dir,
        out,
        run_name="r",
        overwrite=True,
        probabilities=True,
        **QUIET,
    )
    assert run.probabilities_path == run.run_dir / "probabilities.h5" and written_by_ctseg(run.probabilities_path)
    assert "probabilities: " in run.summary() and "p = value / 255" in run.summary()
    record = json.loads(run.run_json.read_text())
    assert record["outputs"]["probabilities"] == "probabilities.h5" and "probabilities.h5" in record["files"]
    assert sorted(record["files"]) == _files(run.run_dir)
    maps = read_probabilities(run.probabilities_path)
    assert [m.name for m in maps] == ["series_1", "series_2"]
    segmenter = Segmenter.from_model_file(model_file)
    for stored, series in zip(maps, run.series, strict=True):
        assert stored.class_names == ("background", *NAMES)
        assert stored.files == [f.name for f in series.files] and stored.stems == [f.stem for f in series.files]
        np.testing.assert_array_equal(stored.pixel_spacing_mm, series.pixel_spacing_mm)
        expected = segmenter.predict_proba(series.images, pixel_spacing_mm=series.pixel_spacing_mm)
        assert np.abs(stored.proba - expected).max() <= QUANTISATION_STEP
        np.testing.assert_array_equal(np.argmax(expected, axis=-1), series.labels)  # no post-processing here
    assert maps[1].series_description == "second" and maps[1].positions_mm.shape == (2,)
    # a run without probabilities replaces the earlier run's file (it was recorded); one with them writes it again
    again = run_segmentation(model_file, two_series_dir, out, run_name="r", overwrite=True, **QUIET)
    assert again.probabilities_path is None and not (again.run_dir / "probabilities.h5").exists()
    assert json.loads(again.run_json.read_text())["outputs"]["probabilities"] is None
    third = run_segmentation(
        model_file,
        two_series_dir,
        out,
        run_name="r",
        overwrite=True,
        probabilities="hdf5",
        **QUIET,
    )
    third.probabilities_path.write_bytes(b"changed by hand")  # changed since: never replaced
    with pytest.raises(CtsegSettingsError, match=r"probabilities.h5: .*changed"):
        run_segmentation(
            model_file, two_series_dir, out, run_name="r", overwrite=True, probabilities=True, progress=False
        )


def test_an_unknown_probability_format_is_refused_before_any_work(model_file, dicom_dir, tmp_path):
    with pytest.raises(CtsegSettingsError, match=r"probabilities \(--probabilities\) must be True/False or one of "):
        run_segmentation(model_file, dicom_dir, tmp_path / "out", probabilities="png", progress=False)
    assert not (tmp_path / "out").exists()


def test_probabilities_as_nifti_are_one_volume_per_roi_on_the_grid_of_the_label_nifti(
    model_file, oblique_dir, tmp_path
):
    import nibabel as nib

    from ctseg_helpers.io.probabilities import QUANTISATION_STEP
    from ctseg_helpers.segment import Segmenter

    run = run_segmentation(
        model_file,
        oblique_dir,
        tmp_path / "predictions",
        nifti=True,
        probabilities="nifti",
        **QUIET,
    )
    names = ["probabilities_soft.nii.gz", "probabilities_bright.nii.gz"]
    assert [p.name for p in run.probability_nifti_paths] == names and run.probabilities_path is None
    labels = nib.load(run.nifti_paths[0])
    series = run.series[0]
    expected = Segmenter.from_model_file(model_file).predict_proba(
        series.images, pixel_spacing_mm=series.pixel_spacing_mm
    )
    for k, path in enumerate(run.probability_nifti_paths, start=1):
        img = nib.load(path)
        assert written_by_ctseg(path)
        np.testing.assert_array_equal(img.affine, labels.affine)
        assert img.shape == labels.shape == (50, 40, 3)
        assert img.get_data_dtype() == np.uint8 and img.header.get_intent()[2] == "probability"
        stored = img.get_fdata()  # the header's scale makes them probabilities
        assert 0.0 <= stored.min() and stored.max() <= 1.0 + 1e-6
        # voxel (i, j, k) is pixel (row j, col i) of the k-th slice, as in the label volume
        assert np.abs(stored.transpose(2, 1, 0) - expected[..., k]).max() <= QUANTISATION_STEP
    record = json.loads(run.run_json.read_text())
    assert record["outputs"]["probabilities"] == names
    assert sorted(record["files"]) == _files(run.run_dir)
    assert "probabilities: " in run.summary() and "(2 files, one per ROI)" in run.summary()


def test_probabilities_as_nifti_per_series_are_recorded_and_replaced_by_overwrite(model_file, two_series_dir, tmp_path):
    out = tmp_path / "predictions"
    run = run_segmentation(
        model_file,
        two_series_dir,
        out,
        run_name="r",
        overwrite=True,
        probabilities="nifti",
        **QUIET,
    )
    names = [f"probabilities_series{n}_{roi}.nii.gz" for n in (1, 2) for roi in NAMES]
    assert [p.name for p in run.probability_nifti_paths] == names
    record = json.loads(run.run_json.read_text())
    assert [s["probabilities"] for s in record["series"]] == [names[:2], names[2:]]
    assert all(written_by_ctseg(run.run_dir / name) for name in names)
    # a run without them replaces them (recorded by the first run)
    again = run_segmentation(model_file, two_series_dir, out, run_name="r", overwrite=True, **QUIET)
    assert not list(again.run_dir.glob("probabilities*"))


def test_probability_nifti_names_are_file_safe_and_distinct():
    from ctseg_helpers.workflows.segment_folder import _probability_nifti_names

    assert _probability_nifti_names(None, ["LV blood pool", "LV/RV", "LV RV", "***"], False) == [
        "probabilities_LV_blood_pool.nii.gz",
        "probabilities_LV_RV_2.nii.gz",
        "probabilities_LV_RV_3.nii.gz",
        "probabilities_roi4.nii.gz",
    ]
    assert _probability_nifti_names(3, ["a"], True) == ["probabilities_series3_a.nii.gz"]


def test_tta_adds_the_views_disagreement_and_the_run_lists_the_slices_to_check(model_file, dicom_dir, tmp_path):
    run = run_segmentation(model_file, dicom_dir, tmp_path / "out", tta=True, **QUIET)
    assert json.loads(run.run_json.read_text())["segmenter"]["views"] == 4
    areas = pd.read_csv(run.areas_csv, index_col=0)
    assert list(areas.columns[-2:]) == ["uncertainty_entropy", "uncertainty_disagreement"]
    # the tiny model's 1x1 convolutions see every view alike: the views agree
    np.testing.assert_allclose(areas["uncertainty_disagreement"].iloc[:3], 0.0)
    assert areas.loc[["mean", "std"], ["uncertainty_entropy", "uncertainty_disagreement"]].isna().all().all()
    check = run.slices_to_check(n=2)
    assert len(check) == 2 and check["score"].is_monotonic_decreasing
    assert set(check["file"]) <= {"IM_0001.dcm", "IM_0002.dcm", "IM_0003.dcm"}
    assert check["reasons"].str.contains("entropy").all()
    figure = run.show_slices_to_check(n=2)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert len(titles) == 2 and titles[0].startswith(f"1. {check['file'].iloc[0]}\nentropy")


def test_slices_of_several_series_to_check_are_shown_padded_to_one_size(model_file, two_series_dir, tmp_path):
    run = run_segmentation(model_file, two_series_dir, tmp_path / "out", **QUIET)
    check = run.slices_to_check(n=5, jump_weight=0.0)
    assert len(check) == 5 and set(check["series"]) == {1, 2}
    assert run.show_slices_to_check(n=5) is not None
    run.areas["uncertainty_entropy"] = 0.0  # nothing stands out: no figure
    assert run.slices_to_check(jump_weight=0.0).empty and run.show_slices_to_check(jump_weight=0.0) is None
