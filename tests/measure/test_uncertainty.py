"""Per-slice uncertainty with exact answers, stand-in models that agree or not, and the check list."""

import numpy as np
import pandas as pd
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.measure.uncertainty import (
    normalised_entropy,
    roi_region,
    slice_uncertainty,
    slices_to_check,
    view_disagreement,
)
from ctseg_helpers.segment.ensemble import averaged_predict_fn
from ctseg_helpers.segment.segmenter import Segmenter


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_entropy_of_a_one_hot_probability_is_0_and_of_a_uniform_one_is_1(classes):
    one_hot = np.eye(classes, dtype=np.float32)
    np.testing.assert_array_equal(normalised_entropy(one_hot), 0.0)
    uniform = np.full((4, 4, classes), 1.0 / classes)
    np.testing.assert_allclose(normalised_entropy(uniform), 1.0, atol=1e-6)


def test_entropy_of_two_classes_is_the_binary_entropy_in_bits():
    assert normalised_entropy([0.25, 0.75]) == pytest.approx(-(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75)))


def test_entropy_of_quantised_probabilities_is_taken_after_normalising_their_sum():
    # 3 classes stored as 85/255 each sum to 1; 86 + 85 + 85 sums to 256/255: still almost uniform
    assert normalised_entropy(np.array([86, 85, 85]) / 255.0) == pytest.approx(1.0, abs=1e-4)
    assert np.isnan(normalised_entropy([0.0, 0.0]))


def test_entropy_refuses_what_are_no_probabilities():
    with pytest.raises(CtsegDataError, match=r"class probabilities on its last axis \(C >= 2\); got shape \(3, 1\)"):
        normalised_entropy(np.ones((3, 1)))
    with pytest.raises(CtsegDataError, match="integer dtype uint8; divide quantised probabilities by their scale"):
        normalised_entropy(np.zeros((2, 3), np.uint8))
    with pytest.raises(CtsegDataError, match="probabilities must not be negative; the smallest is -0.5"):
        normalised_entropy([-0.5, 1.5])


def test_view_disagreement_is_the_share_of_views_off_the_consensus():
    roi, background = [0.1, 0.9], [0.8, 0.2]
    views = np.array([[roi, roi, roi], [roi, background, roi], [roi, background, background]])  # (V=3, 3 px, C)
    np.testing.assert_allclose(view_disagreement(views), [0.0, 1 / 3, 1 / 3])
    with pytest.raises(CtsegDataError, match="disagreement needs at least 2 probability sets .*; got 1"):
        view_disagreement([views[0]])
    with pytest.raises(CtsegDataError, match="the probability sets must have one shape"):
        view_disagreement([np.zeros((2, 2)), np.zeros((3, 2))])


def test_the_roi_region_is_the_rois_and_a_one_pixel_band_slice_by_slice():
    labels = np.zeros((2, 6, 6), np.uint8)
    labels[0, 2:4, 2:4] = 1
    labels[1, 0, 0] = 2  # at the corner: the band stops at the edge
    region = roi_region(labels)
    assert region[0].sum() == 16 and region[0, 1:5, 1:5].all()
    assert region[1].sum() == 4 and region[1, :2, :2].all()
    assert roi_region(labels, band_px=0).sum() == 5
    assert roi_region(labels, band_px=2)[0].sum() == 36
    for wrong in (-1, 1.5, True):
        with pytest.raises(CtsegSettingsError, match="band_px must be a whole number of pixels >= 0"):
            roi_region(labels, band_px=wrong)


def test_slice_uncertainty_averages_over_the_region_and_is_nan_without_rois():
    proba = np.zeros((3, 5, 5, 2), np.float32)
    proba[..., 0] = 1.0  # sure background everywhere ...
    labels = np.zeros((3, 5, 5), np.uint8)
    labels[0, 2, 2] = 1
    proba[0, 2, 2] = [0.5, 0.5]  # ... except a 50/50 ROI pixel: entropy 1 on 1 of the 9 region pixels
    labels[1, 2, 2] = 1
    proba[1, 2, 2] = [0.0, 1.0]
    scores = slice_uncertainty(proba, labels)
    assert list(scores.columns) == ["uncertainty_entropy"]
    np.testing.assert_allclose(scores["uncertainty_entropy"].to_numpy()[:2], [1 / 9, 0.0], atol=1e-6)
    assert np.isnan(scores["uncertainty_entropy"].iloc[2])
    disagreement = np.zeros((3, 5, 5), np.float32)
    disagreement[1, 2, 2] = 0.5
    with_views = slice_uncertainty(proba, labels, disagreement=disagreement)
    np.testing.assert_allclose(with_views["uncertainty_disagreement"].to_numpy()[:2], [0.0, 0.5 / 9])
    views = np.stack([proba, proba])  # (V, K, M, N, C): views that agree
    assert (slice_uncertainty(proba, labels, disagreement=views)["uncertainty_disagreement"].iloc[:2] == 0).all()


def test_slice_uncertainty_refuses_arrays_that_do_not_fit():
    with pytest.raises(CtsegDataError, match=r"proba must be \(K, M, N, C\) and labels \(K, M, N\)"):
        slice_uncertainty(np.zeros((2, 4, 4, 2)), np.zeros((2, 4, 5)))
    with pytest.raises(CtsegDataError, match=r"disagreement must have the shape of labels \(2, 4, 4\); got \(2, 4\)"):
        slice_uncertainty(np.zeros((2, 4, 4, 2)), np.zeros((2, 4, 4)), disagreement=np.zeros((2, 4)))


