"""Folder-level evaluation on a hand-built DICOM scan with known answers."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.measure import evaluation
from ctseg_helpers.workflows import evaluate as ev

SPACING = (0.8, 0.6)  # row, col in mm
THICKNESS = 2.5
PIXEL_MM2 = 0.8 * 0.6
NAMES = ["case_01", "case_02", "case_03", "case_04"]


def make_scan(root: Path, names=NAMES, series_uid=None) -> tuple[Path, Path, Path]:
    """4 slices 24 x 24; truth: ROI 1 a 6x6 square everywhere, ROI 2 a 4x4 square on slices 1-2.

    Prediction: slice 1 has ROI 1 shifted 2 columns (1.2 mm); slice 2 misses ROI 2.
    """
    k = len(names)
    images = np.full((k, 24, 24), -100.0)
    truth = np.zeros((k, 24, 24), dtype=np.uint8)
    truth[:, 4:10, 4:10] = 1
    truth[1:3, 14:18, 14:18] = 2
    images[truth == 1] = 60.0
    images[truth == 2] = 300.0
    pred = truth.copy()
    pred[1, 4:10, 4:10] = 0
    pred[1, 4:10, 6:12] = 1
    pred[2][pred[2] == 2] = 0
    dicom_dir, pred_dir, truth_dir = root / "dicoms", root / "pred", root / "truth"
    write_dicom_series(
        dicom_dir, images, pixel_spacing_mm=SPACING, slice_thickness_mm=THICKNESS, names=names, series_uid=series_uid
    )
    pred_dir.mkdir(exist_ok=True)
    truth_dir.mkdir(exist_ok=True)
    for name, p, t in zip(names, pred, truth, strict=True):
        Image.fromarray(p).save(pred_dir / f"{name}.png")
        np.save(truth_dir / f"{name}.npy", t)
    return dicom_dir, pred_dir, truth_dir


@pytest.fixture
def scan(tmp_path):
    return make_scan(tmp_path)


def _row(metrics, file, roi):
    rows = metrics[(metrics["file"] == file) & (metrics["roi"] == roi)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_per_slice_metrics_exact(scan):
    dicom_dir, pred_dir, truth_dir = scan
    result = ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, label_names="body,bone")
    m = result.metrics
    assert len(m) == 8
    for column in (
        "file",
        "roi",
        "dice",
        "iou",
        "sensitivity",
        "specificity",
        "precision",
        "voe",
        "rvd",
        "hd",
        "hd95",
        "assd",
        "surface_dice",
        "truth_area_mm2",
        "pred_area_mm2",
    ):
        assert column in m.columns
    same = _row(m, "case_01", "body")
    assert same["dice"] == 1.0 and same["hd"] == 0.0
    assert same["truth_area_mm2"] == pytest.approx(36 * PIXEL_MM2)
    shifted = _row(m, "case_02", "body")
    assert shifted["dice"] == pytest.approx(2 * 24 / 72)
    assert shifted["iou"] == pytest.approx(24 / 48)
    assert shifted["hd"] == pytest.approx(2 * 0.6)
    assert shifted["rvd"] == 0.0
    missed = _row(m, "case_03", "bone")
    assert missed["dice"] == 0.0 and missed["sensitivity"] == 0.0
    assert math.isnan(missed["hd"]) and math.isnan(missed["precision"])
    absent = _row(m, "case_01", "bone")
    assert math.isnan(absent["dice"])
    assert list(m["slice_index"].unique()) == [0, 1, 2, 3]
    np.testing.assert_allclose(sorted(m["position_mm"].unique()), [0.0, 2.5, 5.0, 7.5])


def test_summary_and_agreement(scan):
    dicom_dir, pred_dir, truth_dir = scan
    result = ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, label_names=["body", "bone"])
    s = result.summary.set_index(["roi", "metric"])
    dice_bone = s.loc[("bone", "dice")]
    assert dice_bone["n"] == 2 and dice_bone["n_undefined"] == 2
    assert dice_bone["mean"] == pytest.approx(0.5)
    assert dice_bone["std"] == pytest.approx(math.sqrt(0.5))
    assert dice_bone["median"] == pytest.approx(0.5)
    dice_body = s.loc[("body", "dice")]
    assert dice_body["n"] == 4 and dice_body["median"] == 1.0
    assert dice_body["mean"] == pytest.approx((3 + 2 / 3) / 4)
    a = result.agreement.set_index("roi")
    assert a.loc["body", "n"] == 4 and a.loc["body", "mean_difference"] == 0.0
    assert a.loc["bone", "n"] == 2
    assert a.loc["bone", "mean_difference"] == pytest.approx(-16 * PIXEL_MM2 / 2)


def test_volume_metrics_when_slices_form_a_volume(scan):
    dicom_dir, pred_dir, truth_dir = scan
    result = ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, label_names="body,bone")
    v = result.volume_metrics.set_index("roi")
    assert v.loc["body", "dice"] == pytest.approx(2 * (3 * 36 + 24) / (2 * 144))
    assert v.loc["bone", "dice"] == pytest.approx(2 * 16 / 48)
    assert v.loc["bone", "truth_volume_mm3"] == pytest.approx(32 * PIXEL_MM2 * THICKNESS)
    assert v.loc["body", "slice_spacing_mm"] == pytest.approx(THICKNESS)
    # the shifted slice: its left edge is 1.2 mm from the truth's boundary in 3D too
    assert v.loc["body", "hd"] == pytest.approx(1.2)


def test_volume_metrics_need_every_slice_labelled(scan, caplog):
    dicom_dir, pred_dir, truth_dir = scan
    (truth_dir / "case_04.npy").unlink()
    with caplog.at_level(logging.INFO):
        result = ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, label_names="body,bone")
    assert result.volume_metrics is None
    assert "not every slice" in caplog.text
    assert len(result.metrics) == 6


def test_label_names_inferred(scan):
    dicom_dir, pred_dir, truth_dir = scan
    case = ev.load_case(dicom_dir, pred_dir, truth_dir)
    assert case.label_names == ("ROI 1", "ROI 2")
    text = case.summary()
    assert "4 slice(s) of 24 x 24 pixels, CT" in text and "pixel spacing 0.8 x 0.6 mm" in text
    assert "a volume: 4 slices 2.5 mm apart" in text and "manual label maps for 4 of 4 slices" in text
    assert case.is_volume and case.volume_reason == ""
    assert case.volume_spacing_mm() == pytest.approx((THICKNESS, *SPACING))
    assert case.has_truth.all() and case.prediction.dtype == np.uint8


def test_several_series_in_one_folder(tmp_path):
    make_scan(tmp_path, names=["a_1", "a_2", "a_3", "a_4"])
    make_scan(tmp_path, names=["b_1", "b_2", "b_3", "b_4"])
    dicom_dir = tmp_path / "dicoms"
    cases = ev.load_cases(dicom_dir, tmp_path / "pred", tmp_path / "truth", "body,bone")
    assert len(cases) == 2
    result = evaluation.evaluate_cases(cases)
    assert result.metrics["series_uid"].nunique() == 2
    assert len(result.metrics) == 16 and len(result.volume_metrics) == 4
    with pytest.raises(CtsegDataError, match="holds 2 series"):
        ev.load_case(dicom_dir, tmp_path / "pred", tmp_path / "truth", "body,bone")


def test_a_series_with_manual_labels_but_no_predictions_is_skipped_with_one_note(tmp_path, caplog):
    make_scan(tmp_path, names=["a_1", "a_2", "a_3", "a_4"], series_uid="1.2.826.0.1.1")
    make_scan(tmp_path, names=["b_1", "b_2", "b_3", "b_4"], series_uid="1.2.826.0.1.2")
    for k in range(1, 5):  # series b was not segmented
        (tmp_path / "pred" / f"b_{k}.png").unlink()
    with caplog.at_level(logging.WARNING):
        result = ev.evaluate_folders(tmp_path / "pred", tmp_path / "truth", tmp_path / "dicoms", "body,bone")
    assert set(result.metrics["series_uid"]) == {"1.2.826.0.1.1"} and len(result.metrics) == 8
    notes = [r.getMessage() for r in caplog.records if "left out of the evaluation" in r.getMessage()]
    assert notes == result.skipped and len(notes) == 1
    assert notes[0] == (
        "series 1.2.826.0.1.2 ('ctseg series', 4 slice(s), e.g. b_1.dcm): 4 manual label map(s) but "
        "no predicted one; left out of the evaluation (segment that series too to evaluate it)"
    )


def test_series_with_predictions_only_or_on_other_slices_are_skipped_too(tmp_path):
    make_scan(tmp_path, names=["a_1", "a_2", "a_3", "a_4"], series_uid="1.2.826.0.1.1")
    make_scan(tmp_path, names=["b_1", "b_2", "b_3", "b_4"], series_uid="1.2.826.0.1.2")
    make_scan(tmp_path, names=["c_1", "c_2", "c_3", "c_4"], series_uid="1.2.826.0.1.3")
    for k in range(1, 5):
        (tmp_path / "truth" / f"b_{k}.npy").unlink()
    (tmp_path / "pred" / "c_1.png").unlink()
    for k in range(2, 5):
        (tmp_path / "truth" / f"c_{k}.npy").unlink()
    result = ev.evaluate_folders(tmp_path / "pred", tmp_path / "truth", tmp_path / "dicoms", "body,bone")
    assert set(result.metrics["series_uid"]) == {"1.2.826.0.1.1"}
    assert sorted(result.skipped) == [
        "series 1.2.826.0.1.2 ('ctseg series', 4 slice(s), e.g. b_1.dcm): 4 predicted label map(s) but no manual "
        "one; left out of the evaluation",
        "series 1.2.826.0.1.3 ('ctseg series', 4 slice(s), e.g. c_1.dcm): no slice has both a predicted and a "
        "manual label map (3 predicted, 1 manual); left out of the evaluation",
    ]


def test_evaluation_fails_only_when_no_series_can_be_evaluated(tmp_path):
    make_scan(tmp_path, names=["a_1", "a_2", "a_3", "a_4"], series_uid="1.2.826.0.1.1")
    make_scan(tmp_path, names=["b_1", "b_2", "b_3", "b_4"], series_uid="1.2.826.0.1.2")
    for name in ["a_2", "a_3", "a_4", "b_1", "b_2", "b_3", "b_4"]:
        (tmp_path / "pred" / f"{name}.png").unlink()
    (tmp_path / "truth" / "a_1.npy").unlink()  # the one prediction left has no manual label map
    with pytest.raises(
        CtsegDataError,
        match=r"dicoms: no slice of series 1.2.826.0.1.1, 1.2.826.0.1.2 has both a "
        r"predicted and a manual label map",
    ):
        ev.evaluate_folders(tmp_path / "pred", tmp_path / "truth", tmp_path / "dicoms", "body,bone")


def test_manual_labels_without_prediction_are_named_in_the_warning(scan, caplog):
    dicom_dir, pred_dir, truth_dir = scan
    (pred_dir / "case_04.png").unlink()
    with caplog.at_level(logging.WARNING):
        ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, "body,bone")
    assert "1 slice(s) with a manual label map have no prediction and are left out: case_04.npy" in caplog.text


def test_many_manual_labels_without_prediction_are_named_a_few_then_counted(tmp_path, caplog):
    names = [f"im_{k:02d}" for k in range(9)]
    dicom_dir, pred_dir, truth_dir = make_scan(tmp_path, names=names)
    for name in names[1:]:
        (pred_dir / f"{name}.png").unlink()
    with caplog.at_level(logging.WARNING):
        ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, "body,bone")
    assert (
        "8 slice(s) with a manual label map have no prediction and are left out: im_01.npy, im_02.npy, "
        "im_03.npy, im_04.npy, im_05.npy and 3 more"
    ) in caplog.text


def test_label_names_with_background_first_name_label_1(scan):
    dicom_dir, pred_dir, truth_dir = scan
    case = ev.load_case(dicom_dir, pred_dir, truth_dir, "Background,body,bone")
    assert case.label_names == ("body", "bone")
    result = ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, ["background", "body", "bone"])
    assert list(result.metrics["roi"].unique()) == ["body", "bone"]


def test_too_few_names_for_the_label_values_says_how_many_were_given(scan):
    dicom_dir, pred_dir, truth_dir = scan
    with pytest.raises(
        CtsegDataError,
        match=r"label values 2 are outside 0..1 .*; 1 ROI name\(s\) \['body'\] given "
        r"for label values up to 2: give one name per ROI, label 1 first",
    ):
        ev.load_case(dicom_dir, pred_dir, truth_dir, "body")


def test_write_evaluation_files_and_no_silent_overwrite(scan, tmp_path):
    dicom_dir, pred_dir, truth_dir = scan
    result = ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, label_names="body,bone")
    out = tmp_path / "out"
    written = ev.write_evaluation(result, out)
    without_probabilities = set(ev.OUTPUT_FILES.values()) - {"roc_auc.csv", "calibration.csv"}
    assert sorted(p.name for p in written) == sorted(without_probabilities)
    table = pd.read_csv(out / "metrics.csv")
    assert len(table) == 8 and set(table["roi"]) == {"body", "bone"}
    assert (out / "bland_altman.png").stat().st_size > 1000
    with pytest.raises(CtsegDataError, match=r"bland_altman.png: exists already .* allow overwriting"):
        ev.write_evaluation(result, out)
    assert ev.write_evaluation(result, out, overwrite=True)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CtsegDataError, match="is a file, not a folder"):
        ev.write_evaluation(result, tmp_path / "afile")


# ------------------------------------------------------------------ probability maps


def write_probability_file(path, names=NAMES, classes=("background", "body", "bone"), shape=(24, 24), flip=()):
    """probabilities.h5 for make_scan's slices: the manual labels at 0.9; on the slices in ``flip`` each
    class gets the probabilities of the class before it (ROI 1 those of the background)."""
    from ctseg_helpers.io.probabilities import ProbabilityMaps, write_probabilities

    truth = np.zeros((len(names), *shape), np.uint8)
    truth[:, 4:10, 4:10] = 1
    truth[1:3, 14:18, 14:18] = 2
    proba = np.full((*truth.shape, len(classes)), 0.1 / (len(classes) - 1), np.float32)
    for value in range(len(classes)):
        proba[truth == value, value] = 0.9
    for k in flip:
        proba[k] = np.roll(proba[k], 1, axis=-1)
    maps = ProbabilityMaps(
        name="series_1",
        proba=proba,
        class_names=classes,
        files=[f"{n}.dcm" for n in names],
        stems=list(names),
        pixel_spacing_mm=np.tile(SPACING, (len(names), 1)),
        positions_mm=np.arange(len(names)) * THICKNESS,
    )
    return write_probabilities(path, [maps])


def test_probabilities_give_roc_auc_and_calibration_tables(scan, tmp_path):
    dicom_dir, pred_dir, truth_dir = scan
    h5 = write_probability_file(tmp_path / "probabilities.h5")
    result = ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, label_names="body,bone", probabilities=h5)
    pooled = result.roc_auc[result.roc_auc["series_uid"] == "all"].set_index("roi")
    assert pooled.loc["body", "roc_auc"] == 1.0 and pooled.loc["bone", "roc_auc"] == 1.0
    assert pooled.loc["body", "n_slices"] == 4 and pooled.loc["body", "n_pixels"] == 4 * 24 * 24
    assert pooled.loc["body", "n_foreground"] == 4 * 36 and pooled.loc["bone", "n_foreground"] == 2 * 16
    assert len(result.roc_auc) == 4  # one series and the pooled rows
    # 0.9 on the ROI's pixels (all of them the ROI) and 0.05 elsewhere (none): off by 0.1 and 0.05
    body = 4 * 36
    assert pooled.loc["body", "ece"] == pytest.approx((body * 0.1 + (4 * 576 - body) * 0.05) / (4 * 576), abs=2e-3)
    out = tmp_path / "out"
    written = {p.name for p in ev.write_evaluation(result, out)}
    assert {"roc_auc.csv", "calibration.csv"} <= written
    assert len(pd.read_csv(out / "calibration.csv")) == 2 * 10
    # evaluated again without probabilities, with overwrite: the earlier tables go
    plain = ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, label_names="body,bone")
    assert plain.roc_auc is None and plain.calibration is None
    ev.write_evaluation(plain, out, overwrite=True)
    assert not (out / "roc_auc.csv").exists() and not (out / "calibration.csv").exists()


def test_probabilities_are_paired_by_stem_and_reversed_maps_lower_the_auc(scan, tmp_path):
    dicom_dir, pred_dir, truth_dir = scan
    h5 = write_probability_file(tmp_path / "p.h5", names=NAMES[:2], flip=(1,))  # slices 3 and 4 have none
    case = ev.load_case(dicom_dir, pred_dir, truth_dir, "body,bone", probabilities=h5)
    assert case.has_probabilities.tolist() == [True, True, False, False]
    assert case.probabilities.dtype == np.uint8 and case.probabilities.shape == (4, 24, 24, 3)
    result = ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, label_names="body,bone", probabilities=h5)
    body = result.roc_auc.set_index(["series_uid", "roi"]).loc[("all", "body")]
    assert body["n_slices"] == 2 and 0.0 < body["roc_auc"] < 1.0


def test_probability_files_that_do_not_belong_are_refused(scan, tmp_path):
    dicom_dir, pred_dir, truth_dir = scan
    others = write_probability_file(tmp_path / "others.h5", names=["x_1", "x_2"])
    with pytest.raises(
        CtsegDataError, match=r"others.h5: none of its 2 probability maps belongs to a slice of .*e.g. x_1"
    ):
        ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, label_names="body,bone", probabilities=others)
    two_classes = write_probability_file(tmp_path / "two.h5", classes=("background", "body"))
    with pytest.raises(
        CtsegDataError, match=r"two.h5: series_1 holds 2 classes \['background', 'body'\] but the label"
    ):
        ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, label_names="body,bone", probabilities=two_classes)
    small = write_probability_file(tmp_path / "small.h5", shape=(12, 24))
    with pytest.raises(
        CtsegDataError, match=r"small.h5: the probabilities of case_01 are 12x24 but its DICOM slice is 24x24"
    ):
        ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, label_names="body,bone", probabilities=small)
    with pytest.raises(CtsegDataError, match=r"missing.h5: probability file not found"):
        ev.load_case(dicom_dir, pred_dir, truth_dir, probabilities=tmp_path / "missing.h5")


# ------------------------------------------------------------------ areas along the stack


def test_slice_areas_flags_the_missed_slice(scan):
    dicom_dir, pred_dir, truth_dir = scan
    case = ev.load_case(dicom_dir, pred_dir, truth_dir, "body,bone")
    areas = evaluation.slice_areas(case)
    assert len(areas) == 2 * 2 * 4
    pred_bone = areas[(areas["source"] == "prediction") & (areas["roi"] == "bone")]
    np.testing.assert_allclose(pred_bone["area_mm2"], [0, 16 * PIXEL_MM2, 0, 0])
    assert pred_bone["jump"].tolist() == [False, True, True, False]
    truth_body = areas[(areas["source"] == "truth") & (areas["roi"] == "body")]
    assert not truth_body["jump"].any()
    only_pred = ev.load_case(dicom_dir, pred_dir, None, "body,bone")
    assert set(evaluation.slice_areas(only_pred)["source"]) == {"prediction"}
    no_labels = ev.load_case(dicom_dir, None, None, "body,bone")
    with pytest.raises(CtsegDataError, match="areas need label maps"):
        evaluation.slice_areas(no_labels)


# ------------------------------------------------------------------ error messages


def test_label_folder_errors(tmp_path):
    with pytest.raises(CtsegDataError, match="no such label folder"):
        ev.find_label_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(CtsegDataError, match="no label files"):
        ev.find_label_files(tmp_path / "empty")
    twice = tmp_path / "twice"
    twice.mkdir()
    np.save(twice / "a.npy", np.zeros((2, 2), np.uint8))
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(twice / "a.png")
    with pytest.raises(CtsegDataError, match="two label files for slice 'a'"):
        ev.find_label_files(twice)


def test_label_name_errors():
    assert ev.parse_label_names(None) is None
    assert ev.parse_label_names(" a , b ") == ("a", "b")
    with pytest.raises(CtsegDataError, match="ROI names must not be empty"):
        ev.parse_label_names("a,,b")
    with pytest.raises(CtsegDataError, match="ROI names must be distinct"):
        ev.parse_label_names(["a", "a"])


def test_pairing_errors(scan, tmp_path, caplog):
    dicom_dir, pred_dir, truth_dir = scan
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "unrelated.npy", np.zeros((24, 24), np.uint8))
    with pytest.raises(CtsegDataError, match="none of the manual label files is named like a DICOM file"):
        ev.load_case(dicom_dir, pred_dir, other)
    with pytest.raises(CtsegDataError, match="none of the predicted label files"):
        ev.load_cases(dicom_dir, other, truth_dir)
    np.save(truth_dir / "stray.npy", np.zeros((24, 24), np.uint8))
    with caplog.at_level(logging.WARNING):
        case = ev.load_case(dicom_dir, pred_dir, truth_dir, "body,bone")
    assert "stray.npy" in caplog.text and [p.name for p in case.unmatched] == ["stray.npy"]
    np.save(truth_dir / "case_02.npy", np.zeros((20, 24), np.uint8))
    with pytest.raises(CtsegDataError, match="case_02.npy: manual label map is 20x24 but its DICOM slice is 24x24"):
        ev.load_case(dicom_dir, pred_dir, truth_dir, "body,bone")
    np.save(truth_dir / "case_02.npy", np.full((24, 24), 3, np.uint8))
    with pytest.raises(CtsegDataError, match="case_02"):
        ev.load_case(dicom_dir, pred_dir, truth_dir, "body,bone")


def test_evaluation_errors(scan, tmp_path):
    dicom_dir, pred_dir, truth_dir = scan
    case = ev.load_case(dicom_dir, pred_dir, None, "body,bone")
    with pytest.raises(CtsegDataError, match="needs both predicted and manual label maps"):
        evaluation.evaluate_case(case)
    with pytest.raises(CtsegDataError, match="nothing to evaluate"):
        evaluation.evaluate_cases([])
    one = ev.load_case(dicom_dir, pred_dir, truth_dir, "body,bone")
    renamed = ev.load_case(dicom_dir, pred_dir, truth_dir, "a,b")
    with pytest.raises(CtsegDataError, match="must use the same ROI names"):
        evaluation.evaluate_cases([one, renamed])
    for name in NAMES[1:]:
        (truth_dir / f"{name}.npy").unlink()
    (pred_dir / f"{NAMES[0]}.png").unlink()
    with pytest.raises(CtsegDataError, match="no slice of series .* has both a predicted and a manual"):
        ev.evaluate_folders(pred_dir, truth_dir, dicom_dir, "body,bone")


def test_no_dicom_images_in_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "readme.txt").write_text("not dicom")
    (tmp_path / "t").mkdir()
    np.save(tmp_path / "t" / "x.npy", np.zeros((2, 2), np.uint8))
    with pytest.raises(CtsegDataError, match="no DICOM images in the folder"):
        ev.load_cases(tmp_path / "d", None, tmp_path / "t")


@pytest.mark.realdata
def test_sunnybrook_truth_against_itself_and_a_shifted_copy(sunnybrook, tmp_path):
    split = sunnybrook / "lv_myo" / "train"
    result = ev.evaluate_folders(split / "labels", split / "labels", split / "dicoms", "blood pool,myocardium")
    assert result.metrics["file"].nunique() == 28
    assert (result.metrics["dice"].dropna() == 1.0).all()
    assert (result.metrics["hd95"].dropna() == 0.0).all()
    assert result.volume_metrics is not None and result.volume_metrics["series_uid"].nunique() == 3
    # one pixel shift along the columns: every HD is one column spacing (1.29-1.37 mm)
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    for path in sorted((split / "labels").glob("*.png")):
        Image.fromarray(np.roll(np.array(Image.open(path)), 1, axis=1)).save(shifted / path.name)
    result = ev.evaluate_folders(shifted, split / "labels", split / "dicoms", "blood pool,myocardium")
    assert result.metrics["hd"].between(1.28, 1.38).all()
    assert (result.metrics["dice"] < 1.0).all() and (result.metrics["dice"] > 0.7).all()


@pytest.mark.realdata
def test_sunnybrook_cine_scan_is_not_a_volume(sunnybrook):
    case = ev.load_case(sunnybrook / "scans" / "SCD0000101")
    assert not case.is_volume
    assert case.volume_reason == "the series is a cine series (12 slice positions x 20 phases), not one 3D stack"
    assert "not a volume: the series is a cine series" in case.summary()
    groups = case.position_groups()
    assert groups.max() == 11 and np.bincount(groups).tolist() == [20] * 12


def test_slices_to_check_in_a_run_folder_on_disk(tmp_path):
    table = pd.DataFrame(
        {
            "file": ["IM_1.dcm", "IM_2.dcm", "IM_3.dcm", ""],
            "slice_position_mm": [0.0, 5.0, 10.0, np.nan],
            "LV": [100.0, 20.0, 100.0, 73.3],
            "uncertainty_entropy": [0.1, 0.2, 0.05, np.nan],
        },
        index=pd.Index(["slice number 1", "slice number 2", "slice number 3", "mean"], name="slice (areas in mm2)"),
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    table.to_csv(run_dir / "areas.csv")
    check = ev.slices_to_check_in_run(run_dir, "LV", n=2)
    assert check["file"].tolist() == ["IM_2.dcm", "IM_3.dcm"]
    assert check["reasons"].iloc[0] == "entropy 0.20; LV area jumps 100 -> 20 mm²"
    assert ev.slices_to_check_in_run(run_dir / "areas.csv", ["LV"], n=1)["file"].tolist() == ["IM_2.dcm"]
    with pytest.raises(CtsegDataError, match=r"areas.csv: ROI\(s\) \['RV'\] are not columns of the area table"):
        ev.slices_to_check_in_run(run_dir, "RV")
    with pytest.raises(CtsegDataError, match=r"nowhere/areas.csv: no area table there; give the areas.csv of a"):
        ev.slices_to_check_in_run(tmp_path / "nowhere" / "areas.csv", "LV")


def test_slices_to_check_of_label_maps_no_run_wrote_is_empty_when_missing_is_ok(tmp_path):
    from ctseg_helpers.workflows.evaluate import slices_to_check_in_run

    empty = slices_to_check_in_run(tmp_path, ["LV"], missing_ok=True)
    assert empty.empty and list(empty.columns) == ["file", "slice_index", "score", "jumps", "reasons"]
    with pytest.raises(CtsegDataError, match="areas.csv: no area table there"):
        slices_to_check_in_run(tmp_path, ["LV"])
