"""Resampling between pixel spacings, and native-resolution slices resampled to the plan's spacing."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.prepare import resample
from ctseg_helpers.prepare.dataset import RawPairs, native_slices
from ctseg_helpers.prepare.normalize import Normalization
from ctseg_helpers.prepare.resample import needs_resampling, resampled_shape, resize_image, resize_label


def random_labels(shape, values=(0, 1, 2, 5, 7), seed=0):
    return np.random.default_rng(seed).choice(np.array(values, np.uint8), size=shape)


# --- resampled_shape ---------------------------------------------------------------------------


def test_resampled_shape_keeps_the_field_of_view():
    assert resampled_shape((256, 200), (1.25, 1.25), (2.5, 2.5)) == (128, 100)
    assert resampled_shape((100, 60), (0.7, 0.9), (1.0, 1.5)) == (70, 36)  # 70 x 54 mm either way
    assert resampled_shape((10, 10), (2.0, 2.0), (1.0, 1.0)) == (20, 20)
    assert resampled_shape((10, 20), (1.0, 1.0), (1.0, 4.0)) == (10, 5)  # rows and columns apart
    assert resampled_shape((10, 10, 3), (1.0, 1.0), (2.0, 2.0)) == (5, 5)  # channels are not pixels
    assert resampled_shape((100, 100), (0.3, 0.3), (0.7, 0.7)) == (43, 43)  # 42.86 rounded


def test_resampled_shape_is_at_least_one_pixel():
    assert resampled_shape((3, 3), (1.0, 1.0), (10.0, 10.0)) == (1, 1)


@pytest.mark.parametrize(
    ("spacing", "target"),
    [
        ((0.0, 1.0), (1.0, 1.0)),
        ((1.0, 1.0), (1.0, -2.0)),
        ((1.0, 1.0, 1.0), (1.0, 1.0)),
        ((1.0, 1.0), (1.0,)),
    ],
)
def test_a_spacing_must_be_two_positive_numbers(spacing, target):
    with pytest.raises(
        CtsegSettingsError,
        match=re.escape(f"pixel spacings must be two positive numbers (row, col) in mm; got {spacing} and {target}"),
    ):
        resampled_shape((10, 10), spacing, target)


@pytest.mark.parametrize(("spacing", "target"), [(1.0, (1.0, 1.0)), ((1.0, 1.0), 2.0), (None, (1.0, 1.0))])
def test_a_scalar_spacing_is_refused_with_the_same_message(spacing, target):
    with pytest.raises(CtsegSettingsError, match="pixel spacings must be two positive numbers"):
        resampled_shape((10, 10), spacing, target)


# --- resize_label ------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [(2, 2), (3, 3), (2, 3), (3, 1)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resize_label_up_then_down_by_a_whole_factor_is_exact(factor, seed):
    label = random_labels((7, 5), seed=seed)
    up = resize_label(label, (7 * factor[0], 5 * factor[1]))
    down = resize_label(up, label.shape)
    np.testing.assert_array_equal(down, label)
    assert down.dtype == label.dtype


def test_resize_label_up_by_two_repeats_every_pixel():
    # Each new pixel centre lies a quarter pixel from its source pixel's centre, whose mask
    # weighs 9/16 there: more than all three neighbours together.
    label = random_labels((7, 5), seed=3)
    np.testing.assert_array_equal(resize_label(label, (14, 10)), np.kron(label, np.ones((2, 2), np.uint8)))


def test_resize_label_rounds_a_lone_corner_pixel_off_a_block_as_the_masks_say():
    # Up by 3, a new pixel in the corner of a lone 1 among 0s is 1/3 pixel from the 1's centre
    # and the 1 weighs (2/3)**2 = 4/9 there: the 0s win, the corner is rounded off.
    label = np.zeros((3, 3), np.uint8)
    label[1, 1] = 1
    up = resize_label(label, (9, 9))
    assert up[3:6, 3:6].tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert up.sum() == 5


def _nearest(label, shape):
    """Nearest-neighbour sampling on the same pixel centres: the reference the masks must beat."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * label.shape[0] / shape[0]).astype(int), label.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * label.shape[1] / shape[1]).astype(int), label.shape[1] - 1)
    return label[np.ix_(rows, cols)]