def test_uncertainty_is_higher_where_two_stand_in_models_disagree():
    """Two models agree on slice 0 (dark) and disagree on slice 1 (bright); both still call it ROI."""

    def sure(batch):  # ROI everywhere
        return np.broadcast_to(np.array([0.1, 0.9], np.float32), (*batch.shape[:3], 2))

    def doubts_bright_pixels(batch):  # ROI on dark pixels, background on bright ones
        roi = np.where(batch[..., 0] < 0.5, 0.9, 0.4).astype(np.float32)
        return np.stack([1 - roi, roi], axis=-1)

    segmenter = Segmenter(averaged_predict_fn([sure, doubts_bright_pixels]), input_shape=16, num_classes=2)
    assert segmenter.n_views == 2
    images = np.stack([np.full((20, 20), 0.2), np.full((20, 20), 0.8)]).astype(np.float32)
    prediction = segmenter.predict(images, views=True)
    assert (prediction.labels == 1).all()  # consensus: 0.9 and 0.65
    scores = slice_uncertainty(prediction.proba, prediction.labels, disagreement=prediction.disagreement)
    entropy, disagreement = scores["uncertainty_entropy"], scores["uncertainty_disagreement"]
    assert entropy[1] > entropy[0]
    assert disagreement[0] == 0.0 and disagreement[1] == pytest.approx(0.5)
    # the same from the members' probabilities given as views
    views = np.stack([np.stack([sure(images[..., None])[k] for k in range(2)]), np.zeros((2, 20, 20, 2))])
    views[1] = doubts_bright_pixels(images[..., None])
    np.testing.assert_allclose(slice_uncertainty(prediction.proba, prediction.labels, disagreement=views), scores)


def area_table(areas_lv, entropy=None, positions=None, series=None):
    k = len(areas_lv)
    table = pd.DataFrame(
        {
            "file": [f"IM_{i + 1:04d}.dcm" for i in range(k)],
            "slice_position_mm": np.arange(k) * 5.0 if positions is None else positions,
            "LV": np.asarray(areas_lv, dtype=float),
        },
        index=[f"slice number {i + 1}" for i in range(k)],
    )
    if series is not None:
        table.insert(0, "series", series)
    if entropy is not None:
        table["uncertainty_entropy"] = entropy
    summary = pd.DataFrame({"file": ["", ""], "LV": [table["LV"].mean(), table["LV"].std()]}, index=["mean", "std"])
    return pd.concat([table, summary])


def test_check_list_ranks_area_jumps_and_uncertainty_with_reasons():
    table = area_table([100, 104, 20, 98, 102, 101], entropy=[0.05, 0.1, 0.2, 0.3, 0.6, np.nan])
    check = slices_to_check(table, ["LV"], n=3)
    # slice 3 (20 mm² between 104 and 98) jumps down and slice 4 jumps back: 0.5 each plus entropy
    assert check["file"].tolist() == ["IM_0004.dcm", "IM_0003.dcm", "IM_0005.dcm"]
    assert check.index.tolist() == ["slice number 4", "slice number 3", "slice number 5"]
    np.testing.assert_allclose(check["score"], [0.8, 0.7, 0.6])
    assert check["slice_index"].tolist() == [3, 2, 4]
    assert check["jumps"].tolist() == ["LV", "LV", ""]
    assert check["reasons"].tolist() == [
        "entropy 0.30; LV area jumps 20 -> 98 mm²",
        "entropy 0.20; LV area jumps 104 -> 20 mm²",
        "entropy 0.60",
    ]
    assert len(slices_to_check(table, ["LV"])) == 5  # slice 6: no score (NaN entropy, no jump)


def test_check_list_without_scores_or_jumps_is_empty_and_needs_sound_arguments():
    table = area_table([100, 101, 99])
    assert slices_to_check(table, ["LV"]).empty
    with pytest.raises(CtsegSettingsError, match="n must be a whole number >= 1 .*got 0"):
        slices_to_check(table, ["LV"], n=0)
    with pytest.raises(CtsegSettingsError, match="jump_weight must be >= 0, got -1"):
        slices_to_check(table, ["LV"], jump_weight=-1)
    with pytest.raises(CtsegSettingsError, match=r"ROI\(s\) \['RV'\] are not columns of the area table"):
        slices_to_check(table, ["RV"])


def test_check_list_compares_areas_within_a_series_and_along_the_phases_of_a_cine_position():
    # two series: the second starts small, which is no jump from the first series' last slice
    table = area_table([100, 100, 10, 10], series=[1, 1, 2, 2])
    assert slices_to_check(table, ["LV"]).empty
    # cine: positions 0, 0, 5, 5 (2 phases each): 100 -> 10 across positions is no jump, within one it is
    cine = area_table([100, 100, 10, 50], positions=[0.0, 0.0, 5.0, 5.0])
    check = slices_to_check(cine, ["LV"])
    assert check["file"].tolist() == ["IM_0004.dcm"] and check["reasons"].iloc[0] == "LV area jumps 10 -> 50 mm²"
    assert "series" in slices_to_check(area_table([1, 100], series=[3, 3]), ["LV"]).columns
