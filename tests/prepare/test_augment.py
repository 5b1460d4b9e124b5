"""Label-safe augmentation: identical geometry for image and label, never a new label value."""

from __future__ import annotations

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.prepare.augment import (
    _PROBABILITIES,
    AUGMENTATION_GROUPS,
    NO_AUGMENTATION,
    AugmentConfig,
    augment_pair,
)
from ctseg_helpers.tf_setup import configure_tensorflow

tf = configure_tensorflow()

ONLY_GEOMETRY = dict(
    p_brightness=0.0, p_brightness_mult=0.0, p_contrast=0.0, p_gamma=0.0, p_noise=0.0, p_blur=0.0, p_lowres=0.0
)
NOTHING = dict(p_flip=0.0, p_rot90=0.0, p_affine=0.0, p_elastic=0.0, **ONLY_GEOMETRY)


def _pair(size=32, values=(0, 2, 5), seed=0):
    """A label map of blobs with the given values and an image that encodes it (value / 5)."""
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), np.uint8)
    for v in values[1:]:
        r, c = rng.integers(4, size - 12, 2)
        label[r : r + 8, c : c + 8] = v
    image = (label.astype(np.float32) / 5.0)[..., None]
    return image, label


def _run(image, label, seed, config):
    out_image, out_label = augment_pair(tf.constant(image), tf.constant(label), tf.constant(seed, tf.int64), config)
    return out_image.numpy(), out_label.numpy()


def test_augmentation_never_creates_label_values():
    image, label = _pair()
    config = AugmentConfig(
        p_flip=1.0,
        p_rot90=1.0,
        p_affine=1.0,
        p_elastic=1.0,
        p_brightness=1.0,
        p_brightness_mult=1.0,
        p_contrast=1.0,
        p_gamma=1.0,
        p_noise=1.0,
        p_blur=1.0,
        p_lowres=1.0,
        max_rotation_deg=30.0,
        scale_range=(0.7, 1.3),
        max_translation_fraction=0.2,
        elastic_displacement_fraction=0.05,
    )
    for s in range(25):
        out_image, out_label = _run(image, label, [s, 7], config)
        assert out_label.shape == label.shape and out_label.dtype == np.uint8
        assert set(np.unique(out_label)) <= {0, 2, 5}
        assert out_image.shape == image.shape
        assert out_image.min() >= 0.0 and out_image.max() <= 1.0


def test_image_and_label_move_together():
    image, label = _pair()
    config = AugmentConfig(p_flip=1.0, p_rot90=1.0, p_affine=1.0, p_elastic=1.0, **ONLY_GEOMETRY)
    for s in range(10):
        out_image, out_label = _run(image, label, [s, 1], config)
        # The image encodes the label; bilinear and nearest sampling differ only on blob edges.
        agree = np.mean(np.abs(out_image[..., 0] * 5.0 - out_label) < 0.5)
        assert agree > 0.9
        # ...and they did move: agreement of an untouched pair would prove nothing.
        assert not np.array_equal(out_label, label)


def test_flips_are_exact():
    image, label = _pair()
    out_image, out_label = _run(image, label, [3, 3], AugmentConfig(**{**NOTHING, "p_flip": 1.0}))
    np.testing.assert_array_equal(out_label, label[::-1, ::-1])
    np.testing.assert_array_equal(out_image, image[::-1, ::-1])


def test_quarter_turns_keep_every_pixel():
    image, label = _pair()
    out_image, out_label = _run(image, label, [4, 2], AugmentConfig(**{**NOTHING, "p_rot90": 1.0}))
    turned = [np.rot90(label, k) for k in (1, 2, 3)]
    assert any(np.array_equal(out_label, t) for t in turned)
    assert np.array_equal(np.sort(out_label.ravel()), np.sort(label.ravel()))


