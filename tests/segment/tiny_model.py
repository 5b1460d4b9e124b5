"""A tiny saved ctseg model (1x1 convolutions, 32x32 input) for segmentation tests."""

from pathlib import Path


def make_tiny_model_file(
    path: Path,
    *,
    input_shape: int = 32,
    num_labels: int = 2,
    label_names=("inner", "outer"),
    fit_mode: str = "pad",
    stored_input_shape: int | None = None,
    stored_num_labels: int | None = None,
    modality: str = "CT",
) -> Path:
    """Save a tiny untrained-but-deterministic Keras model with ctseg settings at ``path``.

    The network maps each normalised pixel value v through fixed 1x1 convolutions, so the
    class with the highest probability is 0 for dark pixels, 2 for bright pixels and 1 between.
    ``stored_*`` write settings that deliberately disagree with the network (for error tests).
    """
    from ctseg_helpers.tf_setup import configure_tensorflow

    configure_tensorflow()
    import keras
    import numpy as np

    from ctseg_helpers.model.settings import ModelSettings, save_model
    from ctseg_helpers.prepare.normalize import Normalization

    keras.utils.set_random_seed(0)
    inputs = keras.Input((input_shape, input_shape, 1))
    conv = keras.layers.Conv2D(num_labels + 1, 1, activation="softmax")
    model = keras.Model(inputs, conv(inputs))
    # logits: class k gets slope k*20 and intercept chosen so boundaries fall at v=0.35 and 0.65
    slopes = np.arange(num_labels + 1, dtype=np.float32) * 20.0
    bounds = np.linspace(0.35, 0.65, num_labels) if num_labels > 1 else np.array([0.5])
    intercepts = np.concatenate([[0.0], -np.cumsum(20.0 * bounds)]).astype(np.float32)
    conv.set_weights([slopes.reshape(1, 1, 1, -1), intercepts])
    n = stored_num_labels or num_labels
    names = tuple(label_names) if (label_names and len(label_names) == n) else ()
    settings = ModelSettings(
        input_shape=stored_input_shape or input_shape,
        num_labels=n,
        label_names=names,
        normalization=Normalization(modality, (-500.0, 500.0)) if modality == "CT" else Normalization("MR"),
        fit_mode=fit_mode,
    )
    return save_model(model, path, settings)
