"""Segmenter at a target pixel spacing, and its post-processing, with stand-in prediction functions.

A model trained at 2 mm pixels must see every slice at 2 mm whatever the scan's own spacing,
and the label maps must come back on the scan's own grid. Slices at 1 mm resampled to 2 mm
are exactly the means of their 2 x 2 blocks (bilinear, pixel centres aligned), and a mask
made of whole 2 x 2 blocks comes back exactly, so the answers here are exact. No Keras.
"""

import logging

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.segment.patches import patch_origins
from ctseg_helpers.segment.postprocess import PostProcessing
from ctseg_helpers.segment.segmenter import Segmenter

TARGET_MM = (2.0, 2.0)


def threshold(batch):
    """Identity-like probabilities: channel 1 is the pixels above 0.5, channel 0 the rest."""
    foreground = (batch[..., 0] > 0.5).astype(np.float32)
    return np.stack([1.0 - foreground, foreground], axis=-1)


class Recorder:
    """Stand-in ``predict_fn`` that keeps a copy of every patch it is given."""

    def __init__(self, fn=threshold):
        self.fn = fn
        self.patches = []

    def __call__(self, batch):
        self.patches.extend(np.array(batch[..., 0]))
        return self.fn(batch)


def block_mask(rows, cols, seed=0):
    """A random mask made of whole 2 x 2 blocks (float32 0/1), so 2 mm pixels represent it exactly."""
    blocks = np.random.default_rng(seed).random((rows // 2, cols // 2)) > 0.5
    return np.kron(blocks, np.ones((2, 2))).astype(np.float32)


def block_means(image, factor_rows=2, factor_cols=2):
    """Mean of each ``factor_rows x factor_cols`` block: a 1 mm slice seen at coarser pixels."""
    rows, cols = image.shape
    return image.reshape(rows // factor_rows, factor_rows, cols // factor_cols, factor_cols).mean(axis=(1, 3))


def noise(rows, cols, seed=0):
    return np.random.default_rng(seed).random((rows, cols), dtype=np.float32)


def segmenter(predict_fn, input_shape=32, **kwargs):
    kwargs.setdefault("target_spacing_mm", TARGET_MM)
    return Segmenter(predict_fn, input_shape=input_shape, num_classes=2, **kwargs)


# --- what the network sees -----------------------------------------------------------------------


def test_a_1mm_slice_reaches_the_network_at_half_size_and_comes_back_at_its_own():
    image = noise(64, 64)
    recorder = Recorder()
    labels = segmenter(recorder).segment(image, pixel_spacing_mm=(1.0, 1.0))
    # one 32 x 32 patch: the whole slice at 2 mm, i.e. the means of its 2 x 2 blocks
    assert len(recorder.patches) == 1
    np.testing.assert_allclose(recorder.patches[0], block_means(image), atol=1e-6)
    assert labels.shape == (64, 64) and labels.dtype == np.uint8


def test_a_larger_non_square_slice_is_tiled_at_the_target_spacing():
    image = noise(80, 64, seed=1)
    recorder = Recorder()
    labels = segmenter(recorder, input_shape=16, overlap=0.25).segment(image, pixel_spacing_mm=(1.0, 1.0))
    half = block_means(image)  # 40 x 32
    origins = patch_origins(half.shape, 16, 0.25)
    assert len(recorder.patches) == len(origins)
    for patch, (r, c) in zip(recorder.patches, origins, strict=True):
        np.testing.assert_allclose(patch, half[r : r + 16, c : c + 16], atol=1e-6)
    assert labels.shape == (80, 64)


def test_anisotropic_pixels_are_resampled_along_the_coarse_axis_only():
    image = noise(64, 32, seed=2)  # 1 mm rows x 2 mm columns: 64 mm x 64 mm
    recorder = Recorder()
    labels = segmenter(recorder).segment(image, pixel_spacing_mm=(1.0, 2.0))
    assert len(recorder.patches) == 1
    np.testing.assert_allclose(recorder.patches[0], block_means(image, 2, 1), atol=1e-6)
    assert labels.shape == (64, 32)


def test_an_identity_like_model_gives_back_a_block_aligned_mask_on_the_native_grid():
    mask = block_mask(64, 48)
    recorder = Recorder()
    labels = segmenter(recorder, input_shape=16, overlap=0.5).segment(mask, pixel_spacing_mm=(1.0, 1.0))
    np.testing.assert_array_equal(labels, mask.astype(np.uint8))
    # ... and the network worked on the 32 x 24 grid of 2 mm pixels
    assert len(recorder.patches) == len(patch_origins((32, 24), 16, 0.5))


def test_a_single_1mm_pixel_is_below_the_resolution_of_a_2mm_model():
    image = np.zeros((64, 64), np.float32)
    image[21, 37] = 1.0  # a quarter of a 2 mm pixel: 0.25 after resampling, below the 0.5 threshold
    at_2mm = segmenter(Recorder()).segment(image, pixel_spacing_mm=(1.0, 1.0))
    assert not at_2mm.any()
    at_1mm = segmenter(Recorder(), target_spacing_mm=None).segment(image, pixel_spacing_mm=(1.0, 1.0))
    assert at_1mm.sum() == 1 and at_1mm[21, 37] == 1


def test_probabilities_come_back_on_the_native_grid():
    mask = block_mask(64, 64, seed=3)
    proba = segmenter(Recorder()).predict_proba(mask, pixel_spacing_mm=(1.0, 1.0))
    assert proba.shape == (64, 64, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(proba, axis=-1), mask)


# --- spacings per slice or for all ---------------------------------------------------------------


def test_per_slice_spacings_resample_each_slice_by_its_own():
    stack = np.stack([block_mask(64, 64, seed=s) for s in range(3)])
    recorder = Recorder()
    spacings = np.array([(1.0, 1.0), (2.0, 2.0), (1.0, 1.0)])
    labels = segmenter(recorder).segment(stack, pixel_spacing_mm=spacings)
    np.testing.assert_array_equal(labels, stack.astype(np.uint8))
    # slice 0 and 2 are halved (one patch each); slice 1 is at 2 mm already and is tiled as it is
    origins = patch_origins((64, 64), 32, 0.25)
    assert len(recorder.patches) == 1 + len(origins) + 1
    np.testing.assert_allclose(recorder.patches[0], block_means(stack[0]), atol=1e-6)
    for patch, (r, c) in zip(recorder.patches[1:-1], origins, strict=True):
        np.testing.assert_array_equal(patch, stack[1, r : r + 32, c : c + 32])
    np.testing.assert_allclose(recorder.patches[-1], block_means(stack[2]), atol=1e-6)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), [1.0, 1.0], np.array([1.0, 1.0]), np.ones((3, 2))])
