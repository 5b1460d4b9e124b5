"""The array operations of volume segmentation: per-block slices, axes combined, planes rotated."""

from __future__ import annotations

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.io.probabilities import quantise
from ctseg_helpers.segment.blocks import (
    argmax_uint8,
    combine_labels,
    rotate_planes,
    rotated_plane_shape,
    segment_block,
    segmenter_slices,
)
from ctseg_helpers.segment.segmenter import Segmenter

THRESHOLD = 50


def threshold_fn(batch):
    """Class 1 where the raw value exceeds THRESHOLD: the same answer along any axis."""
    p = (batch[..., 0] > THRESHOLD).astype(np.float32)
    return np.stack([1 - p, p], axis=-1)


def make_segmenter(fn, size=16):
    return Segmenter(fn, input_shape=size, num_classes=2, mode="tile", batch_size=4)


def test_the_segmenter_gets_a_bounded_number_of_slices():
    class Recorder:
        num_classes = 2
        input_shape = 16
        sizes = []

        def segment(self, images):
            self.sizes.append(len(images))
            return np.zeros(images.shape, np.uint8)

    seg = Recorder()
    per_slice = 24 * 28 * (20 + 4 * 2)
    assert segmenter_slices(seg, (24, 28), 3.5 * per_slice / 1e9) == 3
    assert segmenter_slices(seg, (8, 8), 3 * 16 * 16 * 28 / 1e9) == 3  # small planes count as one patch
    assert segmenter_slices(seg, (24, 28), 3.5 * per_slice / 1e9, proba=True) == 2  # 36 bytes per pixel
    segment_block(np.zeros((7, 24, 28)), seg, 0, max_slices=3)
    assert seg.sizes == [3, 3, 1]
    with pytest.raises(CtsegSettingsError, match="segmenting one 24 x 28 slice needs about .* raise --max-gb"):
        segmenter_slices(seg, (24, 28), per_slice / 2 / 1e9)


def test_rotate_planes_round_trip():
    labels = np.random.default_rng(1).integers(0, 3, (2, 7, 10)).astype(np.uint8)
    big = rotated_plane_shape((7, 10), 90)
    assert big == (10, 7)
    turned = rotate_planes(labels, 90, big, order=0)
    np.testing.assert_array_equal(turned, np.rot90(labels, k=-1, axes=(1, 2)))
    np.testing.assert_array_equal(rotate_planes(turned, -90, (7, 10), order=0), labels)
    assert rotated_plane_shape((10, 10), 45) == (15, 15)


def test_combine_labels_hand_built():
    a = np.array([1, 1, 2, 0], np.uint8)
    b = np.array([1, 2, 0, 1], np.uint8)
    pa = np.array([[0, 255, 0], [0, 200, 55], [0, 50, 205], [128, 127, 0]], np.uint8)
    pb = np.array([[0, 255, 0], [0, 10, 245], [240, 0, 15], [127, 128, 0]], np.uint8)
    # voxel 3: tied votes and tied sums (255 each) -> lowest class
    np.testing.assert_array_equal(combine_labels([a, b], [pa, pb], "vote"), [1, 2, 0, 0])
    np.testing.assert_array_equal(combine_labels([a, b], [pa, pb], "mean"), [1, 2, 0, 0])
    c = np.array([2, 2, 2, 2], np.uint8)
    pc = np.zeros((4, 3), np.uint8)
    pc[:, 2] = 255
    # three axes: a majority wins whatever the probabilities
    np.testing.assert_array_equal(combine_labels([a, b, c], [pa, pb, pc], "vote"), [1, 2, 2, 0])


def test_combine_labels_errors():
    a = np.zeros(3, np.uint8)
    with pytest.raises(CtsegSettingsError, match="combine must be 'vote' or 'mean', got 'max'"):
        combine_labels([a], [np.zeros((3, 2), np.uint8)], "max")
    with pytest.raises(CtsegSettingsError, match="one label and one probability array per axis"):
        combine_labels([a, a], [np.zeros((3, 2), np.uint8)], "vote")


def test_argmax_uint8_matches_numpy():
    proba = np.random.default_rng(2).random((19, 5, 6, 4)).astype(np.float32)
    labels = argmax_uint8(proba, step=4)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.argmax(proba, axis=-1))


def test_quantise_and_segment_block():
    np.testing.assert_array_equal(quantise(np.array([0.0, 0.5, 1.0, 1.2])), [0, 128, 255, 255])
    block = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) * 5
    seg = make_segmenter(threshold_fn, 4)
    for axis in (0, 1, 2):
        np.testing.assert_array_equal(segment_block(block, seg, axis), block > THRESHOLD)
        assert segment_block(block, seg, axis, proba=True).shape == (2, 3, 4, 2)
