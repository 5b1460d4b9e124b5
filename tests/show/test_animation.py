"""Animation of a segmented stack: frames, legend, GIF on disk, HTML under the size limit."""

import numpy as np
import pytest
from PIL import Image

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.show.animation import make_animation, save_gif, to_html
from ctseg_helpers.show.colors import label_color

# Tests inspect animations without rendering all of them; Matplotlib warns when those are freed.
pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")


@pytest.fixture()
def stack():
    rng = np.random.default_rng(1)
    images = rng.normal(100, 20, (4, 40, 60)).astype(np.float32)
    labels = np.zeros((4, 40, 60), np.uint8)
    for k in range(4):
        labels[k, 5:20, 5 + 5 * k : 25 + 5 * k] = 1
        labels[k, 25:35, 30:50] = 2
    return images, labels


def test_animation_cycles_through_slices_with_title_counter_and_legend(stack):
    images, labels = stack
    anim = make_animation(images, labels, ["lumen", "wall"], interval_ms=150, title="series A")
    fig = anim._fig
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["lumen", "wall"]
    np.testing.assert_allclose(legend.legend_handles[0].get_facecolor()[:3], label_color(1), atol=1e-3)
    anim._func(2)
    assert fig._suptitle.get_text() == "series A   slice 3 / 4"
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (40, 60, 3)
    # label 1 pixels on slice 3 are tinted red (label 1's colour), background stays grey
    assert shown[10, 20, 0] > shown[10, 20, 2]
    assert np.allclose(shown[2, 2, 0], shown[2, 2, 2])
    assert anim._interval == 150
    assert anim.ctseg["frames"] == [0, 1, 2, 3]


def test_a_single_slice_is_animated_as_one_frame(stack):
    images, labels = stack
    anim = make_animation(images[0], labels[0], ["lumen", "wall"])
    assert anim.ctseg["frames"] == [0]


def test_save_gif_writes_every_slice_and_refuses_to_overwrite(stack, tmp_path):
    images, labels = stack
    anim = make_animation(images, labels, ["lumen", "wall"], interval_ms=250)
    path = save_gif(anim, tmp_path / "anim.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 4
        assert gif.info["duration"] == 250
    with pytest.raises(CtsegSettingsError, match="anim.gif exists already; choose another name or pass overwrite=True"):
        save_gif(anim, path)
    save_gif(make_animation(images, labels, ["lumen", "wall"]), path, overwrite=True)
    with pytest.raises(CtsegSettingsError, match="animations are saved as GIF; use a file name ending in .gif"):
        save_gif(anim, tmp_path / "anim.mp4")


def test_to_html_embeds_an_interactive_player(stack):
    images, labels = stack
    html = to_html(make_animation(images, labels, ["lumen", "wall"]))
    assert "<script" in html and html.count("data:image/png;base64") == 4
    assert "reduced resolution" not in html


def test_to_html_shrinks_a_large_animation_under_the_limit_and_says_so(caplog):
    rng = np.random.default_rng(0)
    images = rng.random((12, 128, 128)).astype(np.float32)  # noise compresses badly: a worst case
    labels = (images > 0.7).astype(np.uint8)
    limit_mb = 0.4
    html = to_html(make_animation(images, labels, ["hot"]), limit_mb=limit_mb)
    assert len(html) < limit_mb * 1024**2
    assert "Embedded at reduced resolution" in html and "the saved GIF has every slice" in html
    assert "reduced resolution" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"labels": np.zeros((4, 40, 61), np.uint8)}, CtsegDataError, r"images \(4, 40, 60\) and labels \(4, 40, 61\) "
                                                                      r"must be the same \(K, M, N\) stack"),
        ({"interval_ms": 0}, CtsegSettingsError, "interval_ms must be a positive number of milliseconds, got 0"),
        ({"alpha": 1.5}, CtsegSettingsError, "alpha must be within 0..1, got 1.5"),
    ],
)
def test_bad_arguments_are_refused(stack, kwargs, error, message):
    images, labels = stack
    args = {"labels": labels} | kwargs
    with pytest.raises(error, match=message):
        make_animation(images, args.pop("labels"), ["lumen", "wall"], **args)


def test_an_empty_stack_is_refused():
    with pytest.raises(CtsegDataError, match="there are no slices to animate"):
        make_animation(np.zeros((0, 5, 5)), np.zeros((0, 5, 5), np.uint8), ["a"])