def test_same_seed_same_result_other_seed_other_result():
    image, label = _pair()
    config = AugmentConfig(p_affine=1.0, p_elastic=1.0, p_noise=1.0)
    a = _run(image, label, [1, 2], config)
    b = _run(image, label, [1, 2], config)
    c = _run(image, label, [9, 2], config)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_intensity_changes_touch_the_image_only():
    image, label = _pair()
    image = image * 0.5 + 0.25
    config = AugmentConfig(
        **{
            **NOTHING,
            "p_brightness": 1.0,
            "p_brightness_mult": 1.0,
            "p_contrast": 1.0,
            "p_gamma": 1.0,
            "p_noise": 1.0,
            "p_blur": 1.0,
            "p_lowres": 1.0,
        }
    )
    out_image, out_label = _run(image, label, [5, 5], config)
    np.testing.assert_array_equal(out_label, label)
    assert not np.allclose(out_image, image)


def test_disabled_is_identity():
    image, label = _pair()
    out_image, out_label = _run(image, label, [1, 1], NO_AUGMENTATION)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_label, label)
    assert not AugmentConfig(**NOTHING).active


def test_from_dict_and_to_dict_round_trip():
    config = AugmentConfig.from_dict({"p_flip": 0.1, "gamma_range": [0.9, 1.1]})
    assert config.p_flip == 0.1 and config.gamma_range == (0.9, 1.1)
    assert AugmentConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"p_flip": 1.5}, "probability p_flip must be within 0..1"),
        ({"p_noise": -0.1}, "probability p_noise must be within 0..1"),
        ({"scale_range": (1.2, 0.8)}, "scale_range must be"),
        ({"gamma_range": (0.0, 1.0)}, "gamma_range must be"),
        ({"max_rotation_deg": 200.0}, "max_rotation_deg must be within 0..180"),
        ({"max_translation_fraction": 0.6}, "max_translation_fraction must be within 0..0.5"),
        ({"elastic_grid": 1}, "elastic_grid must be at least 2"),
        ({"noise_std": -1.0}, "must not be negative"),
        ({"p_blur": 1.1}, "probability p_blur must be within 0..1"),
        ({"p_lowres": -0.5}, "probability p_lowres must be within 0..1"),
        ({"p_brightness_mult": 2.0}, "probability p_brightness_mult must be within 0..1"),
        ({"blur_sigma_range": (1.0, 0.5)}, r"blur_sigma_range must be \(low, high\) in pixels with 0 <= low <= high"),
        ({"blur_sigma_range": (-0.5, 1.0)}, r"blur_sigma_range must be .* 0 <= low <= high, got \(-0.5, 1.0\)"),
        ({"lowres_range": (0.0, 0.5)}, r"lowres_range must be \(low, high\) with 0 < low <= high"),
        ({"lowres_range": (0.8, 0.6)}, r"lowres_range must be \(low, high\) with 0 < low <= high"),
        ({"lowres_range": (0.5, 1.5)}, r"lowres_range must not exceed 1 .*got \(0.5, 1.5\)"),
        ({"brightness_mult_range": (1.2, 0.8)}, "brightness_mult_range must be"),
    ],
)
def test_bad_settings_are_refused(settings, match):
    with pytest.raises(CtsegSettingsError, match=match):
        AugmentConfig(**settings)


def test_unknown_setting_is_named():
    with pytest.raises(CtsegSettingsError, match=r"unknown augmentation setting\(s\) \['p_flop'\]"):
        AugmentConfig.from_dict({"p_flop": 0.5})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"scale_range": 0.9}, r"augmentation scale_range must be two numbers \(low, high\), got 0.9"),
        ({"gamma_range": [0.8, 1.0, 1.2]}, r"gamma_range must be two numbers .*got \[0.8, 1.0, 1.2\]"),
        ({"contrast_range": ["a", 1]}, r"contrast_range must be two numbers"),
        ({"p_flip": "half"}, r"probability p_flip must be a number within 0..1, got 'half'"),
        ({"blur_sigma_range": 1.0}, r"augmentation blur_sigma_range must be two numbers \(low, high\), got 1.0"),
        ({"lowres_range": [0.5]}, r"lowres_range must be two numbers .*got \[0.5\]"),
        ({"brightness_mult_range": ["x", 1]}, r"brightness_mult_range must be two numbers"),
        ({"p_lowres": None}, r"probability p_lowres must be a number within 0..1, got None"),
        ({"lowres_range": [0.5, 2]}, r"lowres_range must not exceed 1"),
    ],
)
def test_from_dict_explains_values_of_the_wrong_kind(options, match):
    """Notebook and --augment-options values: a clear message, not a TypeError from deep inside."""
    with pytest.raises(CtsegSettingsError, match=match):
        AugmentConfig.from_dict(options)


