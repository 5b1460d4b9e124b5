"""The training plan: a fingerprint of hand-made data, and the settings planned from it."""

from __future__ import annotations

import doctest
import json
import math
import re

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.prepare import plan as plan_module
from ctseg_helpers.prepare.normalize import Normalization
from ctseg_helpers.prepare.plan import (
    BATCHES_PER_EPOCH,
    FOREGROUND_FRACTION,
    MAX_PATCH_PX,
    DataFingerprint,
    TrainingPlan,
    fingerprint,
    levels_for,
    make_plan,
    round_patch,
)


def _box(shape, top, left, rows, cols, value=1):
    """A label map of ``shape`` holding ``value`` in a rows x cols box at (top, left)."""
    label = np.zeros(shape, np.uint8)
    label[top : top + rows, left : left + cols] = value
    return label


def two_spacings():
    """10 slices of 200 x 200 px at 1 mm and 10 of 100 x 100 px at 2 mm: the same 200 mm field of
    view, with a 20 x 30 mm ROI (20 x 30 px, then 10 x 15 px)."""
    images = [np.full((200, 200), 100.0)] * 10 + [np.full((100, 100), 100.0)] * 10
    labels = [_box((200, 200), 50, 60, 20, 30)] * 10 + [_box((100, 100), 25, 30, 10, 15)] * 10
    spacings = [(1.0, 1.0)] * 10 + [(2.0, 2.0)] * 10
    groups = ["A"] * 10 + ["B"] * 10
    return images, labels, spacings, groups


def fingerprint_of_side(side: int, *, modality="MR") -> DataFingerprint:
    """A fingerprint of slices of side x side pixels, without spacing or ROIs."""
    return DataFingerprint(n_slices=3, n_groups=3, modality=modality, shapes_px=((side, side),) * 3)


def ct_slice(roi_values, background=-1000.0):
    """One CT slice whose ROI (label 1) holds exactly ``roi_values``; every other pixel is ``background``."""
    roi_values = np.asarray(roi_values, dtype=float)
    side = math.isqrt(roi_values.size) + 2
    image = np.full(side * side, background)
    label = np.zeros(side * side, np.uint8)
    image[: roi_values.size] = roi_values
    label[: roi_values.size] = 1
    return image.reshape(side, side), label.reshape(side, side)


def roi_with_percentiles(low, high, *, n_mid=393, mid=None):
    """401 ROI values whose 0.5th and 99.5th percentiles are exactly ``low`` and ``high``.

    With 401 values the percentiles fall on the 3rd and 399th sorted values; each is surrounded
    by equal values, so rounding in the interpolation cannot move them. The extremes (an air
    bubble at -900 HU and metal at 3000 HU) are clipped off by the percentiles.
    """
    mid = (low + high) / 2 if mid is None else mid
    return [-900.0] + [low] * 3 + [mid] * n_mid + [high] * 3 + [3000.0]


# --- fingerprint -------------------------------------------------------------------------------


def test_fingerprint_of_two_spacings_is_in_mm():
    images, labels, spacings, groups = two_spacings()
    fp = fingerprint(images, labels, spacings, modality="MR", groups=groups)
    assert (fp.n_slices, fp.n_groups, fp.modality) == (20, 2, "MR")
    assert fp.spacings_mm == ((1.0, 1.0),) * 10 + ((2.0, 2.0),) * 10
    assert fp.shapes_px == ((200, 200),) * 10 + ((100, 100),) * 10
    assert fp.median_spacing_mm == (1.5, 1.5)
    assert fp.median_shape_px == (150, 150)
    # 20 x 30 px at 1 mm and 10 x 15 px at 2 mm are the same ROI: 20 x 30 mm, 600 mm².
    assert fp.roi_extent_mm == {1: (20.0, 30.0)}
    assert fp.roi_area_mm2 == {1: 600.0}
    assert fp.roi_slices == {1: 20}
    assert fp.foreground_percentiles == (100.0, 100.0, 100.0)
    assert (fp.foreground_mean, fp.foreground_std) == (100.0, 0.0)


