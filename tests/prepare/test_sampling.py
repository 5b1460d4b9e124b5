"""Random training patches with foreground oversampling, and the tf.data pipeline that feeds them."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.prepare.augment import AugmentConfig
from ctseg_helpers.prepare.sampling import PatchSampler, make_patch_dataset

PATCH = 32


def corner_stack():
    """Two slices in a 40 x 40 stack.

    Slice 0 is 20 x 24 px (smaller than a 32 px patch): image 1 inside, a 2 x 2 ROI of label 1 in
    its top-left corner, and 5.0 beyond its real extent, which must never be read. Slice 1 is
    40 x 40 (larger than the patch): image 1, a 2 x 2 ROI of label 3 in its bottom-right corner.
    """
    images = np.zeros((2, 40, 40), np.float32)
    labels = np.zeros((2, 40, 40), np.uint8)
    images[0] = 5.0
    images[0, :20, :24] = 1.0
    labels[0, :2, :2] = 1
    images[1] = 1.0
    labels[1, 38:, 38:] = 3
    return images, labels, np.array([[20, 24], [40, 40]])


def draws(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def record_forcing(sampler):
    """Wrap ``sampler.sample`` so that each draw's ``force_foreground`` and label are recorded."""
    calls, original = [], sampler.sample

    def sample(force_foreground=False):
        image, label, index = original(force_foreground)
        calls.append((force_foreground, label))
        return image, label, index

    sampler.sample = sample
    return calls


# --- foreground ----------------------------------------------------------------------------------


@pytest.mark.parametrize("margin", [0, 4])
def test_with_foreground_fraction_1_every_patch_holds_an_roi(margin):
    sampler = PatchSampler(
        *corner_stack(), patch_size=PATCH, margin=margin, batch_size=4, foreground_fraction=1.0, seed=0
    )
    assert sampler.n_forced == 4
    seen = {1: 0, 3: 0}
    for image, label in draws(sampler, 300):
        patch = label[margin : margin + PATCH, margin : margin + PATCH]  # the ROI is in the patch itself
        values = set(np.unique(patch).tolist()) - {0}
        assert values, "a forced patch holds no ROI"
        for v in values:
            seen[v] += 1
        assert image.shape == (PATCH + 2 * margin,) * 2 + (1,)
    # Each ROI value is chosen with equal chance, though label 3 is in one slice only.
    assert seen[1] > 100 and seen[3] > 100


def test_a_forced_patch_in_a_slice_smaller_than_the_patch_shows_the_whole_slice():
    sampler = PatchSampler(*corner_stack(), patch_size=PATCH, seed=1)
    for _ in range(100):
        image, label, index = sampler.sample(force_foreground=True)
        assert label.max() > 0
        if index == 0:
            assert image.sum() == 20 * 24 and set(np.unique(image).tolist()) == {0.0, 1.0}
            assert (label == 1).sum() == 4


@pytest.mark.parametrize(("batch_size", "n_forced"), [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2), (8, 3), (9, 3)])
def test_a_third_of_every_batch_is_forced(batch_size, n_forced):
    # Label 1 is a single pixel in a large slice: random patches usually miss it.
    images, labels = np.ones((1, 200, 200), np.float32), np.zeros((1, 200, 200), np.uint8)
    labels[0, 150, 20] = 1
    sampler = PatchSampler(images, labels, patch_size=16, batch_size=batch_size, seed=2)
    assert sampler.n_forced == n_forced
    calls = record_forcing(sampler)
    draws(sampler, 5 * batch_size)
    forced = [f for f, _ in calls]
    # The last n_forced of each batch ...
    assert forced == ([False] * (batch_size - n_forced) + [True] * n_forced) * 5
    # ... so any batch_size consecutive draws hold exactly n_forced forced ones.
    for start in range(len(forced) - batch_size + 1):
        assert sum(forced[start : start + batch_size]) == n_forced
    assert all(label[label > 0].size == 1 for f, label in calls if f)


def test_foreground_fraction_0_forces_nothing():
    images, labels, shapes = corner_stack()
    sampler = PatchSampler(images, labels, shapes, patch_size=PATCH, batch_size=4, foreground_fraction=0.0)
    calls = record_forcing(sampler)
    draws(sampler, 12)
    assert sampler.n_forced == 0 and not any(f for f, _ in calls)


def test_forcing_without_any_roi_draws_a_random_patch():
    sampler = PatchSampler(np.ones((2, 40, 40)), np.zeros((2, 40, 40)), patch_size=PATCH, seed=0)
    assert sampler.classes == []
    image, label, index = sampler.sample(force_foreground=True)
    assert image.shape == (PATCH, PATCH) and not label.any() and index in (0, 1)


# --- where patches go ----------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_patches_stay_inside_a_slice_larger_than_the_patch(fraction):
    # Real slices 40 x 36 and 33 x 48 in a 48 x 48 stack: ones inside, zeros (padding) beyond.
    images, labels = np.zeros((2, 48, 48), np.float32), np.zeros((2, 48, 48), np.uint8)
    images[0, :40, :36], images[1, :33, :48] = 1.0, 1.0
    labels[0, 39, 35] = 1  # ROIs in the last real pixel and the first one
    labels[1, 0, 0] = 2
    sampler = PatchSampler(
        images,
        labels,
        [[40, 36], [33, 48]],
        patch_size=PATCH,
        margin=3,
        batch_size=2,
        foreground_fraction=fraction,
        seed=3,
    )
    for image, _ in draws(sampler, 200):
        np.testing.assert_array_equal(image[3 : 3 + PATCH, 3 : 3 + PATCH, 0], 1.0)  # no padding in the patch


