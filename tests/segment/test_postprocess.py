"""Post-processing chosen on validation data: exact answers on tiny hand-built label maps."""

from __future__ import annotations

import doctest
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.segment import postprocess
from ctseg_helpers.segment.postprocess import (
    PostProcessing,
    choose_postprocessing,
    dice_per_label,
    fill_holes,
    keep_largest_component,
    postprocessing_from_labels,
)


def lm(*rows: str) -> np.ndarray:
    """A uint8 label map from rows of digits: ``lm("110", "002")``."""
    return np.array([[int(c) for c in row] for row in rows], dtype=np.uint8)


# --------------------------------------------------------------------------- keep_largest_component


def test_keeps_the_5_pixel_plus_and_removes_the_3_pixel_line():
    mask = lm(
        "01000000",
        "11100000",
        "01000111",
        "00000000",
    ).astype(bool)
    expected = lm(
        "01000000",
        "11100000",
        "01000000",
        "00000000",
    ).astype(bool)
    result = keep_largest_component(mask)
    assert result.dtype == bool
    np.testing.assert_array_equal(result, expected)


def test_diagonal_pixels_are_connected():
    """8-connectivity: the 3 diagonal pixels are one component and beat the 2-pixel pair
    (with 4-connectivity they would be three components of 1 pixel and the pair would win)."""
    mask = lm(
        "10000",
        "01000",
        "00100",
        "00000",
        "00011",
    )
    expected = lm(
        "10000",
        "01000",
        "00100",
        "00000",
        "00000",
    ).astype(bool)
    np.testing.assert_array_equal(keep_largest_component(mask), expected)


def test_a_tie_goes_to_the_component_that_comes_first_in_raster_order():
    np.testing.assert_array_equal(keep_largest_component(lm("0011", "1000", "1000")), lm("0011", "0000", "0000"))


def test_an_empty_mask_stays_empty_and_the_input_is_not_modified():
    empty = np.zeros((3, 4), dtype=bool)
    result = keep_largest_component(empty)
    assert result.dtype == bool and result.shape == (3, 4) and not result.any()
    mask = lm("1101")
    keep_largest_component(mask)
    np.testing.assert_array_equal(mask, lm("1101"))


def test_keep_largest_component_of_a_stack_works_slice_by_slice():
    """Each slice keeps its own largest region (3D labelling would join (0, 0, 0) and (1, 0, 0))."""
    stack = np.stack([lm("11001", "00011"), lm("10011", "10000")])
    expected = np.stack([lm("00001", "00011"), lm("10000", "10000")]).astype(bool)
    np.testing.assert_array_equal(keep_largest_component(stack), expected)


# --------------------------------------------------------------------------- fill_holes


def test_fill_holes_fills_a_closed_ring_but_not_an_open_one():
    ring = lm("0000", "0111", "0101", "0111")
    np.testing.assert_array_equal(fill_holes(ring), lm("0000", "0111", "0111", "0111").astype(bool))
    open_ring = lm("0000", "0111", "0100", "0111")  # the gap reaches the border
    np.testing.assert_array_equal(fill_holes(open_ring), open_ring.astype(bool))


def test_fill_holes_of_a_stack_works_slice_by_slice():
    stack = np.stack([lm("111", "101", "111"), lm("111", "100", "111")])
    expected = np.stack([lm("111", "111", "111"), lm("111", "100", "111")]).astype(bool)
    np.testing.assert_array_equal(fill_holes(stack), expected)


@pytest.mark.parametrize("function", [keep_largest_component, fill_holes])
def test_mask_functions_reject_1d_masks(function):
    with pytest.raises(
        CtsegDataError,
        match=re.escape("mask must be 2D (rows, cols) or a stack of slices (slices, rows, cols), got shape (4,)"),
    ):
        function(np.ones(4, dtype=bool))


# --------------------------------------------------------------------------- PostProcessing.apply


