"""Intensity normalisation shared by training and segmentation.

A model is trained and applied with the same :class:`Normalization`; the settings travel
inside the saved model (see :mod:`ctseg_helpers.model.settings`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ctseg_helpers.errors import CtsegSettingsError


@dataclass(frozen=True)
class Normalization:
    """How raw pixel values become network inputs in 0..1.

    Attributes
    ----------
    modality : {"CT", "MR"}
        ``"CT"``: clip Hounsfield units to ``hu_window`` and scale linearly to 0..1.
        ``"MR"`` (also used for any other modality): scale each image by its own
        ``percentiles`` (robust to bright outliers) and clip to 0..1.
    hu_window : (float, float)
        Lowest and highest HU kept for CT.
    percentiles : (float, float)
        Lower and upper percentile mapped to 0 and 1 for MR.
    """

    modality: str = "CT"
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    percentiles: tuple[float, float] = (1.0, 99.0)

    def __post_init__(self):
        if self.modality not in ("CT", "MR"):
            raise CtsegSettingsError(f"normalisation modality must be 'CT' or 'MR', got {self.modality!r}")
        if not self.hu_window[0] < self.hu_window[1]:
            raise CtsegSettingsError(f"hu_window must be (low, high) with low < high, got {self.hu_window}")
        if not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise CtsegSettingsError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        return cls(
            modality=data["modality"],
            hu_window=tuple(float(v) for v in data.get("hu_window", (-1000.0, 1000.0))),
            percentiles=tuple(float(v) for v in data.get("percentiles", (1.0, 99.0))),
        )

    @classmethod
    def for_modality(cls, modality: str | None) -> Normalization:
        """Default normalisation for a DICOM Modality value (``CT`` -> CT, anything else -> MR)."""
        return cls(modality="CT" if (modality or "").upper() == "CT" else "MR")


def normalize_image(image: np.ndarray, norm: Normalization) -> np.ndarray:
    """Map one image (or a stack of images) to float32 values in 0..1.

    Parameters
    ----------
    image : ndarray of shape (M, N) or (K, M, N)
        Raw values: Hounsfield units for CT (rescale already applied), scanner units for MR.
        A stack is normalised image by image for MR.
    norm : Normalization

    Returns
    -------
    ndarray of the same shape and dtype float32, values in 0..1.
    """
    image = np.asarray(image, dtype=np.float32)
    if norm.modality == "CT":
        lo, hi = norm.hu_window
        return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    if image.ndim == 3:
        return np.stack([normalize_image(im, norm) for im in image])
    if image.size == 0:
        return image
    lo, hi = np.percentile(image, norm.percentiles)
    scale = hi - lo if hi > lo else 1.0
    return np.clip((image - lo) / scale, 0.0, 1.0).astype(np.float32)