# --- Blur, simulated low resolution, multiplicative brightness -------------------------------

ONLY_BLUR = {**NOTHING, "p_blur": 1.0}
ONLY_LOWRES = {**NOTHING, "p_lowres": 1.0}
ONLY_BRIGHTNESS_MULT = {**NOTHING, "p_brightness_mult": 1.0}


def _smooth_image(size=32):
    """A non-constant image in 0.1..0.9 with sharp edges (the blob image) plus a gentle ramp."""
    image, label = _pair(size)
    ramp = np.linspace(0.0, 0.2, size * size, dtype=np.float32).reshape(size, size, 1)
    return image * 0.6 + 0.1 + ramp, label


@pytest.mark.parametrize("settings", [ONLY_BLUR, ONLY_LOWRES, ONLY_BRIGHTNESS_MULT])
def test_new_image_transforms_keep_label_shape_dtype_and_range(settings):
    image, label = _smooth_image()
    config = AugmentConfig(**settings)
    for s in range(5):
        out_image, out_label = _run(image, label, [s, 11], config)
        np.testing.assert_array_equal(out_label, label)
        assert out_label.dtype == np.uint8
        assert out_image.shape == image.shape and out_image.dtype == np.float32
        assert out_image.min() >= 0.0 and out_image.max() <= 1.0
        assert not np.allclose(out_image, image)


@pytest.mark.parametrize("settings", [ONLY_BLUR, ONLY_LOWRES])
def test_new_transforms_keep_values_of_an_image_at_the_ends_of_the_range(settings):
    """A black/white image: blurred or low-res values stay in 0..1, and 8 x 8 blobs keep white cores."""
    image, label = _pair()
    image = (image > 0).astype(np.float32)
    out_image, _ = _run(image, label, [2, 2], AugmentConfig(**settings))
    assert out_image.min() == 0.0 and 0.999 < out_image.max() <= 1.0


@pytest.mark.parametrize("settings", [ONLY_BLUR, ONLY_LOWRES])
def test_a_constant_image_stays_constant(settings):
    """Edge padding: no darker border from blurring, no change from shrinking and enlarging."""
    _, label = _pair()
    image = np.full((32, 32, 1), 0.4, np.float32)
    for s in range(3):
        out_image, _ = _run(image, label, [s, 3], AugmentConfig(**settings))
        np.testing.assert_allclose(out_image, image, atol=1e-6)


def test_blur_is_a_gaussian_of_the_drawn_sigma():
    """A single bright pixel becomes a normalised, symmetric 2D Gaussian of sigma in the range."""
    image = np.zeros((21, 21, 1), np.float32)
    image[10, 10] = 1.0
    label = np.zeros((21, 21), np.uint8)
    config = AugmentConfig(**{**ONLY_BLUR, "blur_sigma_range": (1.0, 1.0)})
    out_image, _ = _run(image, label, [0, 0], config)
    np.testing.assert_allclose(out_image.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out_image[..., 0], out_image[..., 0].T, atol=1e-7)
    offsets = np.arange(-3, 4)
    kernel = np.exp(-0.5 * offsets**2)
    kernel /= kernel.sum()
    np.testing.assert_allclose(out_image[7:14, 7:14, 0], np.outer(kernel, kernel), atol=1e-6)


def test_blur_of_sigma_zero_changes_nothing():
    image, label = _smooth_image()
    out_image, _ = _run(image, label, [1, 1], AugmentConfig(**{**ONLY_BLUR, "blur_sigma_range": (0.0, 0.0)}))
    np.testing.assert_allclose(out_image, np.clip(image, 0, 1), atol=1e-6)


