"""Animated view of a segmented series: each slice with its ROIs coloured, a legend, a slice counter.

:func:`make_animation` builds a Matplotlib ``FuncAnimation``; :func:`save_gif` writes it with
the Pillow writer (no ffmpeg needed); :func:`to_html` embeds it in a notebook as an interactive
player (``to_jshtml``), lowering resolution and skipping slices when needed so the embedded
animation stays under Matplotlib's 20 MB limit, and saying so.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError

logger = logging.getLogger(__name__)

#: Matplotlib's default limit for embedded animations (``animation.embed_limit``), in MB.
EMBED_LIMIT_MB = 20.0

_DEFAULT_DPI = 100
_MIN_DPI = 40


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
        Resolution of the rendered frames.
    frames : sequence of int, optional
        Slice indices to show (default: all, in order).

    Returns
    -------
    matplotlib.animation.FuncAnimation
        Its figure is closed (so a notebook does not show it twice); ``anim.ctseg`` keeps
        the arguments, used by :func:`to_html` to re-render smaller when needed.

    Raises
    ------
    CtsegDataError
        If images and labels differ in shape, or there are no slices.
    CtsegSettingsError
        If ``interval_ms`` or ``alpha`` is out of range.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.animation import FuncAnimation  # noqa: PLC0415

    from ctseg_helpers.show.colors import legend_handles, overlay  # noqa: PLC0415

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
    n_total = len(images)

    rows, cols = images.shape[1:]
    width_in = 5.0
    longest = max((len(str(n)) for n in label_names), default=0)
    ncol = 3 if longest <= 16 else 2 if longest <= 34 else 1
    legend_in = 0.1 + 0.2 * math.ceil(len(label_names) / ncol) if label_names else 0.0
    fig = plt.figure(figsize=(width_in, width_in * rows / cols + 0.45 + legend_in), dpi=dpi)
    height_in = fig.get_figheight()
    ax = fig.add_axes((0.0, legend_in / height_in, 1.0, (height_in - 0.45 - legend_in) / height_in))
    ax.set_axis_off()
    artist = ax.imshow(overlay(images[frame_list[0]], labels[frame_list[0]], alpha), interpolation="nearest")
    heading = fig.suptitle("", fontsize=10, y=1.0 - 0.05 / fig.get_figheight(), va="top")
    if label_names:
        fig.legend(handles=legend_handles(list(label_names)), loc="lower center", ncol=min(ncol, len(label_names)),
                   frameon=False, fontsize=8, borderaxespad=0.2, handlelength=1.5, columnspacing=1.2)

    def update(index):
        artist.set_data(overlay(images[index], labels[index], alpha))
        counter = f"slice {index + 1} / {n_total}"
        heading.set_text(f"{title}   {counter}" if title else counter)
        return (artist, heading)

    update(frame_list[0])
    anim = FuncAnimation(fig, update, frames=frame_list, interval=interval_ms, blit=False, repeat=True)
    anim.ctseg = {"images": images, "labels": labels, "label_names": list(label_names), "interval_ms": interval_ms,
                  "alpha": alpha, "title": title, "dpi": dpi, "frames": frame_list}
    plt.close(fig)
    return anim


def save_gif(anim, path: str | Path, *, overwrite: bool = False) -> Path:
    """Save an animation as an animated GIF with the Pillow writer.

    Raises
    ------
    CtsegSettingsError
        If ``path`` does not end in ``.gif``, or it exists and ``overwrite`` is False.
    """
    from matplotlib.animation import PillowWriter  # noqa: PLC0415

    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise CtsegSettingsError(f"{path}: animations are saved as GIF; use a file name ending in .gif")
    if path.exists() and not overwrite:
        raise CtsegSettingsError(f"{path} exists already; choose another name or pass overwrite=True")
    interval_ms = getattr(anim, "ctseg", {}).get("interval_ms", getattr(anim, "_interval", 200))
    path.parent.mkdir(parents=True, exist_ok=True)
    anim.save(path, writer=PillowWriter(fps=1000.0 / interval_ms))
    return path


def _frame_png_bytes(anim) -> int:
    fig = anim._fig  # noqa: SLF001 - the animation's own figure
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return buffer.tell()


def to_html(anim, *, limit_mb: float = EMBED_LIMIT_MB) -> str:
    """Embed an animation in a notebook as an interactive player (HTML + JavaScript).

    Frames are embedded as base64 PNG. When the estimate of the embedded size is over
    ``limit_mb`` (90 % of it, for safety), the animation is re-rendered at a lower resolution
    and, if that is not enough, with every n-th slice only; a warning is logged and a note
    above the player says what was left out.

    Parameters
    ----------
    anim : FuncAnimation
        Preferably from :func:`make_animation` (other animations are embedded as they are).
    limit_mb : float
        Size limit of the embedded frames, in MB.

    Returns
    -------
    str
        HTML to show with ``IPython.display.HTML``.
    """
    import matplotlib  # noqa: PLC0415

    budget = 0.85 * limit_mb * 1024**2
    note = ""
    args = getattr(anim, "ctseg", None)
    if args is not None:
        all_frames = args["frames"]
        frames, dpi, stride = all_frames, args["dpi"], 1
        kwargs = {k: args[k] for k in ("interval_ms", "alpha", "title")}
        for _ in range(8):
            total = _frame_png_bytes(anim) * 4 / 3 * len(frames)  # base64 of the first frame's PNG
            if total <= budget:
                break
            if dpi > _MIN_DPI:  # PNG size grows roughly with the pixel count, i.e. dpi squared
                dpi = max(_MIN_DPI, int(dpi * math.sqrt(budget / total) * 0.95))
            else:
                stride *= max(2, math.ceil(total / budget))
                frames = all_frames[::stride]
            anim._draw_was_started = True  # replaced on purpose: no "deleted without rendering" warning
            anim = make_animation(args["images"], args["labels"], args["label_names"], dpi=dpi, frames=frames, **kwargs)
        if dpi != args["dpi"] or stride > 1:
            note = (f"Embedded at reduced resolution ({dpi} dpi)"
                    + (f", one slice in {stride} of {len(all_frames)}" if stride > 1 else "")
                    + f" to stay under {limit_mb:g} MB; the saved GIF has every slice.")
            logger.warning("animation: %s", note)
    with matplotlib.rc_context({"animation.embed_limit": limit_mb}):
        html = anim.to_jshtml()
    if note:
        html = f'<p style="font-size:90%;color:#555">{note}</p>\n' + html
    return html


__all__ = ["EMBED_LIMIT_MB", "make_animation", "save_gif", "to_html"]
