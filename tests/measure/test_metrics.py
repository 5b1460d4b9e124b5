"""Exact answers on hand-built masks, and a cross-check against MedPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.measure import metrics as m

medpy_binary = pytest.importorskip("medpy.metric.binary")


def _pixel(shape, *index):
    mask = np.zeros(shape, dtype=bool)
    mask[index] = True
    return mask


# ------------------------------------------------------------------ overlap, exact answers


def test_overlap_metrics_on_hand_built_2d_masks():
    pred = np.zeros((10, 10), dtype=np.uint8)
    truth = np.zeros((10, 10), dtype=np.uint8)
    pred[2:6, 2:6] = 1  # 16 px
    truth[4:8, 2:6] = 1  # 16 px, overlap 8 px
    assert m.confusion_counts(pred, truth) == m.ConfusionCounts(tp=8, fp=8, fn=8, tn=76)
    assert m.dice(pred, truth) == pytest.approx(0.5)
    assert m.iou(pred, truth) == pytest.approx(8 / 24)
    assert m.jaccard is m.iou
    assert m.sensitivity(pred, truth) == pytest.approx(0.5)
    assert m.precision(pred, truth) == pytest.approx(0.5)
    assert m.specificity(pred, truth) == pytest.approx(76 / 84)
    assert m.voe(pred, truth) == pytest.approx(1 - 8 / 24)
    assert m.rvd(pred, truth) == pytest.approx(0.0)


def test_rvd_is_signed_and_overlap_3d():
    truth = np.zeros((3, 4, 4), dtype=bool)
    truth[1, :2, :2] = True  # 4 voxels
    pred = np.zeros_like(truth)
    pred[1, :2, :] = True  # 8 voxels, contains truth
    assert m.rvd(pred, truth) == pytest.approx(1.0)
    assert m.rvd(truth, pred) == pytest.approx(-0.5)
    assert m.dice(pred, truth) == pytest.approx(2 * 4 / 12)
    assert m.sensitivity(pred, truth) == 1.0
    assert m.precision(pred, truth) == 0.5


def test_two_disjoint_masks_have_dice_zero():
    a = _pixel((5, 5), 0, 0)
    b = _pixel((5, 5), 4, 4)
    assert m.dice(a, b) == 0.0
    assert m.iou(a, b) == 0.0
    assert m.voe(a, b) == 1.0


def test_empty_mask_conventions():
    empty = np.zeros((6, 6), dtype=bool)
    full_roi = _pixel((6, 6), 3, 3)
    # both empty: overlap metrics undefined
    for fn in (m.dice, m.iou, m.voe, m.sensitivity, m.precision, m.rvd):
        assert math.isnan(fn(empty, empty)), fn.__name__
    assert m.specificity(empty, empty) == 1.0
    assert math.isnan(m.surface_dice(empty, empty))
    # one side empty
    assert m.dice(empty, full_roi) == 0.0
    assert m.iou(full_roi, empty) == 0.0
    assert m.voe(full_roi, empty) == 1.0
    assert m.sensitivity(empty, full_roi) == 0.0
    assert math.isnan(m.sensitivity(full_roi, empty))
    assert math.isnan(m.precision(empty, full_roi))
    assert math.isnan(m.rvd(full_roi, empty))
    assert m.rvd(empty, full_roi) == -1.0
    assert m.surface_dice(empty, full_roi) == 0.0
    for fn in (m.hausdorff, m.hd95, m.assd):
        assert math.isnan(fn(empty, full_roi)), fn.__name__
        assert math.isnan(fn(full_roi, empty)), fn.__name__
        assert math.isnan(fn(empty, empty)), fn.__name__
    assert m.surface_distances(empty, full_roi) is None
    # no negatives in truth
    everything = np.ones((2, 2), dtype=bool)
    assert math.isnan(m.specificity(everything, everything))


# ------------------------------------------------------------------ surface distances, exact


def test_on_2_pixels_2mm_away():
    a = _pixel((5, 5), 2, 1)
    b = _pixel((5, 5), 2, 3)
    assert m.hausdorff(a, b, spacing_mm=(1.0, 1.0)) == 2.0
    assert m.hd95(a, b, spacing_mm=(1.0, 1.0)) == 2.0
    assert m.assd(a, b, spacing_mm=1.0) == 2.0
    assert m.surface_dice(a, b, (1.0, 1.0), tolerance_mm=1.9) == 0.0
    assert m.surface_dice(a, b, (1.0, 1.0), tolerance_mm=2.0) == 1.0


def test_anisotropic_spacing_2d():
    a = _pixel((5, 5), 1, 2)
    b = _pixel((5, 5), 3, 2)  # two rows apart
    assert m.hausdorff(a, b, spacing_mm=(1.5, 0.5)) == pytest.approx(3.0)
    c = _pixel((5, 5), 1, 4)  # two columns apart from a, along the 0.5 mm axis
    assert m.hausdorff(a, c, spacing_mm=(1.5, 0.5)) == pytest.approx(1.0)
    d = _pixel((5, 5), 2, 3)  # one row, one column
    assert m.hausdorff(a, d, spacing_mm=(1.5, 0.5)) == pytest.approx(math.hypot(1.5, 0.5))


def test_anisotropic_spacing_3d_single_voxels():
    a = _pixel((4, 5, 5), 0, 2, 2)
    b = _pixel((4, 5, 5), 3, 2, 4)
    expected = math.hypot(3 * 5.0, 2 * 0.7)
    assert m.hausdorff(a, b, spacing_mm=(5.0, 0.8, 0.7)) == pytest.approx(expected)
    assert m.assd(a, b, spacing_mm=(5.0, 0.8, 0.7)) == pytest.approx(expected)


def test_square_and_shifted_square_exact_distances():
    # 4x4 squares shifted by 2 columns: boundaries are the squares' outlines (12 px each)
    a = np.zeros((8, 10), dtype=bool)
    a[2:6, 2:6] = True
    b = np.zeros_like(a)
    b[2:6, 4:8] = True
    d = m.surface_distances(a, b, spacing_mm=(1.0, 1.0))
    assert d.pred_to_truth_mm.size == 12
    assert d.truth_to_pred_mm.size == 12
    # a's outline: corner and left pixels 2 mm from b's outline, next ones 1 mm, the rest on it
    assert m.hausdorff(a, b, 1.0) == 2.0
    assert sorted(d.pred_to_truth_mm.tolist()) == sorted(d.truth_to_pred_mm.tolist())
    assert sorted(d.pred_to_truth_mm.tolist()) == [0.0] * 4 + [1.0] * 4 + [2.0] * 4
    assert m.assd(a, b, 1.0) == pytest.approx(12 / 12)
    assert m.surface_dice(a, b, 1.0, tolerance_mm=1.0) == pytest.approx(16 / 24)


def test_identical_masks_are_perfect():
    rng = np.random.default_rng(3)
    mask = ndimage_blob(rng, (20, 24))
    result = m.compute_metrics(mask, mask, spacing_mm=(0.7, 1.3))
    assert result["dice"] == 1.0 and result["iou"] == 1.0 and result["voe"] == 0.0
    assert result["hd"] == 0.0 and result["hd95"] == 0.0 and result["assd"] == 0.0
    assert result["surface_dice"] == 1.0
    assert result["truth_size_mm"] == pytest.approx(mask.sum() * 0.7 * 1.3)


def ndimage_blob(rng, shape, threshold=0.5):
    from scipy import ndimage  # noqa: PLC0415

    field = ndimage.gaussian_filter(rng.random(shape), 2.0)
    return field > np.quantile(field, threshold)


def test_boundary_is_mask_minus_4_connected_erosion():
    mask = np.zeros((5, 5), dtype=bool)
    mask[1:4, 1:4] = True
    expected = mask.copy()
    expected[2, 2] = False
    np.testing.assert_array_equal(m.boundary(mask), expected)
    # foreground on the array edge is boundary
    assert m.boundary(np.ones((3, 3))).sum() == 8


# ------------------------------------------------------------------ cross-check with MedPy


@pytest.mark.parametrize(
    "shape, spacing",
    [
        ((40, 48), (1.0, 1.0)),
        ((40, 48), (1.37, 0.61)),
        ((9, 30, 32), (1.0, 1.0, 1.0)),
        ((9, 30, 32), (8.0, 1.29, 1.29)),
        ((9, 30, 32), (2.5, 0.7, 1.1)),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_surface_distances_match_medpy(shape, spacing, seed):
    rng = np.random.default_rng(seed)
    pred = ndimage_blob(rng, shape, 0.6)
    truth = ndimage_blob(rng, shape, 0.55)
    result = m.compute_metrics(pred, truth, spacing_mm=spacing)
    assert result["hd"] == pytest.approx(medpy_binary.hd(pred, truth, voxelspacing=spacing))
    assert result["hd95"] == pytest.approx(medpy_binary.hd95(pred, truth, voxelspacing=spacing))
    assert result["assd"] == pytest.approx(medpy_binary.assd(pred, truth, voxelspacing=spacing))
    assert result["dice"] == pytest.approx(medpy_binary.dc(pred, truth))
    assert result["iou"] == pytest.approx(medpy_binary.jc(pred, truth))
    assert result["sensitivity"] == pytest.approx(medpy_binary.sensitivity(pred, truth))
    assert result["specificity"] == pytest.approx(medpy_binary.specificity(pred, truth))
    assert result["precision"] == pytest.approx(medpy_binary.precision(pred, truth))
    assert result["rvd"] == pytest.approx(medpy_binary.ravd(pred, truth))
    # individual functions agree with the shared computation
    assert m.hd95(pred, truth, spacing) == result["hd95"]
    assert m.surface_dice(pred, truth, spacing, 2.0) == result["surface_dice"]


def test_small_roi_in_large_image_matches_medpy():
    # the bounding-box shortcut must not change anything, also with masks on the array edge
    pred = np.zeros((64, 64), dtype=bool)
    truth = np.zeros((64, 64), dtype=bool)
    pred[0:5, 10:20] = True
    truth[1:7, 12:22] = True
    truth[60:64, 60:64] = True
    for spacing in [(1.0, 1.0), (0.5, 2.0)]:
        assert m.hausdorff(pred, truth, spacing) == pytest.approx(medpy_binary.hd(pred, truth, spacing))
        assert m.assd(pred, truth, spacing) == pytest.approx(medpy_binary.assd(pred, truth, spacing))


# ------------------------------------------------------------------ labels, ROC, SNR, fidelity


def test_roi_metrics_per_label():
    truth = np.zeros((10, 10), dtype=np.uint8)
    truth[1:5, 1:5] = 1
    truth[6:9, 6:9] = 2
    pred = truth.copy()
    pred[6:9, 6:9] = 0  # ROI 2 missed
    rows = m.roi_metrics(pred, truth, num_labels=2, spacing_mm=(0.5, 0.5))
    assert [r["label"] for r in rows] == [1, 2]
    assert rows[0]["dice"] == 1.0 and rows[0]["truth_size_mm"] == pytest.approx(16 * 0.25)
    assert rows[1]["dice"] == 0.0 and math.isnan(rows[1]["hd"])


def test_roc_curve_and_auc_exact():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.1])
    truth = np.array([1, 1, 0, 1, 0, 0])
    fpr, tpr, thresholds = m.roc_curve(scores, truth)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert thresholds[0] == np.inf and thresholds[-1] == pytest.approx(0.1)
    assert m.roc_auc(scores, truth) == pytest.approx(8 / 9)


def test_roc_auc_matches_mann_whitney_with_ties():
    rng = np.random.default_rng(7)
    truth = rng.random((16, 16)) > 0.6
    scores = np.round(np.clip(truth * 0.3 + rng.random((16, 16)) * 0.8, 0, 1), 1)  # many ties
    u = stats.mannwhitneyu(scores[truth], scores[~truth]).statistic
    assert m.roc_auc(scores, truth) == pytest.approx(u / (truth.sum() * (~truth).sum()))


def test_roc_needs_both_classes_and_matching_sizes():
    with pytest.raises(CtsegDataError, match="needs both foreground and background"):
        m.roc_curve(np.ones(4), np.zeros(4))
    assert math.isnan(m.roc_auc(np.ones(4), np.ones(4)))
    with pytest.raises(CtsegDataError, match="same number of pixels"):
        m.roc_auc(np.ones(4), np.ones(5))
    with pytest.raises(CtsegDataError, match="must be finite"):
        m.roc_curve(np.array([0.1, np.nan]), np.array([0, 1]))


def test_weighted_roc_of_a_histogram_equals_the_roc_of_its_pixels():
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 256, 5000)
    truth = rng.random(5000) < levels / 300
    scores = levels / 255
    # the same pixels as a histogram: each level once per class, weighted by its count
    grid = np.arange(256) / 255
    weights = np.r_[np.bincount(levels[truth], minlength=256), np.bincount(levels[~truth], minlength=256)]
    hist = (np.r_[grid, grid], np.r_[np.ones(256, bool), np.zeros(256, bool)])
    assert m.roc_auc(*hist, weights=weights) == pytest.approx(m.roc_auc(scores, truth), abs=1e-12)
    fpr, tpr, _ = m.roc_curve(*hist, weights=weights)
    fpr_px, tpr_px, _ = m.roc_curve(scores, truth)
    np.testing.assert_allclose(np.interp(fpr_px, fpr, tpr), tpr_px, atol=1e-12)


def test_weights_are_checked_and_a_zero_weight_leaves_a_pixel_out():
    scores, truth = np.array([0.9, 0.2, 0.8]), np.array([1, 0, 0])
    assert m.roc_auc(scores, truth, weights=[1, 1, 0]) == 1.0
    assert math.isnan(m.roc_auc(scores, truth, weights=[1, 0, 0]))
    with pytest.raises(CtsegDataError, match=r"needs both foreground and background pixels in truth; truth has 1 fore"):
        m.roc_curve(scores, truth, weights=[1, 0, 0])
    with pytest.raises(CtsegDataError, match=r"weights \(\(2,\)\) must have one value per pixel \(3\)"):
        m.roc_auc(scores, truth, weights=[1, 1])
    with pytest.raises(CtsegDataError, match=r"weights must be finite and >= 0 \(they count pixels\)"):
        m.roc_auc(scores, truth, weights=[1, -1, 1])


def test_reliability_bins_and_expected_calibration_error_exact():
    # bin [0, 0.5): 0.1, 0.2, 0.3 (one foreground); bin [0.5, 1]: 0.8, 1.0 (both foreground)
    bins = m.reliability_bins([0.1, 0.2, 0.3, 0.8, 1.0], [0, 1, 0, 1, 1], n_bins=2)
    np.testing.assert_allclose(bins.edges, [0, 0.5, 1])
    np.testing.assert_allclose(bins.counts, [3, 2])
    np.testing.assert_allclose(bins.mean_predicted, [0.2, 0.9])
    np.testing.assert_allclose(bins.observed, [1 / 3, 1.0])
    expected = (3 * abs(1 / 3 - 0.2) + 2 * abs(1 - 0.9)) / 5
    assert bins.expected_calibration_error == pytest.approx(expected)
    assert m.expected_calibration_error([0.1, 0.2, 0.3, 0.8, 1.0], [0, 1, 0, 1, 1], n_bins=2) == pytest.approx(expected)
    # weights count pixels; an empty bin is NaN and weighs nothing; no pixel at all: NaN
    weighted = m.reliability_bins([0.25, 0.25], [1, 0], n_bins=4, weights=[3, 1])
    assert weighted.observed[1] == pytest.approx(0.75) and np.isnan(weighted.observed[0])
    assert weighted.expected_calibration_error == pytest.approx(0.5)
    assert math.isnan(m.expected_calibration_error([], []))
    assert m.expected_calibration_error(np.ones(4), np.ones(4)) == 0.0


def test_calibration_refuses_values_outside_0_1_and_bad_bins():
    with pytest.raises(CtsegDataError, match=r"probabilities must lie in 0..1 for calibration; got 0..1.5"):
        m.reliability_bins([0.0, 1.5], [0, 1])
    for wrong in (0, 2.5, True):
        with pytest.raises(CtsegDataError, match="n_bins must be a whole number >= 1"):
            m.reliability_bins([0.5], [1], n_bins=wrong)


def test_snr_as_ctsegnet_defines_it():
    image = np.array([[0.0, 2.0, 10.0, 14.0]])
    mask = np.array([[0, 0, 1, 1]])
    # mu0 = 1, s0 = 1; mu1 = 12, s1 = 2 -> 11 / sqrt((1 + 4) / 2)
    assert m.snr(image, mask) == pytest.approx(11 / math.sqrt(2.5))
    assert m.snr(image, 1 - mask) == pytest.approx(11 / math.sqrt(2.5))
    assert math.isnan(m.snr(image, np.zeros_like(mask)))
    assert m.snr(np.array([[0.0, 0.0, 5.0]]), np.array([[0, 0, 1]])) == math.inf
    assert math.isnan(m.snr(np.ones((2, 2)), np.eye(2)))
    with pytest.raises(CtsegDataError, match="must have the same shape"):
        m.snr(np.ones((2, 2)), np.ones((2, 3)))


def test_fidelity_counts_slices_above_tolerance():
    truth = np.zeros((4, 6, 6), dtype=bool)
    truth[:3, 1:5, 1:5] = True  # 16 px on slices 0..2, slice 3 empty
    pred = truth.copy()
    pred[1, 1, 1] = False  # IoU 15/16 = 0.9375
    pred[2, 1:3, 1:5] = False  # IoU 8/16 = 0.5
    result = m.fidelity(pred, truth, tolerance=0.9)
    np.testing.assert_allclose(result.iou_per_slice[:3], [1.0, 15 / 16, 0.5])
    assert math.isnan(result.iou_per_slice[3])
    assert result.n_counted == 4
    assert result.fidelity == pytest.approx(3 / 4)
    assert result.mean_iou == pytest.approx((1 + 15 / 16 + 0.5 + 1) / 4)
    skipped = m.fidelity(pred, truth, tolerance=0.95, empty="skip")
    assert skipped.n_counted == 3 and skipped.fidelity == pytest.approx(1 / 3)
    none = m.fidelity(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), empty="skip")
    assert none.n_counted == 0 and math.isnan(none.fidelity)


# ------------------------------------------------------------------ every error message


def test_error_messages():
    with pytest.raises(CtsegDataError, match=r"same shape, got \(2, 2\) and \(3, 3\)"):
        m.dice(np.ones((2, 2)), np.ones((3, 3)))
    with pytest.raises(CtsegDataError, match="must be 2D .* or 3D"):
        m.iou(np.ones(4), np.ones(4))
    with pytest.raises(CtsegDataError, match="one spacing per array axis"):
        m.hausdorff(np.ones((2, 2)), np.ones((2, 2)), spacing_mm=(1.0, 1.0, 1.0))
    with pytest.raises(CtsegDataError, match="positive and finite"):
        m.assd(np.ones((2, 2)), np.ones((2, 2)), spacing_mm=(0.0, 1.0))
    with pytest.raises(CtsegDataError, match="tolerance_mm must be a finite distance"):
        m.surface_dice(np.ones((2, 2)), np.ones((2, 2)), tolerance_mm=-1)
    with pytest.raises(CtsegDataError, match="num_labels must be at least 1"):
        m.roi_metrics(np.zeros((2, 2)), np.zeros((2, 2)), num_labels=0)
    with pytest.raises(CtsegDataError, match="truth_labels holds label values 0..3 but num_labels is 2"):
        m.roi_metrics(np.zeros((2, 2)), np.array([[0, 3], [1, 2]]), num_labels=2)
    with pytest.raises(CtsegDataError, match=r"fidelity needs stacks of shape \(K, M, N\)"):
        m.fidelity(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(CtsegDataError, match="tolerance is an IoU"):
        m.fidelity(np.ones((1, 2, 2)), np.ones((1, 2, 2)), tolerance=2)
    with pytest.raises(CtsegDataError, match="empty must be 'agree' or 'skip'"):
        m.fidelity(np.ones((1, 2, 2)), np.ones((1, 2, 2)), empty="count")