def test_low_resolution_makes_blocks_then_interpolates():
    """Zoom 0.5: every 2 x 2 block of a checkerboard holds one value, so the result is smooth."""
    image = np.indices((32, 32)).sum(axis=0)[..., None] % 2 * 1.0
    image = image.astype(np.float32)
    label = np.zeros((32, 32), np.uint8)
    config = AugmentConfig(**{**ONLY_LOWRES, "lowres_range": (0.5, 0.5)})
    out_image, _ = _run(image, label, [4, 4], config)
    # The checkerboard alternates every pixel; its half-resolution copy is constant.
    assert np.ptp(out_image) < 1e-6
    # Zoom 1 leaves the image as it was.
    same, _ = _run(image, label, [4, 4], AugmentConfig(**{**ONLY_LOWRES, "lowres_range": (1.0, 1.0)}))
    np.testing.assert_allclose(same, image, atol=1e-6)


def test_multiplicative_brightness_keeps_black_black():
    image, label = _smooth_image()
    image[:4] = 0.0
    config = AugmentConfig(**{**ONLY_BRIGHTNESS_MULT, "brightness_mult_range": (0.8, 0.8)})
    out_image, _ = _run(image, label, [6, 6], config)
    np.testing.assert_allclose(out_image, image * 0.8, rtol=1e-6)
    assert np.all(out_image[:4] == 0.0)


@pytest.mark.parametrize("settings", [ONLY_BLUR, ONLY_LOWRES, ONLY_BRIGHTNESS_MULT])
def test_new_transforms_same_seed_same_result(settings):
    image, label = _smooth_image()
    config = AugmentConfig(**settings)
    a = _run(image, label, [8, 1], config)
    b = _run(image, label, [8, 1], config)
    c = _run(image, label, [3, 1], config)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("settings", [ONLY_BLUR, ONLY_LOWRES, ONLY_BRIGHTNESS_MULT])
def test_a_probability_of_zero_is_no_change(settings):
    image, label = _smooth_image()
    image = np.clip(image, 0.0, 1.0)
    zeroed = {
        **settings,
        **{name: 0.0 for name in ("p_blur", "p_lowres", "p_brightness_mult")},
        "p_gamma": 1.0,
        "gamma_range": (1.0, 1.0),
    }
    out_image, out_label = _run(image, label, [1, 1], AugmentConfig(**zeroed))
    np.testing.assert_allclose(out_image, image, atol=1e-6)
    np.testing.assert_array_equal(out_label, label)


@pytest.mark.parametrize("name", ["p_blur", "p_lowres", "p_brightness_mult"])
def test_only_a_new_transform_is_active(name):
    assert AugmentConfig(**{**NOTHING, name: 0.2}).active
    assert not AugmentConfig(**{**NOTHING, name: 0.2, "enabled": False}).active


def test_defaults_follow_nnunet_2d():
    config = AugmentConfig()
    assert (config.p_flip, config.p_rot90) == (0.0, 0.0)  # sided ROIs
    # any angle, as nnU-Net for square 2D patches
    assert (config.p_affine, config.max_rotation_deg, config.scale_range) == (0.3, 180.0, (0.7, 1.4))
    assert config.p_elastic == 0.0
    assert (config.p_noise, config.noise_std) == (0.1, 0.03)
    assert (config.p_blur, config.blur_sigma_range) == (0.2, (0.5, 1.0))
    assert (config.p_brightness, config.brightness_delta) == (0.15, 0.1)
    assert (config.p_brightness_mult, config.brightness_mult_range) == (0.15, (0.75, 1.25))
    assert (config.p_contrast, config.contrast_range) == (0.15, (0.75, 1.25))
    assert (config.p_lowres, config.lowres_range) == (0.25, (0.5, 1.0))
    assert (config.p_gamma, config.gamma_range) == (0.3, (0.7, 1.5))
    assert config.active


def test_from_dict_reads_the_new_ranges():
    config = AugmentConfig.from_dict({"p_blur": "0.5", "blur_sigma_range": [0, 2], "lowres_range": [0.25, 1]})
    assert config.p_blur == 0.5 and config.blur_sigma_range == (0.0, 2.0) and config.lowres_range == (0.25, 1.0)
    assert AugmentConfig.from_dict(config.to_dict()) == config