def test_fill_holes_fills_a_background_hole_but_never_another_roi():
    pp = PostProcessing(fill_holes=(1,))
    np.testing.assert_array_equal(pp.apply(lm("111", "101", "111")), lm("111", "111", "111"))
    # the LV cavity (2) inside the myocardium ring (1) stays
    np.testing.assert_array_equal(pp.apply(lm("111", "121", "111")), lm("111", "121", "111"))
    # only the background part of a hole is filled
    np.testing.assert_array_equal(pp.apply(lm("11111", "12001", "11111")), lm("11111", "12111", "11111"))


def test_largest_foreground_keeps_the_largest_region_of_all_rois_together():
    labels = lm(
        "1122000",
        "1122000",
        "0000001",
        "0000020",
    )
    expected = lm(
        "1122000",
        "1122000",
        "0000000",
        "0000000",
    )
    np.testing.assert_array_equal(PostProcessing(largest_foreground=True).apply(labels), expected)


def test_largest_applies_only_to_the_labels_named():
    labels = lm(
        "11002",
        "11000",
        "00012",
    )
    np.testing.assert_array_equal(PostProcessing(largest=(1,)).apply(labels), lm("11002", "11000", "00002"))
    np.testing.assert_array_equal(PostProcessing(largest=(2,)).apply(labels), lm("11002", "11000", "00010"))


def test_largest_foreground_runs_before_largest_per_label():
    """Foreground first keeps the 5-pixel region B+2 and then the label-1 part of it; the other
    order would keep the 3-pixel label-1 line A instead."""
    labels = lm(
        "111000000",
        "000000000",
        "000001122",
        "000000002",
    )
    expected = lm(
        "000000000",
        "000000000",
        "000001122",
        "000000002",
    )
    pp = PostProcessing(largest_foreground=True, largest=(1,))
    np.testing.assert_array_equal(pp.apply(labels), expected)


def test_apply_on_a_stack_equals_apply_slice_by_slice_and_leaves_the_input_alone():
    stack = np.random.default_rng(0).integers(0, 3, (4, 9, 11)).astype(np.int64)
    original = stack.copy()
    pp = PostProcessing(largest_foreground=True, largest=(2,), fill_holes=(1, 2))
    result = pp.apply(stack)
    assert result.dtype == np.uint8 and result.shape == stack.shape
    np.testing.assert_array_equal(result, np.stack([pp.apply(s) for s in stack]))
    np.testing.assert_array_equal(stack, original)
    assert not np.array_equal(result, stack)  # the steps did change something


def test_the_identity_returns_a_uint8_copy():
    labels = lm("102", "000")
    result = PostProcessing().apply(labels)
    np.testing.assert_array_equal(result, labels)
    assert result is not labels and result.dtype == np.uint8


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            np.zeros(4, np.uint8),
            "labels must be a 2D (rows, cols) or 3D (slices, rows, cols) label map, got shape (4,)",
        ),
        (np.zeros((2, 2)), "labels must hold integer label values (0 = background), got dtype float64"),
        (np.array([[0, 300]], np.int16), "labels holds label 300, outside 0..255; label maps are uint8"),
        (np.array([[0, -1]], np.int16), "labels holds label -1, outside 0..255"),
    ],
)
def test_apply_rejects_bad_label_maps(labels, message):
    with pytest.raises(CtsegDataError, match=re.escape(message)):
        PostProcessing(largest=(1,)).apply(labels)


# --------------------------------------------------------------------------- PostProcessing settings


