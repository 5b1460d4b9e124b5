import numpy as np
import pytest

from ctseg_helpers.show.colors import PALETTE, label_color, legend_handles, overlay


def test_each_label_keeps_its_colour_whatever_the_number_of_labels():
    assert label_color(1) == tuple(float(c) for c in PALETTE[0])
    assert label_color(11) == label_color(1)
    handles = legend_handles(["a", "b"])
    assert [h.get_label() for h in handles] == ["a", "b"]


def test_overlay_colours_only_labelled_pixels():
    image = np.zeros((4, 4))
    labels = np.zeros((4, 4), dtype=np.uint8)
    labels[1, 1] = 2
    rgb = overlay(image, labels, alpha=1.0)
    assert rgb.shape == (4, 4, 3)
    np.testing.assert_allclose(rgb[1, 1], PALETTE[1])
    np.testing.assert_allclose(rgb[0, 0], 0.0)


def test_overlay_errors():
    with pytest.raises(ValueError, match=r"image shape \(2, 2\) and label shape \(3, 3\) differ"):
        overlay(np.zeros((2, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="alpha must be within 0..1, got 2"):
        overlay(np.zeros((2, 2)), np.zeros((2, 2)), alpha=2)
    with pytest.raises(ValueError, match="label value must be >= 1"):
        label_color(0)
