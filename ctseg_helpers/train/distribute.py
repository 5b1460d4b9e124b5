"""The one place where training's ``tf.distribute`` strategy is chosen.

The ``devices`` setting is a string, one of :data:`DEVICE_CHOICES`:

``"auto"`` (the default)
    ``MirroredStrategy`` over all visible GPUs when there are two or more; otherwise
    TensorFlow's default strategy, which runs on the one GPU or on the CPU.
``"cpu"``
    ``OneDeviceStrategy("/cpu:0")``: train on the CPU even when GPUs are visible.
``"gpu"``
    All visible GPUs: ``MirroredStrategy`` over two or more, ``OneDeviceStrategy`` on a single
    one. Refused when TensorFlow sees no GPU.
``"cpu:N"``
    Split the CPU into N logical devices and mirror over them. This tests multi-device
    training on a machine without GPUs; it is not faster than ``"cpu"``. TensorFlow fixes its
    devices the first time it uses them, so ``"cpu:N"`` must be chosen at the start of the
    process (or notebook kernel), before anything has run TensorFlow.

With several replicas, the batch size of the training data is the *global* batch: each step
splits it across the replicas (see :func:`replica_batch_note`).

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import logging

from ctseg_helpers.errors import CtsegSettingsError

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "gpu", "cpu:N")
"""Accepted forms of the ``devices`` setting; ``N`` is a whole number of at least 1."""

_ACCEPTED = '"auto", "cpu", "gpu" or "cpu:N" (N logical CPU devices, a whole number >= 1, e.g. "cpu:2")'


def parse_devices(text: str) -> tuple[str, int | None]:
    """Check a ``devices`` setting and split it into its kind and logical-CPU count.

    Parameters
    ----------
    text : str
        One of :data:`DEVICE_CHOICES`; case and surrounding spaces are ignored.

    Returns
    -------
    kind : str
        ``"auto"``, ``"cpu"`` or ``"gpu"``.
    count : int or None
        N of ``"cpu:N"``; None for the other forms.

    Raises
    ------
    CtsegSettingsError
        If ``text`` is not one of the accepted forms; the message lists them.

    Examples
    --------
    >>> parse_devices("auto")
    ('auto', None)
    >>> parse_devices(" CPU:2 ")
    ('cpu', 2)
    """
    if not isinstance(text, str):
        raise CtsegSettingsError(f"devices must be a string, got {text!r} ({type(text).__name__}); use {_ACCEPTED}")
    value = text.strip().lower()
    if value in ("auto", "cpu", "gpu"):
        return value, None
    kind, sep, count = value.partition(":")
    if kind == "cpu" and sep and count.isdigit() and int(count) >= 1:
        return "cpu", int(count)
    raise CtsegSettingsError(f"unknown devices setting {text!r}; use {_ACCEPTED}")


def split_cpu(n: int) -> None:
    """Configure the CPU as ``n`` logical devices, so a strategy can mirror over them.

    Call it before anything has run TensorFlow; it does not initialise TensorFlow's devices
    itself.

    Parameters
    ----------
    n : int
        Number of logical CPU devices, at least 1.

    Raises
    ------
    CtsegSettingsError
        If ``n`` is smaller than 1, or if TensorFlow has already set up its devices with another
        number of logical CPUs (the message says to choose the devices at the start of the
        process or kernel). Asking again for the count already in force is accepted.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CtsegSettingsError(f"the number of logical CPU devices must be a whole number >= 1, got {n!r}")
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    tf = configure_tensorflow()
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as exc:  # TensorFlow has already initialised its devices
        present = len(tf.config.list_logical_devices("CPU"))
        if present == n:
            logger.debug("the CPU is already split into %d logical devices", n)
            return
        raise CtsegSettingsError(
            f"devices='cpu:{n}' needs {n} logical CPU devices, but TensorFlow has already set up its devices "
            f"({present} logical CPU device{'s' if present != 1 else ''}) and cannot change them now; set "
            f"devices='cpu:{n}' at the start of the process or kernel (restart the notebook kernel and choose "
            f"the devices before anything runs TensorFlow)"
        ) from exc
    logger.debug("CPU split into %d logical devices", n)


