"""The flexible U-Net: shapes, options and the errors for sizes it cannot handle."""

from __future__ import annotations

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.model.unet import (
    build_unet,
    check_input_size,
    deep_supervision_weights,
    inference_model,
    unet_filters,
)


def test_default_is_the_cpu_friendly_unet():
    model = build_unet(256, 2)
    assert model.count_params() == pytest.approx(1.95e6, rel=0.01)
    assert model.input_shape == (None, 256, 256, 1)
    assert model.output_shape == (None, 256, 256, 3)


def test_output_is_a_softmax_of_the_input_size():
    model = build_unet(64, 3, levels=2, base_filters=4)
    out = model.predict(np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32), verbose=0)
    assert out.shape == (2, 64, 64, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)


def test_filters_follow_base_and_multiplier():
    assert unet_filters(4, 16, 2.0) == [16, 32, 64, 128, 256]
    assert unet_filters(2, 8, 1.5) == [8, 12, 18]
    model = build_unet(32, 1, levels=2, base_filters=8, filter_multiplier=1.5, batch_norm=False)
    assert model.get_layer("bottleneck_conv1").filters == 18
    assert model.get_layer("dec1_conv2").filters == 8


def test_per_level_options():
    model = build_unet(
        (48, 64),
        1,
        levels=2,
        filters=[4, 6, 8],
        pool_sizes=[2, 4],
        kernel_sizes=[5, 3, 3],
        dropout=[0.0, 0.1, 0.2],
        activation="elu",
        convs_per_level=1,
        batch_norm=False,
    )
    assert model.output_shape == (None, 48, 64, 2)
    assert model.get_layer("enc1_conv1").kernel_size == (5, 5)
    assert model.get_layer("enc2_pool").pool_size == (4, 4)
    assert model.get_layer("bottleneck_dropout").rate == pytest.approx(0.2)
    assert "enc1_dropout" not in [layer.name for layer in model.layers]
    assert "enc1_bn1" not in [layer.name for layer in model.layers]


def test_size_the_pooling_cannot_divide_names_the_level():
    with pytest.raises(
        CtsegSettingsError,
        match=r"input 100x100 .* at pooling level 3 the feature map is 25x25, "
        r"which pool size 2 does not divide.* multiple of 16",
    ):
        build_unet(100, 1)
    with pytest.raises(CtsegSettingsError, match="at pooling level 2 the feature map is 32x32, which pool size 3"):
        check_input_size(64, [2, 3])
    with pytest.raises(CtsegSettingsError, match="pool size of level 1 must be at least 1"):
        check_input_size(64, [0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"levels": 0}, "levels must be at least 1"),
        ({"num_labels": 0}, "num_labels must be at least 1"),
        ({"convs_per_level": 0}, "convs_per_level must be at least 1"),
        ({"filters": [4, 8]}, r"filters gives 2 values but the U-Net needs 3 \(one per level\)"),
        ({"filters": [4, 0, 8]}, "filters must all be at least 1"),
        ({"dropout": 1.0}, "dropout rates must be within 0 <= rate < 1"),
        ({"activation": "wiggle"}, "unknown activation 'wiggle'"),
    ],
)
def test_bad_settings(kwargs, match):
    settings = {"input_shape": 32, "num_labels": 1, "levels": 2, "base_filters": 4, **kwargs}
    with pytest.raises(CtsegSettingsError, match=match):
        build_unet(**settings)


def test_deep_supervision_adds_one_full_size_output_per_coarser_level_but_the_coarsest():
    model = build_unet(32, 2, levels=4, base_filters=4, deep_supervision=True)
    assert model.output_names == ["probabilities", "deep_supervision_2x", "deep_supervision_4x"]
    outputs = model(np.random.default_rng(0).normal(size=(2, 32, 32, 1)).astype("float32"))
    assert [tuple(o.shape) for o in outputs] == [(2, 32, 32, 3)] * 3
    for out in outputs:  # each a softmax over the classes
        np.testing.assert_allclose(np.asarray(out).sum(axis=-1), 1.0, atol=1e-5)
    assert model.get_layer("deep_supervision_4x_up").interpolation == "bilinear"


def test_deep_supervision_needs_three_levels():
    assert len(build_unet(32, 1, levels=2, base_filters=4, deep_supervision=True).outputs) == 1
    assert len(build_unet(32, 1, levels=3, base_filters=4, deep_supervision=True).outputs) == 2


def test_the_inference_model_is_the_full_resolution_output_with_the_same_weights():
    model = build_unet(32, 1, levels=3, base_filters=4, deep_supervision=True)
    single = inference_model(model)
    assert len(single.outputs) == 1 and single.count_params() < model.count_params()
    batch = np.random.default_rng(1).normal(size=(1, 32, 32, 1)).astype("float32")
    np.testing.assert_array_equal(np.asarray(single(batch)), np.asarray(model(batch)[0]))
    plain = build_unet(32, 1, levels=2, base_filters=4)
    assert inference_model(plain) is plain


def test_deep_supervision_weights_halve_per_level_and_sum_to_one():
    assert deep_supervision_weights(2) == pytest.approx([2 / 3, 1 / 3])
    assert sum(deep_supervision_weights(5)) == pytest.approx(1.0)
    with pytest.raises(CtsegSettingsError, match="a network has at least one output, got 0"):
        deep_supervision_weights(0)
