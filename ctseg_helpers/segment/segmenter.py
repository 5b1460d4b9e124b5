"""Segment 2D slices of any size with a network that takes square inputs.

:class:`Segmenter` wraps a prediction function ``predict_fn(batch) -> probabilities`` (a saved
Keras model via :meth:`Segmenter.from_model_file`, or any stand-in in tests) and applies it
to stacks of slices:

``mode="tile"``
    Slices are cut into overlapping patches of the input size (slices smaller than the input
    are zero-padded, centred); the patch probabilities are blended with a weight map
    (:func:`~ctseg_helpers.segment.patches.blend_weights`) into one probability map at the
    slice's native resolution. Use it for models trained on native-resolution patches or
    padded slices (``fit_mode="pad"``).
``mode="resize"``
    Each whole slice is resized (bilinear) to the input size, predicted, and the
    probabilities are resized back to the slice's native size before the argmax, so areas are
    always measured at native resolution. Use it for models trained on resized slices
    (``fit_mode="resize"``).

Patches of several slices share a batch, so small slices are predicted ``batch_size`` at a
time. With ``tta=True`` each batch is also predicted in other views and the probability maps
are averaged: ``tta_views="rotations"`` turns it by 90, 180 and 270 degrees (for models trained
with rotations by any angle, the default since 2026-12), ``"flips"`` mirrors it left-right,
up-down and both (for models trained with flips), ``"all"`` uses all 8 rotations and mirrors.
:meth:`Segmenter.from_model_file` picks the views the model was trained on
(:func:`tta_views_for`).

A model trained at a planned pixel spacing (``target_spacing_mm``) segments each slice
resampled to that spacing; its probabilities are resampled back to the slice's own grid before
the arg-max, so label maps and areas stay on the scan's pixels. Post-processing chosen on
validation data (:mod:`ctseg_helpers.segment.postprocess`) is applied to the label maps.

Labels and probabilities come from one pass: :meth:`Segmenter.predict` (whole arrays) and
:meth:`Segmenter.predict_groups` (a few slices at a time, memory bounded) give the label maps
(post-processed, as :meth:`Segmenter.segment`) together with the probabilities they were taken
from. With ``views=True`` they also count, per pixel, how many of the views (test-time views
times ensemble members, see :attr:`Segmenter.n_views`) pick another class than the averaged
probabilities do: the views' disagreement, for per-slice uncertainty
(:mod:`ctseg_helpers.measure.uncertainty`), at no extra network pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.prepare.normalize import Normalization, normalize_image
from ctseg_helpers.prepare.resample import resize_image
from ctseg_helpers.segment.patches import (
    BLEND_MODES,
    blend_weights,
    check_blend,
    check_overlap,
    pad_to_patch,
    patch_origins,
)

logger = logging.getLogger(__name__)

#: Segmentation modes of :class:`Segmenter`.
MODES = ("tile", "resize")

#: Upper bound on the probability accumulator held at once (bytes); slices are processed in
#: groups that stay under it, so memory does not grow with the number of slices in segment().
_ACCUMULATOR_BYTES = 256 * 1024**2


def mode_for_fit(fit_mode: str) -> str:
    """Segmentation mode for a model's training ``fit_mode`` ('resize' -> 'resize', 'pad' -> 'tile')."""
    return "resize" if fit_mode == "resize" else "tile"