def test_a_tiny_roi_in_a_few_slices_is_in_the_fingerprint():
    # Label 2 (a large ROI) is in all four slices; label 1 is 3 x 3 px in slices 0 and 1 and a
    # single pixel in slice 2. At 0.5 x 0.75 mm a 3 x 3 px box is 1.5 x 2.25 mm and 3.375 mm².
    shape = (40, 40)
    labels = []
    for i in range(4):
        label = _box(shape, 5, 5, 30, 20, value=2)
        if i < 2:
            label[36:39, 30:33] = 1
        elif i == 2:
            label[0, 39] = 1
        labels.append(label)
    images = [np.zeros(shape)] * 4
    fp = fingerprint(images, labels, [(0.5, 0.75)] * 4)
    assert fp.roi_slices == {1: 3, 2: 4}
    # Medians over the three slices holding label 1: (1.5, 1.5, 0.5) rows and (2.25, 2.25, 0.75) cols.
    assert fp.roi_extent_mm[1] == (1.5, 2.25)
    assert fp.roi_area_mm2[1] == 3.375  # median of 3.375, 3.375, 0.375
    assert fp.roi_extent_mm[2] == (15.0, 15.0)
    assert fp.roi_area_mm2[2] == 225.0
    assert fp.summary()["roi_area_mm2"] == {"1": 3.38, "2": 225.0}
    assert fp.summary()["roi_slices"] == {"1": 3, "2": 4}


def test_without_spacing_the_roi_is_measured_in_pixels():
    labels = [_box((10, 10), 0, 0, 3, 3)] * 3
    fp = fingerprint([np.zeros((10, 10))] * 3, labels, None)
    assert fp.spacings_mm == () and fp.median_spacing_mm is None
    assert fp.roi_extent_mm == {1: (3.0, 3.0)}
    assert fp.roi_area_mm2 == {1: 9.0}
    assert fp.summary()["median_spacing_mm"] is None and fp.summary()["spacing_range_mm"] is None


def test_one_slice_without_spacing_makes_the_whole_folder_pixels():
    # Mixing millimetres and pixels would be meaningless: the fingerprint then counts in pixels.
    labels = [_box((10, 10), 0, 0, 3, 3)] * 3
    fp = fingerprint([np.zeros((10, 10))] * 3, labels, [(2.0, 2.0), None, (2.0, 2.0)])
    assert fp.spacings_mm == ()
    assert fp.roi_extent_mm == {1: (3.0, 3.0)} and fp.roi_area_mm2 == {1: 9.0}


def test_num_labels_limits_the_rois_summarised_and_groups_default_to_slices():
    labels = [_box((6, 6), 0, 0, 2, 2, value=1) + _box((6, 6), 4, 4, 2, 2, value=3)] * 2
    fp = fingerprint([np.zeros((6, 6))] * 2, labels, None, num_labels=1)
    assert fp.roi_slices == {1: 2}
    assert fp.n_groups == 2
    assert set(fingerprint([np.zeros((6, 6))] * 2, labels, None).roi_slices) == {1, 3}


def test_modality_is_ct_or_mr():
    image, label = np.zeros((4, 4)), _box((4, 4), 0, 0, 2, 2)
    assert fingerprint([image], [label], None, modality="ct").modality == "CT"
    assert fingerprint([image], [label], None, modality="PT").modality == "MR"


def test_foreground_intensities_are_subsampled_evenly():
    image = np.arange(11.0).reshape(1, 11)  # ROI values 0..10; evenly 3 of them: 0, 5, 10
    fp = fingerprint([image], [np.ones((1, 11), np.uint8)], None, max_samples=3)
    assert fp.foreground_percentiles == pytest.approx((0.05, 5.0, 9.95))
    assert fp.foreground_mean == 5.0