def test_resize_label_keeps_the_areas_of_small_rois_through_a_round_trip():
    # The phantom patient of seed 2 (2.70 mm pixels) resampled to 2.83 mm, as training does, and
    # back: the psoas is about 60 pixels, so half-pixel border moves are percents of its area.
    from ctseg_helpers.demo.phantom import phantom_series

    slices, info = phantom_series(4, size=128, seed=2)
    shape = resampled_shape((128, 128), (info["pixel_spacing_mm"],) * 2, (2.83, 2.83))
    assert shape == (122, 122)

    def mean_abs_area_error(resize):
        errors = []
        for s in slices:
            back = resize(resize(s.labels, shape), s.labels.shape)
            errors += [abs(np.sum(back == k) / np.sum(s.labels == k) - 1) for k in range(1, 7)]
        return float(np.mean(errors))

    assert mean_abs_area_error(resize_label) < 0.01
    assert mean_abs_area_error(_nearest) > 0.013


@pytest.mark.parametrize("shape", [(13, 8), (4, 3), (1, 1), (30, 2), (7, 5)])
def test_resize_label_never_creates_a_value(shape):
    label = random_labels((7, 5), values=(0, 1, 3, 200))
    out = resize_label(label, shape)
    assert out.shape == shape
    assert set(np.unique(out)) <= {0, 1, 3, 200}


def test_resize_label_keeps_a_single_pixel_at_its_place():
    label = np.zeros((4, 4), np.int32)
    label[1, 2] = 9
    up = resize_label(label, (8, 8))
    assert np.argwhere(up == 9).tolist() == [[2, 4], [2, 5], [3, 4], [3, 5]]
    assert up.dtype == np.int32


def test_resize_label_of_the_same_shape_is_the_input():
    label = random_labels((6, 4))
    assert resize_label(label, (6, 4)) is label


# --- resize_image ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(11, 4), (2, 14), (1, 1)])
def test_resize_image_of_a_constant_stays_constant(shape):
    out = resize_image(np.full((5, 7), 3.25), shape)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, 3.25)


def test_resize_image_resizes_every_channel():
    image = np.stack([np.full((5, 7), 1.0), np.full((5, 7), -2.0)], axis=-1)
    out = resize_image(image, (10, 3))
    assert out.shape == (10, 3, 2)
    np.testing.assert_array_equal(out[..., 0], 1.0)
    np.testing.assert_array_equal(out[..., 1], -2.0)


def test_resize_image_aligns_pixel_centres():
    # Two pixels at centres 0.5 and 1.5; four new centres at 0.25, 0.75, 1.25 and 1.75 of the old
    # grid: the edge values are kept, the inner ones are linear.
    np.testing.assert_allclose(resize_image(np.array([[0.0, 1.0]]), (1, 4)), [[0.0, 0.25, 0.75, 1.0]])
    # Down by 2: each new pixel is the mean of the two old ones it covers.
    np.testing.assert_allclose(resize_image(np.array([[0.0, 1.0, 2.0, 3.0]]), (1, 2)), [[0.5, 2.5]])


def test_resize_image_of_the_same_shape_is_float32_unchanged():
    image = np.arange(6, dtype=np.int16).reshape(2, 3)
    out = resize_image(image, (2, 3))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, image)


# --- needs_resampling --------------------------------------------------------------------------


def test_needs_resampling_within_one_percent():
    assert not needs_resampling((1.0, 1.0), (1.0, 1.0))
    assert not needs_resampling((1.009, 0.995), (1.0, 1.0))
    assert needs_resampling((1.02, 1.0), (1.0, 1.0))
    assert needs_resampling((1.0, 0.5), (1.0, 1.0))
    assert not needs_resampling((1.02, 1.0), (1.0, 1.0), tolerance=0.05)


def test_without_a_spacing_nothing_is_resampled():
    assert not needs_resampling(None, (1.0, 1.0))
    assert not needs_resampling((2.0, 2.0), None)


