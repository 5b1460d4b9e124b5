"""Label-safe, on-the-fly augmentation of image/label pairs for ``tf.data``.

Every geometric transform is applied identically to the image and its label map. Images are
resampled bilinearly; labels only ever by nearest neighbour, and pixels brought in from
outside the slice become background (0), so augmentation never creates a label value the
label map did not hold. Intensity transforms (noise, blur, brightness, contrast, simulated low
resolution, gamma) touch the image only, and image values stay within 0..1.

The defaults follow nnU-Net v2's default 2D augmentation (rotation by any angle for square
patches, scaling, Gaussian noise, Gaussian blur, brightness, contrast, simulated low resolution,
gamma; elastic deformation off), in nnU-Net's order, with strengths adapted to our images in
0..1 and without mirroring: a flip would swap sided ROIs, while a rotation keeps them (it turns
the patient in the image plane, it never mirrors). Rotations by any angle matter on real data:
the in-plane orientation of a scan depends on how it was planned (one Sunnybrook patient's
short-axis images are turned by about 90 degrees against the other two).
:data:`AUGMENTATION_GROUPS` and :meth:`AugmentConfig.without` switch whole groups off, e.g. to
measure what each group adds.

All transforms are TensorFlow ops driven by a per-example *stateless* seed, so they run in a
parallel ``Dataset.map`` (no Python, no GIL) and a given seed always gives the same result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from ctseg_helpers.errors import CtsegSettingsError

_PROBABILITIES = (
    "p_flip",
    "p_rot90",
    "p_affine",
    "p_elastic",
    "p_brightness",
    "p_brightness_mult",
    "p_contrast",
    "p_gamma",
    "p_noise",
    "p_blur",
    "p_lowres",
)
# (low, high) settings that must satisfy 0 < low <= high.
_POSITIVE_RANGES = ("scale_range", "brightness_mult_range", "contrast_range", "gamma_range", "lowres_range")
_RANGES = (*_POSITIVE_RANGES, "blur_sigma_range")

AUGMENTATION_GROUPS = {
    "spatial": ("p_affine", "p_elastic", "p_flip", "p_rot90"),
    "intensity": ("p_brightness", "p_brightness_mult", "p_contrast", "p_gamma"),
    "noise_blur": ("p_noise", "p_blur"),
    "lowres": ("p_lowres",),
}
"""Group name -> the ``AugmentConfig`` probabilities it switches; see :meth:`AugmentConfig.without`."""


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply, and how often.

    Each ``p_*`` is the probability (0..1) that one training example gets that transform; the
    draws are independent. Defaults follow nnU-Net's 2D augmentation (see the module docstring).

    Attributes
    ----------
    enabled : bool
        Master switch: False turns every augmentation off.
    p_flip : float
        Probability of a left-right flip, and (independently) of an up-down flip. Off by
        default: scans have a fixed orientation, and a flip turns the patient's right side into
        the left, so a network could not learn sided ROIs (right and left psoas). Turn it on
        for ROIs without a side.
    p_rot90 : float
        Probability of a rotation by 90, 180 or 270 degrees (chosen uniformly). Off by default
        for the same reason as ``p_flip``.
    p_affine : float
        Probability of a random rotation/scale/translation (one resampling for all three, and
        for the elastic deformation when both happen). Default 0.3, about nnU-Net's chance of a
        rotation or a scaling (each 0.2).
    max_rotation_deg : float
        Largest rotation, degrees either way (0..180); the angle is uniform in
        ``-max_rotation_deg..max_rotation_deg``. Default 180 (any angle), nnU-Net's for 2D
        square patches; lower it when every scan shows the patient the same way up.
    scale_range : (float, float)
        Range of the zoom factor (1 = no zoom, above 1 enlarges), drawn log-uniformly.
        Default (0.7, 1.4), nnU-Net's.
    max_translation_fraction : float
        Largest shift, as a fraction of the image side, along each axis.
    p_elastic : float
        Probability of an elastic deformation. Default 0 (off, as in nnU-Net v2); the transform
        stays available.
    elastic_displacement_fraction : float
        Standard deviation of the random displacements of the elastic deformation, as a
        fraction of the image side (0.02 of 256 px is about 5 px).
    elastic_grid : int
        Number of control points per side of the smooth displacement field (fewer = smoother).
    p_brightness, brightness_delta : float
        Probability (default 0.15) and largest size (image units, images are in 0..1; default
        0.1) of an additive brightness change, uniform in ``-brightness_delta..brightness_delta``.
    p_brightness_mult, brightness_mult_range : float, (float, float)
        Probability (default 0.15) and range (default (0.75, 1.25), nnU-Net's) of a
        multiplicative brightness change: the image is multiplied by a factor drawn uniformly
        from the range, so black (0) stays black.
    p_contrast, contrast_range : float, (float, float)
        Probability (default 0.15) and range (default (0.75, 1.25), nnU-Net's) of a
        multiplicative contrast change around the image mean, factor drawn uniformly.
    p_gamma, gamma_range : float, (float, float)
        Probability (default 0.3) and range (default (0.7, 1.5), nnU-Net's) of a gamma
        correction ``x ** gamma``, gamma drawn log-uniformly (about as often below 1 as above).
    p_noise, noise_std : float
        Probability (default 0.1) and standard deviation (image units; default 0.03, i.e. 3 %
        of the 0..1 range) of additive Gaussian noise, independent per pixel.
    p_blur, blur_sigma_range : float, (float, float)
        Probability (default 0.2) and range (pixels; default (0.5, 1.0), nnU-Net's) of the
        standard deviation of a Gaussian blur, drawn uniformly. Pixels beyond the border
        repeat the edge pixel, so a constant image stays constant.
    p_lowres, lowres_range : float, (float, float)
        Probability (default 0.25) and range (default (0.5, 1.0), nnU-Net's) of the zoom factor
        of a simulated low resolution: the image is shrunk by the factor (nearest neighbour)
        and enlarged back to its size (bilinear). 1 leaves it unchanged; the high end must not
        exceed 1.
    """

    enabled: bool = True
    p_flip: float = 0.0
    p_rot90: float = 0.0
    p_affine: float = 0.3
    max_rotation_deg: float = 180.0
    scale_range: tuple[float, float] = (0.7, 1.4)
    max_translation_fraction: float = 0.05
    p_elastic: float = 0.0
    elastic_displacement_fraction: float = 0.02
    elastic_grid: int = 4
    p_brightness: float = 0.15
    brightness_delta: float = 0.1
    p_brightness_mult: float = 0.15
    brightness_mult_range: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_noise: float = 0.1
    noise_std: float = 0.03
    p_blur: float = 0.2
    blur_sigma_range: tuple[float, float] = (0.5, 1.0)
    p_lowres: float = 0.25
    lowres_range: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self):
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise CtsegSettingsError(f"augmentation probability {name} must be within 0..1, got {value}")
        for name in _POSITIVE_RANGES:
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise CtsegSettingsError(
                    f"augmentation {name} must be (low, high) with 0 < low <= high, got {(lo, hi)}"
                )
        if self.lowres_range[1] > 1.0:
            raise CtsegSettingsError(
                f"augmentation lowres_range must not exceed 1 (a zoom factor above 1 would "
                f"not lower the resolution), got {tuple(self.lowres_range)}"
            )
        lo, hi = self.blur_sigma_range
        if not 0.0 <= lo <= hi:
            raise CtsegSettingsError(
                f"augmentation blur_sigma_range must be (low, high) in pixels with 0 <= low <= high, got {(lo, hi)}"
            )
        if not 0.0 <= self.max_rotation_deg <= 180.0:
            raise CtsegSettingsError(f"max_rotation_deg must be within 0..180, got {self.max_rotation_deg}")
        for name in ("max_translation_fraction", "elastic_displacement_fraction"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise CtsegSettingsError(f"augmentation {name} must be within 0..0.5, got {getattr(self, name)}")
        if self.elastic_grid < 2:
            raise CtsegSettingsError(f"elastic_grid must be at least 2 control points, got {self.elastic_grid}")
        if self.brightness_delta < 0 or self.noise_std < 0:
            raise CtsegSettingsError("brightness_delta and noise_std must not be negative")

    @property
    def context_factor(self) -> float:
        """How much larger than a patch the region cut around it must be so that the largest
        rotation and the strongest zoom-out bring in image, not empty corners (1 = no margin).

        Rotating a square by up to ``max_rotation_deg`` needs up to ``|cos| + |sin|`` (at most
        sqrt(2)) times its side, zooming out by the low end of ``scale_range`` another
        ``1 / low``. Capped at 2: beyond that, corners outside the region stay background, as
        they do at the slice's own border.
        """
        if not (self.enabled and self.p_affine > 0):
            return 1.0
        angle = math.radians(min(self.max_rotation_deg, 45.0))
        rotation = abs(math.cos(angle)) + abs(math.sin(angle))
        return min(2.0, rotation / min(1.0, self.scale_range[0]))

    @property
    def active(self) -> bool:
        """True when at least one transform can happen."""
        return self.enabled and any(getattr(self, name) > 0 for name in _PROBABILITIES)

    def without(self, *groups: str) -> AugmentConfig:
        """A copy with every probability of the named groups set to 0.

        Parameters
        ----------
        *groups : str
            Names from :data:`AUGMENTATION_GROUPS` ("spatial", "intensity", "noise_blur",
            "lowres"); none gives an unchanged copy.

        Raises
        ------
        CtsegSettingsError
            If a name is not a known group; the message lists the known ones.
        """
        unknown = [g for g in groups if g not in AUGMENTATION_GROUPS]
        if unknown:
            raise CtsegSettingsError(
                f"unknown augmentation group(s) {unknown}; known groups are {sorted(AUGMENTATION_GROUPS)}"
            )
        return replace(self, **{name: 0.0 for g in groups for name in AUGMENTATION_GROUPS[g]})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        """Build from a dict such as the notebook's ``augment_options``; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CtsegSettingsError(f"unknown augmentation setting(s) {unknown}; known settings are {sorted(known)}")
        values = dict(data)
        for name in _RANGES:
            if name in values:
                try:
                    values[name] = tuple(float(v) for v in values[name])
                except (TypeError, ValueError):
                    values[name] = None
                if values[name] is None or len(values[name]) != 2:
                    raise CtsegSettingsError(f"augmentation {name} must be two numbers (low, high), got {data[name]!r}")
        for name in _PROBABILITIES:
            if name in values:
                try:
                    values[name] = float(values[name])
                except (TypeError, ValueError):
                    raise CtsegSettingsError(
                        f"augmentation probability {name} must be a number within 0..1, got {data[name]!r}"
                    ) from None
        return cls(**values)


NO_AUGMENTATION = AugmentConfig(enabled=False)


def augment_pair(image, label, seed, config: AugmentConfig):
    """Augment one image and its label map identically (TensorFlow ops, graph friendly).

    Parameters
    ----------
    image : tf.Tensor of shape (M, N, 1) and dtype float32
        Normalised image, values in 0..1.
    label : tf.Tensor of shape (M, N) and integer dtype
        Label map; 0 is background.
    seed : tf.Tensor of shape (2,) and integer dtype
        Stateless seed; the same seed gives the same augmentation.
    config : AugmentConfig

    Returns
    -------
    (image, label)
        Same shapes and dtypes; image values stay in 0..1, label values are a subset of the
        input's values plus 0.
    """
    import tensorflow as tf  # noqa: PLC0415 - callers have run configure_tensorflow()

    if not config.active:
        return image, label
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=16)
    uniforms = tf.random.stateless_uniform([12], seed=seeds[0])

    def happens(index, probability):
        return uniforms[index] < probability

    # Labels travel as float32 (exact for values up to 2**24): oneDNN has no integer kernels on
    # CPUs without AVX-512 and logs an error for each; nearest-neighbour sampling keeps values.
    label_dtype = label.dtype
    label3 = tf.cast(label, tf.float32)[..., None]
    # Exact transforms first: flips and quarter turns move pixels without resampling.
    if config.p_flip > 0:
        image, label3 = _maybe(happens(0, config.p_flip), lambda a, b: (a[:, ::-1], b[:, ::-1]), image, label3)
        image, label3 = _maybe(happens(1, config.p_flip), lambda a, b: (a[::-1], b[::-1]), image, label3)
    if config.p_rot90 > 0 and image.shape[0] == image.shape[1]:
        k = tf.random.stateless_uniform([], seed=seeds[1], minval=1, maxval=4, dtype=tf.int32)
        image, label3 = _maybe(
            happens(2, config.p_rot90),
            lambda a, b: (tf.image.rot90(a, k), tf.image.rot90(b, k)),
            image,
            label3,
        )
    # One resampling for the affine and elastic parts together.
    do_affine = happens(3, config.p_affine) if config.p_affine > 0 else tf.constant(False)
    do_elastic = happens(4, config.p_elastic) if config.p_elastic > 0 else tf.constant(False)
    image, label3 = tf.cond(
        tf.logical_or(do_affine, do_elastic),
        lambda: _warp_pair(image, label3, seeds[2], seeds[3], do_affine, do_elastic, config),
        lambda: (image, label3),
    )
    # Intensity: image only, in nnU-Net's order (noise, blur, brightness, contrast, low
    # resolution, gamma). Each transform keeps its own draw index and seed, so switching one
    # off leaves the others' draws for a given seed as they were.
    if config.p_noise > 0:
        noise = tf.random.stateless_normal(tf.shape(image), seed=seeds[7], stddev=config.noise_std)
        image = tf.where(happens(8, config.p_noise), image + noise, image)
    if config.p_blur > 0:
        lo, hi = config.blur_sigma_range
        sigma = tf.random.stateless_uniform([], seed=seeds[8], minval=lo, maxval=hi)
        image = _maybe_image(happens(9, config.p_blur), lambda a: _gaussian_blur(a, sigma, hi), image)
    if config.p_brightness_mult > 0:
        lo, hi = config.brightness_mult_range
        factor = tf.random.stateless_uniform([], seed=seeds[10], minval=lo, maxval=hi)
        image = tf.where(happens(11, config.p_brightness_mult), image * factor, image)
    if config.p_brightness > 0:
        delta = tf.random.stateless_uniform([], seed=seeds[4], minval=-1.0, maxval=1.0) * config.brightness_delta
        image = tf.where(happens(5, config.p_brightness), image + delta, image)
    if config.p_contrast > 0:
        factor = tf.random.stateless_uniform(
            [], seed=seeds[5], minval=config.contrast_range[0], maxval=config.contrast_range[1]
        )
        mean = tf.reduce_mean(image)
        image = tf.where(happens(6, config.p_contrast), (image - mean) * factor + mean, image)
    if config.p_lowres > 0:
        lo, hi = config.lowres_range
        zoom = tf.random.stateless_uniform([], seed=seeds[9], minval=lo, maxval=hi)
        image = _maybe_image(happens(10, config.p_lowres), lambda a: _low_resolution(a, zoom), image)
    if config.p_gamma > 0:
        log_lo, log_hi = math.log(config.gamma_range[0]), math.log(config.gamma_range[1])
        gamma = tf.exp(tf.random.stateless_uniform([], seed=seeds[6], minval=log_lo, maxval=log_hi))
        image = tf.where(happens(7, config.p_gamma), tf.pow(tf.clip_by_value(image, 0.0, 1.0), gamma), image)
    image = tf.clip_by_value(image, 0.0, 1.0)
    return image, tf.cast(label3[..., 0], label_dtype)


def _maybe(condition, transform, image, label3):
    import tensorflow as tf  # noqa: PLC0415

    return tf.cond(condition, lambda: transform(image, label3), lambda: (image, label3))


def _maybe_image(condition, transform, image):
    """``transform(image)`` where ``condition`` holds, else ``image``; the work is skipped otherwise."""
    import tensorflow as tf  # noqa: PLC0415

    return tf.cond(condition, lambda: tf.ensure_shape(transform(image), image.shape), lambda: image)


def _gaussian_blur(image, sigma, max_sigma: float):
    """Separable Gaussian blur of ``image`` (M, N, C) with standard deviation ``sigma`` pixels.

    The kernel has the static half-width ``ceil(3 * max_sigma)`` (``max_sigma`` is the largest
    sigma that can be drawn) and weights built from ``sigma``, normalised to sum 1. Pixels
    beyond the border repeat the edge pixel, so a constant image stays constant and borders do
    not darken. Sigma 0 leaves the image unchanged.
    """
    import tensorflow as tf  # noqa: PLC0415

    radius = max(int(math.ceil(3.0 * max_sigma)), 0)
    if radius == 0:
        return image
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    sigma = tf.maximum(tf.cast(sigma, tf.float32), 1e-3)  # 1e-3 px: a unit impulse, i.e. no blur
    weights = tf.exp(-0.5 * tf.square(offsets / sigma))
    weights = weights / tf.reduce_sum(weights)
    shape = tf.shape(image)
    # Channels become the batch, so one single-channel kernel serves any number of channels.
    x = tf.transpose(image, [2, 0, 1])[..., None]
    for axis, size, kernel_shape in ((1, shape[0], [-1, 1, 1, 1]), (2, shape[1], [1, -1, 1, 1])):
        index = tf.clip_by_value(tf.range(-radius, size + radius), 0, size - 1)
        x = tf.gather(x, index, axis=axis)  # edge padding
        x = tf.nn.conv2d(x, tf.reshape(weights, kernel_shape), strides=1, padding="VALID")
    return tf.transpose(x[..., 0], [1, 2, 0])


def _low_resolution(image, zoom):
    """Shrink ``image`` (M, N, C) by ``zoom`` (0..1, nearest) and enlarge it back (bilinear)."""
    import tensorflow as tf  # noqa: PLC0415

    size = tf.shape(image)[:2]
    small = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * zoom), tf.int32), 1)
    shrunk = tf.image.resize(image, small, method="nearest")
    return tf.image.resize(shrunk, size, method="bilinear")


def _warp_pair(image, label3, affine_seed, elastic_seed, do_affine, do_elastic, config: AugmentConfig):
    """Resample image (bilinear) and label (nearest) through one random affine + elastic map."""
    import tensorflow as tf  # noqa: PLC0415

    shape = tf.shape(image)
    rows, cols = shape[0], shape[1]
    rows_f, cols_f = tf.cast(rows, tf.float32), tf.cast(cols, tf.float32)
    rr, cc = tf.meshgrid(tf.range(rows_f), tf.range(cols_f), indexing="ij")
    centre_r, centre_c = (rows_f - 1.0) / 2.0, (cols_f - 1.0) / 2.0

    # Destination pixel -> source position: inverse of rotate-about-centre, zoom, shift.
    draws = tf.random.stateless_uniform([4], seed=affine_seed, minval=-1.0, maxval=1.0)
    angle = draws[0] * (config.max_rotation_deg * math.pi / 180.0)
    log_lo, log_hi = math.log(config.scale_range[0]), math.log(config.scale_range[1])
    scale = tf.exp(log_lo + (draws[1] + 1.0) / 2.0 * (log_hi - log_lo))
    shift_r = draws[2] * config.max_translation_fraction * rows_f
    shift_c = draws[3] * config.max_translation_fraction * cols_f
    dr, dc = rr - centre_r - shift_r, cc - centre_c - shift_c
    cos, sin = tf.cos(angle), tf.sin(angle)
    src_r = (cos * dr - sin * dc) / scale + centre_r
    src_c = (sin * dr + cos * dc) / scale + centre_c
    src_r = tf.where(do_affine, src_r, rr)
    src_c = tf.where(do_affine, src_c, cc)

    # Elastic: random displacements on a coarse grid, smoothly interpolated to every pixel.
    grid = config.elastic_grid
    coarse = tf.random.stateless_normal([1, grid, grid, 2], seed=elastic_seed)
    coarse = coarse * config.elastic_displacement_fraction * tf.stack([rows_f, cols_f])
    field = tf.image.resize(coarse, tf.stack([rows, cols]), method="bicubic")[0]
    src_r = tf.where(do_elastic, src_r + field[..., 0], src_r)
    src_c = tf.where(do_elastic, src_c + field[..., 1], src_c)

    return _sample_bilinear(image, src_r, src_c), _sample_nearest(label3, src_r, src_c)


def _sample_nearest(values, src_r, src_c):
    """Nearest-neighbour lookup of ``values`` (M, N, C) at float positions; outside -> 0."""
    import tensorflow as tf  # noqa: PLC0415

    shape = tf.shape(values)
    r = tf.cast(tf.round(src_r), tf.int32)
    c = tf.cast(tf.round(src_c), tf.int32)
    inside = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
    idx = tf.stack([tf.clip_by_value(r, 0, shape[0] - 1), tf.clip_by_value(c, 0, shape[1] - 1)], axis=-1)
    picked = tf.gather_nd(values, idx)
    return tf.where(inside[..., None], picked, tf.zeros_like(picked))


def _sample_bilinear(values, src_r, src_c):
    """Bilinear lookup of float ``values`` (M, N, C) at float positions; outside -> 0."""
    import tensorflow as tf  # noqa: PLC0415

    shape = tf.shape(values)
    r0 = tf.floor(src_r)
    c0 = tf.floor(src_c)
    wr = (src_r - r0)[..., None]
    wc = (src_c - c0)[..., None]
    r0 = tf.cast(r0, tf.int32)
    c0 = tf.cast(c0, tf.int32)

    def corner(r, c):
        inside = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
        idx = tf.stack([tf.clip_by_value(r, 0, shape[0] - 1), tf.clip_by_value(c, 0, shape[1] - 1)], axis=-1)
        return tf.where(inside[..., None], tf.gather_nd(values, idx), tf.zeros([], values.dtype))

    top = corner(r0, c0) * (1.0 - wc) + corner(r0, c0 + 1) * wc
    bottom = corner(r0 + 1, c0) * (1.0 - wc) + corner(r0 + 1, c0 + 1) * wc
    return top * (1.0 - wr) + bottom * wr
