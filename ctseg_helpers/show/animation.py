"""Animated view of a segmented series: each slice with its ROIs coloured, a legend, a slice counter.

:func:`make_animation` builds a Matplotlib ``FuncAnimation``; :func:`save_gif` writes it, every
slice at full size, with the Pillow writer (no ffmpeg needed); :func:`to_html` embeds a compact
preview of it in a notebook. Both show a progress bar (``tqdm.auto``) while they render.

The preview in a notebook
-------------------------
A notebook keeps what it shows when it is saved, so the preview is small: one animated image
(WebP; GIF where Pillow has no WebP support) inside the HTML as base64, and a caption saying how
many slices of how many it shows and where the GIF with every slice is. The limits:

- at most :data:`MAX_EMBED_FRAMES` (100) frames: a longer stack shows one slice in n (n the
  smallest that fits);
- :data:`EMBED_WIDTH_PX` (400) pixels wide, WebP quality :data:`EMBED_QUALITY` (75);
- at most :data:`EMBED_LIMIT_MB` (2 MB) of HTML: a preview over it is rendered narrower, down to
  :data:`MIN_EMBED_WIDTH_PX` (200 px), then with fewer slices.

The Sunnybrook cine scan (240 slices of 256 x 256 pixels) gives 80 slices (one in 3) at
400 x 460 px in 1.4 MB of HTML, rendered in 2 s; Matplotlib's JavaScript player (``to_jshtml``),
which ctseg embedded before, made 20.6 MB (every slice at 91 dpi, PNG) in 9 s.
The HTML refers to nothing outside itself: no script, no style sheet, no font from a CDN (there is
no internet in many hospitals), and it shows the same in an untrusted notebook, which runs no
JavaScript, and in static viewers.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.written import check_replaceable, record_written

logger = logging.getLogger(__name__)

#: Most frames the notebook preview shows; a longer stack shows one slice in n.
MAX_EMBED_FRAMES = 100
#: Width of the notebook preview, in pixels.
EMBED_WIDTH_PX = 400
#: Narrowest preview :func:`to_html` renders to stay under its size limit, in pixels.
MIN_EMBED_WIDTH_PX = 200
#: WebP quality of the preview's frames, 0..100.
EMBED_QUALITY = 75
#: Size limit of the preview's HTML, in MB (1024**2 bytes).
EMBED_LIMIT_MB = 2.0

_DEFAULT_DPI = 100
_WIDTH_IN = 5.0  # figure width in inches: pixels = inches x dpi


def _figure(
    images: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    *,
    alpha: float,
    title: str | None,
    dpi: float,
    first: int,
):
    """A figure (Agg, outside pyplot) showing slice ``first``, and ``update(index)`` drawing another."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    from ctseg_helpers.show.colors import legend_handles, overlay  # noqa: PLC0415

    n_total = len(images)
    rows, cols = images.shape[1:]
    longest = max((len(str(n)) for n in label_names), default=0)
    ncol = 3 if longest <= 16 else 2 if longest <= 34 else 1
    legend_in = 0.1 + 0.2 * math.ceil(len(label_names) / ncol) if label_names else 0.0
    fig = Figure(figsize=(_WIDTH_IN, _WIDTH_IN * rows / cols + 0.45 + legend_in), dpi=dpi)
    FigureCanvasAgg(fig)
    height_in = fig.get_figheight()
    ax = fig.add_axes((0.0, legend_in / height_in, 1.0, (height_in - 0.45 - legend_in) / height_in))
    ax.set_axis_off()
    artist = ax.imshow(overlay(images[first], labels[first], alpha), interpolation="nearest")
    heading = fig.suptitle("", fontsize=10, y=1.0 - 0.05 / fig.get_figheight(), va="top")
    if label_names:
        fig.legend(
            handles=legend_handles(list(label_names)),
            loc="lower center",
            ncol=min(ncol, len(label_names)),
            frameon=False,
            fontsize=8,
            borderaxespad=0.2,
            handlelength=1.5,
            columnspacing=1.2,
        )

    def update(index):
        artist.set_data(overlay(images[index], labels[index], alpha))
        counter = f"slice {index + 1} / {n_total}"
        heading.set_text(f"{title}   {counter}" if title else counter)
        return (artist, heading)

    update(first)
    return fig, update