def test_fingerprint_without_roi_pixels_has_nan_intensities():
    fp = fingerprint([np.zeros((4, 4))], [np.zeros((4, 4), np.uint8)], None)
    assert fp.roi_slices == {} and fp.roi_extent_mm == {}
    assert all(math.isnan(v) for v in fp.foreground_percentiles)
    assert math.isnan(fp.foreground_mean) and math.isnan(fp.foreground_std)


def test_no_slices_is_refused():
    with pytest.raises(CtsegDataError, match="no training slices to plan from; check the training folder"):
        fingerprint([], [], [])


def test_one_label_map_per_image_is_required():
    with pytest.raises(CtsegDataError, match="2 images but 1 label maps; give one label map per image"):
        fingerprint([np.zeros((4, 4))] * 2, [np.zeros((4, 4), np.uint8)], None)


# --- the plan ----------------------------------------------------------------------------------


def test_plan_of_two_spacings_uses_the_median_spacing_and_a_capped_patch():
    images, labels, spacings, groups = two_spacings()
    plan = make_plan(fingerprint(images, labels, spacings, groups=groups))
    assert plan.target_spacing_mm == (1.5, 1.5)
    assert plan.reasons["target_spacing_mm"] == "median of 20 slices"
    # Both kinds of slice are 200 mm / 1.5 mm = 133 px at the target: capped at 128 on the CPU.
    assert plan.patch_size == 128 == MAX_PATCH_PX["cpu"]
    assert plan.reasons["patch_size"] == "median slice is 133 px; capped at 128 px for the cpu"
    assert plan.levels == 4 and plan.patch_size % 2**plan.levels == 0
    assert plan.reasons["levels"] == "halves 128 px down to 8 px"
    assert plan.batch_size == 8  # 8 x 128 x 128 pixels per batch
    assert plan.batches_per_epoch == BATCHES_PER_EPOCH["cpu"]
    assert plan.foreground_fraction == FOREGROUND_FRACTION
    assert plan.normalization == Normalization(modality="MR")
    assert plan.device == "cpu"
    assert plan.fingerprint["median_spacing_mm"] == [1.5, 1.5]
    assert plan.fingerprint["spacing_range_mm"] == [1.0, 2.0]


def test_plan_on_a_gpu_takes_the_whole_slice():
    plan = make_plan(fingerprint(*two_spacings()[:3]), device="gpu")
    # 133.3 px rounded up to 144 = 9 x 2**4.
    assert (plan.patch_size, plan.levels) == (144, 4)
    assert plan.reasons["patch_size"] == "median slice (133 px at the target spacing)"
    assert plan.reasons["levels"] == "halves 144 px down to 9 px"
    assert plan.batch_size == 32  # 12 x 512² / 144² = 151 patches, at most 32
    assert plan.batches_per_epoch == BATCHES_PER_EPOCH["gpu"]


def test_small_slices_get_a_small_patch_and_at_least_two_per_batch():
    plan = make_plan(fingerprint_of_side(100))
    assert plan.target_spacing_mm is None
    assert (plan.patch_size, plan.levels) == (104, 3)  # 104 = 13 x 2**3
    plan = make_plan(fingerprint_of_side(600), device="gpu")
    assert (plan.patch_size, plan.levels, plan.batch_size) == (512, 6, 12)
    plan = make_plan(fingerprint_of_side(2000), device="gpu", max_patch_px=2048)
    assert plan.batch_size == 2  # 12 x 512² / 2048² = 0.75, at least 2


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_every_patch_is_a_multiple_of_two_to_the_levels(device):
    for side in range(1, 600, 7):
        plan = make_plan(fingerprint_of_side(side), device=device)
        assert plan.patch_size % 2**plan.levels == 0, side
        assert 1 <= plan.levels <= plan_module.MAX_LEVELS
        assert min(side, MAX_PATCH_PX[device]) <= plan.patch_size <= MAX_PATCH_PX[device], side
        if plan.patch_size >= 16:
            assert plan.patch_size // 2**plan.levels >= plan_module.MIN_FEATURE_PX, side


