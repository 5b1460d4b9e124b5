"""The training loop: settings, data, model, checkpoints, history, resume, interrupt.

One entry point, :func:`train_model`, serves the notebook, the ``ctseg train`` command and
the demo. Everything a run writes goes to ``out_dir``:

``<model_filename>_<epoch>.keras``
    a checkpoint every ``save_checkpoint`` epochs, at the last epoch and on an interrupt
    (model, optimizer state and ctseg settings; resume starts from the newest one);
``<model_filename>_best.keras``
    the model with the lowest validation loss so far (training loss without validation data);
``<model_filename>_history.csv``
    every epoch's losses and metrics, written after each epoch;
``<model_filename>_curves.png``
    the training curves, drawn at the end.

A new run refuses to start in a folder holding a previous run of the same name unless
``resume=True`` (continue it) or ``overwrite=True`` (delete that run's files first).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.prepare.augment import AugmentConfig
from ctseg_helpers.prepare.dataset import FIT_MODES, SliceSet, load_slices, split_by_group
from ctseg_helpers.prepare.normalize import Normalization

logger = logging.getLogger(__name__)

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run.

    Attributes
    ----------
    main_dir : path
        Data folder; training pairs are read from ``<main_dir>/train`` (``dicoms/``, ``labels/``).
    model_filename : str
        Stem of every file the run writes (letters, digits, ``._-``).
    out_dir : path
        Folder for checkpoints, best model, history and curves.
    input_shape : int
        Side of the square network input, pixels; slices are fitted to it (``fit_mode``).
    num_labels : int
        Number of ROIs (background excluded).
    label_names : tuple of str
        One name per ROI (label 1 first), or empty.
    epochs : int
        Total epochs (on resume: the total including the epochs already done).
    batch_size : int
    learning_rate : float
        Adam learning rate.
    print_checkpoint : int
        Print a status line every this many epochs (and after the last).
    save_checkpoint : int
        Save ``<model_filename>_<epoch>.keras`` every this many epochs (and after the last).
    augmentation : AugmentConfig
        On-the-fly augmentation; ``AugmentConfig(enabled=False)`` turns it off.
    loss : {"dice_ce", "dice", "focal", "weighted_ce", "tversky"}
    levels, filters, base_filters, filter_multiplier, pool_sizes, kernel_sizes, batch_norm, dropout, activation
        U-Net architecture, see :func:`ctseg_helpers.model.unet.build_unet`.
    fit_mode : {"resize", "pad"}
    validation_fraction : float
        Share of slices, taken as whole patients/series, kept for validation (0 = none).
        Ignored when ``validation_dir`` is given.
    validation_dir : path, optional
        A folder with ``dicoms/`` and ``labels/`` to validate on instead.
    seed : int
        Seeds the split, weight initialisation, shuffling and augmentation.
    resume : bool
        Continue the newest checkpoint in ``out_dir`` (refused when a previous run of this name
        left files but no checkpoint: its best model and history would be replaced).
    overwrite : bool
        Delete a previous run of the same name in ``out_dir`` before starting.
    max_slices : int, optional
        Read only this many pairs (smoke runs).
    max_minutes : float, optional
        Stop (with a checkpoint) after the epoch that passes this much training time.
    mixed_precision : bool
        float16 compute on a GPU; ignored with a warning on the CPU.
    normalization : Normalization, optional
        Default: from the DICOM Modality tag.

    Raises
    ------
    CtsegSettingsError
        On construction, for any setting that could not work (unknown loss or fit mode, an
        ``input_shape`` the pooling levels cannot divide, per-level lists of the wrong length...),
        so a mistake is reported before any data is read.
    """

    main_dir: str | Path
    model_filename: str = "unet"
    out_dir: str | Path = "trained_model"
    input_shape: int = 256
    num_labels: int = 1
    label_names: tuple[str, ...] = ()
    epochs: int = 100
    batch_size: int = 8
    learning_rate: float = 1e-3
    print_checkpoint: int = 10
    save_checkpoint: int = 50
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    loss: str = "dice_ce"
    levels: int = 4
    filters: tuple[int, ...] | None = None
    base_filters: int = 16
    filter_multiplier: float = 2.0
    pool_sizes: int | tuple[int, ...] = 2
    kernel_sizes: int | tuple[int, ...] = 3
    batch_norm: bool = True
    dropout: float | tuple[float, ...] = 0.0
    activation: str = "relu"
    fit_mode: str = "resize"
    validation_fraction: float = 0.2
    validation_dir: str | Path | None = None
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    max_slices: int | None = None
    max_minutes: float | None = None
    mixed_precision: bool = False
    normalization: Normalization | None = None

    def __post_init__(self):
        for name in ("label_names", "filters", "pool_sizes", "kernel_sizes", "dropout"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.augmentation, dict):
            object.__setattr__(self, "augmentation", AugmentConfig.from_dict(self.augmentation))
        if not _NAME_OK.match(str(self.model_filename)):
            raise CtsegSettingsError(
                f"model_filename {self.model_filename!r} cannot name files; use letters, digits, '.', '_' "
                "or '-' (no folders: put those in out_dir)"
            )
        for name in ("input_shape", "num_labels", "epochs", "batch_size", "print_checkpoint", "save_checkpoint"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise CtsegSettingsError(f"{name} must be a positive whole number, got {value!r}")
        if not self.learning_rate > 0:
            raise CtsegSettingsError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.label_names and len(self.label_names) != self.num_labels:
            raise CtsegSettingsError(
                f"{len(self.label_names)} label names given for num_labels={self.num_labels}; give one "
                "name per ROI (background excluded) or none"
            )
        if self.resume and self.overwrite:
            raise CtsegSettingsError("resume and overwrite exclude each other: resume continues the previous "
                                     "run, overwrite deletes it; set only one")
        # Checked here, not after minutes of reading data (names as in model.losses.LOSS_NAMES).
        losses = ("dice_ce", "dice", "focal", "weighted_ce", "tversky")
        if self.loss not in losses:
            raise CtsegSettingsError(f"unknown loss {self.loss!r}; choose one of {', '.join(losses)}")
        if self.fit_mode not in FIT_MODES:
            raise CtsegSettingsError(f"fit_mode must be one of {FIT_MODES}, got {self.fit_mode!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise CtsegSettingsError(
                f"validation_fraction must be within 0 <= f < 1, got {self.validation_fraction}")
        if isinstance(self.levels, bool) or not isinstance(self.levels, (int, np.integer)) or self.levels < 1:
            raise CtsegSettingsError(f"levels must be a positive whole number, got {self.levels!r}")
        # Before minutes of reading data: can the pooling levels divide the input side?
        from ctseg_helpers.model.unet import _per_level, check_input_size  # noqa: PLC0415 - no Keras import

        check_input_size(self.input_shape, _per_level(self.pool_sizes, self.levels, "pool_sizes"))
        for name in ("filters", "kernel_sizes", "dropout"):
            if getattr(self, name) is not None:
                _per_level(getattr(self, name), self.levels + 1, name, float)
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise CtsegSettingsError(f"max_minutes must be positive (or None for no limit), got {self.max_minutes}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["main_dir"] = str(self.main_dir)
        data["out_dir"] = str(self.out_dir)
        data["validation_dir"] = str(self.validation_dir) if self.validation_dir else None
        data["normalization"] = self.normalization.to_dict() if self.normalization else None
        return data

    def architecture(self) -> dict:
        """The :func:`build_unet` keyword arguments of this configuration."""
        return dict(levels=self.levels, filters=self.filters, base_filters=self.base_filters,
                    filter_multiplier=self.filter_multiplier, pool_sizes=self.pool_sizes,
                    kernel_sizes=self.kernel_sizes, batch_norm=self.batch_norm, dropout=self.dropout,
                    activation=self.activation)


@dataclass
class TrainingData:
    """Training slices and, when there is validation data, validation slices."""

    train: SliceSet
    val: SliceSet | None = None

    def describe(self) -> str:
        text = f"training: {len(self.train)} slices from {len(set(self.train.groups))} patients/series"
        if self.val is not None and len(self.val):
            text += f"; validation: {len(self.val)} slices from {len(set(self.val.groups))} patients/series"
        else:
            text += "; no validation data"
        return text


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    model : keras.Model
        The model after the last completed epoch.
    out_dir : Path
    best_model_path, last_checkpoint_path, history_csv, curves_png : Path or None
    history : pandas.DataFrame
        One row per epoch (all runs of a resumed training).
    epochs_completed : int
    interrupted : bool
        True when Ctrl-C / a kernel interrupt stopped the run (a checkpoint was saved).
    stopped_by_time : bool
        True when ``max_minutes`` ended the run early.
    """

    model: object
    out_dir: Path
    best_model_path: Path | None
    last_checkpoint_path: Path | None
    history_csv: Path | None
    curves_png: Path | None
    history: object
    epochs_completed: int
    interrupted: bool = False
    stopped_by_time: bool = False

    @property
    def final_metrics(self) -> dict:
        """Last epoch's losses and metrics (empty before any epoch)."""
        if self.history is None or len(self.history) == 0:
            return {}
        return {k: float(v) for k, v in self.history.iloc[-1].items() if k not in ("epoch",)}

    def __str__(self) -> str:
        m = self.final_metrics
        lines = [f"Epochs completed: {self.epochs_completed}" + (" (interrupted)" if self.interrupted else "")]
        if m:
            lines.append(f"Final Dice loss: {m.get('loss', float('nan')):.3f} | "
                         f"Final mean dice score: {m.get('mean_dice', float('nan')):.3f}")
            if "val_loss" in m:
                lines.append(f"Final val Dice loss: {m['val_loss']:.3f} | "
                             f"Final val mean dice score: {m.get('val_mean_dice', float('nan')):.3f}")
        lines.append(f"Best model: {self.best_model_path}")
        lines.append(f"Last checkpoint: {self.last_checkpoint_path}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Files of a run
# ---------------------------------------------------------------------------------------------


def run_files(out_dir: str | Path, model_filename: str) -> dict:
    """Paths of the fixed-name files of a run: best model, history CSV, curves PNG."""
    out_dir = Path(out_dir)
    return {
        "best": out_dir / f"{model_filename}_best.keras",
        "history": out_dir / f"{model_filename}_history.csv",
        "curves": out_dir / f"{model_filename}_curves.png",
    }


def checkpoint_path(out_dir: str | Path, model_filename: str, epoch: int) -> Path:
    return Path(out_dir) / f"{model_filename}_{int(epoch)}.keras"


def list_checkpoints(out_dir: str | Path, model_filename: str) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every ``<model_filename>_<epoch>.keras`` in ``out_dir``, oldest first."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(model_filename)}_(\d+)\.keras$")
    found = [(int(m.group(1)), p) for p in out_dir.iterdir() if (m := pattern.match(p.name))]
    return sorted(found)


def previous_run_files(out_dir: str | Path, model_filename: str) -> list[Path]:
    """Files a previous run called ``model_filename`` left in ``out_dir``."""
    files = [p for _, p in list_checkpoints(out_dir, model_filename)]
    files += [p for p in run_files(out_dir, model_filename).values() if p.exists()]
    return files


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def prepare_training_data(config: TrainConfig, *, progress: bool = True) -> TrainingData:
    """Read ``<main_dir>/train``, normalise and fit the slices, and split off validation.

    Validation comes from ``config.validation_dir`` when given (a warning names the patients
    it shares with the training folder), otherwise whole patients/series
    (``config.validation_fraction`` of the slices, chosen with ``config.seed``).

    Raises
    ------
    CtsegDataError
        If ``main_dir`` has no ``train`` folder, or the files cannot be used (see
        :func:`ctseg_helpers.prepare.dataset.load_slices`).
    """
    main_dir = Path(config.main_dir)
    split_dir = main_dir / "train"
    if not split_dir.is_dir():
        raise CtsegDataError(
            f"{main_dir}: no 'train' folder; put the training pairs in {split_dir / 'dicoms'} and "
            f"{split_dir / 'labels'}"
        )
    slices = load_slices(split_dir, config.input_shape, config.num_labels, fit_mode=config.fit_mode,
                         normalization=config.normalization, max_slices=config.max_slices, progress=progress)
    if config.validation_dir:
        val = load_slices(config.validation_dir, config.input_shape, config.num_labels, fit_mode=config.fit_mode,
                          normalization=slices.normalization, max_slices=config.max_slices, progress=progress)
        shared = sorted(set(map(str, slices.groups)) & set(map(str, val.groups)))
        if shared:
            logger.warning(
                "%s and %s share %d patient(s)/series (%s): their validation slices are near duplicates of "
                "training slices, so validation figures will look better than they are; keep each patient "
                "in one folder", split_dir, config.validation_dir, len(shared),
                ", ".join(shared[:10]) + (", ..." if len(shared) > 10 else ""))
        return TrainingData(slices, val)
    train_index, val_index = split_by_group(slices.groups, config.validation_fraction, config.seed)
    if len(val_index) == 0:
        return TrainingData(slices, None)
    return TrainingData(slices.subset(train_index), slices.subset(val_index))


def first_batch(config: TrainConfig, data: TrainingData):
    """The first training batch exactly as the network will see it (augmented when enabled).

    Returns
    -------
    (images, labels)
        ndarrays of shape (B, S, S, 1) float32 and (B, S, S) uint8.
    """
    from ctseg_helpers.prepare.dataset import make_dataset  # noqa: PLC0415
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    configure_tensorflow()
    import keras  # noqa: PLC0415

    keras.utils.set_random_seed(config.seed)  # as train_model does, so its first batch is this one
    ds = make_dataset(data.train.images, data.train.labels, config.batch_size,
                      augment=config.augmentation, shuffle=True, seed=config.seed)
    images, labels = next(iter(ds))
    return images.numpy(), labels.numpy()


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def format_elapsed(seconds: float) -> str:
    """``0 hrs 0 mins 35 secs`` (whole seconds)."""
    seconds = int(round(seconds))
    return f"{seconds // 3600} hrs {seconds % 3600 // 60} mins {seconds % 60} secs"


def status_line(epoch: int, total: int, logs: dict, elapsed_s: float) -> str:
    """The status line of the user manual, with validation figures when there are any.

    ``Completed epochs: 10/500 | Dice loss: 1.262 | Mean dice score: 0.369 | Time elapsed: 0 hrs 0 mins 35 secs``
    """
    line = (f"Completed epochs: {epoch}/{total} | Dice loss: {logs.get('loss', math.nan):.3f} | "
            f"Mean dice score: {logs.get('mean_dice', math.nan):.3f} | Time elapsed: {format_elapsed(elapsed_s)}")
    if "val_loss" in logs:
        line += (f" | Val Dice loss: {logs['val_loss']:.3f} | "
                 f"Val mean dice score: {logs.get('val_mean_dice', math.nan):.3f}")
    return line


def _model_settings(config: TrainConfig, data: TrainingData, extra: dict):
    from ctseg_helpers.model.settings import ModelSettings  # noqa: PLC0415

    return ModelSettings(
        input_shape=config.input_shape,
        num_labels=config.num_labels,
        label_names=tuple(config.label_names),
        normalization=data.train.normalization,
        fit_mode=config.fit_mode,
        pixel_spacing_mm=data.train.pixel_spacing_mm,
        extra=extra,
    )


def train_model(config: TrainConfig, data: TrainingData | None = None, *, progress: bool = True) -> TrainResult:
    """Train a U-Net as ``config`` says, printing status lines and saving checkpoints.

    Parameters
    ----------
    config : TrainConfig
    data : TrainingData, optional
        Already prepared data (the notebook passes what it previewed); read from
        ``config.main_dir`` when None.
    progress : bool
        Progress bar while reading the data.

    Returns
    -------
    TrainResult

    Raises
    ------
    CtsegSettingsError
        If ``out_dir`` holds a previous run of the same name and neither ``resume`` nor
        ``overwrite`` is set, if ``resume`` is set but that run left no checkpoint (only a best
        model or history, which a fresh start would replace), or the checkpoint to resume does
        not match the settings.
    CtsegDataError
        For unusable data (see :func:`prepare_training_data`).
    """
    out_dir = Path(config.out_dir)
    name = config.model_filename
    previous = previous_run_files(out_dir, name)
    if previous and not (config.resume or config.overwrite):
        listing = ", ".join(p.name for p in previous[:5]) + (" ..." if len(previous) > 5 else "")
        raise CtsegSettingsError(
            f"{out_dir} already holds a training run named {name!r} ({listing}); set resume=True to "
            "continue it, overwrite=True to delete it and start again, or choose another model_filename "
            "or output folder"
        )
    if config.resume and previous and not list_checkpoints(out_dir, name):
        # Starting afresh would replace the previous run's best model and history.
        raise CtsegSettingsError(
            f"{out_dir} holds files of a run named {name!r} ({', '.join(p.name for p in previous[:5])}) but "
            f"no checkpoint {name}_<epoch>.keras to resume from; set overwrite=True (instead of resume) to "
            "delete them and start again, or choose another model_filename or output folder"
        )
    if data is None:
        data = prepare_training_data(config, progress=progress)
    if config.overwrite and previous:
        for path in previous:
            path.unlink()
        logger.warning("overwrite=True: deleted %d files of the previous run %r in %s", len(previous), name, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    tf = configure_tensorflow()
    import keras  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    from ctseg_helpers.model.losses import default_metrics, get_loss  # noqa: PLC0415
    from ctseg_helpers.model.settings import load_model  # noqa: PLC0415
    from ctseg_helpers.model.unet import build_unet  # noqa: PLC0415
    from ctseg_helpers.prepare.dataset import make_dataset  # noqa: PLC0415
    from ctseg_helpers.train.system import configure_precision  # noqa: PLC0415

    policy = configure_precision(config.mixed_precision)
    keras.utils.set_random_seed(config.seed)
    files = run_files(out_dir, name)

    initial_epoch, rows, elapsed_before = 0, [], 0.0
    best_rows: list[dict] = []  # epochs that may have written the best model, redone ones included
    checkpoints = list_checkpoints(out_dir, name) if config.resume else []
    if checkpoints:
        initial_epoch, latest = checkpoints[-1]
        model, saved = load_model(latest, compile=True)
        if (saved.input_shape, saved.num_labels) != (config.input_shape, config.num_labels):
            raise CtsegSettingsError(
                f"{latest} was trained with input_shape={saved.input_shape}, num_labels={saved.num_labels} "
                f"but the settings say input_shape={config.input_shape}, num_labels={config.num_labels}; "
                "use the checkpoint's values to resume, or start a new run (another model_filename)"
            )
        saved_loss = saved.extra.get("loss")
        if saved_loss and saved_loss != config.loss:
            logger.warning("%s was trained with loss=%r; resuming keeps it (the loss=%r setting applies to new "
                           "runs only: start a new run to change the loss)", latest, saved_loss, config.loss)
        model.optimizer.learning_rate.assign(config.learning_rate)
        if files["history"].exists():
            old = pd.read_csv(files["history"])
            # Epochs after the checkpoint are trained again; the best model one of them may have
            # saved stays until the resumed run beats it.
            best_rows = old.to_dict("records") if files["best"].exists() else []
            redone = int((old["epoch"] > initial_epoch).sum())
            if redone:
                logger.warning("%s: %d epoch(s) after the checkpoint of epoch %d are trained again",
                               files["history"], redone, initial_epoch)
            old = old[old["epoch"] <= initial_epoch]
            rows = old.to_dict("records")
            if rows:
                elapsed_before = float(rows[-1].get("elapsed_s", 0.0))
        logger.info("resuming from %s (epoch %d)", latest, initial_epoch)
        print(f"Resuming from {latest.name}: {initial_epoch}/{config.epochs} epochs completed")
    else:
        if config.resume:
            logger.warning("resume=True but %s holds no checkpoint named %s_<epoch>.keras; starting from epoch 0",
                           out_dir, name)
        model = build_unet(config.input_shape, config.num_labels, **config.architecture())
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=get_loss(config.loss),
            metrics=default_metrics(config.num_labels, config.label_names),
            jit_compile="auto" if tf.config.list_physical_devices("GPU") else False,
        )
    if initial_epoch >= config.epochs:
        print(f"Nothing to do: {initial_epoch} epochs are completed already (epochs={config.epochs}); "
              "raise epochs to train further")

    has_val = data.val is not None and len(data.val) > 0
    train_ds = make_dataset(data.train.images, data.train.labels, config.batch_size,
                            augment=config.augmentation, shuffle=True, seed=config.seed)
    val_ds = (make_dataset(data.val.images, data.val.labels, config.batch_size, shuffle=False)
              if has_val else None)
    monitor_key = "val_loss" if has_val else "loss"
    previous_best = [r.get(monitor_key) for r in rows + best_rows if r.get(monitor_key) is not None]
    previous_best = [v for v in previous_best if not (isinstance(v, float) and math.isnan(v))]
    extra = {
        "loss": config.loss,
        "architecture": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.architecture().items()},
        "augmentation": config.augmentation.to_dict(),
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "dtype_policy": policy,
        "train_groups": sorted(set(str(g) for g in data.train.groups)),
        "validation_groups": sorted(set(str(g) for g in data.val.groups)) if has_val else [],
        "seed": config.seed,
    }
    monitor = _make_monitor_class()(config, data, files, extra, rows, elapsed_before, monitor_key,
                       min(previous_best) if previous_best else math.inf, initial_epoch)
    interrupted = False
    if initial_epoch < config.epochs:
        print(f"Training {name}: {data.describe()}; {model.count_params():,} parameters", flush=True)
        try:
            model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=initial_epoch,
                      callbacks=[monitor], verbose=0, shuffle=False)
        except KeyboardInterrupt:
            interrupted = True
            monitor.save_interrupt_checkpoint(model)
    history = pd.DataFrame(monitor.rows)
    curves = None
    if len(history):
        import matplotlib.pyplot as plt  # noqa: PLC0415

        from ctseg_helpers.show.training import plot_history  # noqa: PLC0415

        fig = plot_history(history, files["curves"], title=f"{name}: {data.describe()}")
        plt.close(fig)
        curves = files["curves"]
    checkpoints = list_checkpoints(out_dir, name)
    return TrainResult(
        model=model,
        out_dir=out_dir,
        best_model_path=files["best"] if files["best"].exists() else None,
        last_checkpoint_path=checkpoints[-1][1] if checkpoints else None,
        history_csv=files["history"] if files["history"].exists() else None,
        curves_png=curves,
        history=history,
        epochs_completed=monitor.completed,
        interrupted=interrupted,
        stopped_by_time=monitor.stopped_by_time,
    )