def make_animation(
    images: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    *,
    interval_ms: int = 200,
    alpha: float = 0.45,
    title: str | None = None,
    dpi: int = _DEFAULT_DPI,
    frames: Sequence[int] | None = None,
):
    """Animation cycling through slices, ROIs coloured as everywhere in ctseg.

    Parameters
    ----------
    images : ndarray of shape (K, M, N) or (M, N), real dtype
        Grey slices (any units; each frame is scaled by its own 1st-99th percentiles).
    labels : ndarray of the same shape, integer dtype
        Label maps, 0 = background.
    label_names : sequence of str
        ROI names for the legend, label 1 first.
    interval_ms : int
        Time per frame in milliseconds.
    alpha : float
        Opacity of the ROI colours, 0..1.
    title : str, optional
        Shown above the image with the slice counter.
    dpi : int
        Resolution of the frames :func:`save_gif` writes (the figure is 5 inches wide).
    frames : sequence of int, optional
        Slice indices to show (default: all, in order).

    Returns
    -------
    matplotlib.animation.FuncAnimation
        Its figure is made outside pyplot (a notebook does not show it twice); ``anim.ctseg``
        keeps the arguments, from which :func:`to_html` renders its preview.

    Raises
    ------
    CtsegDataError
        If images and labels differ in shape, or there are no slices.
    CtsegSettingsError
        If ``interval_ms`` or ``alpha`` is out of range.
    """
    from matplotlib.animation import FuncAnimation  # noqa: PLC0415

    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 2:
        images, labels = images[None], labels[None] if labels.ndim == 2 else labels
    if images.shape != labels.shape or images.ndim != 3:
        raise CtsegDataError(f"images {images.shape} and labels {labels.shape} must be the same (K, M, N) stack")
    if len(images) == 0:
        raise CtsegDataError("there are no slices to animate")
    if interval_ms <= 0:
        raise CtsegSettingsError(f"interval_ms must be a positive number of milliseconds, got {interval_ms}")
    if not 0.0 <= alpha <= 1.0:
        raise CtsegSettingsError(f"alpha must be within 0..1, got {alpha}")
    frame_list = list(range(len(images))) if frames is None else [int(i) for i in frames]

    fig, update = _figure(images, labels, label_names, alpha=alpha, title=title, dpi=dpi, first=frame_list[0])
    anim = FuncAnimation(fig, update, frames=frame_list, interval=interval_ms, blit=False, repeat=True)
    anim.ctseg = {
        "images": images,
        "labels": labels,
        "label_names": list(label_names),
        "interval_ms": interval_ms,
        "alpha": alpha,
        "title": title,
        "dpi": dpi,
        "frames": frame_list,
    }
    return anim