def test_lists_become_sorted_tuples_and_numpy_integers_are_accepted():
    pp = PostProcessing(largest_foreground=np.bool_(True), largest=[3, np.int64(1)], fill_holes=[2])
    assert pp == PostProcessing(True, (1, 3), (2,))
    assert pp.largest == (1, 3) and type(pp.largest[1]) is int and pp.largest_foreground is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"largest_foreground": "yes"}, "largest_foreground must be True or False, got 'yes'"),
        ({"largest": 1}, "largest must be a list of ROI label values such as [1, 2], got 1"),
        ({"fill_holes": "12"}, "fill_holes must be a list of ROI label values such as [1, 2], got '12'"),
        ({"largest": [0]}, "largest must hold ROI label values, integers from 1 to 255, got 0 in [0]"),
        ({"largest": [1.5]}, "largest must hold ROI label values, integers from 1 to 255, got 1.5 in [1.5]"),
        ({"largest": [True]}, "largest must hold ROI label values, integers from 1 to 255, got True in [True]"),
        ({"fill_holes": (256,)}, "fill_holes must hold ROI label values, integers from 1 to 255, got 256 in (256,)"),
        ({"largest": [2, 1, 2]}, "largest lists label(s) [2] more than once: [2, 1, 2]"),
    ],
)
def test_invalid_settings_are_rejected(kwargs, message):
    with pytest.raises(CtsegSettingsError, match=re.escape(message)):
        PostProcessing(**kwargs)


def test_is_identity():
    assert PostProcessing().is_identity
    assert not PostProcessing(largest_foreground=True).is_identity
    assert not PostProcessing(largest=(1,)).is_identity
    assert not PostProcessing(fill_holes=(2,)).is_identity


def test_to_dict_from_dict_round_trip_through_json():
    pp = PostProcessing(largest_foreground=True, largest=(1, 3), fill_holes=(2,))
    data = json.loads(json.dumps(pp.to_dict()))
    assert data == {"largest_foreground": True, "largest": [1, 3], "fill_holes": [2]}
    assert PostProcessing.from_dict(data) == pp
    assert PostProcessing.from_dict(PostProcessing().to_dict()) == PostProcessing()


def test_from_dict_of_none_or_empty_is_the_identity_and_missing_keys_default():
    assert PostProcessing.from_dict(None).is_identity
    assert PostProcessing.from_dict({}).is_identity
    assert PostProcessing.from_dict({"largest": [2]}) == PostProcessing(largest=(2,))


def test_from_dict_names_unknown_keys():
    with pytest.raises(
        CtsegSettingsError,
        match=re.escape(
            "unknown post-processing setting(s) ['fill', 'largest_component']; the known ones are "
            "['largest_foreground', 'largest', 'fill_holes']"
        ),
    ):
        PostProcessing.from_dict({"largest": [1], "largest_component": [1], "fill": True})


def test_from_dict_rejects_what_is_not_a_dict_and_bad_values():
    with pytest.raises(CtsegSettingsError, match=re.escape("post-processing settings must be a dict, got [1]")):
        PostProcessing.from_dict([1])
    with pytest.raises(CtsegSettingsError, match="largest must hold ROI label values"):
        PostProcessing.from_dict({"largest": [-1]})


def test_describe():
    names = ("LV blood pool", "LV myocardium")
    assert PostProcessing().describe(names) == "none"
    assert PostProcessing(largest_foreground=True, largest=(2,)).describe(names) == (
        "keep the largest connected region of all ROIs; LV myocardium: keep the largest region"
    )
    assert PostProcessing(largest=(1,), fill_holes=(1, 3)).describe(names) == (
        "LV blood pool: keep the largest region, fill holes; label 3: fill holes"
    )
    assert PostProcessing(fill_holes=(2,)).describe() == "label 2: fill holes"


# --------------------------------------------------------------------------- dice_per_label


def test_dice_is_pooled_over_slices_of_different_sizes():
    """Label 1: 1 shared pixel, 2 predicted, 2 + 3 true -> 2 * 1 / (2 + 5) = 2/7 (the mean of the
    per-slice Dice would be (0.5 + 0) / 2). Label 2 is nowhere (NaN); label 3 only predicted (0)."""
    predictions = [lm("110", "003"), lm("00", "00", "00")]
    truths = [lm("100", "100"), lm("11", "10", "00")]
    result = dice_per_label(predictions, truths, 3)
    assert list(result) == [1, 2, 3]
    assert result[1] == 2 / 7 and math.isnan(result[2]) and result[3] == 0.0


