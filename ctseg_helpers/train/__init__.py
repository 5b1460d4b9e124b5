"""ctseg_helpers.train: the training loop, its settings, and the machine's resources.

The public entry point is :func:`train_model` with a :class:`TrainConfig`; the notebook, the
``ctseg train`` command and the demo all call it. Importing this package does not import
TensorFlow.
"""

from ctseg_helpers.train.loop import (
    TrainConfig,
    TrainingData,
    TrainResult,
    first_batch,
    prepare_training_data,
    status_line,
    train_model,
)
from ctseg_helpers.train.system import SystemInfo, configure_precision, system_info

__all__ = [
    "SystemInfo",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "configure_precision",
    "first_batch",
    "prepare_training_data",
    "status_line",
    "system_info",
    "train_model",
]