def test_docstring_examples():
    result = doctest.testmod(resample, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 and result.failed == 0


# --- native_slices -----------------------------------------------------------------------------


def raw_pairs(images, labels, spacings, *, modality="CT"):
    names = [f"s{i}" for i in range(len(images))]
    return RawPairs(
        list(images),
        list(labels),
        list(spacings),
        [f"P{i // 2}" for i in range(len(images))],
        names,
        [modality] * len(images),
        Path("train"),
    )


def three_slices():
    """Slice 0: 20 x 30 px at 1 mm; slice 1: 10 x 15 px at 2 mm (the same field of view); slice 2:
    8 x 8 px without spacing. HU 50 inside a label-1 box, 150 (label 2) in the last row, 0 elsewhere."""
    images, labels = [], []
    for shape in ((20, 30), (10, 15), (8, 8)):
        image, label = np.zeros(shape), np.zeros(shape, np.uint8)
        image[1:5, 2:6], label[1:5, 2:6] = 50.0, 1
        image[-1], label[-1] = 150.0, 2
        images.append(image)
        labels.append(label)
    return raw_pairs(images, labels, [(1.0, 1.0), (2.0, 2.0), None])


WINDOW = Normalization(modality="CT", hu_window=(0.0, 100.0))


def test_native_slices_are_resampled_to_the_target_spacing():
    raw = three_slices()
    out = native_slices(raw, 2, WINDOW, (1.0, 1.0))
    assert out.images.shape == out.labels.shape == (3, 20, 30)
    assert out.images.dtype == np.float32 and out.labels.dtype == np.uint8
    assert out.shapes.tolist() == [[20, 30], [20, 30], [8, 8]]
    assert [out.slice_shape(i) for i in range(3)] == [(20, 30), (20, 30), (8, 8)]
    np.testing.assert_array_equal(out.labels[0], raw.labels[0])  # already at the target
    np.testing.assert_array_equal(out.labels[1], np.kron(raw.labels[1], np.ones((2, 2), np.uint8)))
    np.testing.assert_array_equal(out.labels[2, :8, :8], raw.labels[2])  # no spacing: its own pixels
    assert out.label_values() == [0, 1, 2]
    assert out.names == ["s0", "s1", "s2"] and out.groups.tolist() == ["P0", "P0", "P1"]
    assert out.pixel_spacing_mm == (1.5, 1.5)  # median of the known spacings
    assert out.normalization == WINDOW


def test_native_slices_are_padded_with_background():
    out = native_slices(three_slices(), 2, WINDOW, (1.0, 1.0))
    # Slice 2 is 8 x 8 in a 20 x 30 stack: everything beyond is image 0 and label 0.
    assert not out.labels[2, 8:].any() and not out.labels[2, :, 8:].any()
    assert not out.images[2, 8:].any() and not out.images[2, :, 8:].any()
    padded = native_slices(three_slices(), 2, WINDOW, (1.0, 1.0), min_size=32)
    assert padded.images.shape == (3, 32, 32)
    assert padded.shapes.tolist() == [[20, 30], [20, 30], [8, 8]]
    assert not padded.labels[:, 20:].any() and not padded.labels[:, :, 30:].any()


def test_native_slices_are_normalised_to_0_1():
    raw = three_slices()
    out = native_slices(raw, 2, WINDOW, (1.0, 1.0))
    assert out.images.min() == 0.0 and out.images.max() == 1.0
    # 0 HU -> 0, 50 HU -> 0.5, 150 HU clipped to 1 in the slices kept at their pixels.
    np.testing.assert_array_equal(out.images[0], np.clip(raw.images[0] / 100, 0, 1))
    np.testing.assert_array_equal(out.images[2, :8, :8], np.clip(raw.images[2] / 100, 0, 1))
    # Slice 1, upsampled by 2: the inside of the box stays 0.5, the last row (edge) stays 1, and
    # the row before it is 3/4 of the way from 0 to 1.
    np.testing.assert_array_equal(out.images[1, 4:8, 6:10], 0.5)
    np.testing.assert_array_equal(out.images[1, 19], 1.0)
    np.testing.assert_allclose(out.images[1, 18], 0.75)
    mr = native_slices(raw, 2, Normalization(modality="MR", percentiles=(0.0, 100.0)), (1.0, 1.0))
    for i in range(3):
        rows, cols = mr.slice_shape(i)
        assert mr.images[i, :rows, :cols].min() == 0.0 and mr.images[i, :rows, :cols].max() == 1.0


def test_without_a_target_every_slice_keeps_its_pixels():
    raw = three_slices()
    out = native_slices(raw, 2, WINDOW, None)
    assert out.shapes.tolist() == [[20, 30], [10, 15], [8, 8]]
    for i, label in enumerate(raw.labels):
        np.testing.assert_array_equal(out.labels[i, : label.shape[0], : label.shape[1]], label)


def test_native_slices_refuse_labels_above_num_labels():
    with pytest.raises(CtsegDataError, match=re.escape("s0: label values [0, 1, 2] do not fit num_labels=1")):
        native_slices(three_slices(), 1, WINDOW, (1.0, 1.0))


def test_native_slices_refuse_a_label_of_another_shape():
    raw = raw_pairs([np.zeros((4, 4))], [np.zeros((4, 5), np.uint8)], [(1.0, 1.0)])
    with pytest.raises(CtsegDataError, match=re.escape("s0: image shape (4, 4) and label shape (4, 5) differ")):
        native_slices(raw, 1, WINDOW, (1.0, 1.0))