def test_dice_per_label_accepts_3d_stacks_and_a_single_slice():
    pred = np.stack([lm("110"), lm("011")])
    truth = np.stack([lm("100"), lm("011")])
    assert dice_per_label(pred, truth, 1) == {1: 2 * 3 / (4 + 3)}
    assert dice_per_label(lm("110"), lm("100"), 1) == {1: 2 / 3}


# --------------------------------------------------------------------------- choose_postprocessing


def spurious_blob_case():
    """Label 1 predicted with a far-away 1-pixel blob; label 2 is a separate region.

    Before: Dice 1 = 2 * 4 / (5 + 4) = 8/9, Dice 2 = 1, mean 17/18. Keeping the largest
    foreground region keeps the 6-pixel label-2 block only: Dice 1 = 0, mean 0.5 (rejected).
    Keeping the largest label-1 region removes the blob: Dice 1 = 1 (accepted).
    """
    truth = lm(
        "11000222",
        "11000222",
        "00000000",
        "00000000",
        "00000000",
        "00000000",
    )
    pred = truth.copy()
    pred[5, 3] = 1
    return [pred], [truth]


def test_choose_accepts_largest_for_a_spurious_blob_and_reports_exact_dice():
    predictions, truths = spurious_blob_case()
    pp, report = choose_postprocessing(predictions, truths, 2)
    assert pp == PostProcessing(largest=(1,))
    np.testing.assert_array_equal(pp.apply(predictions[0]), truths[0])
    assert report["dice_before"] == {1: 8 / 9, 2: 1.0}
    assert report["dice_after"] == {1: 1.0, 2: 1.0}
    assert report["candidates"] == [
        {
            "step": "largest_foreground",
            "label": None,
            "dice_without": pytest.approx(17 / 18, rel=1e-12),
            "dice_with": 0.5,
            "accepted": False,
        },
        {"step": "largest", "label": 1, "dice_without": 8 / 9, "dice_with": 1.0, "accepted": True},
        {"step": "largest", "label": 2, "dice_without": 1.0, "dice_with": 1.0, "accepted": False},
        {"step": "fill_holes", "label": 1, "dice_without": 1.0, "dice_with": 1.0, "accepted": False},
        {"step": "fill_holes", "label": 2, "dice_without": 1.0, "dice_with": 1.0, "accepted": False},
    ]
    json.dumps(report)  # plain Python values


def test_choose_skips_largest_when_the_truth_itself_has_two_regions():
    """The truth of label 1 has a 4-pixel block and a far 2-pixel region; the prediction finds the
    block and half the far region: Dice 2 * 5 / (5 + 6) = 10/11. Keeping the largest region would
    drop the far pixel, Dice 2 * 4 / (4 + 6) = 0.8: skipped, and so is largest_foreground."""
    truth = lm(
        "11000",
        "11000",
        "00000",
        "00011",
    )
    pred = lm(
        "11000",
        "11000",
        "00000",
        "00010",
    )
    pp, report = choose_postprocessing([pred], [truth], 1)
    assert pp.is_identity
    assert report["dice_before"] == report["dice_after"] == {1: 10 / 11}
    assert report["candidates"] == [
        {"step": "largest_foreground", "label": None, "dice_without": 10 / 11, "dice_with": 0.8, "accepted": False},
        {"step": "largest", "label": 1, "dice_without": 10 / 11, "dice_with": 0.8, "accepted": False},
        {"step": "fill_holes", "label": 1, "dice_without": 10 / 11, "dice_with": 10 / 11, "accepted": False},
    ]