def test_one_spacing_for_all_slices_equals_one_per_slice(spacing):
    stack = np.stack([block_mask(64, 64, seed=s) for s in range(3)])
    recorder = Recorder()
    labels = segmenter(recorder).segment(stack, pixel_spacing_mm=spacing)
    np.testing.assert_array_equal(labels, stack.astype(np.uint8))
    assert len(recorder.patches) == 3  # every slice seen once, at 32 x 32
    for patch, image in zip(recorder.patches, stack, strict=True):
        np.testing.assert_allclose(patch, block_means(image), atol=1e-6)


@pytest.mark.parametrize(
    ("spacing", "shape"),
    [
        (np.ones((3, 2)), r"\(3, 2\)"),
        (np.ones(3), r"\(3,\)"),
        ([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], r"\(2, 3\)"),
        ((1.0, 0.0), r"\(2,\)"),
        ([(1.0, 1.0), (-1.0, 1.0)], r"\(2, 2\)"),
    ],
)
def test_a_wrong_spacing_array_is_refused_before_anything_is_predicted(spacing, shape):
    recorder = Recorder()
    message = (
        r"pixel_spacing_mm must be \(row, col\) or one positive \(row, col\) per slice \(2 slices\); "
        rf"got an array of shape {shape}"
    )
    with pytest.raises(CtsegSettingsError, match=message):
        segmenter(recorder).segment(np.zeros((2, 64, 64)), pixel_spacing_mm=spacing)
    with pytest.raises(CtsegSettingsError, match=message):
        segmenter(recorder).predict_proba(np.zeros((2, 64, 64)), pixel_spacing_mm=spacing)
    assert recorder.patches == []


@pytest.mark.parametrize("spacing", [[(1.0, 1.0), (1.0,)], [(1.0, 1.0), None]])
def test_a_ragged_or_incomplete_spacing_list_is_refused_with_the_same_message(spacing):
    with pytest.raises(CtsegSettingsError, match=r"pixel_spacing_mm must be \(row, col\) or one positive"):
        segmenter(Recorder()).segment(np.zeros((2, 64, 64)), pixel_spacing_mm=spacing)


