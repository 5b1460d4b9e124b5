"""Label-safe augmentation: identical geometry for image and label, never a new label value."""

from __future__ import annotations

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.prepare.augment import NO_AUGMENTATION, AugmentConfig, augment_pair
from ctseg_helpers.tf_setup import configure_tensorflow

tf = configure_tensorflow()

ONLY_GEOMETRY = dict(p_brightness=0.0, p_contrast=0.0, p_gamma=0.0, p_noise=0.0)
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
    config = AugmentConfig(p_flip=1.0, p_rot90=1.0, p_affine=1.0, p_elastic=1.0, p_brightness=1.0,
                           p_contrast=1.0, p_gamma=1.0, p_noise=1.0, max_rotation_deg=30.0,
                           scale_range=(0.7, 1.3), max_translation_fraction=0.2, elastic_displacement_fraction=0.05)
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
    config = AugmentConfig(**{**NOTHING, "p_brightness": 1.0, "p_contrast": 1.0, "p_gamma": 1.0, "p_noise": 1.0})
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
    ],
)
def test_from_dict_explains_values_of_the_wrong_kind(options, match):
    """Notebook and --augment-options values: a clear message, not a TypeError from deep inside."""
    with pytest.raises(CtsegSettingsError, match=match):
        AugmentConfig.from_dict(options)
