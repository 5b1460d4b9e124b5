"""One colour per label value, the same in every figure, overlay and animation.

Label 1 is always the first colour of the palette, label 2 the second, and so on, whatever
the number of labels in a figure, so a user learns the colours once.
"""

from __future__ import annotations

import numpy as np

#: RGB colours (0..1) for label values 1, 2, ...; background (0) is never coloured.
#: Matplotlib's tab10 followed by Set1, chosen to stay distinct on grey images.
PALETTE = np.array(
    [
        (0.894, 0.102, 0.110),  # red
        (0.216, 0.494, 0.722),  # blue
        (0.302, 0.686, 0.290),  # green
        (1.000, 0.498, 0.000),  # orange
        (0.596, 0.306, 0.639),  # purple
        (1.000, 1.000, 0.200),  # yellow
        (0.651, 0.337, 0.157),  # brown
        (0.969, 0.506, 0.749),  # pink
        (0.090, 0.745, 0.812),  # cyan
        (0.737, 0.741, 0.133),  # olive
    ],
    dtype=np.float32,
)


def label_color(value: int) -> tuple[float, float, float]:
    """RGB colour (0..1) of a label value >= 1; the palette repeats after 10 labels."""
    if value < 1:
        raise ValueError(f"label value must be >= 1 (background has no colour), got {value}")
    return tuple(float(c) for c in PALETTE[(value - 1) % len(PALETTE)])


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend label colours over a grey image.

    Parameters
    ----------
    image : ndarray of shape (M, N), any real dtype
        Grey image; scaled to 0..1 by its own 1st and 99th percentiles.
    labels : ndarray of shape (M, N) and integer dtype
        Label map, 0 is background and stays uncoloured.
    alpha : float
        Opacity of the label colours, 0..1.

    Returns
    -------
    ndarray of shape (M, N, 3) and dtype float32
        RGB image with values in 0..1.
    """
    image = np.asarray(image, dtype=np.float32)
    labels = np.asarray(labels)
    if image.shape != labels.shape:
        raise ValueError(f"image shape {image.shape} and label shape {labels.shape} differ")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within 0..1, got {alpha}")
    lo, hi = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    grey = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    mask = labels > 0
    if mask.any():
        colours = PALETTE[(labels[mask].astype(np.int64) - 1) % len(PALETTE)]
        rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * colours
    return rgb


def legend_handles(label_names: list[str] | tuple[str, ...]):
    """Matplotlib patches for a legend: one per ROI, in label order (label 1 first)."""
    from matplotlib.patches import Patch  # noqa: PLC0415 - keep import cheap

    return [Patch(color=label_color(i + 1), label=name) for i, name in enumerate(label_names)]