def save_gif(
    anim, path: str | Path, *, overwrite: bool = False, progress: bool = True, final_path: str | Path | None = None
) -> Path:
    """Save an animation as an animated GIF (every frame, full size) with the Pillow writer.

    The file is recorded as ctseg's own (:mod:`ctseg_helpers.io.written`), so that a later
    ``overwrite=True`` may replace it.

    Parameters
    ----------
    anim : FuncAnimation
        Preferably from :func:`make_animation`; :func:`to_html` then names the saved file.
    path : path
        A file name ending in ``.gif``; its folder is created when missing.
    overwrite : bool
        Replace a file that ctseg wrote there and nobody changed since; any other file is
        never replaced.
    progress : bool
        Show a progress bar while the frames are rendered and the GIF is encoded.
    final_path : path, optional
        Where the file will be once the caller renames it there (a caller that writes under a
        temporary name first): named on the progress bar and by :func:`to_html`.

    Raises
    ------
    CtsegSettingsError
        If ``path`` does not end in ``.gif``; if it exists and ``overwrite`` is False; with
        ``overwrite``, if the file there was not written by ctseg or was changed since.
    """
    from matplotlib.animation import PillowWriter  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise CtsegSettingsError(f"{path}: animations are saved as GIF; use a file name ending in .gif")
    check_replaceable(
        path, overwrite, what_to_do="choose another name or pass overwrite=True", instead="choose another file name"
    )
    args = getattr(anim, "ctseg", {})
    interval_ms = args.get("interval_ms", getattr(anim, "_interval", 200))
    n_frames = len(args["frames"]) if "frames" in args else getattr(anim, "_save_count", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(
        total=None if n_frames is None else n_frames + 1,
        desc=f"writing {Path(final_path or path).name}",
        unit="frame",
        disable=not progress,
    ) as bar:

        class _Writer(PillowWriter):
            def finish(self):  # Pillow encodes every frame here, at the end
                bar.set_postfix_str("encoding the GIF")
                super().finish()
                bar.update()

        anim.save(path, writer=_Writer(fps=1000.0 / interval_ms), progress_callback=lambda *_: bar.update())
    record_written(path)
    if isinstance(args, dict) and args:
        args["gif_path"] = Path(final_path or path)
    return path


def _webp_available() -> bool:
    from PIL import features  # noqa: PLC0415

    return bool(features.check("webp"))


def _encode(frames: list, interval_ms: int) -> tuple[bytes, str]:
    """Frames (PIL images, RGB) as one animated image: WebP, or GIF without WebP support."""
    buffer = io.BytesIO()
    if _webp_available():
        frames[0].save(
            buffer,
            format="WEBP",
            save_all=True,
            append_images=frames[1:],
            duration=interval_ms,
            loop=0,
            quality=EMBED_QUALITY,
        )
        return buffer.getvalue(), "image/webp"
    paletted = [frame.quantize(colors=256) for frame in frames]
    paletted[0].save(buffer, format="GIF", save_all=True, append_images=paletted[1:], duration=interval_ms, loop=0)
    return buffer.getvalue(), "image/gif"


def _render_preview(args: dict, frames: list[int], width_px: int, progress: bool) -> tuple[bytes, str, int, int]:
    """Render ``frames`` at ``width_px`` and encode them: (image bytes, MIME type, width, height)."""
    from PIL import Image  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    fig, update = _figure(
        args["images"],
        args["labels"],
        args["label_names"],
        alpha=args["alpha"],
        title=args["title"],
        dpi=width_px / _WIDTH_IN,
        first=frames[0],
    )
    rendered = []
    with tqdm(total=len(frames) + 1, desc="animation preview", unit="frame", disable=not progress) as bar:
        for index in frames:
            update(index)
            fig.canvas.draw()
            rendered.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB"))
            bar.update()
        bar.set_postfix_str("encoding")
        data, mime = _encode(rendered, args["interval_ms"])
        bar.update()
    width, height = rendered[0].size
    return data, mime, width, height


def _caption(shown: int, total: int, step: int, width: int, height: int, gif_path: Path | None) -> str:
    where = f"every slice at full size: {gif_path}" if gif_path else "every slice at full size: the saved GIF"
    if shown == total:
        return f"All {total} slices at {width} × {height} px; {where}"
    return (
        f"{shown} of {total} slices shown (one in {step}) at {width} × {height} px to keep the notebook small; {where}"
    )


def to_html(
    anim,
    *,
    gif_path: str | Path | None = None,
    max_frames: int = MAX_EMBED_FRAMES,
    width_px: int = EMBED_WIDTH_PX,
    limit_mb: float = EMBED_LIMIT_MB,
    progress: bool = True,
) -> str:
    """A compact preview of an animation for a notebook: one animated image and a caption.

    See the module documentation for what is embedded and why. When the HTML would be over
    ``limit_mb``, the preview is rendered again narrower (down to :data:`MIN_EMBED_WIDTH_PX`),
    then with fewer slices; the caption says what is shown.

    Parameters
    ----------
    anim : FuncAnimation
        From :func:`make_animation`.
    gif_path : path, optional
        The GIF with every slice, named in the caption; default: the file :func:`save_gif`
        last saved this animation to, if any.
    max_frames : int
        Most frames shown; a longer stack shows one slice in n.
    width_px : int
        Width of the preview in pixels.
    limit_mb : float
        Size limit of the returned HTML, in MB.
    progress : bool
        Show a progress bar while the frames are rendered.

    Returns
    -------
    str
        HTML to show with ``IPython.display.HTML``; it refers to no file or address outside it.

    Raises
    ------
    CtsegSettingsError
        If ``anim`` was not made by :func:`make_animation`, or ``max_frames``, ``width_px`` or
        ``limit_mb`` is not positive.
    """
    args = getattr(anim, "ctseg", None)
    if not isinstance(args, dict):
        raise CtsegSettingsError(f"to_html embeds animations made by make_animation, got {type(anim).__name__}")
    for name, value in (("max_frames", max_frames), ("width_px", width_px), ("limit_mb", limit_mb)):
        if not value > 0:
            raise CtsegSettingsError(f"{name} must be positive, got {value}")
    anim._draw_was_started = True  # noqa: SLF001 - its frames are drawn here: no "deleted without rendering" warning
    gif_path = Path(gif_path) if gif_path is not None else args.get("gif_path")
    all_frames = args["frames"]
    step = math.ceil(len(all_frames) / max_frames)
    budget = limit_mb * 1024**2
    narrowest = min(width_px, MIN_EMBED_WIDTH_PX)
    for _ in range(8):
        frames = all_frames[::step]
        data, mime, width, height = _render_preview(args, frames, width_px, progress)
        caption = _caption(len(frames), len(all_frames), step, width, height, gif_path)
        html = (
            f'<div><img src="data:{mime};base64,{base64.b64encode(data).decode("ascii")}" width="{width}" '
            f'height="{height}" alt="animation of the slices" style="max-width:100%;height:auto">'
            f'<div style="font-size:90%;color:#555">{escape(caption)}</div></div>'
        )
        if len(html) <= budget or len(frames) == 1:
            break
        if width_px > narrowest:  # the image size grows roughly with the pixel count, i.e. the width squared
            width_px = max(narrowest, int(width_px * math.sqrt(budget / len(html)) * 0.95))
        else:
            keep = max(1, int(len(frames) * budget / len(html) * 0.95))
            step = max(step + 1, math.ceil(len(all_frames) / keep))
        logger.info(
            "animation preview over %g MB: rendering it again at %d px, one slice in %d", limit_mb, width_px, step
        )
    return html


__all__ = [
    "EMBED_LIMIT_MB",
    "EMBED_QUALITY",
    "EMBED_WIDTH_PX",
    "MAX_EMBED_FRAMES",
    "MIN_EMBED_WIDTH_PX",
    "make_animation",
    "save_gif",
    "to_html",
]