def test_on_the_cpu_the_coarsest_map_is_8_to_15_pixels():
    for side in range(16, 200):
        plan = make_plan(fingerprint_of_side(side))
        assert 8 <= plan.patch_size // 2**plan.levels < 16, side


def test_on_the_gpu_the_coarsest_map_is_about_8_pixels_too():
    plan = make_plan(fingerprint_of_side(300), device="gpu")
    assert plan.patch_size // 2**plan.levels < 16


def test_the_patch_never_exceeds_max_patch_px():
    plan = make_plan(fingerprint_of_side(200), max_patch_px=100)
    assert plan.patch_size <= 100


def test_a_large_roi_is_named_when_the_patch_is_capped():
    labels = [_box((300, 300), 10, 10, 100, 100)] * 3
    plan = make_plan(fingerprint([np.zeros((300, 300))] * 3, labels, None))
    assert plan.patch_size == 128
    assert plan.reasons["patch_size"] == (
        "median slice is 300 px; capped at 128 px for the cpu (the largest ROI spans 100 px: tiles blend the rest)"
    )


def test_slices_without_spacing_are_trained_in_pixels():
    labels = [_box((64, 80), 0, 0, 3, 3)] * 3
    plan = make_plan(fingerprint([np.zeros((64, 80))] * 3, labels, [None] * 3))
    assert plan.target_spacing_mm is None
    assert plan.reasons["target_spacing_mm"] == "the slices carry no pixel spacing: trained in pixels"
    assert (plan.patch_size, plan.levels) == (80, 3)  # the longer side, 80 = 10 x 2**3
    assert "native pixels (no spacing known)" in plan.describe()


def test_target_spacing_is_rounded_to_4_decimals():
    fp = DataFingerprint(n_slices=1, n_groups=1, modality="MR", spacings_mm=((0.123456, 0.7),), shapes_px=((64, 64),))
    assert make_plan(fp).target_spacing_mm == (0.1235, 0.7)


@pytest.mark.parametrize(
    ("low", "high", "window"),
    [
        (20.5, 179.5, (20.0, 180.0)),  # floor and ceil to whole HU
        (40.0, 60.0, (-60.0, 160.0)),  # narrower than 50 HU: 100 HU added on each side
        (10.2, 59.9, (-90.0, 160.0)),  # 49.7 HU wide: widened, then floor and ceil
        (0.0, 50.0, (0.0, 50.0)),  # exactly 50 HU: kept
    ],
)
def test_ct_window_is_the_roi_percentiles(low, high, window):
    image, label = ct_slice(roi_with_percentiles(low, high))
    fp = fingerprint([image], [label], None, modality="CT")
    assert fp.foreground_percentiles == (low, (low + high) / 2, high)
    plan = make_plan(fp)
    assert plan.normalization == Normalization(modality="CT", hu_window=window)
    assert plan.reasons["normalization"] == "0.5-99.5 percentiles of the HU inside the ROIs"
    assert f"CT window {window[0]:.0f}..{window[1]:.0f} HU" in plan.describe()


def test_ct_foreground_mean_and_std_are_of_the_roi_only():
    values = roi_with_percentiles(20.5, 179.5, mid=100.0)
    image, label = ct_slice(values)
    fp = fingerprint([image], [label], None, modality="CT")
    assert fp.foreground_mean == pytest.approx(42000 / 401)  # -900 + 3 x 20.5 + 393 x 100 + 3 x 179.5 + 3000
    assert fp.foreground_std == pytest.approx(np.std(values))


def test_ct_without_roi_pixels_keeps_the_default_window():
    plan = make_plan(fingerprint([np.zeros((16, 16))], [np.zeros((16, 16), np.uint8)], None, modality="CT"))
    assert plan.normalization == Normalization(modality="CT")
    assert plan.reasons["normalization"] == "no ROI pixels: default CT window"