def test_a_slice_smaller_than_the_patch_is_zero_padded():
    images, labels, shapes = corner_stack()  # slice 0: 20 x 24 ones, 5.0 beyond (not real)
    sampler = PatchSampler(images[:1], labels[:1], shapes[:1], patch_size=PATCH, foreground_fraction=0.0, seed=4)
    for image, label in draws(sampler, 50):
        image = image[..., 0]
        rows, cols = np.nonzero(image)
        assert set(np.unique(image).tolist()) == {0.0, 1.0}  # never the 5.0 beyond the real slice
        assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (20, 24)
        assert image.sum() == 20 * 24  # the whole slice, once
        np.testing.assert_array_equal(label[image == 0], 0)
        assert (label == 1).sum() == 4


def test_without_shapes_the_whole_stack_is_real():
    sampler = PatchSampler(np.ones((1, 20, 20)), np.zeros((1, 20, 20)), patch_size=PATCH)
    assert sampler.shapes.tolist() == [[20, 20]]
    image, _, _ = sampler.sample()
    assert image.sum() == 400


def test_region_size_is_the_patch_and_two_margins():
    sampler = PatchSampler(*corner_stack(), patch_size=PATCH, margin=4)
    assert sampler.region_size == 40
    image, label, _ = sampler.sample()
    assert image.shape == label.shape == (40, 40)
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert PatchSampler(*corner_stack(), patch_size=7).region_size == 7


def test_the_same_seed_gives_the_same_patches():
    def run(seed):
        return draws(PatchSampler(*corner_stack(), patch_size=16, margin=2, batch_size=3, seed=seed), 30)

    first, again, other = run(7), run(7), run(8)
    for (a_image, a_label), (b_image, b_label) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a_image, b_image)
        np.testing.assert_array_equal(a_label, b_label)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("images", "labels"),
    [
        (np.zeros((8, 8)), np.zeros((8, 8))),
        (np.zeros((1, 8, 8)), np.zeros((1, 8, 9))),
        (np.zeros((0, 8, 8)), np.zeros((0, 8, 8))),
    ],
)
def test_stacks_must_be_non_empty_and_alike(images, labels):
    with pytest.raises(
        CtsegDataError,
        match=re.escape(
            f"images {images.shape} and labels {labels.shape} must be non-empty stacks of the same shape (K, H, W)"
        ),
    ):
        PatchSampler(images, labels, patch_size=4)


@pytest.mark.parametrize(("patch_size", "margin", "batch_size"), [(0, 0, 1), (8, -1, 1), (8, 0, 0)])
def test_patch_margin_and_batch_must_be_in_range(patch_size, margin, batch_size):
    with pytest.raises(
        CtsegSettingsError,
        match=re.escape(
            f"patch_size and batch_size must be positive and margin not negative; got patch_size={patch_size}, "
            f"margin={margin}, batch_size={batch_size}"
        ),
    ):
        PatchSampler(
            np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), patch_size=patch_size, margin=margin, batch_size=batch_size
        )


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_foreground_fraction_must_be_within_0_1(fraction):
    with pytest.raises(CtsegSettingsError, match=re.escape(f"foreground_fraction must be within 0..1, got {fraction}")):
        PatchSampler(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), patch_size=4, foreground_fraction=fraction)


# --- tf.data -------------------------------------------------------------------------------------


def test_make_patch_dataset_batches_with_and_without_augmentation():
    images, labels, shapes = corner_stack()
    images = np.minimum(images, 1.0)  # normalised images: 0..1
    labels[1, 10:20, 5:15] = 1  # labels 0, 1 and 3: a bilinear mix of 1 and 3 would show as 2

    def sampler():
        return PatchSampler(images, labels, shapes, patch_size=PATCH, margin=4, batch_size=4, seed=5)

    plain = list(make_patch_dataset(sampler()).take(2).as_numpy_iterator())
    expected = draws(sampler(), 4)  # the same seed: the first batch is these regions' centres
    for x, y in plain:
        assert x.shape == (4, PATCH, PATCH, 1) and x.dtype == np.float32
        assert y.shape == (4, PATCH, PATCH) and y.dtype == np.uint8
    for i, (image, label) in enumerate(expected):
        np.testing.assert_array_equal(plain[0][0][i], image[4:-4, 4:-4])
        np.testing.assert_array_equal(plain[0][1][i], label[4:-4, 4:-4])

    strong = AugmentConfig(
        p_affine=1.0,
        p_elastic=1.0,
        p_noise=1.0,
        p_blur=1.0,
        p_lowres=1.0,
        p_gamma=1.0,
        p_contrast=1.0,
        p_brightness=1.0,
        p_brightness_mult=1.0,
    )
    augmented = list(make_patch_dataset(sampler(), augment=strong, seed=1).take(3).as_numpy_iterator())
    for x, y in augmented:
        assert x.shape == (4, PATCH, PATCH, 1) and x.dtype == np.float32
        assert y.shape == (4, PATCH, PATCH) and y.dtype == np.uint8
        assert set(np.unique(y).tolist()) <= {0, 1, 3}
        assert 0.0 <= x.min() and x.max() <= 1.0
    assert not np.array_equal(augmented[0][0], plain[0][0])  # the augmentation did something
