"""A flexible 2D U-Net, in the spirit of CTSegNet's ``build_Unet_flex``.

The default (4 pooling levels, 16 base filters doubling per level, 3x3 kernels, batch norm,
ReLU) has 1.95 M parameters and trains at about 4 slices/s at 256 x 256 on a 2-core CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ctseg_helpers.errors import CtsegSettingsError


def _per_level(value, count: int, name: str, kind=int) -> list:
    """Broadcast a scalar to ``count`` levels, or check a per-level sequence has ``count`` items."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = list(value)
        if len(values) != count:
            raise CtsegSettingsError(
                f"{name} gives {len(values)} values but the U-Net needs {count} "
                f"(one per level); give a single value or {count} values"
            )
        return [kind(v) for v in values]
    return [kind(value)] * count


def _square(size) -> tuple[int, int]:
    if isinstance(size, Sequence):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def unet_filters(levels: int, base_filters: int = 16, filter_multiplier: float = 2.0) -> list[int]:
    """Filters of each encoder level and the bottleneck: ``base * multiplier**level``.

    Returns
    -------
    list of int, length ``levels + 1``
    """
    return [max(1, int(round(base_filters * filter_multiplier**i))) for i in range(levels + 1)]


def check_input_size(input_shape, pool_sizes) -> None:
    """Check every pooling level divides the feature map, so the output size equals the input.

    Raises
    ------
    CtsegSettingsError
        Naming the level, its feature-map size and the pool size that does not divide it.
    """
    rows, cols = _square(input_shape)
    for level, pool in enumerate(pool_sizes, start=1):
        if pool < 1:
            raise CtsegSettingsError(f"pool size of level {level} must be at least 1, got {pool}")
        if rows % pool or cols % pool:
            total = 1
            for p in pool_sizes:
                total *= p
            raise CtsegSettingsError(
                f"input {_square(input_shape)[0]}x{_square(input_shape)[1]} cannot pass the U-Net: at pooling "
                f"level {level} the feature map is {rows}x{cols}, which pool size {pool} does not divide, so "
                f"the decoder could not restore the input size; use an input side that is a multiple of "
                f"{total} (all pool sizes multiplied), or fewer levels / other pool sizes"
            )
        rows, cols = rows // pool, cols // pool


