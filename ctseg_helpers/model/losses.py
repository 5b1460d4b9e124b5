"""Segmentation losses and metrics, registered so saved models reload without custom objects.

Conventions
-----------
``y_pred`` is the network's softmax output of shape (B, M, N, C) with ``C = num_labels + 1``
classes (class 0 = background). ``y_true`` is either a label map of integer class values,
shape (B, M, N) or (B, M, N, 1), or already one-hot, shape (B, M, N, C).

Losses are *soft* (computed on probabilities) and averaged over the batch; Dice-type losses
pool every pixel of the batch per class (a "batch Dice"), so a class absent from a batch
does not produce 0/0. Metrics are *hard* (on the arg-max label map) and accumulate counts over
an epoch, so ``mean_dice`` is the Dice of the whole epoch's pixels, not an average of batches.

Every class here is registered with ``keras.saving.register_keras_serializable(package="ctseg")``;
importing this module (``ctseg_helpers.model.settings.load_model`` does) is all a reload needs.
"""

from __future__ import annotations

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.tf_setup import configure_tensorflow

tf = configure_tensorflow()
import keras  # noqa: E402

from ctseg_helpers.model.loss_names import LOSS_NAMES, check_loss_options, dice_column  # noqa: E402, F401 - LOSS_NAMES re-exported

_EPS = 1e-7


def _one_hot(y_true, num_classes: int):
    """Integer label map (B, M, N[, 1]) or one-hot (B, M, N, C) -> float32 one-hot."""
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank == 4 and y_true.shape[-1] == num_classes and num_classes > 1:
        return tf.cast(y_true, tf.float32)
    if y_true.shape.rank == 4:
        y_true = y_true[..., 0]
    return tf.one_hot(tf.cast(y_true, tf.int32), num_classes, dtype=tf.float32)


def _prepare(y_true, y_pred):
    y_pred = tf.cast(y_pred, tf.float32)
    num_classes = y_pred.shape[-1]
    return _one_hot(y_true, num_classes), y_pred


def _first_class(include_background: bool) -> int:
    return 0 if include_background else 1


def soft_dice_per_class(y_true, y_pred, smooth: float = 1.0):
    """Soft Dice of each class over the whole batch.

    Returns
    -------
    tf.Tensor of shape (C,)
        ``(2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)`` per class.
    """
    t, p = _prepare(y_true, y_pred)
    axes = [0, 1, 2]
    intersection = tf.reduce_sum(p * t, axis=axes)
    total = tf.reduce_sum(p, axis=axes) + tf.reduce_sum(t, axis=axes)
    return (2.0 * intersection + smooth) / (total + smooth)