@dataclass(frozen=True)
class SegmentSettings:
    """The settings a user chooses when segmenting with a trained model, and their defaults.

    The one home of these defaults: :class:`Segmenter`, ``run_segmentation``, the options of
    ``ctseg segment`` and ``ctseg segment-volume`` (each field's metadata spells its option,
    see :mod:`ctseg_helpers.cli.options`) take them from here, and the parameters cell of
    ``notebooks/test.py`` is tested to hold the same values. :class:`Segmenter` checks them.

    Attributes
    ----------
    mode : {"tile", "resize"} or None
        See the module docstring; None: as the model was trained (:func:`mode_for_fit`).
    overlap : float in [0, 1)
        Least overlap between neighbouring patches in tile mode, as a fraction of the input.
    blend : {"gaussian", "hann", "average"}
        Weight map for blending overlapping patch probabilities in tile mode.
    batch_size : int
        Patches (tile) or slices (resize) per prediction call.
    tta : bool
        Test-time augmentation over the views the model was trained on (:func:`tta_views_for`).
    """

    mode: str | None = field(
        default=None,
        metadata={
            "cli": {
                "choices": MODES,
                "help": "tile: overlapping patches at native resolution; resize: whole slices resized to "
                "the input (default: as the model was trained)",
            }
        },
    )
    overlap: float = field(
        default=0.25,
        metadata={"cli": {"type": "float", "help": "patch overlap fraction in tile mode (default %(default)s)"}},
    )
    blend: str = field(
        default="gaussian",
        metadata={"cli": {"choices": BLEND_MODES, "help": "weighting of overlapping patches (default %(default)s)"}},
    )
    batch_size: int = field(
        default=8, metadata={"cli": {"type": "int", "help": "patches per prediction batch (default %(default)s)"}}
    )
    tta: bool = field(
        default=False,
        metadata={
            "cli": {
                "help": "test-time augmentation: average over the views the model was trained on (quarter turns or "
                "flips; 4x slower)"
            }
        },
    )


#: Test-time views: name -> (quarter turns, mirrored left-right) of each view, the original first.
#: A left-right mirror turned by 2 quarter turns is the up-down mirror, so "flips" is the old
#: set (original, left-right, up-down, both).
TTA_VIEWS = {
    "flips": ((0, False), (0, True), (2, True), (2, False)),
    "rotations": ((0, False), (1, False), (2, False), (3, False)),
    "all": tuple((k, m) for m in (False, True) for k in range(4)),
}


def tta_views_for(augmentation: dict | None) -> str:
    """The test-time views a model was trained on, from its stored augmentation settings.

    Rotations by 90 degrees or more (``max_rotation_deg`` >= 90 with ``p_affine`` > 0, or
    ``p_rot90`` > 0) give ``"rotations"``; with flips (``p_flip`` > 0) too, ``"all"``. Models
    trained with neither, or saved without augmentation settings, keep ``"flips"``, ctseg's
    earlier test-time views.

    Examples
    --------
    >>> tta_views_for({"enabled": True, "p_affine": 0.3, "max_rotation_deg": 180.0, "p_flip": 0.0})
    'rotations'
    >>> tta_views_for(None)
    'flips'
    """
    aug = augmentation or {}
    if not aug.get("enabled", False):
        return "flips"
    rotations = (aug.get("p_affine", 0) > 0 and aug.get("max_rotation_deg", 0) >= 90) or aug.get("p_rot90", 0) > 0
    flips = aug.get("p_flip", 0) > 0
    return "all" if rotations and flips else "rotations" if rotations else "flips"


@dataclass
class Prediction:
    """Label maps and the probabilities they come from, as :meth:`Segmenter.predict` returns them.

    Attributes
    ----------
    labels : ndarray of shape (K, M, N), dtype uint8
        Most probable class of every pixel, post-processed as :meth:`Segmenter.segment` does.
    proba : ndarray of shape (K, M, N, C), dtype float32
        Class probabilities (the mean over the views), before post-processing.
    dissent : ndarray of shape (K, M, N), dtype uint8, or None
        Number of views whose most probable class differs from the arg-max of ``proba`` (the
        consensus); None unless asked for (``views=True``) and the Segmenter has several views.
    n_views : int
        Views the probabilities are the mean of (:attr:`Segmenter.n_views`).
    start : int
        Index of the first slice (0 for a whole stack; a group's first slice in
        :meth:`Segmenter.predict_groups`).
    """

    labels: np.ndarray
    proba: np.ndarray
    dissent: np.ndarray | None
    n_views: int
    start: int = 0

    @property
    def disagreement(self) -> np.ndarray | None:
        """Share (0..1, float32) of the views that pick another class than the consensus, per pixel."""
        if self.dissent is None:
            return None
        return self.dissent.astype(np.float32) / np.float32(self.n_views)


