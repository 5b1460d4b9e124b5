"""Animation of a segmented stack: frames, legend, GIF on disk, a small self-contained notebook preview."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.written import written_by_ctseg
from ctseg_helpers.show.animation import (
    EMBED_LIMIT_MB,
    EMBED_WIDTH_PX,
    MAX_EMBED_FRAMES,
    MIN_EMBED_WIDTH_PX,
    make_animation,
    save_gif,
    to_html,
)
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
    path = save_gif(anim, tmp_path / "anim.gif", progress=False)
    with Image.open(path) as gif:
        assert gif.n_frames == 4
        assert gif.info["duration"] == 250
    assert written_by_ctseg(path)
    with pytest.raises(CtsegSettingsError, match="anim.gif exists already; choose another name or pass overwrite=True"):
        save_gif(anim, path, progress=False)
    save_gif(make_animation(images[:2], labels[:2], ["lumen", "wall"]), path, overwrite=True, progress=False)
    with Image.open(path) as gif:
        assert gif.n_frames == 2
    with pytest.raises(CtsegSettingsError, match="animations are saved as GIF; use a file name ending in .gif"):
        save_gif(anim, tmp_path / "anim.mp4")


def test_save_gif_never_replaces_a_file_ctseg_did_not_write_or_that_was_changed(stack, tmp_path):
    images, labels = stack
    anim = make_animation(images, labels, ["lumen", "wall"])
    mine = tmp_path / "mine.gif"
    mine.write_bytes(b"GIF89a a user's own animation")
    with pytest.raises(
        CtsegSettingsError,
        match=r"mine.gif: not written by ctseg; ctseg never replaces such files, "
        r"even with --overwrite \(overwrite=True\): move it away or choose "
        r"another file name",
    ):
        save_gif(anim, mine, overwrite=True, progress=False)
    assert mine.read_bytes() == b"GIF89a a user's own animation"
    ours = save_gif(anim, tmp_path / "ours.gif", progress=False)
    with ours.open("ab") as file:
        file.write(b"edited")
    with pytest.raises(CtsegSettingsError, match="ours.gif: changed since ctseg wrote it"):
        save_gif(anim, ours, overwrite=True, progress=False)


def test_save_gif_shows_progress(stack, tmp_path, capsys):
    images, labels = stack
    save_gif(make_animation(images, labels, ["lumen", "wall"]), tmp_path / "anim.gif")
    assert "writing anim.gif" in capsys.readouterr().err
    save_gif(make_animation(images, labels, ["lumen", "wall"]), tmp_path / "quiet.gif", progress=False)
    assert "quiet.gif" not in capsys.readouterr().err


def _embedded(html: str) -> Image.Image:
    """The animated image inside the HTML of to_html."""
    match = re.search(r'src="data:image/(webp|gif);base64,([A-Za-z0-9+/=]+)"', html)
    assert match, html[:200]
    return Image.open(io.BytesIO(base64.b64decode(match.group(2))))


def test_to_html_embeds_one_animated_image_with_every_slice_and_names_the_gif(stack, tmp_path):
    images, labels = stack
    anim = make_animation(images, labels, ["lumen", "wall"], interval_ms=150)
    gif = save_gif(anim, tmp_path / "anim.gif", progress=False)
    html = to_html(anim, progress=False)
    image = _embedded(html)
    assert image.format == "WEBP" and image.n_frames == 4 and image.size == (EMBED_WIDTH_PX, 326)
    image.load()
    assert image.info["duration"] == 150
    assert "<script" not in html
    assert f"All 4 slices at 400 × 326 px; every slice at full size: {gif}" in html
    assert str(tmp_path / "other.gif") in to_html(anim, gif_path=tmp_path / "other.gif", progress=False)


def test_to_html_refers_to_nothing_outside_the_notebook(stack):
    images, labels = stack
    html = to_html(make_animation(images, labels, ["lumen", "wall"], title="series A"), progress=False)
    for reference in ("http://", "https://", "//cdn", "<link", "<script", "url("):
        assert reference not in html


def test_to_html_shows_at_most_max_frames_and_says_how_many(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.normal(100, 20, (25, 20, 20)).astype(np.float32)
    labels = np.zeros(images.shape, np.uint8)
    labels[:, 5:10, 5:10] = 1
    html = to_html(make_animation(images, labels, ["lumen"]), max_frames=10, width_px=120, progress=False)
    assert _embedded(html).n_frames == 9
    assert "9 of 25 slices shown (one in 3) at 120 × " in html
    assert "to keep the notebook small; every slice at full size: the saved GIF" in html


def test_default_limits_keep_a_long_stack_small():
    images = np.tile(np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(1, 32, 32), (250, 1, 1))
    labels = np.zeros(images.shape, np.uint8)
    labels[:, 8:16, 8:16] = 1
    html = to_html(make_animation(images, labels, ["lumen"]), progress=False)
    assert _embedded(html).n_frames == 84 <= MAX_EMBED_FRAMES  # one slice in 3
    assert "84 of 250 slices shown (one in 3)" in html
    assert len(html) <= EMBED_LIMIT_MB * 1024**2


def test_to_html_shrinks_a_large_animation_under_the_limit_and_says_so():
    rng = np.random.default_rng(0)
    images = rng.random((12, 128, 128)).astype(np.float32)  # noise compresses badly: a worst case
    labels = (images > 0.7).astype(np.uint8)
    limit_mb = 0.1
    html = to_html(make_animation(images, labels, ["hot"]), limit_mb=limit_mb, progress=False)
    assert len(html) <= limit_mb * 1024**2
    image = _embedded(html)
    assert image.width == MIN_EMBED_WIDTH_PX and image.n_frames < 12
    assert f"{image.n_frames} of 12 slices shown (one in " in html and f"at {MIN_EMBED_WIDTH_PX} × " in html


def test_to_html_falls_back_to_gif_without_webp(stack, monkeypatch):
    import ctseg_helpers.show.animation as animation

    monkeypatch.setattr(animation, "_webp_available", lambda: False)
    images, labels = stack
    image = _embedded(to_html(make_animation(images, labels, ["lumen", "wall"], interval_ms=150), progress=False))
    assert image.format == "GIF" and image.n_frames == 4 and image.info["duration"] == 150


def test_to_html_shows_progress(stack, capsys):
    images, labels = stack
    to_html(make_animation(images, labels, ["lumen", "wall"]))
    assert "animation preview" in capsys.readouterr().err


def test_to_html_refuses_what_it_cannot_embed(stack):
    from matplotlib.animation import FuncAnimation
    from matplotlib.figure import Figure

    images, labels = stack
    anim = make_animation(images, labels, ["lumen", "wall"])
    for kwargs, message in (
        ({"max_frames": 0}, "max_frames must be positive, got 0"),
        ({"width_px": -5}, "width_px must be positive, got -5"),
        ({"limit_mb": 0.0}, "limit_mb must be positive, got 0.0"),
    ):
        with pytest.raises(CtsegSettingsError, match=message):
            to_html(anim, progress=False, **kwargs)
    other = FuncAnimation(Figure(), lambda i: (), frames=[0, 1])
    other._draw_was_started = True
    with pytest.raises(CtsegSettingsError, match="to_html embeds animations made by make_animation, got FuncAnimation"):
        to_html(other)


@pytest.mark.slow
@pytest.mark.realdata
def test_the_sunnybrook_cine_scan_is_embedded_in_under_two_mb(sunnybrook):
    from ctseg_helpers.io.dicom import read_dicom_series

    images = read_dicom_series(sunnybrook / "scans" / "SCD0000101").images  # 240 slices of 256 x 256
    labels = (images > np.percentile(images, 95, axis=(1, 2), keepdims=True)).astype(np.uint8)
    html = to_html(make_animation(images, labels, ["bright"]), progress=False)
    assert _embedded(html).n_frames == 80
    assert "80 of 240 slices shown (one in 3) at 400 × " in html
    assert len(html) < EMBED_LIMIT_MB * 1024**2  # Matplotlib's to_jshtml embedded 20.6 MB


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"labels": np.zeros((4, 40, 61), np.uint8)},
            CtsegDataError,
            r"images \(4, 40, 60\) and labels \(4, 40, 61\) "
            r"must be the same \(K, M, N\) stack",
        ),
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