@keras.saving.register_keras_serializable(package="ctseg")
class DiceLoss(keras.losses.Loss):
    """Soft multi-class Dice loss: ``1 - mean Dice`` over the classes.

    Parameters
    ----------
    include_background : bool
        Count class 0 in the mean (default False: ROIs only, since background dominates).
    smooth : float
        Added to numerator and denominator; keeps an empty class at Dice 1.
    """

    def __init__(self, include_background: bool = False, smooth: float = 1.0, name: str = "dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.include_background = bool(include_background)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        dice = soft_dice_per_class(y_true, y_pred, self.smooth)[_first_class(self.include_background) :]
        # One value per example so Keras' reduction gives the batch value back.
        return tf.fill(tf.shape(y_pred)[:1], 1.0 - tf.reduce_mean(dice))

    def get_config(self):
        return {**super().get_config(), "include_background": self.include_background, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="ctseg")
class TverskyLoss(keras.losses.Loss):
    """Tversky loss ``1 - TP / (TP + alpha FP + beta FN)``, averaged over the classes.

    ``alpha = beta = 0.5`` is the Dice loss; ``beta > alpha`` penalises missed ROI pixels
    more than extra ones (useful for small ROIs).
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        include_background: bool = False,
        smooth: float = 1.0,
        name: str = "tversky_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.alpha, self.beta = float(alpha), float(beta)
        self.include_background = bool(include_background)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        t, p = _prepare(y_true, y_pred)
        axes = [0, 1, 2]
        tp = tf.reduce_sum(p * t, axis=axes)
        fp = tf.reduce_sum(p * (1.0 - t), axis=axes)
        fn = tf.reduce_sum((1.0 - p) * t, axis=axes)
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        index = index[_first_class(self.include_background) :]
        return tf.fill(tf.shape(y_pred)[:1], 1.0 - tf.reduce_mean(index))

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "include_background": self.include_background,
            "smooth": self.smooth,
        }


def _true_class_weight(t, class_weights):
    """Weight of each pixel's true class; ``t`` is one-hot (B, M, N, C)."""
    if len(class_weights) != t.shape[-1]:
        raise CtsegSettingsError(
            f"class_weights has {len(class_weights)} values but the model has {t.shape[-1]} "
            "classes (num_labels + 1, background first); give one weight per class"
        )
    return tf.reduce_sum(t * tf.constant(class_weights, tf.float32), axis=-1)


@keras.saving.register_keras_serializable(package="ctseg")
class WeightedCrossEntropy(keras.losses.Loss):
    """Pixel-wise categorical cross-entropy with one weight per class.

    Parameters
    ----------
    class_weights : sequence of float, length C, optional
        Weight of each class (background first); None gives plain cross-entropy. Each pixel's
        loss is multiplied by the weight of its true class; the mean is over pixels.
    """

    def __init__(self, class_weights=None, name: str = "weighted_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in class_weights] if class_weights is not None else None

    def call(self, y_true, y_pred):
        t, p = _prepare(y_true, y_pred)
        ce = -tf.reduce_sum(t * tf.math.log(tf.clip_by_value(p, _EPS, 1.0)), axis=-1)
        if self.class_weights is not None:
            ce = ce * _true_class_weight(t, self.class_weights)
        return tf.reduce_mean(ce, axis=[1, 2])

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="ctseg")
class FocalLoss(keras.losses.Loss):
    """Focal loss ``-alpha_c (1 - p_t)^gamma log(p_t)``, mean over pixels (Lin et al. 2017).

    Parameters
    ----------
    gamma : float
        Focusing exponent; 0 gives (weighted) cross-entropy.
    class_weights : sequence of float, length C, optional
        ``alpha_c`` per class (background first); None gives 1 for every class.
    """

    def __init__(self, gamma: float = 2.0, class_weights=None, name: str = "focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma = float(gamma)
        self.class_weights = [float(w) for w in class_weights] if class_weights is not None else None

    def call(self, y_true, y_pred):
        t, p = _prepare(y_true, y_pred)
        p_t = tf.clip_by_value(tf.reduce_sum(t * p, axis=-1), _EPS, 1.0)
        loss = -tf.pow(1.0 - p_t, self.gamma) * tf.math.log(p_t)
        if self.class_weights is not None:
            loss = loss * _true_class_weight(t, self.class_weights)
        return tf.reduce_mean(loss, axis=[1, 2])

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="ctseg")
class DiceCELoss(keras.losses.Loss):
    """Soft Dice loss plus cross-entropy (the default): ``dice_weight * Dice + ce_weight * CE``.

    Dice copes with small ROIs against a large background; cross-entropy gives smooth
    gradients early in training. The sum can exceed 1.
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        include_background: bool = False,
        smooth: float = 1.0,
        class_weights=None,
        name: str = "dice_ce_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.dice_weight, self.ce_weight = float(dice_weight), float(ce_weight)
        self.include_background = bool(include_background)
        self.smooth = float(smooth)
        self.class_weights = [float(w) for w in class_weights] if class_weights is not None else None
        self._dice = DiceLoss(include_background, smooth)
        self._ce = WeightedCrossEntropy(self.class_weights)

    def call(self, y_true, y_pred):
        return self.dice_weight * self._dice.call(y_true, y_pred) + self.ce_weight * self._ce.call(y_true, y_pred)

    def get_config(self):
        return {
            **super().get_config(),
            "dice_weight": self.dice_weight,
            "ce_weight": self.ce_weight,
            "include_background": self.include_background,
            "smooth": self.smooth,
            "class_weights": self.class_weights,
        }


def get_loss(name: str = "dice_ce", **options) -> keras.losses.Loss:
    """The loss called ``name``, one of ``LOSS_NAMES``, with its options.

    Raises
    ------
    CtsegSettingsError
        If the name is unknown.
    """
    classes = {
        "dice_ce": DiceCELoss,
        "dice": DiceLoss,
        "focal": FocalLoss,
        "weighted_ce": WeightedCrossEntropy,
        "tversky": TverskyLoss,
    }
    options = check_loss_options(name, options)  # an unknown name raises here
    return classes[name](**options)


class _ConfusionCounts(keras.metrics.Metric):
    """Accumulates per-class true positives, predicted and true pixel counts of hard labels."""

    def __init__(self, num_classes: int, name: str, dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype or "float32", **kwargs)
        if int(num_classes) < 2:
            raise CtsegSettingsError(f"num_classes must be at least 2 (background + one ROI), got {num_classes}")
        self.num_classes = int(num_classes)
        self.tp = self.add_variable(shape=(self.num_classes,), initializer="zeros", name="tp", dtype="float32")
        self.pred = self.add_variable(shape=(self.num_classes,), initializer="zeros", name="pred", dtype="float32")
        self.true = self.add_variable(shape=(self.num_classes,), initializer="zeros", name="true", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = tf.cast(y_pred, tf.float32)
        t = _one_hot(y_true, self.num_classes)
        p = tf.one_hot(tf.argmax(y_pred, axis=-1), self.num_classes, dtype=tf.float32)
        axes = [0, 1, 2]
        self.tp.assign_add(tf.reduce_sum(t * p, axis=axes))
        self.pred.assign_add(tf.reduce_sum(p, axis=axes))
        self.true.assign_add(tf.reduce_sum(t, axis=axes))

    def reset_state(self):
        for v in (self.tp, self.pred, self.true):
            v.assign(tf.zeros_like(v))

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype}

    def _per_class_dice(self):
        total = self.pred + self.true
        # A class absent from both truth and prediction has no Dice (NaN), not 0 or 1.
        return tf.where(total > 0, 2.0 * self.tp / tf.maximum(total, _EPS), tf.fill(tf.shape(total), float("nan")))

    def _per_class_iou(self):
        union = self.pred + self.true - self.tp
        return tf.where(union > 0, self.tp / tf.maximum(union, _EPS), tf.fill(tf.shape(union), float("nan")))


def _nanmean(values):
    finite = tf.logical_not(tf.math.is_nan(values))
    count = tf.reduce_sum(tf.cast(finite, tf.float32))
    total = tf.reduce_sum(tf.where(finite, values, tf.zeros_like(values)))
    return tf.where(count > 0, total / tf.maximum(count, 1.0), float("nan"))


@keras.saving.register_keras_serializable(package="ctseg")
class MeanDice(_ConfusionCounts):
    """Mean hard Dice over the ROIs (background excluded), accumulated over an epoch.

    Classes absent from both truth and prediction are left out of the mean; NaN if all are.
    """

    def __init__(self, num_classes: int, name: str = "mean_dice", **kwargs):
        super().__init__(num_classes, name=name, **kwargs)

    def result(self):
        return _nanmean(self._per_class_dice()[1:])


@keras.saving.register_keras_serializable(package="ctseg")
class DicePerROI(_ConfusionCounts):
    """Hard Dice of one class (``class_id`` in 0..num_classes - 1; 0 is background), per epoch; NaN if absent."""

    def __init__(self, num_classes: int, class_id: int = 1, name: str | None = None, **kwargs):
        if not 0 <= int(class_id) < int(num_classes):
            raise CtsegSettingsError(f"class_id must be within 0..{int(num_classes) - 1}, got {class_id}")
        super().__init__(num_classes, name=name or f"dice_{int(class_id)}", **kwargs)
        self.class_id = int(class_id)

    def result(self):
        return self._per_class_dice()[self.class_id]

    def get_config(self):
        return {**super().get_config(), "class_id": self.class_id}


@keras.saving.register_keras_serializable(package="ctseg")
class MeanIoU(_ConfusionCounts):
    """Mean hard intersection-over-union over the ROIs (background excluded), per epoch."""

    def __init__(self, num_classes: int, name: str = "mean_iou", **kwargs):
        super().__init__(num_classes, name=name, **kwargs)

    def result(self):
        return _nanmean(self._per_class_iou()[1:])


def default_metrics(num_labels: int, label_names=()) -> list:
    """Mean Dice, Dice of every ROI (named after ``label_names`` when given) and mean IoU."""
    metrics = [MeanDice(num_labels + 1)]
    for k in range(1, num_labels + 1):
        metrics.append(DicePerROI(num_labels + 1, k, name=dice_column(label_names, k)))
    metrics.append(MeanIoU(num_labels + 1))
    return metrics
