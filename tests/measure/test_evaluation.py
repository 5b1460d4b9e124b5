"""Evaluation from arrays: a scan held in memory (a Case), areas along the stack, abrupt jumps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.measure.evaluation import Case, area_jumps, slice_areas


def test_area_jumps_exact():
    assert area_jumps([100.0, 105.0, 20.0, 100.0]).tolist() == [False, False, True, True]
    assert area_jumps([0.0, 0.0, 50.0, 60.0, 0.0]).tolist() == [False, False, True, False, True]
    # a few pixels' change in a tiny ROI stays below min_fraction of the largest area
    assert not area_jumps([1000.0, 900.0, 2.0, 5.0, 2.0]).tolist()[3:].count(True)
    assert area_jumps([7.0]).tolist() == [False]
    with pytest.raises(CtsegDataError, match="rel_threshold must be > 0"):
        area_jumps([1.0, 2.0], rel_threshold=0)
    with pytest.raises(CtsegDataError, match="min_fraction must be >= 0"):
        area_jumps([1.0, 2.0], min_fraction=-1)


def _fake_case(**series_fields):
    defaults = dict(
        images=np.zeros((4, 2, 2), np.float32),
        files=[Path(f"/scan/s{i}.dcm") for i in range(4)],
        positions_mm=np.array([0.0, 0.0, 5.0, 5.0]),
        pixel_spacing_mm=np.ones((4, 2)),
        n_positions=2,
        n_phases=2,
        is_volume=False,
        slice_spacing_mm=None,
        series_uid="1.2.3",
        modality="MR",
    )
    defaults.update(series_fields)
    series = SimpleNamespace(**defaults)
    labels = np.zeros((4, 2, 2), np.uint8)
    labels[:, 0, 0] = 1
    return Case(
        series=series,
        stems=[f"s{i}" for i in range(4)],
        label_names=("roi",),
        prediction=labels,
        truth=None,
        has_prediction=np.ones(4, bool),
        has_truth=np.zeros(4, bool),
    )


def test_cine_series_is_not_a_volume_and_groups_by_position():
    case = _fake_case()
    assert "cine series (2 slice positions x 2 phases)" in case.volume_reason
    assert case.position_groups().tolist() == [0, 0, 1, 1]
    areas = slice_areas(case)
    assert areas["group"].tolist() == [0, 0, 1, 1]
    with pytest.raises(CtsegDataError, match="do not form a volume: the series is a cine series"):
        case.volume_spacing_mm()
    single = _fake_case(positions_mm=np.array([0.0]), n_positions=1, n_phases=1)
    assert single.volume_reason == "a single slice has no volume"
    stack = _fake_case(positions_mm=np.array([0.0, 5.0, 10.0, 15.0]), n_positions=4, n_phases=1)
    assert stack.position_groups().tolist() == [0, 0, 0, 0]
    uneven = _fake_case(positions_mm=np.array([0.0, 5.0, 10.0, 20.0]), n_positions=4, n_phases=1)
    assert "not equally spaced" in uneven.volume_reason


def test_spacing_errors():
    case = _fake_case(pixel_spacing_mm=np.full((4, 2), np.nan))
    with pytest.raises(CtsegDataError, match="s0.dcm: no PixelSpacing"):
        case.slice_spacing_mm(0)
    mixed = _fake_case(
        is_volume=True, slice_spacing_mm=5.0, pixel_spacing_mm=np.array([[1, 1], [1, 1], [2, 2], [1, 1]], float)
    )
    with pytest.raises(CtsegDataError, match="different pixel spacings"):
        mixed.volume_spacing_mm()


# --------------------------------------------------------------------------- probabilities


def _proba_case(uid, truth, proba, has_probabilities=None):
    k = len(truth)
    series = SimpleNamespace(files=[Path(f"/scan/{uid}_{i}.dcm") for i in range(k)], series_uid=uid)
    return Case(
        series=series,
        stems=[f"{uid}_{i}" for i in range(k)],
        label_names=("LV", "RV"),
        prediction=truth,
        truth=truth,
        has_prediction=np.ones(k, bool),
        has_truth=np.ones(k, bool),
        probabilities=proba,
        has_probabilities=has_probabilities,
    )


def _one_hot(labels, sure=1.0):
    proba = np.zeros((*labels.shape, 3), np.float32)
    proba[...] = (1 - sure) / 2
    for value in range(3):
        proba[labels == value, value] = sure
    return proba


def test_probability_metrics_exact_per_series_and_pooled():
    from ctseg_helpers.measure.evaluation import probability_metrics

    truth = np.zeros((2, 4, 4), np.uint8)
    truth[:, :2, :2] = 1
    truth[0, 3, 3] = 2
    perfect = _proba_case("1.1", truth, _one_hot(truth))
    # the second series ranks its LV backwards: LV pixels 0.2, the others 0.6 (stored as uint8)
    backwards = np.zeros((2, 4, 4, 3), np.uint8)
    backwards[..., 1] = np.where(truth == 1, 51, 153)
    inverted = _proba_case("2.2", truth, backwards)
    table, calibration = probability_metrics([perfect, inverted])
    assert table["series_uid"].tolist() == ["1.1", "1.1", "2.2", "2.2", "all", "all"]
    assert table["roi"].tolist() == ["LV", "RV"] * 3
    lv = table[table["roi"] == "LV"].set_index("series_uid")
    assert lv.loc["1.1", "roc_auc"] == 1.0 and lv.loc["2.2", "roc_auc"] == 0.0
    # pooled: LV pixels at 1.0 beat all 48 others, those at 0.2 beat the 24 at 0.0: (8 x 48 + 8 x 24) / (16 x 48)
    assert lv.loc["all", "roc_auc"] == pytest.approx(0.75)
    assert lv.loc["all", "n_pixels"] == 64 and lv.loc["all", "n_foreground"] == 16 and lv.loc["all", "n_slices"] == 4
    # calibration: the one-hot maps are calibrated; LV pixels at 0.2 are all LV (off by 0.8), others at 0.6 none
    assert lv.loc["1.1", "ece"] == 0.0
    assert lv.loc["2.2", "ece"] == pytest.approx((8 * 0.8 + 24 * 0.6) / 32)
    lv_bins = calibration[calibration["roi"] == "LV"]
    assert len(lv_bins) == 10 and lv_bins["n_pixels"].sum() == 64
    top = lv_bins.iloc[-1]
    assert top["bin_low"] == pytest.approx(0.9) and top["observed"] == 1.0 and top["n_pixels"] == 8
    rv = table[table["roi"] == "RV"].set_index("series_uid")
    assert rv.loc["1.1", "roc_auc"] == 1.0 and rv.loc["all", "n_foreground"] == 2


def test_probability_metrics_use_only_slices_with_probabilities_and_say_when_undefined():
    from ctseg_helpers.measure.evaluation import probability_metrics

    truth = np.zeros((2, 4, 4), np.uint8)
    truth[:, 1:3, 1:3] = 1
    case = _proba_case("1.1", truth, _one_hot(truth, sure=0.8), has_probabilities=np.array([True, False]))
    table, _ = probability_metrics([case])
    lv, rv = table.iloc[0], table.iloc[1]
    assert lv["n_slices"] == 1 and lv["n_pixels"] == 16 and lv["roc_auc"] == 1.0
    assert np.isnan(rv["roc_auc"]) and rv["n_foreground"] == 0  # no RV in truth: AUC undefined


def test_probability_metrics_refuse_what_does_not_fit():
    from ctseg_helpers.measure.evaluation import probability_metrics

    truth = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(CtsegDataError, match="ROC AUC needs at least one series with probabilities; none was given"):
        probability_metrics([])
    with pytest.raises(
        CtsegDataError, match=r"/scan: probabilities of shape \(2, 4, 4, 2\) do not fit 2 slices of 4 x 4"
    ):
        probability_metrics([_proba_case("1.1", truth, np.zeros((2, 4, 4, 2), np.float32))])
    with pytest.raises(CtsegDataError, match="ROC AUC needs manual label maps and probabilities for every series"):
        probability_metrics([_proba_case("1.1", truth, None)])