def build_unet(
    input_shape,
    num_labels: int,
    *,
    levels: int = 4,
    filters: Sequence[int] | None = None,
    base_filters: int = 16,
    filter_multiplier: float = 2.0,
    pool_sizes: int | Sequence[int] = 2,
    kernel_sizes: int | Sequence[int] = 3,
    convs_per_level: int = 2,
    batch_norm: bool = True,
    dropout: float | Sequence[float] = 0.0,
    activation: str = "relu",
    instance_norm: bool = False,
    deep_supervision: bool = False,
    channels: int = 1,
    name: str = "unet",
):
    """Build a 2D U-Net with a softmax over ``num_labels + 1`` classes (background included).

    Parameters
    ----------
    input_shape : int or (int, int)
        Input side in pixels (square) or (rows, cols).
    num_labels : int
        Number of ROIs; the output has ``num_labels + 1`` channels, class 0 = background.
    levels : int
        Number of pooling (and up-sampling) levels.
    filters : sequence of int, length ``levels + 1``, optional
        Filters of each encoder level and of the bottleneck; the decoder mirrors them.
        Default: ``unet_filters(levels, base_filters, filter_multiplier)``.
    base_filters : int
        Filters of the first level when ``filters`` is not given.
    filter_multiplier : float
        Growth of the filters from one level to the next when ``filters`` is not given.
    pool_sizes : int or sequence of int (length ``levels``)
        Max-pooling factor of each level (the transposed convolutions up-sample by the same).
    kernel_sizes : int or sequence of int (length ``levels + 1``)
        Convolution kernel size of each level and the bottleneck (decoder mirrors).
    convs_per_level : int
        Convolutions per block.
    batch_norm : bool
        Batch normalisation after each convolution.
    dropout : float or sequence of float (length ``levels + 1``)
        Dropout rate at the end of each encoder block and the bottleneck (decoder mirrors).
    activation : str
        Keras activation of the convolutions (e.g. "relu", "elu", "gelu").
    instance_norm : bool
        Instance normalisation (each feature map of each image by its own mean and variance,
        as nnU-Net uses) after each convolution, in place of batch normalisation.
    deep_supervision : bool
        Add one more output per coarser decoder level but the coarsest (nnU-Net's deep
        supervision): a 1x1 convolution of that level's features, up-sampled bilinearly to the
        input size, then a softmax. Training applies the loss to each (see
        :func:`deep_supervision_weights`); segmentation uses the first output only
        (:func:`inference_model`). Needs ``levels >= 3``; with fewer it adds nothing.
    channels : int
        Image channels (1 for CT/MR).
    name : str

    Returns
    -------
    keras.Model
        Input (B, rows, cols, channels) float32; output (B, rows, cols, num_labels + 1)
        float32 softmax probabilities. With ``deep_supervision`` the outputs are a list: these
        probabilities first, then one map of the same shape per supervised coarser level, finest
        first (output names ``deep_supervision_<factor>x``).

    Raises
    ------
    CtsegSettingsError
        For inconsistent settings, or an input size the pooling levels cannot divide
        (the message names the level).
    """
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    configure_tensorflow()
    import keras  # noqa: PLC0415
    from keras import layers  # noqa: PLC0415

    if levels < 1:
        raise CtsegSettingsError(f"levels must be at least 1, got {levels}")
    if num_labels < 1:
        raise CtsegSettingsError(f"num_labels must be at least 1, got {num_labels}")
    if convs_per_level < 1:
        raise CtsegSettingsError(f"convs_per_level must be at least 1, got {convs_per_level}")
    if filters is None:
        filters = unet_filters(levels, base_filters, filter_multiplier)
    filters = _per_level(filters, levels + 1, "filters")
    if min(filters) < 1:
        raise CtsegSettingsError(f"filters must all be at least 1, got {filters}")
    pools = _per_level(pool_sizes, levels, "pool_sizes")
    kernels = _per_level(kernel_sizes, levels + 1, "kernel_sizes")
    drops = _per_level(dropout, levels + 1, "dropout", float)
    if any(not 0.0 <= d < 1.0 for d in drops):
        raise CtsegSettingsError(f"dropout rates must be within 0 <= rate < 1, got {drops}")
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError) as exc:
        raise CtsegSettingsError(f"unknown activation {activation!r} ({exc})") from exc
    rows, cols = _square(input_shape)
    check_input_size((rows, cols), pools)

    def block(x, n_filters, kernel, rate, tag):
        for i in range(convs_per_level):
            x = layers.Conv2D(
                n_filters,
                kernel,
                padding="same",
                use_bias=not (batch_norm or instance_norm),
                kernel_initializer="he_normal",
                name=f"{tag}_conv{i + 1}",
            )(x)
            if instance_norm:
                x = layers.GroupNormalization(groups=n_filters, epsilon=1e-5, name=f"{tag}_in{i + 1}")(x)
            elif batch_norm:
                x = layers.BatchNormalization(name=f"{tag}_bn{i + 1}")(x)
            x = layers.Activation(activation, name=f"{tag}_act{i + 1}")(x)
        if rate > 0:
            x = layers.Dropout(rate, name=f"{tag}_dropout")(x)
        return x

    inputs = keras.Input((rows, cols, channels), name="image")
    x = inputs
    skips = []
    for level in range(levels):
        x = block(x, filters[level], kernels[level], drops[level], f"enc{level + 1}")
        skips.append(x)
        x = layers.MaxPooling2D(pools[level], name=f"enc{level + 1}_pool")(x)
    x = block(x, filters[levels], kernels[levels], drops[levels], "bottleneck")
    side_outputs = []
    for level in reversed(range(levels)):
        x = layers.Conv2DTranspose(
            filters[level], pools[level], strides=pools[level], padding="same", name=f"dec{level + 1}_up"
        )(x)
        x = layers.Concatenate(name=f"dec{level + 1}_concat")([x, skips[level]])
        x = block(x, filters[level], kernels[level], drops[level], f"dec{level + 1}")
        if deep_supervision and 0 < level < levels - 1:  # not the input's level, not the coarsest
            factor = math.prod(pools[:level])
            logits = layers.Conv2D(num_labels + 1, 1, dtype="float32", name=f"deep_supervision_{factor}x_logits")(x)
            logits = layers.UpSampling2D(
                factor, interpolation="bilinear", dtype="float32", name=f"deep_supervision_{factor}x_up"
            )(logits)
            side_outputs.append(
                layers.Activation("softmax", dtype="float32", name=f"deep_supervision_{factor}x")(logits)
            )
    # float32 output keeps the softmax and the losses exact under mixed precision.
    outputs = layers.Conv2D(num_labels + 1, 1, activation="softmax", dtype="float32", name="probabilities")(x)
    if side_outputs:
        return keras.Model(inputs, [outputs, *reversed(side_outputs)], name=name)
    return keras.Model(inputs, outputs, name=name)


def deep_supervision_weights(outputs: int) -> list[float]:
    """Loss weights of the outputs of a deeply supervised U-Net, finest first (nnU-Net's rule).

    Each coarser output weighs half the one before; the weights sum to 1.

    >>> deep_supervision_weights(3)
    [0.5714285714285714, 0.2857142857142857, 0.14285714285714285]
    >>> deep_supervision_weights(1)
    [1.0]
    """
    if outputs < 1:
        raise CtsegSettingsError(f"a network has at least one output, got {outputs}")
    raw = [0.5**i for i in range(outputs)]
    return [w / sum(raw) for w in raw]


def inference_model(model):
    """The network as segmentation uses it: the full-resolution probabilities only.

    A deeply supervised model (several outputs) is cut to its first output, sharing the
    weights; a model with one output is returned as it is.
    """
    if len(model.outputs) == 1:
        return model
    import keras  # noqa: PLC0415

    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, model.outputs[0], name=model.name)
