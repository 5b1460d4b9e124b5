"""Interactive slice browser for notebooks: image, prediction and ground truth side by side.

A slider picks the slice, one checkbox per ROI shows or hides it, a second slider sets the
overlay opacity. Panels are rendered as PNG images (no matplotlib redraw), so browsing stays
quick on large stacks. The rendering itself (:meth:`SliceBrowser.render`) is plain NumPy and is
what the tests check; the widgets only call it.
"""

from __future__ import annotations

import io
import logging

import numpy as np

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.show.colors import label_color, overlay

logger = logging.getLogger(__name__)

#: Panels narrower than this (pixels) are enlarged by whole-pixel repetition for display.
MIN_DISPLAY_PX = 256


def _check_stack(name: str, stack, shape) -> np.ndarray | None:
    if stack is None:
        return None
    stack = np.asarray(stack)
    if stack.shape != shape:
        raise CtsegDataError(
            f"{name} has shape {stack.shape} but the images have shape {shape}; give one label map per slice"
        )
    return stack


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image  # noqa: PLC0415

    buffer = io.BytesIO()
    Image.fromarray(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _enlarge(rgb: np.ndarray) -> np.ndarray:
    factor = max(1, int(np.ceil(MIN_DISPLAY_PX / max(rgb.shape[:2]))))
    if factor > 1:
        rgb = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
    return rgb


class SliceBrowser:
    """Browse a stack with its label maps.

    Parameters
    ----------
    images : ndarray of shape (K, M, N), real dtype
        The scan (HU for CT).
    prediction, truth : ndarray of shape (K, M, N) and integer dtype, optional
        Predicted and manual label maps (0 = background). Either or both may be None.
    label_names : sequence of str, optional
        ROI names, label 1 first; default ``ROI 1``, ``ROI 2`` ... up to the largest label.
    titles : sequence of str, optional
        One caption per slice (e.g. file stems).
    opacity : float
        Initial overlay opacity, 0..1.
    has_truth : ndarray of shape (K,) and dtype bool, optional
        Slices that have a manual label map; the truth panel says "no manual labels" elsewhere.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The browser; a notebook shows it when the browser is a cell's last value.

    Raises
    ------
    CtsegDataError
        If the images are not a (K, M, N) stack, a label stack does not match them, or the
        opacity is outside 0..1.
    """

    def __init__(
        self, images, prediction=None, truth=None, label_names=None, titles=None, opacity: float = 0.45, has_truth=None
    ):
        images = np.asarray(images)
        if images.ndim != 3 or len(images) == 0:
            raise CtsegDataError(f"images must be a stack of shape (K, M, N) with K >= 1, got {images.shape}")
        if not 0.0 <= float(opacity) <= 1.0:
            raise CtsegDataError(f"opacity must lie in 0..1, got {opacity}")
        self.images = images
        self.prediction = _check_stack("prediction", prediction, images.shape)
        self.truth = _check_stack("truth", truth, images.shape)
        self.has_truth = None if has_truth is None else np.asarray(has_truth, dtype=bool)
        if titles is not None and len(titles) != len(images):
            raise CtsegDataError(f"{len(titles)} titles given for {len(images)} slices")
        self.titles = list(titles) if titles is not None else [f"slice {k}" for k in range(len(images))]
        if label_names is None:
            top = max([int(s.max()) for s in (self.prediction, self.truth) if s is not None and s.size] + [1])
            label_names = [f"ROI {v}" for v in range(1, top + 1)]
        self.label_names = list(label_names)
        self.index = 0
        self.opacity = float(opacity)
        self.visible = {v: True for v in range(1, len(self.label_names) + 1)}
        self._widget = None

    # ------------------------------------------------------------------ rendering (no widgets)

    def panels(self) -> list[str]:
        """Names of the panels shown, left to right."""
        names = ["image"]
        if self.prediction is not None:
            names.append("prediction")
        if self.truth is not None:
            names.append("ground truth")
        return names

    def _shown_labels(self, labels: np.ndarray) -> np.ndarray:
        hidden = [v for v, on in self.visible.items() if not on]
        return np.where(np.isin(labels, hidden), 0, labels) if hidden else labels

    def render(self, index: int | None = None) -> list[np.ndarray]:
        """RGB images (float32, (M, N, 3), 0..1) of the panels for one slice.

        The image panel is the grey image alone; the others blend the visible ROIs over it at
        the current opacity (see :func:`ctseg_helpers.show.colors.overlay`).

        Raises
        ------
        CtsegDataError
            If ``index`` is outside the stack.
        """
        index = self.index if index is None else int(index)
        if not 0 <= index < len(self.images):
            raise CtsegDataError(f"slice index {index} is outside the stack (0..{len(self.images) - 1})")
        image = self.images[index]
        out = [overlay(image, np.zeros(image.shape, dtype=np.uint8), 0.0)]
        for stack in (self.prediction, self.truth):
            if stack is not None:
                out.append(overlay(image, self._shown_labels(stack[index]), self.opacity))
        return out

    def caption(self, index: int | None = None) -> str:
        """Text above the panels: slice number, title and which ROIs each map contains."""
        index = self.index if index is None else int(index)
        parts = [f"<b>{index + 1} / {len(self.images)}</b> &nbsp; {self.titles[index]}"]
        for name, stack in (("prediction", self.prediction), ("ground truth", self.truth)):
            if stack is None:
                continue
            if name == "ground truth" and self.has_truth is not None and not self.has_truth[index]:
                parts.append("ground truth: no manual labels for this slice")
                continue
            present = [self.label_names[v - 1] for v in np.unique(stack[index]) if 0 < v <= len(self.label_names)]
            parts.append(f"{name}: {', '.join(present) if present else 'no ROI'}")
        return " &nbsp;|&nbsp; ".join(parts)

    # ------------------------------------------------------------------ widgets

    @property
    def widget(self):
        """The ipywidgets browser, built on first use."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self):
        import ipywidgets as w  # noqa: PLC0415

        k = len(self.images)
        # numbered from 1, as the caption ("3 / 240") and the sample grid number slices
        self._slider = w.IntSlider(
            value=self.index + 1,
            min=1,
            max=k,
            description="slice",
            continuous_update=True,
            layout=w.Layout(width="60%"),
        )
        self._opacity = w.FloatSlider(value=self.opacity, min=0.0, max=1.0, step=0.05, description="opacity")
        self._toggles = []
        for value, name in enumerate(self.label_names, start=1):
            r, g, b = (int(255 * c) for c in label_color(value))
            box = w.Checkbox(
                value=True,
                description=name,
                indent=False,
                layout=w.Layout(width="auto", border=f"2px solid rgb({r},{g},{b})", padding="0 4px"),
            )
            box.observe(self._on_change, names="value")
            self._toggles.append(box)
        self._slider.observe(self._on_change, names="value")
        self._opacity.observe(self._on_change, names="value")
        self._caption = w.HTML()
        self._images = [w.Image(format="png") for _ in self.panels()]
        panel_boxes = [
            w.VBox([w.HTML(f"<center>{name}</center>"), img])
            for name, img in zip(self.panels(), self._images, strict=True)
        ]
        self._refresh()
        return w.VBox(
            [
                w.HBox([self._slider, self._opacity]),
                # wraps onto more lines when the ROIs' boxes are wider than the output area
                w.HBox([w.HTML("show ROI:"), *self._toggles], layout=w.Layout(flex_flow="row wrap")),
                self._caption,
                w.HBox(panel_boxes),
            ]
        )

    def _on_change(self, _change=None):
        self.index = int(self._slider.value) - 1
        self.opacity = float(self._opacity.value)
        self.visible = {v: bool(box.value) for v, box in enumerate(self._toggles, start=1)}
        self._refresh()

    def _refresh(self):
        for widget, rgb in zip(self._images, self.render(), strict=True):
            widget.value = _png_bytes(_enlarge(rgb))
        self._caption.value = self.caption()

    def show_slice(self, index: int) -> None:
        """Move the browser to a slice (as moving the slider does)."""
        if not 0 <= int(index) < len(self.images):
            raise CtsegDataError(f"slice index {index} is outside the stack (0..{len(self.images) - 1})")
        if self._widget is None:
            self.index = int(index)
        else:
            self._slider.value = int(index) + 1

    def snapshot_png(self, index: int | None = None) -> bytes:
        """PNG of the panels of one slice side by side (enlarged like the widget's panels)."""
        panels = [_enlarge(rgb) for rgb in self.render(index)]
        gap = np.ones((panels[0].shape[0], 4, 3), dtype=np.float32)
        joined = [panels[0]]
        for panel in panels[1:]:
            joined += [gap, panel]
        return _png_bytes(np.concatenate(joined, axis=1))

    def _repr_mimebundle_(self, **kwargs):
        # the live widget, plus a still picture of the current slice for viewers without a kernel
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data = dict(data)
        data["image/png"] = self.snapshot_png()
        return data


def slice_browser(
    images, prediction=None, truth=None, label_names=None, titles=None, opacity: float = 0.45, has_truth=None
) -> SliceBrowser:
    """Build a :class:`SliceBrowser` (see there for the parameters); show it as a cell's value."""
    return SliceBrowser(images, prediction, truth, label_names, titles, opacity, has_truth)


def case_browser(case, opacity: float = 0.45) -> SliceBrowser:
    """Slice browser of a :class:`ctseg_helpers.measure.evaluation.Case` (scan, prediction, truth)."""
    return SliceBrowser(
        case.images,
        case.prediction,
        case.truth,
        case.label_names,
        case.stems,
        opacity,
        case.has_truth if case.truth is not None else None,
    )


__all__ = ["SliceBrowser", "slice_browser", "case_browser", "MIN_DISPLAY_PX"]