def test_without_a_spacing_the_slices_are_segmented_at_their_own_pixels_with_a_warning(caplog):
    image = np.zeros((64, 64), np.float32)
    image[21, 37] = 1.0
    recorder = Recorder()
    with caplog.at_level(logging.WARNING, logger="ctseg_helpers.segment.segmenter"):
        labels = segmenter(recorder).segment(image)
    assert (
        "the model works at (2.0, 2.0) mm pixels but no pixel spacing was given for the slices; "
        "they are segmented at their own pixel size"
    ) in caplog.text
    # the patches are windows of the slice itself, so the single pixel survives
    origins = patch_origins((64, 64), 32, 0.25)
    assert len(recorder.patches) == len(origins)
    for patch, (r, c) in zip(recorder.patches, origins, strict=True):
        np.testing.assert_array_equal(patch, image[r : r + 32, c : c + 32])
    assert labels.sum() == 1 and labels[21, 37] == 1


def test_without_a_target_a_given_spacing_changes_nothing_and_warns_nothing(caplog):
    mask = block_mask(64, 64, seed=4)
    recorder = Recorder()
    with caplog.at_level(logging.WARNING, logger="ctseg_helpers.segment.segmenter"):
        labels = segmenter(recorder, target_spacing_mm=None).segment(mask, pixel_spacing_mm=(0.7, 0.7))
    assert caplog.text == ""
    np.testing.assert_array_equal(labels, mask.astype(np.uint8))
    assert len(recorder.patches) == len(patch_origins((64, 64), 32, 0.25))


# --- post-processing ---------------------------------------------------------------------------


def _square_and_far_blob():
    image = np.zeros((64, 64), np.float32)
    image[10:30, 10:30] = 1.0  # 400 px
    image[56:60, 56:60] = 1.0  # 16 px, far away
    return image


def test_postprocessing_given_as_a_dict_is_applied_by_segment_and_skipped_on_request():
    image = _square_and_far_blob()
    seg = segmenter(Recorder(), postprocessing={"largest_foreground": True})
    assert seg.postprocessing == PostProcessing(largest_foreground=True)
    square = np.zeros((64, 64), np.uint8)
    square[10:30, 10:30] = 1
    np.testing.assert_array_equal(seg.segment(image, pixel_spacing_mm=(1.0, 1.0)), square)
    np.testing.assert_array_equal(
        seg.segment(image, pixel_spacing_mm=(1.0, 1.0), postprocess=False), image.astype(np.uint8)
    )
    # probabilities are never post-processed
    proba = seg.predict_proba(image, pixel_spacing_mm=(1.0, 1.0))
    np.testing.assert_array_equal(np.argmax(proba, axis=-1), image)


def test_postprocessing_works_slice_by_slice_on_a_stack():
    image = _square_and_far_blob()
    stack = np.stack([image, image.T])
    seg = segmenter(Recorder(), postprocessing={"largest": [1]})
    labels = seg.segment(stack, pixel_spacing_mm=(1.0, 1.0))
    assert labels.shape == (2, 64, 64)
    assert labels[0].sum() == 400 and labels[1].sum() == 400
    assert labels[0, 56:60, 56:60].sum() == 0 and labels[1, 56:60, 56:60].sum() == 0


def test_fill_holes_given_as_a_dict_fills_a_closed_ring():
    ring = np.zeros((64, 64), np.float32)
    ring[10:40, 10:40] = 1.0
    ring[16:34, 16:34] = 0.0
    seg = segmenter(Recorder(), postprocessing={"fill_holes": [1]})
    labels = seg.segment(ring, pixel_spacing_mm=(1.0, 1.0))
    assert labels.sum() == 30 * 30
    assert seg.segment(ring, pixel_spacing_mm=(1.0, 1.0), postprocess=False).sum() == 30 * 30 - 18 * 18


@pytest.mark.parametrize("postprocessing", [None, {}, PostProcessing()])
def test_no_or_empty_postprocessing_changes_nothing(postprocessing):
    image = _square_and_far_blob()
    labels = segmenter(Recorder(), postprocessing=postprocessing).segment(image, pixel_spacing_mm=(1.0, 1.0))
    np.testing.assert_array_equal(labels, image.astype(np.uint8))


@pytest.mark.parametrize(
    ("postprocessing", "message"),
    [
        (
            {"largest_blob": True},
            r"unknown post-processing setting\(s\) \['largest_blob'\]; the known ones are "
            r"\['largest_foreground', 'largest', 'fill_holes'\]",
        ),
        ({"largest": [0]}, r"largest must hold ROI label values, integers from 1 to 255, got 0"),
        ("largest", r"post-processing settings must be a dict, got 'largest'"),
    ],
)
def test_bad_postprocessing_is_refused_when_the_segmenter_is_built(postprocessing, message):
    with pytest.raises(CtsegSettingsError, match=message):
        segmenter(Recorder(), postprocessing=postprocessing)
