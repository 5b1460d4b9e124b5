"""Slice browser: rendering is exact NumPy; widgets drive it."""

from __future__ import annotations

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.show import browser
from ctseg_helpers.show.colors import label_color


def _stack():
    images = np.tile(np.linspace(0, 100, 8, dtype=np.float32), (3, 8, 1))
    pred = np.zeros((3, 8, 8), np.uint8)
    pred[:, 1:3, 1:3] = 1
    pred[:, 5:7, 5:7] = 2
    truth = np.zeros_like(pred)
    truth[1, 1:4, 1:4] = 1
    return images, pred, truth


def test_render_panels_and_roi_toggles():
    images, pred, truth = _stack()
    b = browser.slice_browser(images, pred, truth, ["a", "b"], opacity=1.0)
    assert b.panels() == ["image", "prediction", "ground truth"]
    plain, predicted, manual = b.render(0)
    assert plain.shape == (8, 8, 3)
    np.testing.assert_allclose(predicted[1, 1], label_color(1))
    np.testing.assert_allclose(predicted[5, 5], label_color(2))
    np.testing.assert_allclose(predicted[0, 0], plain[0, 0])
    np.testing.assert_allclose(manual, plain)  # no truth on slice 0
    b.visible[2] = False
    _, predicted, _ = b.render(0)
    np.testing.assert_allclose(predicted[5, 5], plain[5, 5])
    np.testing.assert_allclose(predicted[1, 1], label_color(1))


def test_opacity_blends():
    images, pred, _ = _stack()
    b = browser.SliceBrowser(images, pred, opacity=0.5)
    plain, predicted = b.render(1)
    expected = 0.5 * plain[1, 1] + 0.5 * np.array(label_color(1))
    np.testing.assert_allclose(predicted[1, 1], expected, rtol=1e-6)
    assert b.panels() == ["image", "prediction"]
    assert b.label_names == ["ROI 1", "ROI 2"]


def test_caption_names_rois_and_missing_truth():
    images, pred, truth = _stack()
    b = browser.SliceBrowser(images, pred, truth, ["a", "b"], titles=["x0", "x1", "x2"], has_truth=[False, True, True])
    text = b.caption(0)
    assert "1 / 3" in text and "x0" in text and "prediction: a, b" in text
    assert "no manual labels for this slice" in text
    assert "ground truth: a" in b.caption(1)
    assert "ground truth: no ROI" in b.caption(2)


def test_widgets_follow_controls():
    images, pred, truth = _stack()
    b = browser.SliceBrowser(images, pred, truth, ["a", "b"])
    widget = b.widget
    assert (b._slider.min, b._slider.max) == (1, 3) and len(b._toggles) == 2 and len(b._images) == 3
    first = b._images[1].value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    b.show_slice(1)
    assert b.index == 1 and "2 / 3" in b._caption.value and b._slider.value == 2  # the slider reads as the caption
    b._slider.value = 3
    assert b.index == 2 and "3 / 3" in b._caption.value
    b._toggles[0].value = False
    assert b.visible == {1: False, 2: True}
    b._opacity.value = 0.0
    assert b._images[1].value == b._images[0].value  # nothing drawn at opacity 0
    bundle = b._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["image/png"] == b.snapshot_png()
    assert widget is b.widget


def test_small_images_are_enlarged_for_display():
    import io  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415

    images, pred, _ = _stack()
    b = browser.SliceBrowser(images, pred)
    b.widget  # noqa: B018 - builds the widgets
    shown = Image.open(io.BytesIO(b._images[0].value))
    assert shown.size == (256, 256)
    still = Image.open(io.BytesIO(b.snapshot_png(2)))
    assert still.size == (256 * 2 + 4, 256)


def test_errors():
    images, pred, _ = _stack()
    with pytest.raises(CtsegDataError, match=r"stack of shape \(K, M, N\)"):
        browser.SliceBrowser(images[0])
    with pytest.raises(CtsegDataError, match="prediction has shape"):
        browser.SliceBrowser(images, pred[:2])
    with pytest.raises(CtsegDataError, match="truth has shape"):
        browser.SliceBrowser(images, pred, pred[:, :4])
    with pytest.raises(CtsegDataError, match="opacity must lie in 0..1"):
        browser.SliceBrowser(images, pred, opacity=2)
    with pytest.raises(CtsegDataError, match="2 titles given for 3 slices"):
        browser.SliceBrowser(images, pred, titles=["a", "b"])
    b = browser.SliceBrowser(images, pred)
    with pytest.raises(CtsegDataError, match=r"slice index 3 is outside the stack \(0..2\)"):
        b.render(3)
    with pytest.raises(CtsegDataError, match="slice index -1 is outside"):
        b.show_slice(-1)