def test_default_augmentation_runs_in_a_tf_data_map_like_eager():
    """Graph mode (tf.data map, parallel) gives exactly what eager mode gives for each seed."""
    image, label = _smooth_image()
    config = AugmentConfig(**{**{name: 1.0 for name in _PROBABILITIES}, "p_elastic": 1.0})
    configs = [AugmentConfig(), config, AugmentConfig(**ONLY_BLUR), AugmentConfig(**ONLY_LOWRES)]
    seeds = np.array([[s, 5] for s in range(6)], np.int64)
    for cfg in configs:
        ds = tf.data.Dataset.from_tensor_slices(seeds).map(
            lambda s, cfg=cfg: augment_pair(tf.constant(image), tf.constant(label), s, cfg),
            num_parallel_calls=2,
            deterministic=True,
        )
        for seed, (g_image, g_label) in zip(seeds, ds, strict=True):
            assert g_image.shape == image.shape and g_label.shape == label.shape
            e_image, e_label = _run(image, label, seed, cfg)
            np.testing.assert_allclose(g_image.numpy(), e_image, atol=1e-5)
            np.testing.assert_array_equal(g_label.numpy(), e_label)


def test_static_shapes_survive_the_map():
    """Keras needs the (M, N, 1) / (M, N) shapes after the map, not (None, None, None)."""
    image, label = _smooth_image()
    config = AugmentConfig(**{name: 1.0 for name in _PROBABILITIES})
    ds = tf.data.Dataset.from_tensors((image, label)).map(
        lambda a, b: augment_pair(a, b, tf.constant([1, 2], tf.int64), config)
    )
    assert ds.element_spec[0].shape == (32, 32, 1) and ds.element_spec[1].shape == (32, 32)


# --- Groups -----------------------------------------------------------------------------------


def test_groups_cover_every_probability_once():
    grouped = [name for names in AUGMENTATION_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(_PROBABILITIES)
    assert set(AUGMENTATION_GROUPS) == {"spatial", "intensity", "noise_blur", "lowres"}


@pytest.mark.parametrize("group", sorted(AUGMENTATION_GROUPS))
def test_without_switches_off_exactly_one_group(group):
    config = AugmentConfig(**{name: 0.5 for name in _PROBABILITIES})
    reduced = config.without(group)
    for name in _PROBABILITIES:
        assert getattr(reduced, name) == (0.0 if name in AUGMENTATION_GROUPS[group] else 0.5), name
    assert reduced.scale_range == config.scale_range and reduced.active
    assert config.p_lowres == 0.5  # the original is untouched


def test_without_several_or_no_groups():
    config = AugmentConfig()
    assert config.without() == config
    assert not config.without(*AUGMENTATION_GROUPS).active
    only_lowres = config.without("spatial", "intensity", "noise_blur")
    assert only_lowres.active and only_lowres.p_lowres == 0.25 and only_lowres.p_affine == 0.0


def test_without_an_unknown_group_names_the_known_ones():
    with pytest.raises(
        CtsegSettingsError,
        match=r"unknown augmentation group\(s\) \['blur'\]; known groups are "
        r"\['intensity', 'lowres', 'noise_blur', 'spatial'\]",
    ):
        AugmentConfig().without("spatial", "blur")


def test_context_factor_covers_rotation_and_zoom_out():
    # No affine transform: no margin needed.
    assert AugmentConfig(p_affine=0.0).context_factor == 1.0
    assert AugmentConfig(enabled=False).context_factor == 1.0
    # A pure 90-degree-or-more rotation needs sqrt(2) (the square's diagonal)...
    assert AugmentConfig(max_rotation_deg=90.0, scale_range=(1.0, 1.0)).context_factor == pytest.approx(2**0.5)
    # ...a rotation of at most 30 degrees cos 30 + sin 30...
    config = AugmentConfig(max_rotation_deg=30.0, scale_range=(1.0, 1.4))
    assert config.context_factor == pytest.approx(1.3660, abs=1e-4)
    # ...a zoom-out to 0.8 another 1 / 0.8, capped at twice the patch.
    assert AugmentConfig(max_rotation_deg=0.0, scale_range=(0.8, 1.0)).context_factor == pytest.approx(1.25)
    assert AugmentConfig().context_factor == 2.0