def get_strategy(devices: str = "auto"):
    """The ``tf.distribute`` strategy that trains on the chosen devices.

    Parameters
    ----------
    devices : str
        One of :data:`DEVICE_CHOICES` (see the module's description).

    Returns
    -------
    tf.distribute.Strategy
        Build and compile the model inside ``strategy.scope()``; ``strategy.num_replicas_in_sync``
        is the number of devices each batch is split across.

    Raises
    ------
    CtsegSettingsError
        For a setting that is not one of :data:`DEVICE_CHOICES`; for ``"gpu"`` when TensorFlow sees
        no GPU; for ``"cpu:N"`` when TensorFlow already set up another number of CPU devices.
    """
    kind, count = parse_devices(devices)
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    tf = configure_tensorflow()
    if count is not None:
        split_cpu(count)
        names = [d.name for d in tf.config.list_logical_devices("CPU")][:count]
        strategy = tf.distribute.MirroredStrategy(names)
    elif kind == "cpu":
        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    else:
        gpus = [d.name for d in tf.config.list_logical_devices("GPU")] if tf.config.list_physical_devices("GPU") else []
        if kind == "gpu" and not gpus:
            raise CtsegSettingsError(
                "devices='gpu' was requested but TensorFlow sees no GPU; use devices='auto' or 'cpu' on this "
                "machine, or check the GPU driver and that the CUDA-enabled TensorFlow is installed "
                "(CUDA_VISIBLE_DEVICES may also hide the GPUs)"
            )
        if len(gpus) >= 2:
            strategy = tf.distribute.MirroredStrategy(gpus)
        elif kind == "gpu":
            strategy = tf.distribute.OneDeviceStrategy(gpus[0])
        else:
            strategy = tf.distribute.get_strategy()
    logger.info("devices=%r: training on %s", devices, describe_strategy(strategy))
    return strategy


def describe_strategy(strategy) -> str:
    """Say in words where a strategy trains.

    Parameters
    ----------
    strategy : tf.distribute.Strategy

    Returns
    -------
    str
        For example ``"MirroredStrategy over 2 devices (/job:localhost/replica:0/task:0/device:CPU:0,
        /job:localhost/replica:0/task:0/device:CPU:1)"``, ``"one device (CPU)"`` or
        ``"one device (GPU:1)"``. TensorFlow's default strategy is described by the device it places
        work on: the first GPU when there is one, otherwise the CPU.
    """
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    tf = configure_tensorflow()
    replicas = strategy.num_replicas_in_sync
    try:
        workers = tuple(strategy.extended.worker_devices)
    except (RuntimeError, AttributeError, NotImplementedError):  # the default strategy has none
        workers = ()
    if isinstance(strategy, tf.distribute.MirroredStrategy) or (replicas > 1 and workers):
        plural = "s" if len(workers) != 1 else ""
        return f"{type(strategy).__name__} over {len(workers)} device{plural} ({', '.join(workers)})"
    if replicas > 1:
        return f"{type(strategy).__name__} over {replicas} replicas"
    if workers:
        spec = tf.DeviceSpec.from_string(workers[0])
        kind = (spec.device_type or "CPU").upper()
        index = spec.device_index or 0
        return f"one device ({kind}{'' if index == 0 else f':{index}'})"
    return "one device (GPU)" if tf.config.list_physical_devices("GPU") else "one device (CPU)"


def replica_batch_note(batch_size: int, strategy) -> int:
    """The batch each replica gets when the global batch is split across the strategy's replicas.

    With ``R`` replicas, each training step takes one batch of ``batch_size`` samples and gives each
    replica about ``batch_size / R`` of them; the gradients are summed across replicas, so the
    update equals that of one device with the whole batch. When ``batch_size`` is not a multiple of
    ``R`` some replicas get one sample more (logged as a warning).

    Parameters
    ----------
    batch_size : int
        The global batch size, samples per training step.
    strategy : tf.distribute.Strategy

    Returns
    -------
    int
        Samples per replica, ``batch_size // R`` (the smaller share when the split is uneven).

    Raises
    ------
    CtsegSettingsError
        If ``batch_size`` is smaller than the number of replicas, which would leave some replicas
        without data.
    """
    replicas = int(strategy.num_replicas_in_sync)
    if batch_size < replicas:
        raise CtsegSettingsError(
            f"batch size {batch_size} is smaller than the {replicas} replicas of {describe_strategy(strategy)}; "
            f"the global batch is split across replicas, so use a batch size of at least {replicas} "
            f"(ideally a multiple of {replicas}) or fewer devices"
        )
    per_replica = batch_size // replicas
    if batch_size % replicas:
        logger.warning(
            "batch size %d does not split evenly across %d replicas: each gets %d or %d samples; "
            "a multiple of %d keeps the replicas balanced",
            batch_size,
            replicas,
            per_replica,
            per_replica + 1,
            replicas,
        )
    elif replicas > 1:
        logger.info(
            "global batch %d is split into %d samples on each of %d replicas", batch_size, per_replica, replicas
        )
    return per_replica
