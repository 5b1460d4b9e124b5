"""Random training patches from slices at native resolution, with foreground oversampling.

nnU-Net's recipe for small data: an epoch is a fixed number of batches of random patches, and
a share of every batch (one third) is centred on a random pixel of a random ROI, so small ROIs
are seen often. :class:`PatchSampler` draws the patches (pure NumPy, seeded);
:func:`make_patch_dataset` feeds them through the label-safe augmentation into ``tf.data``.

Each patch is cut with a margin around it; the augmentation rotates and scales the larger
region, and its centre is cropped, so rotated patches have image content in their corners.
"""

from __future__ import annotations

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.prepare.augment import NO_AUGMENTATION, AugmentConfig, augment_pair


class PatchSampler:
    """Draw square patches (with a margin) from a stack of slices of various real sizes.

    Parameters
    ----------
    images : ndarray of shape (K, H, W) and dtype float32
        Normalised slices, zero-padded beyond their real size.
    labels : ndarray of shape (K, H, W) and dtype uint8
    shapes : ndarray of shape (K, 2), optional
        Real rows and columns of each slice (default: the whole stack).
    patch_size : int
        Side of the patch the network trains on, pixels.
    margin : int
        Pixels added on every side of the patch (for augmentation); the region drawn is
        ``patch_size + 2 * margin`` square.
    batch_size : int
        Patches per batch; the last ``round(foreground_fraction * batch_size)`` of every batch
        (at least one when the fraction is above 0) are centred on an ROI pixel.
    foreground_fraction : float in [0, 1]
    seed : int

    Raises
    ------
    CtsegSettingsError
        For a patch size, margin, batch size or fraction out of range.
    CtsegDataError
        If the stacks are empty or differ in shape.
    """

    def __init__(
        self,
        images,
        labels,
        shapes=None,
        *,
        patch_size: int,
        margin: int = 0,
        batch_size: int = 8,
        foreground_fraction: float = 1.0 / 3.0,
        seed: int = 0,
    ):
        images = np.asarray(images, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.uint8)
        if images.ndim != 3 or images.shape != labels.shape or len(images) == 0:
            raise CtsegDataError(
                f"images {images.shape} and labels {labels.shape} must be non-empty stacks of the same shape (K, H, W)"
            )
        if int(patch_size) < 1 or int(margin) < 0 or int(batch_size) < 1:
            raise CtsegSettingsError(
                f"patch_size and batch_size must be positive and margin not negative; got patch_size={patch_size}, "
                f"margin={margin}, batch_size={batch_size}"
            )
        if not 0.0 <= float(foreground_fraction) <= 1.0:
            raise CtsegSettingsError(f"foreground_fraction must be within 0..1, got {foreground_fraction}")
        self.images, self.labels = images, labels
        self.shapes = np.tile(images.shape[1:], (len(images), 1)) if shapes is None else np.asarray(shapes, dtype=int)
        if self.shapes.shape != (len(images), 2) or np.any(self.shapes < 1) or np.any(self.shapes > images.shape[1:]):
            raise CtsegDataError(
                f"shapes must give (rows, cols) of each of the {len(images)} slices, within the stack's "
                f"{images.shape[1]}x{images.shape[2]}; got an array of shape {np.shape(shapes)}"
            )
        self.patch_size, self.margin, self.batch_size = int(patch_size), int(margin), int(batch_size)
        self.foreground_fraction = float(foreground_fraction)
        n_forced = int(round(self.foreground_fraction * self.batch_size))
        self.n_forced = max(1, n_forced) if self.foreground_fraction > 0 else 0
        self.rng = np.random.default_rng(seed)  # kept across restarts of the generator
        self._count = 0
        # Flat pixel positions of every ROI value, per slice: where forced patches are centred.
        self.classes = [int(v) for v in np.unique(labels) if v > 0]
        self._where = {k: [np.flatnonzero(lab == k) for lab in labels] for k in self.classes}
        self._slices_with = {k: np.array([i for i, w in enumerate(self._where[k]) if w.size]) for k in self.classes}

    @property
    def region_size(self) -> int:
        """Side of the region drawn: ``patch_size + 2 * margin``."""
        return self.patch_size + 2 * self.margin

    def _origin(self, extent: int, centre: int | None) -> int:
        """Top (or left) of a patch within a slice axis of ``extent`` pixels."""
        lo, hi = min(0, extent - self.patch_size), max(0, extent - self.patch_size)
        if centre is None:
            return int(self.rng.integers(lo, hi + 1))
        return int(np.clip(centre - self.patch_size // 2, lo, hi))

    def sample(self, force_foreground: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
        """One region: ``(image, label, slice_index)``.

        With ``force_foreground`` (and some ROI in the data) a random ROI value is chosen, then a
        random slice holding it and a random pixel of it, and the patch is centred there (moved
        only as far as needed to stay inside the slice); the patch then always contains that ROI.

        Returns
        -------
        image : ndarray of shape (R, R) and dtype float32, R = :attr:`region_size`
        label : ndarray of shape (R, R) and dtype uint8 (0 outside the slice)
        slice_index : int
        """
        centre = None
        if force_foreground and self.classes:
            k = self.classes[int(self.rng.integers(len(self.classes)))]
            index = int(self._slices_with[k][self.rng.integers(len(self._slices_with[k]))])
            flat = self._where[k][index]
            pixel = int(flat[self.rng.integers(flat.size)])
            centre = divmod(pixel, self.images.shape[2])
        else:
            index = int(self.rng.integers(len(self.images)))
        rows, cols = (int(v) for v in self.shapes[index])
        top = self._origin(rows, centre[0] if centre else None) - self.margin
        left = self._origin(cols, centre[1] if centre else None) - self.margin
        return (
            _cut(self.images[index], top, left, self.region_size, rows, cols),
            _cut(self.labels[index], top, left, self.region_size, rows, cols),
            index,
        )

    def __iter__(self):
        """Endless regions ``(image[..., None], label)``; batch positions decide forcing."""
        while True:
            position = self._count % self.batch_size
            self._count += 1
            image, label, _ = self.sample(position >= self.batch_size - self.n_forced)
            yield image[..., None], label


def _cut(array: np.ndarray, top: int, left: int, size: int, rows: int, cols: int) -> np.ndarray:
    """``array[top:top+size, left:left+size]`` within the real ``rows`` x ``cols``; zeros outside."""
    out = np.zeros((size, size), dtype=array.dtype)
    r0, r1 = max(top, 0), min(top + size, rows)
    c0, c1 = max(left, 0), min(left + size, cols)
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = array[r0:r1, c0:c1]
    return out


def make_patch_dataset(sampler: PatchSampler, *, augment: AugmentConfig = NO_AUGMENTATION, seed: int = 0):
    """Endless batches of augmented patches for ``model.fit(..., steps_per_epoch=...)``.

    Returns
    -------
    tf.data.Dataset
        Yields ``(x, y)``: x float32 (B, P, P, 1), y uint8 (B, P, P), with
        B = ``sampler.batch_size`` and P = ``sampler.patch_size``.
    """
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    tf = configure_tensorflow()
    size, margin, patch = sampler.region_size, sampler.margin, sampler.patch_size
    ds = tf.data.Dataset.from_generator(
        lambda: iter(sampler),
        output_signature=(tf.TensorSpec((size, size, 1), tf.float32), tf.TensorSpec((size, size), tf.uint8)),
    )

    def crop(image, label):
        centre = (slice(margin, margin + patch), slice(margin, margin + patch))
        return image[centre], label[centre]

    if augment.active:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda pair, r: crop(*augment_pair(pair[0], pair[1], tf.stack([r, tf.constant(seed, tf.int64)]), augment)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    else:
        ds = ds.map(crop)
    return ds.batch(sampler.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