def test_mr_is_normalised_per_image():
    image, label = ct_slice(roi_with_percentiles(20.5, 179.5))
    plan = make_plan(fingerprint([image], [label], None, modality="MR"))
    assert plan.normalization == Normalization(modality="MR")
    assert plan.reasons["normalization"] == "MR signal has no fixed scale: each image by its own percentiles"
    assert "MR per-image percentiles 1-99" in plan.describe()


def test_the_plan_is_deterministic():
    images, labels, spacings, groups = two_spacings()
    first = make_plan(fingerprint(images, labels, spacings, modality="CT", groups=groups))
    second = make_plan(
        fingerprint(
            [im.copy() for im in images],
            [lab.copy() for lab in labels],
            list(spacings),
            modality="CT",
            groups=list(groups),
        )
    )
    assert first == second
    assert first.to_dict() == second.to_dict()
    assert first.describe() == second.describe()


def test_the_plan_without_roi_pixels_is_deterministic_too():
    fp = fingerprint([np.zeros((16, 16))], [np.zeros((16, 16), np.uint8)], None, modality="CT")
    assert make_plan(fp) == make_plan(fp)


def test_describe_mentions_every_choice_and_its_reason():
    plan = make_plan(fingerprint(*two_spacings()[:3]))
    text = plan.describe()
    assert text.splitlines()[0] == "Training plan (cpu):"
    for words in (
        "target spacing",
        "1.5 x 1.5 mm",
        "patch size",
        "128 x 128 px",
        "U-Net levels",
        "batch size",
        "batches per epoch",
        "foreground patches",
        "33% of each batch",
        "normalisation",
        "MR per-image percentiles 1-99",
    ):
        assert words in text
    for reason in plan.reasons.values():
        assert reason in text
    assert len(text.splitlines()) == 1 + 7


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_to_dict_and_from_dict_round_trip_through_json(modality):
    images, labels, spacings, groups = two_spacings()
    plan = make_plan(fingerprint(images, labels, spacings, modality=modality, groups=groups))
    assert TrainingPlan.from_dict(plan.to_dict()) == plan
    assert TrainingPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    no_spacing = make_plan(fingerprint(images, labels, None, modality=modality))
    assert TrainingPlan.from_dict(json.loads(json.dumps(no_spacing.to_dict()))) == no_spacing


# --- the user's settings win -------------------------------------------------------------------


def test_explicit_settings_win_and_say_so():
    plan = make_plan(fingerprint(*two_spacings()[:3]))
    window = Normalization(modality="CT", hu_window=(-100.0, 200.0))
    mine = plan.with_overrides(
        target_spacing_mm=[1, 2],
        patch_size=64,
        levels=3,
        batch_size=None,
        foreground_fraction=0.0,
        batches_per_epoch=7,
        normalization=window,
    )
    assert mine.target_spacing_mm == (1.0, 2.0)
    assert (mine.patch_size, mine.levels, mine.batches_per_epoch) == (64, 3, 7)
    assert mine.foreground_fraction == 0.0  # 0 is a setting, only None means "plan it"
    assert mine.normalization == window
    # None: planned, for the user's patch (8 x 128 x 128 pixels per batch -> 32 patches of 64 px)
    assert mine.batch_size == 32
    assert mine.reasons["batch_size"] == plan.reasons["batch_size"]
    for name in (
        "target_spacing_mm",
        "patch_size",
        "levels",
        "foreground_fraction",
        "batches_per_epoch",
        "normalization",
    ):
        assert mine.reasons[name] == "set by the user"
    assert plan.patch_size == 128 and plan.reasons["patch_size"] != "set by the user"  # the plan is unchanged
    assert mine.describe().count("set by the user") == 6
    assert "1 x 2 mm" in mine.describe() and "CT window -100..200 HU" in mine.describe()


def test_no_overrides_is_the_plan():
    plan = make_plan(fingerprint(*two_spacings()[:3]))
    assert plan.with_overrides() == plan
    assert plan.with_overrides(patch_size=None, levels=None) == plan


