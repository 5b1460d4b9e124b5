"""A training plan derived from the data, in the spirit of nnU-Net's fingerprint -> plan.

Two pure steps:

1. :func:`fingerprint` summarises a training folder: pixel spacings, image sizes, the size of
   every ROI, and the intensities inside the ROIs (per modality);
2. :func:`make_plan` turns that summary into the settings a user would otherwise have to guess:
   the spacing to train at (the median, or coarser when large ROIs on large slices would not
   fit a patch the device can train in minutes), the patch size (the median image at that
   spacing, capped for the device), the U-Net depth, the batch size and the intensity
   normalisation. Every choice carries a one-line reason, printed in the notebook and
   stored with the model.

A setting the user gives explicitly always wins over the plan (:meth:`TrainingPlan.with_overrides`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.prepare.normalize import Normalization

#: Largest patch side (pixels) planned per device: a CPU must train in minutes, a GPU can take
#: whole slices of most scans (nnU-Net's 2D patches are typically 256-512 pixels).
MAX_PATCH_PX = {"cpu": 128, "gpu": 512}
#: Pixels per batch the plan aims at (batch size x patch area), per device.
BATCH_PIXELS = {"cpu": 8 * 128 * 128, "gpu": 12 * 512 * 512}
#: Batches in one epoch, per device (nnU-Net: 250 on a GPU).
BATCHES_PER_EPOCH = {"cpu": 50, "gpu": 250}
#: Share of each batch's patches centred on a random ROI pixel (nnU-Net: one third).
FOREGROUND_FRACTION = 1.0 / 3.0
#: The coarsest feature map the U-Net pools down to, pixels per side.
MIN_FEATURE_PX = 8
MAX_LEVELS = 6
#: A coarser training spacing (for context) keeps the smallest ROI at least this many pixels across.
MIN_ROI_PX = 12
#: ... and coarsens the median spacing by at most this factor.
MAX_COARSENING = 4.0


@dataclass(frozen=True)
class DataFingerprint:
    """What a training folder holds, in numbers.

    Attributes
    ----------
    n_slices, n_groups : int
        Labelled slices and patients (or series) they come from.
    modality : {"CT", "MR"}
    spacings_mm : tuple of (float, float)
        Pixel spacing (row, col) of every slice; empty when any slice has none (the plan then
        works in pixels, as slices of unknown size cannot be resampled together).
    shapes_px : tuple of (int, int)
        Size (rows, cols) of every slice.
    roi_extent_mm : dict of int to (float, float)
        Per ROI label, the median (over slices holding it) bounding-box size (rows, cols) in mm
        (in pixels when the slices have no spacing).
    roi_area_mm2 : dict of int to float
        Per ROI label, the median area per slice where present (pixels when no spacing).
    roi_slices : dict of int to int
        Per ROI label, the number of slices that hold it.
    foreground_percentiles : (float, float, float)
        0.5th, 50th and 99.5th percentiles of the raw values inside the ROIs (all ROIs pooled).
    foreground_mean, foreground_std : float
    """

    n_slices: int
    n_groups: int
    modality: str
    spacings_mm: tuple = ()
    shapes_px: tuple = ()
    roi_extent_mm: dict = field(default_factory=dict)
    roi_area_mm2: dict = field(default_factory=dict)
    roi_slices: dict = field(default_factory=dict)
    foreground_percentiles: tuple = (math.nan, math.nan, math.nan)
    foreground_mean: float = math.nan
    foreground_std: float = math.nan

    @property
    def median_spacing_mm(self) -> tuple[float, float] | None:
        if not self.spacings_mm:
            return None
        return tuple(float(v) for v in np.median(np.asarray(self.spacings_mm, dtype=float), axis=0))

    @property
    def median_shape_px(self) -> tuple[int, int]:
        return tuple(int(round(v)) for v in np.median(np.asarray(self.shapes_px, dtype=float), axis=0))

    def summary(self) -> dict:
        """JSON-friendly digest (no per-slice lists), stored with the model."""
        spacing = self.median_spacing_mm
        spacings = np.asarray(self.spacings_mm, dtype=float) if self.spacings_mm else None
        return {
            "n_slices": self.n_slices,
            "n_groups": self.n_groups,
            "modality": self.modality,
            "median_spacing_mm": list(spacing) if spacing else None,
            "spacing_range_mm": [float(spacings.min()), float(spacings.max())] if spacings is not None else None,
            "median_shape_px": list(self.median_shape_px),
            "roi_extent_mm": {str(k): [round(float(v), 2) for v in e] for k, e in self.roi_extent_mm.items()},
            "roi_area_mm2": {str(k): round(float(v), 2) for k, v in self.roi_area_mm2.items()},
            "roi_slices": {str(k): int(v) for k, v in self.roi_slices.items()},
            "foreground_percentiles": [_finite(v) for v in self.foreground_percentiles],
            "foreground_mean": _finite(self.foreground_mean),
            "foreground_std": _finite(self.foreground_std),
        }


def _finite(value) -> float | None:
    """``value`` rounded for JSON, None when it is NaN (no ROI pixels), so plans compare equal."""
    return round(float(value), 3) if np.isfinite(value) else None


def fingerprint(
    images,
    labels,
    spacings_mm,
    *,
    modality: str = "MR",
    groups=None,
    num_labels: int | None = None,
    max_samples: int = 200_000,
) -> DataFingerprint:
    """Summarise raw training slices.

    Parameters
    ----------
    images : sequence of ndarray of shape (M, N)
        Raw values (HU for CT, scanner units for MR); sizes may differ.
    labels : sequence of ndarray of shape (M, N), integer dtype
    spacings_mm : sequence of (float, float) or None
        Pixel spacing of each slice; None (or a None entry) where unknown.
    modality : {"CT", "MR"}
    groups : sequence of str, optional
        Patient/series of each slice.
    num_labels : int, optional
        ROI labels 1..num_labels are summarised (default: the largest value present).
    max_samples : int
        Foreground intensities are subsampled (evenly) to at most this many values.

    Raises
    ------
    CtsegDataError
        If there are no slices, or the numbers of images and labels differ.
    """
    images, labels = list(images), list(labels)
    if not images:
        raise CtsegDataError("no training slices to plan from; check the training folder holds image/label pairs")
    if len(images) != len(labels):
        raise CtsegDataError(f"{len(images)} images but {len(labels)} label maps; give one label map per image")
    spacings_mm = list(spacings_mm) if spacings_mm is not None else [None] * len(images)
    known = [tuple(float(v) for v in s) for s in spacings_mm if s is not None]
    have_spacing = len(known) == len(images)
    if num_labels is None:
        num_labels = int(max((int(np.max(lab)) for lab in labels if np.size(lab)), default=0))
    extents, areas, counts = {}, {}, {}
    foreground = []
    for image, label, spacing in zip(images, labels, spacings_mm, strict=True):
        label = np.asarray(label)
        scale = np.asarray(spacing, dtype=float) if (have_spacing and spacing is not None) else np.ones(2)
        for k in range(1, num_labels + 1):
            mask = label == k
            if not mask.any():
                continue
            rows, cols = np.nonzero(mask)
            extents.setdefault(k, []).append(
                ((rows.max() - rows.min() + 1) * scale[0], (cols.max() - cols.min() + 1) * scale[1])
            )
            areas.setdefault(k, []).append(mask.sum() * scale[0] * scale[1])
            counts[k] = counts.get(k, 0) + 1
        fg = label > 0
        if fg.any():
            foreground.append(np.asarray(image, dtype=np.float64)[fg])
    values = np.concatenate(foreground) if foreground else np.zeros(0)
    if values.size > max_samples:
        values = values[np.linspace(0, values.size - 1, max_samples).astype(int)]
    percentiles = tuple(float(v) for v in np.percentile(values, (0.5, 50, 99.5))) if values.size else (math.nan,) * 3
    return DataFingerprint(
        n_slices=len(images),
        n_groups=len(set(groups)) if groups is not None else len(images),
        modality="CT" if str(modality).upper() == "CT" else "MR",
        spacings_mm=tuple(known) if have_spacing else (),
        shapes_px=tuple(tuple(int(v) for v in np.shape(im)[:2]) for im in images),
        roi_extent_mm={
            k: tuple(float(v) for v in np.median(np.asarray(e), axis=0)) for k, e in sorted(extents.items())
        },
        roi_area_mm2={k: float(np.median(a)) for k, a in sorted(areas.items())},
        roi_slices=dict(sorted(counts.items())),
        foreground_percentiles=percentiles,
        foreground_mean=float(values.mean()) if values.size else math.nan,
        foreground_std=float(values.std()) if values.size else math.nan,
    )


@dataclass(frozen=True)
class TrainingPlan:
    """Settings planned from a :class:`DataFingerprint`.

    Attributes
    ----------
    target_spacing_mm : (float, float) or None
        Pixel spacing every slice is resampled to for training and segmentation; None when the
        slices carry no spacing (training then works in pixels, without resampling).
    patch_size : int
        Side of the square training patch (the network input), pixels at the target spacing.
    levels : int
        U-Net pooling levels: the patch is halved until the coarsest map is about 8 pixels.
    batch_size : int
    batches_per_epoch : int
        An epoch is this many batches of random patches (not one pass over the slices).
    foreground_fraction : float
        Share of each batch centred on a random pixel of a random ROI.
    normalization : Normalization
        CT: Hounsfield window from the 0.5-99.5 percentiles of the ROI intensities (nnU-Net's
        clipping); MR: per-image percentiles.
    device : {"cpu", "gpu"}
        What the plan was sized for.
    reasons : dict of str to str
        One line per choice, saying why.
    fingerprint : dict
        :meth:`DataFingerprint.summary` of the data planned from.
    """

    target_spacing_mm: tuple[float, float] | None
    patch_size: int
    levels: int
    batch_size: int
    batches_per_epoch: int
    foreground_fraction: float
    normalization: Normalization
    device: str = "cpu"
    reasons: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["target_spacing_mm"] = list(self.target_spacing_mm) if self.target_spacing_mm else None
        data["normalization"] = self.normalization.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainingPlan:
        values = dict(data)
        spacing = values.get("target_spacing_mm")
        values["target_spacing_mm"] = tuple(float(v) for v in spacing) if spacing else None
        values["normalization"] = Normalization.from_dict(values["normalization"])
        return cls(**values)

    def with_overrides(self, **explicit) -> TrainingPlan:
        """The plan with the user's explicit settings (those not None) in place of the planned ones.

        Accepted names: ``target_spacing_mm``, ``patch_size``, ``levels``, ``batch_size``,
        ``batches_per_epoch``, ``foreground_fraction``, ``normalization``.

        Raises
        ------
        CtsegSettingsError
            For an unknown name.
        """
        known = {
            "target_spacing_mm",
            "patch_size",
            "levels",
            "batch_size",
            "batches_per_epoch",
            "foreground_fraction",
            "normalization",
        }
        unknown = sorted(set(explicit) - known)
        if unknown:
            raise CtsegSettingsError(f"cannot override plan setting(s) {unknown}; known: {sorted(known)}")
        given = {k: v for k, v in explicit.items() if v is not None}
        if "target_spacing_mm" in given:
            given["target_spacing_mm"] = tuple(float(v) for v in given["target_spacing_mm"])
        reasons = dict(self.reasons)
        for name in given:
            reasons[name] = "set by the user"
        if "patch_size" in given and given["patch_size"] != self.patch_size:
            # what was planned for the old patch follows the new one, unless also given
            patch = int(given["patch_size"])
            if "levels" not in given:
                given["levels"] = levels_for(patch)
                reasons["levels"] = _levels_reason(patch, given["levels"])
            if "batch_size" not in given:
                given["batch_size"] = _batch_for(patch, self.device)
                reasons["batch_size"] = _batch_reason(self.device)
        return replace(self, **given, reasons=reasons)

    def describe(self) -> str:
        """The plan as the notebook prints it: one line per choice with its reason."""
        spacing = (
            "native pixels (no spacing known)"
            if self.target_spacing_mm is None
            else f"{self.target_spacing_mm[0]:.3g} x {self.target_spacing_mm[1]:.3g} mm"
        )
        norm = self.normalization
        norm_text = (
            f"CT window {norm.hu_window[0]:.0f}..{norm.hu_window[1]:.0f} HU"
            if norm.modality == "CT"
            else f"MR per-image percentiles {norm.percentiles[0]:g}-{norm.percentiles[1]:g}"
        )
        rows = [
            ("target spacing", spacing, "target_spacing_mm"),
            ("patch size", f"{self.patch_size} x {self.patch_size} px", "patch_size"),
            ("U-Net levels", str(self.levels), "levels"),
            ("batch size", str(self.batch_size), "batch_size"),
            ("batches per epoch", str(self.batches_per_epoch), "batches_per_epoch"),
            ("foreground patches", f"{self.foreground_fraction:.0%} of each batch", "foreground_fraction"),
            ("normalisation", norm_text, "normalization"),
        ]
        lines = [f"Training plan ({self.device}):"]
        lines += [f"  {label:<19} {value:<32} {self.reasons.get(key, '')}" for label, value, key in rows]
        return "\n".join(lines)


def _levels_reason(patch: int, levels: int) -> str:
    return f"halves {patch} px down to {patch / 2**levels:g} px"


def _batch_for(patch: int, device: str) -> int:
    return int(np.clip(BATCH_PIXELS[device] // (patch * patch), 2, 32))


def _batch_reason(device: str) -> str:
    return f"{BATCH_PIXELS[device] // 1000}k pixels per batch on the {device}"


def levels_for(patch_size: int, min_feature_px: int = MIN_FEATURE_PX, max_levels: int = MAX_LEVELS) -> int:
    """Pooling levels that halve ``patch_size`` down to about ``min_feature_px`` (at least 1).

    >>> levels_for(128), levels_for(160), levels_for(64), levels_for(256)
    (4, 4, 3, 5)
    """
    levels = 0
    side = int(patch_size)
    while levels < max_levels and side % 2 == 0 and side // 2 >= min_feature_px:
        side //= 2
        levels += 1
    return max(1, levels)


def round_patch(side: float, multiple: int) -> int:
    """``side`` rounded up to a multiple of ``multiple`` (at least one multiple).

    >>> round_patch(100, 16), round_patch(128, 16), round_patch(3, 16)
    (112, 128, 16)
    """
    return max(multiple, int(math.ceil(side / multiple)) * multiple)


def make_plan(fp: DataFingerprint, *, device: str = "cpu", max_patch_px: int | None = None) -> TrainingPlan:
    """Plan the training from a fingerprint (deterministic: same fingerprint, same plan).

    Parameters
    ----------
    fp : DataFingerprint
    device : {"cpu", "gpu"}
        Sizes the patch and batch for the time a run may take there.
    max_patch_px : int, optional
        Cap on the patch side (default :data:`MAX_PATCH_PX` of the device).

    Returns
    -------
    TrainingPlan

    Raises
    ------
    CtsegSettingsError
        For an unknown device.
    """
    if device not in MAX_PATCH_PX:
        raise CtsegSettingsError(f"device must be one of {sorted(MAX_PATCH_PX)}, got {device!r}")
    cap = int(max_patch_px or MAX_PATCH_PX[device])
    reasons = {}
    spacing = fp.median_spacing_mm
    if spacing is None:
        target = None
        reasons["target_spacing_mm"] = "the slices carry no pixel spacing: trained in pixels"
        scale = np.ones(2)
    else:
        target = tuple(round(float(v), 4) for v in spacing)
        reasons["target_spacing_mm"] = f"median of {fp.n_slices} slices"
        scale = np.asarray(target)
    shapes = np.asarray(fp.shapes_px, dtype=float)
    if spacing is not None:
        shapes = shapes * np.asarray(fp.spacings_mm, dtype=float) / scale
    median_side = float(np.max(np.median(shapes, axis=0)))
    # Context: a patch should span twice the largest ROI, so that a patch around an ROI sees its
    # neighbours (the right ventricle beside the left one, the spine beside the psoas). When the
    # slices do not fit the device's patch and the largest ROI would not fit twice either, train
    # at a coarser spacing, but keep the smallest ROI at least MIN_ROI_PX pixels across and
    # coarsen by at most MAX_COARSENING.
    roi_px = max((max(e) / float(min(scale)) for e in fp.roi_extent_mm.values()), default=0.0)
    if spacing is not None and median_side > cap and 2 * roi_px > cap:
        smallest_px = min(min(e) / float(min(scale)) for e in fp.roi_extent_mm.values())
        factor = min(2 * roi_px / cap, max(1.0, smallest_px / MIN_ROI_PX), MAX_COARSENING)
        if factor > 1.01:
            target = tuple(round(float(v) * factor, 4) for v in spacing)
            scale = np.asarray(target)
            reasons["target_spacing_mm"] = (
                f"{factor:.2g} x the median ({spacing[0]:.3g} mm), so a {cap} px patch spans more of the "
                f"largest ROI ({roi_px * min(spacing):.0f} mm); the smallest stays {smallest_px / factor:.0f} px"
            )
            median_side /= factor
            roi_px /= factor
    wanted = min(median_side, cap)
    reason = f"median slice ({median_side:.0f} px at the target spacing)"
    if median_side > cap:
        reason = f"median slice is {median_side:.0f} px; capped at {cap} px for the {device}"
        if 2 * roi_px > cap:
            reason += f" (the largest ROI spans {roi_px:.0f} px: tiles blend the rest)"
    # Pool until the coarsest map is about MIN_FEATURE_PX, then round the patch to what the
    # pooling divides: up, unless that passes the cap.
    levels = int(np.clip(math.floor(math.log2(round_patch(wanted, MIN_FEATURE_PX) / MIN_FEATURE_PX)), 1, MAX_LEVELS))
    step = 2**levels
    patch = max(round_patch(wanted, step), MIN_FEATURE_PX * step)
    if patch > cap:
        patch = max(step, cap // step * step)
    reasons["patch_size"] = reason
    reasons["levels"] = _levels_reason(patch, levels)
    batch = _batch_for(patch, device)
    reasons["batch_size"] = _batch_reason(device)
    reasons["batches_per_epoch"] = f"fixed number of patch batches per epoch on the {device}"
    reasons["foreground_fraction"] = "nnU-Net's share, so small ROIs are seen often"
    if fp.modality == "CT" and np.isfinite(fp.foreground_percentiles[0]):
        lo, _, hi = fp.foreground_percentiles
        if hi - lo < 50:  # a single-tissue ROI: keep some contrast around it
            lo, hi = lo - 100.0, hi + 100.0
        norm = Normalization(modality="CT", hu_window=(float(np.floor(lo)), float(np.ceil(hi))))
        reasons["normalization"] = "0.5-99.5 percentiles of the HU inside the ROIs"
    else:
        norm = Normalization(modality="MR") if fp.modality != "CT" else Normalization(modality="CT")
        reasons["normalization"] = (
            "MR signal has no fixed scale: each image by its own percentiles"
            if fp.modality != "CT"
            else "no ROI pixels: default CT window"
        )
    return TrainingPlan(
        target_spacing_mm=target,
        patch_size=patch,
        levels=levels,
        batch_size=batch,
        batches_per_epoch=BATCHES_PER_EPOCH[device],
        foreground_fraction=FOREGROUND_FRACTION,
        normalization=norm,
        device=device,
        reasons=reasons,
        fingerprint=fp.summary(),
    )