def test_choose_accepts_largest_foreground_when_the_mean_dice_rises():
    """Labels 1 and 2 touch (one 8-pixel region); a far 1-pixel label-2 blob is predicted.
    Dice 2 = 2 * 4 / (5 + 4) = 8/9 before and 1 after; the per-label steps then change nothing."""
    truth = lm(
        "1122000",
        "1122000",
        "0000000",
        "0000000",
    )
    pred = truth.copy()
    pred[3, 6] = 2
    pp, report = choose_postprocessing(np.stack([pred]), np.stack([truth]), 2)
    assert pp == PostProcessing(largest_foreground=True)
    assert report["dice_before"] == {1: 1.0, 2: 8 / 9}
    assert report["dice_after"] == {1: 1.0, 2: 1.0}
    assert report["candidates"][0] == {
        "step": "largest_foreground",
        "label": None,
        "dice_without": pytest.approx(17 / 18, rel=1e-12),
        "dice_with": 1.0,
        "accepted": True,
    }
    assert [c["accepted"] for c in report["candidates"][1:]] == [False] * 4
    assert [c["dice_without"] for c in report["candidates"][1:]] == [1.0] * 4  # on top of the accepted step


def test_min_gain_rejects_a_small_improvement():
    """Keeping the largest label-1 region gains 1/9 < 0.2."""
    predictions, truths = spurious_blob_case()
    pp, report = choose_postprocessing(predictions, truths, 2, min_gain=0.2)
    assert pp.is_identity
    assert report["candidates"][1] == {
        "step": "largest",
        "label": 1,
        "dice_without": 8 / 9,
        "dice_with": 1.0,
        "accepted": False,
    }
    assert report["dice_after"] == report["dice_before"]


@pytest.mark.parametrize(
    ("truth", "dice_with", "accepted"),
    [
        (lm("00000", "01110", "01110", "01110", "00000"), 1.0, True),  # filled truth: 16/17 -> 1
        (lm("00000", "01110", "01010", "01110", "00000"), 16 / 17, False),  # the truth has the hole: 1 -> 16/17
    ],
)
def test_choose_fill_holes_only_when_it_helps(truth, dice_with, accepted):
    pred = lm("00000", "01110", "01010", "01110", "00000")
    pp, report = choose_postprocessing([pred], [truth], 1)
    assert pp == (PostProcessing(fill_holes=(1,)) if accepted else PostProcessing())
    fill = report["candidates"][-1]
    assert fill == {
        "step": "fill_holes",
        "label": 1,
        "dice_without": 2 * 8 / (8 + int(truth.sum())),
        "dice_with": dice_with,
        "accepted": accepted,
    }


def test_choose_never_fills_the_cavity_inside_the_myocardium():
    labels = lm("00000", "01110", "01210", "01110", "00000")
    pp, report = choose_postprocessing([labels], [labels], 2)
    assert pp.is_identity
    assert report["dice_after"] == {1: 1.0, 2: 1.0}
    assert not any(c["accepted"] for c in report["candidates"])


def test_choose_with_an_roi_absent_everywhere_reports_nan_and_skips_its_steps():
    pred = lm("110", "000")
    pp, report = choose_postprocessing([pred], [pred], 2)
    assert pp.is_identity
    assert report["dice_before"][1] == 1.0 and math.isnan(report["dice_before"][2])
    largest_2 = report["candidates"][2]
    assert largest_2["label"] == 2 and math.isnan(largest_2["dice_with"]) and not largest_2["accepted"]
    assert report["candidates"][0]["dice_without"] == 1.0  # NaN ignored in the mean
    json.dumps(report)