def test_a_users_patch_size_gets_levels_that_divide_it():
    plan = make_plan(fingerprint(*two_spacings()[:3])).with_overrides(patch_size=100)
    assert plan.patch_size % 2**plan.levels == 0
    assert "128" not in plan.describe()


def test_an_unknown_override_is_refused():
    plan = make_plan(fingerprint(*two_spacings()[:3]))
    with pytest.raises(
        CtsegSettingsError,
        match=re.escape("cannot override plan setting(s) ['epochs', 'input_shape']; known: ['batch_size',"),
    ):
        plan.with_overrides(input_shape=64, epochs=3)


def test_an_unknown_device_is_refused():
    with pytest.raises(CtsegSettingsError, match=re.escape("device must be one of ['cpu', 'gpu'], got 'tpu'")):
        make_plan(fingerprint_of_side(64), device="tpu")


# --- helpers -----------------------------------------------------------------------------------


def test_levels_for_halves_down_to_about_8_pixels():
    # 24 -> 12 stops (6 would be below 8 px); 100 -> 50 -> 25 stops (odd)
    sides = (8, 16, 24, 32, 48, 100, 128, 144, 512, 1024, 4096)
    assert [levels_for(s) for s in sides] == [1, 1, 1, 2, 2, 2, 4, 4, 6, 6, 6]
    assert levels_for(13) == 1  # odd: no halving, but a U-Net has at least one level
    assert levels_for(64, min_feature_px=4) == 4
    assert levels_for(64, max_levels=2) == 2


def test_round_patch_rounds_up_to_a_multiple():
    assert [round_patch(s, 16) for s in (0, 1, 16, 16.01, 17, 127.9, 128)] == [16, 16, 16, 32, 32, 128, 128]
    assert round_patch(100, 8) == 104


def test_docstring_examples():
    result = doctest.testmod(plan_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 and result.failed == 0


def _big_ct(roi_mm, small_mm, n=4, side=512, spacing=0.7):
    """CT slices of ``side`` px at ``spacing`` mm with a square ROI 1 of ``roi_mm`` and ROI 2 of ``small_mm``."""
    images, labels = [], []
    for _ in range(n):
        label = np.zeros((side, side), np.uint8)
        big, small = int(round(roi_mm / spacing)), int(round(small_mm / spacing))
        label[10 : 10 + big, 10 : 10 + big] = 1
        label[side - 10 - small : side - 10, side - 10 - small : side - 10] = 2
        images.append(np.where(label > 0, 50.0, -100.0))
        labels.append(label)
    return fingerprint(images, labels, [(spacing, spacing)] * n, modality="CT", num_labels=2)


def test_large_rois_on_large_slices_train_at_a_coarser_spacing_on_the_cpu():
    # a 200 mm ROI would need 571 px at 0.7 mm to fit twice; 2.1 mm keeps the 25 mm ROI 12 px across
    plan = make_plan(_big_ct(200.0, 25.2))
    assert plan.target_spacing_mm == (2.1, 2.1)
    assert plan.patch_size == 128
    assert "3 x the median (0.7 mm)" in plan.reasons["target_spacing_mm"]
    # coarsening stops at 4x however small the pixels
    assert make_plan(_big_ct(300.0, 200.0)).target_spacing_mm == (2.8, 2.8)


def test_small_rois_keep_the_median_spacing():
    # the smallest ROI (7 mm = 10 px) may not shrink below 12 px: no coarsening at all
    assert make_plan(_big_ct(200.0, 7.0)).target_spacing_mm == (0.7, 0.7)
    # cardiac-sized ROIs fit a 128 px patch twice: the median is kept
    assert make_plan(_big_ct(40.0, 20.0)).target_spacing_mm == (0.7, 0.7)


def test_on_the_gpu_whole_slices_fit_and_the_median_spacing_is_kept():
    plan = make_plan(_big_ct(200.0, 25.2), device="gpu")
    assert plan.target_spacing_mm == (0.7, 0.7) and plan.patch_size == 512
