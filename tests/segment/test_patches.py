"""Where patches go and how they are weighted (pure NumPy, no model)."""

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.segment.patches import (
    BLEND_MODES,
    blend_weights,
    compute_steps,
    pad_to_patch,
    patch_origins,
)


@pytest.mark.parametrize(
    ("image_size", "patch", "overlap", "expected"),
    [
        (300, 128, 0.25, [0, 86, 172]),
        (128, 128, 0.5, [0]),
        (100, 128, 0.5, [0]),
        (256, 128, 0.0, [0, 128]),
        (257, 128, 0.0, [0, 64, 129]),
        (217, 64, 0.5, [0, 31, 61, 92, 122, 153]),
    ],
)
def test_steps_cover_the_axis_from_border_to_border(image_size, patch, overlap, expected):
    assert compute_steps(image_size, patch, overlap) == expected


@pytest.mark.parametrize("image_size", [65, 89, 100, 117, 217, 300, 511])
@pytest.mark.parametrize("overlap", [0.0, 0.1, 0.25, 0.33, 0.5, 0.9])
@pytest.mark.parametrize("patch", [32, 64])
def test_steps_keep_at_least_the_requested_overlap(image_size, overlap, patch):
    steps = compute_steps(image_size, patch, overlap)
    assert steps[0] == 0 and steps[-1] == image_size - patch
    gaps = np.diff(steps)
    assert np.all(gaps > 0)
    # e.g. 10 % of 32 px is 3.2 px: neighbours must share at least 4 px (3 px did happen before)
    assert np.all(patch - gaps >= overlap * patch)
    assert np.all(patch - gaps >= np.ceil(overlap * patch - 1e-9))


def test_patch_origins_are_the_grid_of_row_and_column_steps():
    origins = patch_origins((300, 217), 128, 0.25)
    rows, cols = compute_steps(300, 128, 0.25), compute_steps(217, 128, 0.25)
    assert origins == [(r, c) for r in rows for c in cols]
    covered = np.zeros((300, 217), bool)
    for r, c in origins:
        covered[r : r + 128, c : c + 128] = True
    assert covered.all()


@pytest.mark.parametrize("overlap", [-0.1, 1.0, 1.5])
def test_overlap_outside_0_1_is_refused(overlap):
    with pytest.raises(CtsegSettingsError, match=r"overlap must be a fraction of the patch size in \[0, 1\)"):
        compute_steps(300, 128, overlap)


def test_non_positive_patch_size_is_refused():
    with pytest.raises(CtsegSettingsError, match="patch_size must be a positive number of pixels, got 0"):
        compute_steps(300, 0, 0.25)
    with pytest.raises(CtsegSettingsError, match="patch_size must be a positive number of pixels, got -4"):
        blend_weights(-4, "hann")


@pytest.mark.parametrize("blend", BLEND_MODES)
@pytest.mark.parametrize("size", [1, 2, 7, 64])
def test_blend_weights_are_positive_symmetric_and_peak_at_1(blend, size):
    w = blend_weights(size, blend)
    assert w.shape == (size, size) and w.dtype == np.float32
    assert np.all(w > 0)
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w.max() == pytest.approx(1.0, abs=0.05)


def test_blend_weights_favour_the_patch_centre_except_average():
    assert np.all(blend_weights(64, "average") == 1)
    for blend in ("hann", "gaussian"):
        w = blend_weights(64, blend)
        assert w[32, 32] > w[32, 8] > w[32, 0] > 0


def test_blend_weights_are_cached_and_read_only():
    w = blend_weights(32, "gaussian")
    assert w is blend_weights(32, "gaussian")
    with pytest.raises(ValueError, match="read-only"):
        w[0, 0] = 5


def test_unknown_blend_is_refused():
    with pytest.raises(CtsegSettingsError, match="blend must be one of average, hann, gaussian; got 'crop'"):
        blend_weights(64, "crop")


def test_pad_to_patch_centres_small_images():
    assert pad_to_patch((60, 64), 64) == ((2, 2), (0, 0))
    assert pad_to_patch((61, 100), 64) == ((1, 2), (0, 0))
    assert pad_to_patch((300, 217), 64) == ((0, 0), (0, 0))
