"""Losses and metrics against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.model import losses as L
from ctseg_helpers.tf_setup import configure_tensorflow

tf = configure_tensorflow()
import keras  # noqa: E402

# Two pixels, two classes: truth [0, 1]; probabilities [0.8, 0.2] and [0.4, 0.6].
Y_TRUE = np.array([[[0, 1]]], np.uint8)  # (1, 1, 2)
Y_PRED = np.array([[[[0.8, 0.2], [0.4, 0.6]]]], np.float32)  # (1, 1, 2, 2)
CE = -(math.log(0.8) + math.log(0.6)) / 2


def value(loss):
    return float(loss(Y_TRUE, Y_PRED))


def test_soft_dice():
    # ROI: 2 * 0.6 / (0.8 + 1) ; background: 2 * 0.8 / (1.2 + 1)
    assert value(L.DiceLoss(smooth=0.0)) == pytest.approx(1 - 1.2 / 1.8, rel=1e-6)
    expected = 1 - (1.2 / 1.8 + 1.6 / 2.2) / 2
    assert value(L.DiceLoss(include_background=True, smooth=0.0)) == pytest.approx(expected, rel=1e-6)


def test_dice_of_a_perfect_prediction_is_zero_and_one_hot_truth_works():
    one_hot = np.array([[[[1, 0], [0, 1]]]], np.float32)
    assert float(L.DiceLoss(smooth=0.0)(one_hot, one_hot)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.DiceLoss(smooth=0.0)(one_hot, Y_PRED)) == pytest.approx(value(L.DiceLoss(smooth=0.0)))
    assert float(L.DiceLoss(smooth=0.0)(Y_TRUE[..., None], Y_PRED)) == pytest.approx(value(L.DiceLoss(smooth=0.0)))


def test_cross_entropy_and_weights():
    assert value(L.WeightedCrossEntropy()) == pytest.approx(CE, rel=1e-6)
    weighted = -(math.log(0.8) + 3 * math.log(0.6)) / 2
    assert value(L.WeightedCrossEntropy([1.0, 3.0])) == pytest.approx(weighted, rel=1e-6)


def test_focal():
    expected = -(0.2**2 * math.log(0.8) + 0.4**2 * math.log(0.6)) / 2
    assert value(L.FocalLoss(gamma=2.0)) == pytest.approx(expected, rel=1e-6)
    assert value(L.FocalLoss(gamma=0.0)) == pytest.approx(CE, rel=1e-6)
    assert value(L.FocalLoss(gamma=0.0, class_weights=[1.0, 3.0])) == pytest.approx(
        value(L.WeightedCrossEntropy([1.0, 3.0])), rel=1e-6
    )


def test_tversky():
    # TP 0.6, FP 0.2, FN 0.4
    assert value(L.TverskyLoss(0.3, 0.7, smooth=0.0)) == pytest.approx(1 - 0.6 / (0.6 + 0.06 + 0.28), rel=1e-6)
    assert value(L.TverskyLoss(0.5, 0.5, smooth=0.0)) == pytest.approx(value(L.DiceLoss(smooth=0.0)), rel=1e-6)


def test_dice_plus_cross_entropy_is_the_default():
    assert isinstance(L.get_loss(), L.DiceCELoss)
    assert value(L.DiceCELoss(smooth=0.0)) == pytest.approx(1 - 1.2 / 1.8 + CE, rel=1e-6)
    assert value(L.DiceCELoss(dice_weight=2.0, ce_weight=0.5, smooth=0.0)) == pytest.approx(
        2 * (1 - 1.2 / 1.8) + 0.5 * CE, rel=1e-6
    )


def test_batch_reduction_pools_the_batch():
    two = np.concatenate([Y_PRED, Y_PRED])
    truth = np.concatenate([Y_TRUE, Y_TRUE])
    assert float(L.DiceLoss(smooth=0.0)(truth, two)) == pytest.approx(value(L.DiceLoss(smooth=0.0)), rel=1e-6)
    assert float(L.WeightedCrossEntropy()(truth, two)) == pytest.approx(CE, rel=1e-6)


def test_get_loss_names():
    for name in L.LOSS_NAMES:
        assert isinstance(L.get_loss(name), keras.losses.Loss)
    with pytest.raises(CtsegSettingsError, match="unknown loss 'dice_loss'; choose one of dice_ce"):
        L.get_loss("dice_loss")


def test_class_weights_must_match_the_classes():
    with pytest.raises(CtsegSettingsError, match="class_weights has 3 values but the model has 2 classes"):
        L.WeightedCrossEntropy([1.0, 2.0, 3.0])(Y_TRUE, Y_PRED)
    # Focal loss and Dice + CE check too, rather than failing inside TensorFlow's broadcasting.
    with pytest.raises(CtsegSettingsError, match="class_weights has 3 values but the model has 2 classes"):
        L.FocalLoss(class_weights=[1.0, 2.0, 3.0])(Y_TRUE, Y_PRED)
    with pytest.raises(CtsegSettingsError, match="class_weights has 1 values but the model has 2 classes"):
        L.DiceCELoss(class_weights=[1.0])(Y_TRUE, Y_PRED)


# --- metrics -----------------------------------------------------------------------------------

M_TRUE = np.array([[[0, 1, 1], [2, 2, 0]]], np.uint8)  # (1, 2, 3)
M_ARGMAX = np.array([[[0, 1, 0], [2, 1, 0]]])


def _probs(argmax, classes):
    return np.eye(classes, dtype=np.float32)[argmax] * 0.7 + 0.3 / classes


def test_hard_dice_and_iou():
    probs = _probs(M_ARGMAX, 3)
    mean_dice, dice1, dice2, iou = L.MeanDice(3), L.DicePerROI(3, 1), L.DicePerROI(3, 2), L.MeanIoU(3)
    for metric in (mean_dice, dice1, dice2, iou):
        metric.update_state(M_TRUE, probs)
    # ROI 1: TP 1, predicted 2, true 2; ROI 2: TP 1, predicted 1, true 2
    assert float(dice1.result()) == pytest.approx(0.5)
    assert float(dice2.result()) == pytest.approx(2 / 3)
    assert float(mean_dice.result()) == pytest.approx((0.5 + 2 / 3) / 2)
    assert float(iou.result()) == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_metrics_accumulate_over_batches_and_reset():
    metric = L.DicePerROI(3, 1)
    metric.update_state(M_TRUE, _probs(M_ARGMAX, 3))  # TP 1, P 2, T 2
    metric.update_state(M_TRUE, _probs(M_TRUE, 3))  # TP 2, P 2, T 2
    assert float(metric.result()) == pytest.approx(2 * 3 / (4 + 4))
    metric.reset_state()
    metric.update_state(M_TRUE, _probs(M_TRUE, 3))
    assert float(metric.result()) == pytest.approx(1.0)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    probs = _probs(M_ARGMAX, 4)
    absent, mean_dice = L.DicePerROI(4, 3), L.MeanDice(4)
    absent.update_state(M_TRUE, probs)
    mean_dice.update_state(M_TRUE, probs)
    assert math.isnan(float(absent.result()))
    assert float(mean_dice.result()) == pytest.approx((0.5 + 2 / 3) / 2)
    empty = L.MeanDice(2)
    empty.update_state(np.zeros((1, 2, 2)), _probs(np.zeros((1, 2, 2), int), 2))
    assert math.isnan(float(empty.result()))


def test_default_metrics_are_named_after_the_rois():
    names = [m.name for m in L.default_metrics(2, ("LV blood pool", "Myocardium"))]
    assert names == ["mean_dice", "dice_lv_blood_pool", "dice_myocardium", "mean_iou"]
    assert [m.name for m in L.default_metrics(1)] == ["mean_dice", "dice_1", "mean_iou"]


def test_metric_settings_are_checked():
    with pytest.raises(CtsegSettingsError, match="num_classes must be at least 2"):
        L.MeanDice(1)
    with pytest.raises(CtsegSettingsError, match=r"class_id must be within 0..2, got 3"):
        L.DicePerROI(3, 3)


# --- serialisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        L.DiceLoss(True, 0.5),
        L.TverskyLoss(0.2, 0.8),
        L.WeightedCrossEntropy([1, 2]),
        L.FocalLoss(1.5, [1, 2]),
        L.DiceCELoss(2.0, 0.5),
        L.MeanDice(3),
        L.DicePerROI(3, 2, name="dice_myo"),
        L.MeanIoU(3),
    ],
)
def test_round_trip_through_keras_serialisation(obj):
    config = keras.saving.serialize_keras_object(obj)
    assert str(config["registered_name"]).startswith("ctseg>")
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(obj) and again.get_config() == obj.get_config()


def test_compiled_model_reloads_in_safe_mode(tmp_path):
    from ctseg_helpers.model.settings import ModelSettings, load_model, save_model

    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss=L.DiceCELoss(), metrics=L.default_metrics(2))
    model.fit(np.zeros((2, 8, 8, 1), np.float32), np.ones((2, 8, 8), np.uint8), epochs=1, verbose=0)
    path = save_model(model, tmp_path / "m.keras", ModelSettings(input_shape=8, num_labels=2))
    again, settings = load_model(path, compile=True)
    assert isinstance(again.loss, L.DiceCELoss) and settings.num_labels == 2
    np.testing.assert_allclose(
        again.predict(np.ones((1, 8, 8, 1)), verbose=0), model.predict(np.ones((1, 8, 8, 1)), verbose=0), rtol=1e-5
    )