def _make_monitor_class():
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    configure_tensorflow()
    import keras  # noqa: PLC0415

    class Monitor(keras.callbacks.Callback):
        """Status lines, history CSV, best model and checkpoints, after every epoch."""

        def __init__(self, config, data, files, extra, rows, elapsed_before, monitor_key, best, initial_epoch):
            super().__init__()
            self.config, self.data, self.files, self.extra = config, data, files, extra
            self.rows = list(rows)
            self.elapsed_before = elapsed_before
            self.monitor_key = monitor_key
            self.best = best
            self.completed = initial_epoch
            self.stopped_by_time = False
            self._start = None

        def elapsed(self) -> float:
            return self.elapsed_before + (time.perf_counter() - self._start if self._start else 0.0)

        def on_train_begin(self, logs=None):
            self._start = time.perf_counter()

        def _save(self, path, epoch, overwrite=False):
            from ctseg_helpers.model.settings import save_model  # noqa: PLC0415

            settings = _model_settings(self.config, self.data, {**self.extra, "epochs_trained": epoch})
            return save_model(self.model, path, settings, overwrite=overwrite)

        def on_epoch_end(self, epoch, logs=None):
            import pandas as pd  # noqa: PLC0415

            logs = {k: float(v) for k, v in (logs or {}).items()}
            done = epoch + 1
            self.completed = done
            elapsed = self.elapsed()
            row = {"epoch": done, "elapsed_s": round(elapsed, 3),
                   "learning_rate": float(f"{float(self.model.optimizer.learning_rate.numpy()):.6g}"), **logs}
            self.rows.append(row)
            tmp = self.files["history"].with_suffix(".csv.tmp")
            pd.DataFrame(self.rows).to_csv(tmp, index=False)
            tmp.replace(self.files["history"])
            value = logs.get(self.monitor_key, math.nan)
            if not math.isnan(value) and value < self.best:
                self.best = value
                self._save(self.files["best"], done, overwrite=True)
            last = done == self.config.epochs
            out_of_time = self.config.max_minutes is not None and elapsed - self.elapsed_before >= 60 * self.config.max_minutes
            if done % self.config.print_checkpoint == 0 or last or out_of_time:
                print(status_line(done, self.config.epochs, logs, elapsed), flush=True)
            if done % self.config.save_checkpoint == 0 or last or out_of_time:
                self._save(checkpoint_path(self.files["best"].parent, self.config.model_filename, done), done,
                           overwrite=True)
                print(f"Checkpoint -> Model saved at {done}/{self.config.epochs} epochs", flush=True)
            if out_of_time and not last:
                self.stopped_by_time = True
                self.model.stop_training = True
                print(f"Stopped after {done} epochs: the time limit of {self.config.max_minutes:g} minutes "
                      "was reached (resume=True continues)", flush=True)

        def save_interrupt_checkpoint(self, model):
            self.set_model(model)
            path = checkpoint_path(self.files["best"].parent, self.config.model_filename, self.completed)
            if self.completed == 0:
                print("Interrupted before the first epoch ended; nothing was saved", flush=True)
            elif path.exists():
                print(f"Interrupted; the checkpoint of epoch {self.completed} is saved already: {path.name}",
                      flush=True)
            else:
                self._save(path, self.completed)
                print(f"Interrupted -> Checkpoint -> Model saved at {self.completed}/{self.config.epochs} epochs",
                      flush=True)

    return Monitor