@pytest.mark.parametrize(
    ("predictions", "truths", "message"),
    [
        ([lm("1")], [lm("1"), lm("0")], "got 1 predictions but 2 truths; give one truth label map per prediction"),
        ([], [], "no validation slices: predictions and truths are empty"),
        (
            [lm("10"), lm("10", "01", "00")],
            [lm("10"), lm("100", "010")],
            "prediction 1 has shape (3, 2) but its truth has shape (2, 3)",
        ),
        ([lm("13")], [lm("10")], "predictions[0] holds label 3, outside 0..2; check num_labels"),
        ([lm("10")], [np.array([[1, -1]])], "truths[0] holds label -1, outside 0..2"),
        (
            [np.zeros((1, 2, 2), np.uint8)],
            [np.zeros((1, 2, 2), np.uint8)],
            "predictions[0] must be a 2D (rows, cols) label map, got shape (1, 2, 2)",
        ),
        ([np.zeros((2, 2))], [np.zeros((2, 2), np.uint8)], "predictions[0] must hold integer label values"),
        (
            np.zeros((1, 1, 2, 2), np.uint8),
            np.zeros((1, 1, 2, 2), np.uint8),
            "predictions must be a stack (slices, rows, cols) or a list of 2D label maps, got shape (1, 1, 2, 2)",
        ),
    ],
)
@pytest.mark.parametrize("function", [choose_postprocessing, dice_per_label])
def test_bad_validation_data_is_rejected(function, predictions, truths, message):
    with pytest.raises(CtsegDataError, match=re.escape(message)):
        function(predictions, truths, 2)


@pytest.mark.parametrize("num_labels", [0, 256, True, 1.0])
@pytest.mark.parametrize("function", [choose_postprocessing, dice_per_label])
def test_num_labels_must_be_an_integer_from_1_to_255(function, num_labels):
    with pytest.raises(
        CtsegSettingsError, match=re.escape(f"num_labels must be an integer from 1 to 255, got {num_labels!r}")
    ):
        function([lm("1")], [lm("1")], num_labels)


@pytest.mark.parametrize("min_gain", [-0.1, math.nan, math.inf, True, "0.1"])
def test_min_gain_must_be_a_finite_number_at_least_0(min_gain):
    with pytest.raises(
        CtsegSettingsError, match=re.escape(f"min_gain must be a finite Dice difference >= 0, got {min_gain!r}")
    ):
        choose_postprocessing([lm("1")], [lm("1")], 1, min_gain=min_gain)


# --------------------------------------------------------------------------- module