class Segmenter:
    """Patch, predict and stitch 2D slices.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(batch)`` with ``batch`` a float32 array of shape (B, S, S, 1) must return
        class probabilities of shape (B, S, S, C) (array-like, e.g. a NumPy array or tensor).
    input_shape : int
        S, the side of the square network input in pixels.
    num_classes : int
        C, number of output channels (number of ROIs + 1 for background).
    mode : {"tile", "resize"}
        See the module docstring.
    overlap : float in [0, 1)
        Least overlap between neighbouring patches in tile mode, as a fraction of S.
    blend : {"gaussian", "hann", "average"}
        Weight map for blending overlapping patch probabilities in tile mode.
    batch_size : int
        Patches (tile) or slices (resize) per call of ``predict_fn``.
    tta : bool
        Test-time augmentation: average the probabilities over the ``tta_views`` (4x the work,
        8x for ``"all"``).
    tta_views : {"flips", "rotations", "all"}
        Views for ``tta``, see the module docstring; choose views the model was trained on.
    normalization : Normalization or None
        Applied to the raw slices first; None means the slices are already normalised.
    target_spacing_mm : (float, float) or None
        Pixel spacing the network works at; slices whose spacing is given to
        :meth:`segment` / :meth:`predict_proba` are resampled to it and back.
    postprocessing : PostProcessing, dict or None
        Applied by :meth:`segment` to the label maps.

    Raises
    ------
    CtsegSettingsError
        If a setting is out of range.
    """

    def __init__(
        self,
        predict_fn: Callable[[np.ndarray], np.ndarray],
        *,
        input_shape: int,
        num_classes: int,
        mode: str = "tile",
        overlap: float = SegmentSettings.overlap,
        blend: str = SegmentSettings.blend,
        batch_size: int = SegmentSettings.batch_size,
        tta: bool = SegmentSettings.tta,
        tta_views: str = "flips",
        normalization: Normalization | None = None,
        target_spacing_mm=None,
        postprocessing=None,
    ):
        if not callable(predict_fn):
            raise CtsegSettingsError(
                f"predict_fn must be callable (a function or a model), got {type(predict_fn).__name__}"
            )
        if int(input_shape) < 1:
            raise CtsegSettingsError(f"input_shape must be a positive number of pixels, got {input_shape}")
        if int(num_classes) < 2:
            raise CtsegSettingsError(f"num_classes must be at least 2 (background + one ROI), got {num_classes}")
        if mode not in MODES:
            raise CtsegSettingsError(f"mode must be 'tile' or 'resize', got {mode!r}")
        if int(batch_size) < 1:
            raise CtsegSettingsError(f"batch_size must be at least 1, got {batch_size}")
        self.predict_fn = predict_fn
        self.input_shape = int(input_shape)
        self.num_classes = int(num_classes)
        self.mode = mode
        self.overlap = check_overlap(overlap)
        self.blend = check_blend(blend)
        self.batch_size = int(batch_size)
        if tta_views not in TTA_VIEWS:
            raise CtsegSettingsError(f"tta_views must be one of {list(TTA_VIEWS)}, got {tta_views!r}")
        self.tta = bool(tta)
        self.tta_views = tta_views
        self.normalization = normalization
        self.target_spacing_mm = tuple(float(v) for v in target_spacing_mm) if target_spacing_mm else None
        self._warned_spacing = False
        from ctseg_helpers.segment.postprocess import PostProcessing  # noqa: PLC0415

        if postprocessing is None or isinstance(postprocessing, PostProcessing):
            self.postprocessing = postprocessing
        else:
            self.postprocessing = PostProcessing.from_dict(postprocessing)
        #: The model's stored settings when built by :meth:`from_model_file`, else None.
        self.settings = None
        #: The Keras model when built by :meth:`from_model_file`, else None.
        self.model = None

    def __repr__(self) -> str:
        return (
            f"Segmenter(input_shape={self.input_shape}, num_classes={self.num_classes}, mode={self.mode!r}, "
            f"overlap={self.overlap}, blend={self.blend!r}, batch_size={self.batch_size}, tta={self.tta}, "
            f"target_spacing_mm={self.target_spacing_mm})"
        )

    @property
    def n_views(self) -> int:
        """How many predictions each pixel's probabilities average: TTA views times ensemble members."""
        members = getattr(self.predict_fn, "members", None)
        n_members = len(members) if members and hasattr(self.predict_fn, "member_probabilities") else 1
        return n_members * (len(TTA_VIEWS[self.tta_views]) if self.tta else 1)

    @classmethod
    def from_model_file(cls, path: str | Path, **kwargs) -> Segmenter:
        """Load a ctseg ``.keras`` model, or an ensemble of them, (Keras safe mode) and wrap it.

        ``path`` is a model file, an ensemble file (``*.ensemble.json``, written by
        ``ctseg train --folds K``) or a folder of fold models; an ensemble averages its members'
        probabilities. ``input_shape``, ``num_classes``, ``normalization``, ``target_spacing_mm``
        and ``postprocessing`` come from the stored settings, ``mode`` from the training
        ``fit_mode``, ``tta_views`` from the stored augmentation (:func:`tta_views_for`), unless
        given; other keyword arguments are passed to :class:`Segmenter`.

        Raises
        ------
        CtsegDataError
            If the file is missing or is not a ctseg model.
        CtsegSettingsError
            If the network's input or output shape disagrees with its stored settings, or
            ``input_shape`` / ``num_classes`` are passed and differ from them.
        """
        from ctseg_helpers.segment.ensemble import averaged_predict_fn, load_ensemble  # noqa: PLC0415

        models, settings, paths = load_ensemble(path)
        for name, stored in (("input_shape", settings.input_shape), ("num_classes", settings.num_labels + 1)):
            if name in kwargs and kwargs[name] is not None and int(kwargs[name]) != stored:
                raise CtsegSettingsError(
                    f"{path}: {name}={kwargs[name]} was given but the model was trained with {name}={stored}"
                )
            kwargs.pop(name, None)
        kwargs["mode"] = kwargs.get("mode") or mode_for_fit(settings.fit_mode)
        defaults = {
            "normalization": settings.normalization,
            "target_spacing_mm": settings.target_spacing_mm,
            "postprocessing": settings.postprocessing,
            "tta_views": tta_views_for(settings.extra.get("augmentation")),
        }
        for name, value in defaults.items():
            if kwargs.get(name) is None:
                kwargs[name] = value
        predict_fn = averaged_predict_fn(
            [
                keras_predict_fn(model, settings.input_shape, settings.num_labels + 1, source=member)
                for model, member in zip(models, paths, strict=True)
            ]
        )
        segmenter = cls(predict_fn, input_shape=settings.input_shape, num_classes=settings.num_labels + 1, **kwargs)
        segmenter.settings = settings
        segmenter.model = models[0] if len(models) == 1 else models
        return segmenter

    # ------------------------------------------------------------------ public API

    def predict_proba(self, images: np.ndarray, *, pixel_spacing_mm=None, progress: bool = False) -> np.ndarray:
        """Class probabilities of every pixel.

        Parameters
        ----------
        images : ndarray of shape (K, M, N) or (M, N)
            Raw slices (normalised here when the Segmenter has a ``normalization``).
        pixel_spacing_mm : (float, float) or array of shape (K, 2), optional
            Pixel spacing of the slices (one for all, or one per slice). With a
            ``target_spacing_mm`` the slices are resampled to it; without, the network sees the
            slices' own pixels (a warning says so once when the model has a target spacing).
        progress : bool
            Show a progress bar over slices.

        Returns
        -------
        ndarray of shape (K, M, N, C) or (M, N, C), dtype float32
            Probabilities at the slices' native resolution.
        """
        stack, single = self._as_stack(images)
        out = np.empty(stack.shape + (self.num_classes,), dtype=np.float32)
        for start, proba in self._iter_proba(stack, pixel_spacing_mm, progress=progress):
            out[start : start + proba.shape[1]] = proba[0]
        return out[0] if single else out

    def segment(
        self, images: np.ndarray, *, pixel_spacing_mm=None, progress: bool = False, postprocess: bool = True
    ) -> np.ndarray:
        """Label maps: the most probable class of every pixel (argmax of :meth:`predict_proba`).

        Memory stays bounded whatever the number of slices: probabilities are kept only for a
        group of slices at a time, and the argmax is taken one slice at a time. The
        Segmenter's ``postprocessing`` is applied unless ``postprocess=False``.

        Returns
        -------
        ndarray of shape (K, M, N) or (M, N), dtype uint8
            Values 0 (background) .. C - 1.
        """
        stack, single = self._as_stack(images)
        labels = np.empty(stack.shape, dtype=np.uint8)
        for group in self._groups(stack, pixel_spacing_mm, progress=progress, postprocess=postprocess, views=False):
            labels[group.start : group.start + len(group.labels)] = group.labels
        return labels[0] if single else labels

    def predict(
        self,
        images: np.ndarray,
        *,
        pixel_spacing_mm=None,
        progress: bool = False,
        postprocess: bool = True,
        views: bool = False,
    ) -> Prediction:
        """Label maps and probabilities of a stack from one pass of the network.

        ``labels`` equal :meth:`segment`'s and ``proba`` :meth:`predict_proba`'s for the same
        arguments; the network runs once. Holds the probabilities of the whole stack (K x M x
        N x C float32); :meth:`predict_groups` keeps only a few slices' at a time.

        Parameters
        ----------
        images, pixel_spacing_mm, progress
            As :meth:`predict_proba`; a single slice (M, N) is a stack of one.
        postprocess : bool
            Apply the Segmenter's post-processing to the labels (not to ``proba``).
        views : bool
            Also count the views that disagree with the consensus (``Prediction.dissent``),
            when there are several (TTA or an ensemble). Each view's probabilities are then
            stitched on their own: more memory and stitching work, no extra network pass.

        Returns
        -------
        Prediction
        """
        stack, _ = self._as_stack(images)
        labels = np.empty(stack.shape, dtype=np.uint8)
        proba = np.empty(stack.shape + (self.num_classes,), dtype=np.float32)
        dissent = np.empty(stack.shape, dtype=np.uint8) if views and self.n_views > 1 else None
        for group in self._groups(stack, pixel_spacing_mm, progress=progress, postprocess=postprocess, views=views):
            where = slice(group.start, group.start + len(group.labels))
            labels[where] = group.labels
            proba[where] = group.proba
            if dissent is not None:
                dissent[where] = group.dissent
        return Prediction(labels=labels, proba=proba, dissent=dissent, n_views=self.n_views)

    def predict_groups(
        self,
        images: np.ndarray,
        *,
        pixel_spacing_mm=None,
        progress: bool = False,
        postprocess: bool = True,
        views: bool = False,
    ) -> Iterator[Prediction]:
        """:meth:`predict` a few consecutive slices at a time, so memory does not grow with the stack.

        Yields one :class:`Prediction` per group of slices (``start`` is the group's first
        slice), in order; arguments as :meth:`predict`.
        """
        stack, _ = self._as_stack(images)
        yield from self._groups(stack, pixel_spacing_mm, progress=progress, postprocess=postprocess, views=views)

    #: Same as :meth:`segment` (name used in docs/DEVELOPING.md).
    segment_slices = segment

    # ------------------------------------------------------------------ internals

    def _as_stack(self, images) -> tuple[np.ndarray, bool]:
        images = np.asarray(images)
        if images.ndim not in (2, 3):
            raise CtsegDataError(f"images must be one slice (M, N) or a stack (K, M, N); got shape {images.shape}")
        if not np.issubdtype(images.dtype, np.number) or np.issubdtype(images.dtype, np.complexfloating):
            raise CtsegDataError(f"images must hold real numbers, got dtype {images.dtype}")
        single = images.ndim == 2
        stack = images[None] if single else images
        if min(stack.shape[1:]) < 1:
            raise CtsegDataError(f"images have an empty side: shape {images.shape}")
        return stack, single

    def _normalised(self, stack: np.ndarray) -> np.ndarray:
        if self.normalization is not None:
            stack = normalize_image(stack, self.normalization)
        stack = np.asarray(stack, dtype=np.float32)
        if not np.all(np.isfinite(stack)):
            logger.warning("images contain NaN or infinite values; they are segmented as 0")
            stack = np.nan_to_num(stack, nan=0.0, posinf=0.0, neginf=0.0)
        return stack

    def _group_size(self, shape: tuple[int, int], n_views: int = 1) -> int:
        per_slice = max(shape[0], self.input_shape) * max(shape[1], self.input_shape) * self.num_classes * 4
        return max(1, _ACCUMULATOR_BYTES // (per_slice * n_views))

    def _spacings(self, pixel_spacing_mm, n_slices: int) -> np.ndarray | None:
        """Per-slice spacings (K, 2) when slices must be resampled to the target, else None."""
        if self.target_spacing_mm is None:
            return None
        if pixel_spacing_mm is None:
            if not self._warned_spacing:  # once per Segmenter: a volume is segmented slab by slab
                logger.warning(
                    "the model works at %s mm pixels but no pixel spacing was given for the slices; "
                    "they are segmented at their own pixel size",
                    self.target_spacing_mm,
                )
                self._warned_spacing = True
            return None
        try:
            spacings = np.asarray(pixel_spacing_mm, dtype=float)
        except (TypeError, ValueError):  # ragged or holding None
            spacings = np.zeros(0)
        spacings = np.tile(spacings, (n_slices, 1)) if spacings.shape == (2,) else spacings
        if spacings.shape != (n_slices, 2) or not np.all(spacings > 0):
            raise CtsegSettingsError(
                f"pixel_spacing_mm must be (row, col) or one positive (row, col) per slice ({n_slices} slices); "
                f"got {_describe_shape(pixel_spacing_mm)}"
            )
        return spacings

    def _groups(
        self, stack: np.ndarray, pixel_spacing_mm, *, progress: bool, postprocess: bool, views: bool
    ) -> Iterator[Prediction]:
        """Labels (post-processed), mean probabilities and the views' dissent, group by group."""
        post = postprocess and self.postprocessing is not None and not self.postprocessing.is_identity
        with_views = views and self.n_views > 1
        for start, view_proba in self._iter_proba(stack, pixel_spacing_mm, progress=progress, views=with_views):
            proba = view_proba.mean(axis=0, dtype=np.float32) if with_views else view_proba[0]
            labels = np.empty(proba.shape[:-1], dtype=np.uint8)
            dissent = np.zeros(proba.shape[:-1], dtype=np.uint8) if with_views else None
            # slice by slice: argmax makes an int64 temporary 8x the size of the labels
            for k, slice_proba in enumerate(proba):
                labels[k] = np.argmax(slice_proba, axis=-1)
                if dissent is not None:
                    for view in view_proba[:, k]:
                        dissent[k] += np.argmax(view, axis=-1) != labels[k]
            if post:
                labels = self.postprocessing.apply(labels)
            yield Prediction(labels=labels, proba=proba, dissent=dissent, n_views=self.n_views, start=start)

    def _iter_proba(
        self, stack: np.ndarray, pixel_spacing_mm=None, *, progress: bool, views: bool = False
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(first slice, probabilities (V, n, M, N, C)) per group; V = 1 (the mean) unless ``views``."""
        from tqdm.auto import tqdm  # noqa: PLC0415

        n_slices = len(stack)
        spacings = self._spacings(pixel_spacing_mm, n_slices)
        group = self._group_size(stack.shape[1:], self.n_views if views else 1)
        with tqdm(total=n_slices, unit="slice", desc="segmenting", disable=not progress or n_slices == 0) as bar:
            for start in range(0, n_slices, group):
                images = self._normalised(stack[start : start + group])
                if spacings is not None:
                    proba = self._resampled(images, spacings[start : start + group], bar, views)
                elif self.mode == "tile":
                    proba = self._tile(images, bar, views)
                else:
                    proba = self._resize(images, bar, views)
                yield start, proba

    def _resampled(self, images: np.ndarray, spacings: np.ndarray, bar, views: bool) -> np.ndarray:
        """Probabilities of slices resampled to the target spacing, brought back to their grid."""
        from ctseg_helpers.prepare.resample import resampled_shape  # noqa: PLC0415

        n, rows, cols = images.shape
        out = np.empty((self.n_views if views else 1, n, rows, cols, self.num_classes), dtype=np.float32)
        shapes = [resampled_shape((rows, cols), sp, self.target_spacing_mm) for sp in spacings]
        first = 0
        while first < n:  # runs of slices sharing a resampled shape are predicted together
            last = first + 1
            while last < n and shapes[last] == shapes[first]:
                last += 1
            part = np.stack([resize_image(im, shapes[first]) for im in images[first:last]])
            proba = self._tile(part, bar, views) if self.mode == "tile" else self._resize(part, bar, views)
            for v, view in enumerate(proba):
                for i, p in enumerate(view):
                    out[v, first + i] = resize_image(p, (rows, cols))
            first = last
        return out

    def _predict(self, batch: np.ndarray, views: bool = False) -> np.ndarray:
        """Probabilities (1, B, S, S, C) for a batch (B, S, S), averaged over the TTA views when on;
        with ``views`` every view's (V, B, S, S, C) instead: each TTA view of each ensemble member."""
        x = batch[..., None]
        members = getattr(self.predict_fn, "member_probabilities", None) if views else None
        if not self.tta and members is None:
            return self._call(x)[None]
        out = [] if views else np.zeros((1, *x.shape[:3], self.num_classes), np.float32)
        tta_views = TTA_VIEWS[self.tta_views] if self.tta else ((0, False),)
        for quarter_turns, mirror in tta_views:
            view = np.rot90(np.flip(x, axis=2) if mirror else x, k=quarter_turns, axes=(1, 2))
            view = np.ascontiguousarray(view)
            probas = [self._checked(p, x) for p in members(view)] if members is not None else [self._call(view)]
            for proba in probas:
                back = np.rot90(proba, k=-quarter_turns, axes=(1, 2))
                back = np.flip(back, axis=2) if mirror else back
                if views:
                    out.append(back)
                else:
                    out[0] += back
        return np.stack(out) if views else out / len(tta_views)

    def _call(self, x: np.ndarray) -> np.ndarray:
        return self._checked(self.predict_fn(x), x)

    def _checked(self, proba, x: np.ndarray) -> np.ndarray:
        proba = np.asarray(proba, dtype=np.float32)
        expected = (x.shape[0], self.input_shape, self.input_shape, self.num_classes)
        if proba.shape != expected:
            raise CtsegSettingsError(
                f"the prediction function returned shape {proba.shape} for a batch of shape {x.shape}; "
                f"expected {expected} (num_classes={self.num_classes}): check input_shape and the number of labels"
            )
        return proba

    def _tile(self, images: np.ndarray, bar, views: bool = False) -> np.ndarray:
        size = self.input_shape
        n, rows, cols = images.shape
        (top, bottom), (left, right) = pad_to_patch((rows, cols), size)
        if top or bottom or left or right:
            images = np.pad(images, ((0, 0), (top, bottom), (left, right)))
        origins = patch_origins(images.shape[1:], size, self.overlap)
        weights = blend_weights(size, self.blend)
        weight_sum = np.zeros(images.shape[1:], dtype=np.float32)
        for r, c in origins:
            weight_sum[r : r + size, c : c + size] += weights
        acc = np.zeros((self.n_views if views else 1, *images.shape, self.num_classes), dtype=np.float32)
        tasks = [(k, r, c) for k in range(n) for r, c in origins]
        done = 0
        for first in range(0, len(tasks), self.batch_size):
            chunk = tasks[first : first + self.batch_size]
            batch = np.stack([images[k, r : r + size, c : c + size] for k, r, c in chunk])
            proba = self._predict(batch, views) * weights[None, None, :, :, None]
            for i, (k, r, c) in enumerate(chunk):
                acc[:, k, r : r + size, c : c + size] += proba[:, i]
            finished = (first + len(chunk)) // len(origins)
            bar.update(finished - done)
            done = finished
        acc /= weight_sum[None, None, :, :, None]
        return acc[:, :, top : top + rows, left : left + cols]

    def _resize(self, images: np.ndarray, bar, views: bool = False) -> np.ndarray:
        size = self.input_shape
        n, rows, cols = images.shape
        same = (rows, cols) == (size, size)
        out = np.empty((self.n_views if views else 1, n, rows, cols, self.num_classes), dtype=np.float32)
        for first in range(0, n, self.batch_size):
            part = images[first : first + self.batch_size]
            batch = part if same else np.stack([resize_image(im, (size, size)) for im in part])
            proba = self._predict(batch, views)
            for v, view in enumerate(proba):
                for i, p in enumerate(view):
                    out[v, first + i] = p if same else resize_image(p, (rows, cols))
            bar.update(len(part))
        return out


def _describe_shape(value) -> str:
    try:
        return f"an array of shape {np.shape(value)}"
    except ValueError:
        return "a list of spacings of different lengths"


def keras_predict_fn(model, input_shape: int, num_classes: int, *, source: str | Path = "model"):
    """A fast ``predict_fn`` for a Keras model: one traced graph for any batch size.

    A model with a single sigmoid output channel for one ROI is turned into two channels
    (background, ROI). Raises :class:`CtsegSettingsError` if the network's input or output
    shape disagrees with ``input_shape`` / ``num_classes``.
    """
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    tf = configure_tensorflow()
    in_shape = tuple(model.input_shape)
    if len(in_shape) != 4 or in_shape[-1] != 1 or any(d is not None and d != input_shape for d in in_shape[1:3]):
        raise CtsegSettingsError(
            f"{source}: the network takes inputs of shape {in_shape}, but its settings say "
            f"input_shape={input_shape} with one channel, i.e. (None, {input_shape}, {input_shape}, 1)"
        )
    out_channels = model.output_shape[-1]
    sigmoid_binary = out_channels == 1 and num_classes == 2
    if out_channels != num_classes and not sigmoid_binary:
        raise CtsegSettingsError(
            f"{source}: the network outputs {out_channels} channels, but its settings say "
            f"{num_classes - 1} label(s), i.e. {num_classes} channels with background"
        )
    spec = tf.TensorSpec((None, input_shape, input_shape, 1), tf.float32)

    @tf.function(input_signature=[spec])
    def _forward(x):
        y = tf.cast(model(x, training=False), tf.float32)
        if sigmoid_binary:
            y = tf.concat([1.0 - y, y], axis=-1)
        return y

    def predict_fn(batch: np.ndarray) -> np.ndarray:
        return _forward(tf.convert_to_tensor(batch, dtype=tf.float32)).numpy()

    return predict_fn


__all__ = ["MODES", "Prediction", "Segmenter", "keras_predict_fn", "mode_for_fit"]