def test_docstring_examples():
    result = doctest.testmod(postprocess, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4 and result.failed == 0


def test_importing_the_module_does_not_import_tensorflow_or_keras():
    code = (
        "import sys, ctseg_helpers.segment.postprocess; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- from the training labels


def ring_slice() -> np.ndarray:
    """Blood pool 1 inside a myocardium ring 2: one region together, the ring encloses the pool."""
    return lm("0000000", "0222220", "0211120", "0211120", "0211120", "0222220", "0000000")


def test_a_heart_is_one_region_so_all_rois_keep_their_largest_region_and_the_pool_is_filled():
    pp, report = postprocessing_from_labels([ring_slice()] * 4, 2)
    assert pp == PostProcessing(largest_foreground=True, fill_holes=(1,))
    assert report["source"] == "training labels"
    assert report["slices"] == {1: 4, 2: 4}
    assert report["foreground_one_region"] == 1.0
    assert report["one_region"] == {1: 1.0, 2: 1.0}
    assert report["no_holes"] == {1: 1.0, 2: 0.0}  # the ring encloses the pool: never filled
    json.dumps(report)


def test_two_separate_muscles_keep_their_own_largest_regions_but_not_one_for_all():
    """Left and right psoas (labels 1 and 2) apart on every slice: no largest_foreground, but
    each ROI is one region."""
    psoas = lm("0000000", "1100022", "1100022", "0000000")
    pp, report = postprocessing_from_labels([psoas] * 5, 2)
    assert pp == PostProcessing(largest=(1, 2), fill_holes=(1, 2))
    assert report["foreground_one_region"] == 0.0


def test_an_roi_in_two_pieces_on_more_than_one_slice_in_20_keeps_all_its_pieces():
    one, two = lm("1100", "0000", "0000"), lm("1100", "0000", "0011")
    pp, report = postprocessing_from_labels([one] * 18 + [two] * 2, 1)  # 90 % one region < 95 %
    assert pp == PostProcessing(fill_holes=(1,))
    assert report["one_region"] == {1: 0.9}
    pp, _ = postprocessing_from_labels([one] * 19 + [two], 1)  # 95 %
    assert pp == PostProcessing(largest_foreground=True, fill_holes=(1,))
    pp, _ = postprocessing_from_labels([one] * 18 + [two] * 2, 1, min_share=0.9)
    assert pp.largest_foreground


def test_an_roi_with_a_background_hole_is_not_filled():
    donut = lm("11111", "10001", "10001", "10001", "11111")
    pp, report = postprocessing_from_labels([donut] * 3, 1)
    assert pp == PostProcessing(largest_foreground=True)
    assert report["no_holes"] == {1: 0.0}


def test_an_roi_on_fewer_than_3_slices_or_on_none_gets_no_step():
    pp, report = postprocessing_from_labels([lm("110", "000")] * 2 + [lm("000", "000")] * 5, 2)
    assert pp.is_identity
    assert report["slices"] == {1: 2, 2: 0}
    assert math.isnan(report["one_region"][2]) and math.isnan(report["no_holes"][2])


@pytest.mark.parametrize("min_share", [0.4, 1.01, "0.9", True, math.nan])
def test_min_share_must_be_a_share_from_a_half_to_1(min_share):
    with pytest.raises(CtsegSettingsError, match=r"min_share must be a share of slices from 0\.5 to 1, got"):
        postprocessing_from_labels([ring_slice()], 2, min_share=min_share)


def test_training_labels_are_checked_like_validation_slices():
    with pytest.raises(CtsegDataError, match="no validation slices"):
        postprocessing_from_labels([], 1)
    with pytest.raises(CtsegDataError, match=r"holds label 3, outside 0\.\.2"):
        postprocessing_from_labels([lm("3")], 2)


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_sunnybrook_myocardium_fill_keeps_the_blood_pool_and_a_far_blob_is_removed(sunnybrook):
    """Expert LV labels (1 blood pool inside 2 myocardium): filling the myocardium's holes never
    touches the blood pool, and a spurious myocardium blob in a corner of every slice is removed
    by the chosen post-processing, which then matches the truth exactly."""
    from PIL import Image

    paths = sorted((sunnybrook / "lv_myo" / "train" / "labels").glob("*.png"))
    assert len(paths) == 28
    truths = np.stack([np.array(Image.open(p)) for p in paths])
    filled = PostProcessing(fill_holes=(2,)).apply(truths)
    np.testing.assert_array_equal(filled == 1, truths == 1)

    assert truths[:, :3, :3].max() == 0  # the corner is background in every slice
    predictions = truths.copy()
    predictions[:, :3, :3] = 2
    pp, report = choose_postprocessing(predictions, truths, 2)
    assert report["dice_before"][2] < 1.0
    assert pp.largest_foreground or 2 in pp.largest
    assert report["dice_after"] == {1: 1.0, 2: 1.0}
    np.testing.assert_array_equal(pp.apply(predictions), truths)


@pytest.mark.realdata
def test_sunnybrook_labels_vouch_for_one_heart_region_and_a_filled_blood_pool(sunnybrook):
    """The expert LV labels: blood pool and myocardium form one region on every slice, the pool
    has no holes, the myocardium ring encloses the pool."""
    from PIL import Image

    paths = sorted((sunnybrook / "lv_myo" / "train" / "labels").glob("*.png"))
    pp, report = postprocessing_from_labels([np.array(Image.open(p)) for p in paths], 2)
    assert pp == PostProcessing(largest_foreground=True, fill_holes=(1,))
    assert report["no_holes"][2] < 0.5
