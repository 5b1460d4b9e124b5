"""The training loop: settings, data, model, checkpoints, history, resume, interrupt.

One entry point, :func:`train_model`, serves the notebook, the ``ctseg train`` command and
the demo. Everything a run writes goes to ``out_dir``:

``<model_filename>_<epoch>.keras``
    a checkpoint every ``save_checkpoint`` epochs, at the last epoch and on an interrupt
    (model, optimizer state and ctseg settings; resume starts from the newest one);
``<model_filename>_best.keras``
    the model with the highest validation Dice so far, with the post-processing chosen on the
    validation slices; without validation data, the model after the latest epoch;
``<model_filename>_last.keras``
    the state after the latest epoch, replaced atomically after every epoch, so a run killed
    outright (``kill -9``, a power cut) resumes losing at most the epoch it was in;
``<model_filename>_history.csv``
    every epoch's losses and metrics, written after each epoch;
``<model_filename>_curves.png``
    the training curves, drawn at the end.

A new run refuses to start in a folder holding a previous run of the same name unless
``resume=True`` (continue it) or ``overwrite=True`` (delete that run's files first). Every file
a run writes is recorded in ``out_dir/.ctseg-written.json`` (:mod:`ctseg_helpers.io.written`),
and ``overwrite`` deletes only files recorded there and unchanged since: a file of that name
that ctseg did not write, or that was changed afterwards, stops the run before anything is
deleted. ``out_dir`` may not be, or be inside, a folder the training reads.

The default recipe (``fit_mode="patch"``) follows nnU-Net: a plan from the data
(:mod:`ctseg_helpers.prepare.plan`) sets the pixel spacing, patch size, depth, batch size and
normalisation; slices are resampled to the planned spacing and the network trains on random
patches, a third of them centred on an ROI; an epoch is a fixed number of batches; the learning
rate follows a poly schedule with warm-up, stretched to ``max_minutes`` when one is set.
``folds=K`` trains K models on patient-wise folds and writes an ensemble file
(:func:`train_folds`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.label_names import check_label_names
from ctseg_helpers.io.written import check_outside_inputs, check_replaceable, forget_written, record_written
from ctseg_helpers.model.loss_names import LOSS_NAMES, check_loss_options, dice_column, loss_label
from ctseg_helpers.prepare.augment import AugmentConfig
from ctseg_helpers.prepare.dataset import (
    FIT_MODES,
    SliceSet,
    load_slices,
    native_slices,
    read_pairs,
    split_by_group,
)
from ctseg_helpers.prepare.normalize import Normalization

logger = logging.getLogger(__name__)

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Training fit modes: native-resolution patches (default) or whole slices fitted to the input.
TRAIN_FIT_MODES = ("patch",) + FIT_MODES
#: Learning-rate schedules.
LR_SCHEDULES = ("poly", "cosine", "constant")
#: What ``postprocessing="auto"`` / ``"none"`` do: choose it on the validation slices, or none.
POSTPROCESSING_MODES = ("auto", "none")
#: Settings a plan (or the classic defaults) fills in when left None.
_PLANNED = ("input_shape", "batch_size", "levels", "batches_per_epoch", "warmup_epochs")


def _cli(help: str, **spelling) -> dict:
    """Field metadata: how ``ctseg train`` offers the setting (keys: :mod:`ctseg_helpers.cli.options`)."""
    return {"cli": {"help": help, **spelling}}


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run.

    Each field's metadata says how ``ctseg train`` offers it (option, help text, converter; see
    :mod:`ctseg_helpers.cli.options`), with the field's default as the option's default, and
    the parameters cell of ``notebooks/train.py`` is tested to have the same defaults: a new
    setting is one field here (and its line in the notebook).

    Attributes
    ----------
    main_dir : path
        Data folder; training pairs are read from ``<main_dir>/train`` (``dicoms/``, ``labels/``).
    model_filename : str
        Stem of every file the run writes (letters, digits, ``._-``).
    out_dir : path
        Folder for checkpoints, best model, history and curves.
    input_shape : int or None
        Side of the square network input, pixels: the training patch (``fit_mode="patch"``) or
        the side every slice is fitted to (``"resize"`` / ``"pad"``). None: planned from the
        data (patch mode) or 256.
    num_labels : int
        Number of ROIs (background excluded).
    label_names : tuple of str
        One name per ROI (label 1 first), or empty.
    epochs : int
        Total epochs (on resume: the total including the epochs already done).
    batch_size : int or None
        None: planned (patch mode) or 8.
    learning_rate : float
        Peak Adam learning rate.
    lr_schedule : {"poly", "cosine", "constant"}
        Decay of the learning rate over the run (nnU-Net: poly, exponent 0.9), after a linear
        warm-up of ``warmup_epochs``. With ``max_minutes`` the schedule runs on whichever of
        epochs and time is further along, so a time-limited run still ends at a low rate.
    warmup_epochs : int or None
        Epochs of linear warm-up (None: 5 % of ``epochs``).
    batches_per_epoch : int or None
        Patch batches per epoch (patch mode); None: planned. In resize/pad mode an epoch is one
        pass over the slices.
    foreground_fraction : float or None
        Share of each batch centred on an ROI pixel (patch mode); None: planned (one third).
    target_spacing_mm : (float, float) or None
        Pixel spacing to train at (patch mode); None: planned (the median of the slices).
    postprocessing : {"auto", "none"}
        ``"auto"``: after training, choose per ROI (keep the largest region, fill holes) on the
        validation slices, keeping only what raises their Dice; without validation slices, take
        the steps the training labels vouch for (``postprocessing_from_labels``: an ROI that is
        one region on nearly every training slice keeps only its largest region...). Stored with
        the model.
    loss_options : dict
        Options of the loss (``class_weights`` for weighted CE, ``gamma`` for focal, ``alpha`` /
        ``beta`` for Tversky, ``dice_weight`` / ``ce_weight`` for Dice+CE).
    instance_norm : bool
        Instance normalisation in place of batch normalisation.
    deep_supervision : bool
        Train with the loss applied to the coarser decoder levels too (nnU-Net's deep
        supervision, weights halving per level; needs levels >= 3); the saved model segments
        with its full-resolution output only.
    folds : int
        1: one model. K > 1: K models on patient-wise folds and an ensemble file (train_folds).
    devices : str
        ``"auto"`` (all GPUs when there are several), ``"cpu"``, ``"gpu"`` or ``"cpu:N"``; see
        :mod:`ctseg_helpers.train.distribute`.
    allow_missing_labels : bool
        Train even when an ROI value 1..num_labels appears in no training label (refused by
        default: the network could not learn it, and training would head for a Dice of 0).
    print_checkpoint : int
        Print a status line every this many epochs (and after the last).
    save_checkpoint : int
        Save ``<model_filename>_<epoch>.keras`` every this many epochs (and after the last).
    augmentation : AugmentConfig
        On-the-fly augmentation; ``AugmentConfig(enabled=False)`` turns it off.
    loss : {"dice_ce", "dice", "focal", "weighted_ce", "tversky"}
    levels, filters, base_filters, filter_multiplier, pool_sizes, kernel_sizes, batch_norm, dropout, activation
        U-Net architecture, see :func:`ctseg_helpers.model.unet.build_unet`.
    fit_mode : {"patch", "resize", "pad"}
        ``"patch"``: native-resolution patches at the planned spacing (default);
        ``"resize"`` / ``"pad"``: whole slices fitted to ``input_shape``.
    validation_fraction : float or None
        Share of slices, taken as whole patients/series, kept for validation (0 = none).
        None (default) = 0.2 when at least :data:`FEW_TRAINING_PATIENTS` patients/series stay
        for training once it is set aside, else 0: with fewer patients, one more patient in
        training is worth more than a validation score (every epoch's model is then judged
        on nothing, the last one is kept, and post-processing is not chosen). Ignored when
        ``validation_dir`` is given.
    validation_dir : path, optional
        A folder with ``dicoms/`` and ``labels/`` to validate on instead.
    seed : int
        Seeds the split, weight initialisation, shuffling and augmentation.
    resume : bool
        Continue the newest checkpoint in ``out_dir`` (refused when a previous run of this name
        left files but no checkpoint: its best model and history would be replaced).
    overwrite : bool
        Delete a previous run of the same name in ``out_dir`` before starting: only files that
        ctseg wrote and nobody changed since (any other file of that name is refused).
    max_slices : int, optional
        Read only this many pairs (smoke runs).
    max_minutes : float, optional
        Stop (with a checkpoint) after the epoch that passes this much training time.
    mixed_precision : bool or "auto"
        float16 compute on a GPU, bfloat16 on a CPU with AMX/AVX-512-BF16; "auto" uses it
        where it pays (see :func:`ctseg_helpers.train.system.configure_precision`).
    normalization : Normalization, optional
        Default: from the DICOM Modality tag.

    Raises
    ------
    CtsegSettingsError
        On construction, for any setting that could not work (unknown loss or fit mode, an
        ``input_shape`` the pooling levels cannot divide, per-level lists of the wrong length...),
        so a mistake is reported before any data is read.
    """

    main_dir: str | Path = field(
        metadata=_cli("folder holding train/dicoms and train/labels", flags="data_dir", metavar="DATA_DIR")
    )
    out_dir: str | Path = field(
        default="trained_model", metadata=_cli("output folder (default: %(default)s)", flags="--out")
    )
    model_filename: str = field(
        default="unet", metadata=_cli("model file name stem (default: %(default)s)", flags="--name")
    )
    epochs: int = field(default=100, metadata=_cli("total epochs (default: %(default)s)", type="positive_int"))
    input_shape: int | None = field(
        default=None,
        metadata=_cli(
            "side of the square network input (training patch) in pixels (default: planned)", type="positive_int"
        ),
    )
    num_labels: int = field(
        default=1, metadata=_cli("number of ROIs, background excluded", type="positive_int", required=True)
    )
    label_names: tuple[str, ...] = field(
        default=(),
        metadata=_cli(
            "ROI names separated by commas, label 1 first (a first name 'background' followed by one name per ROI "
            "is dropped)",
            type="comma_separated",
        ),
    )
    batch_size: int | None = field(default=None, metadata=_cli("(default: planned)", type="positive_int"))
    learning_rate: float = field(
        default=1e-3, metadata=_cli("peak Adam learning rate (default: %(default)s)", type="float")
    )
    lr_schedule: str = field(
        default="poly",
        metadata=_cli("learning-rate decay after the warm-up (default: %(default)s)", choices=LR_SCHEDULES),
    )
    warmup_epochs: int | None = field(
        default=None, metadata=_cli("linear warm-up epochs (default: 5%% of epochs)", type="int")
    )
    batches_per_epoch: int | None = field(
        default=None, metadata=_cli("patch batches per epoch (default: planned, 50 on a CPU)", type="positive_int")
    )
    foreground_fraction: float | None = field(
        default=None, metadata=_cli("share of each batch centred on an ROI pixel (default: planned, 1/3)", type="float")
    )
    target_spacing_mm: tuple[float, float] | None = field(
        default=None,
        metadata=_cli(
            "pixel spacing to train at, mm (default: planned, the median of the slices)",
            flags="--target-spacing",
            type="spacing_mm",
            metavar="MM[,MM]",
        ),
    )
    postprocessing: str = field(
        default="auto",
        metadata=_cli(
            "choose largest-region / hole filling per ROI on the validation slices, or from the shapes of the "
            "training labels when there are none (default: auto)",
            choices=POSTPROCESSING_MODES,
        ),
    )
    folds: int = field(
        default=1,
        metadata=_cli("train K models on patient-wise folds and an ensemble of them (default: 1)", type="positive_int"),
    )
    print_checkpoint: int = field(
        default=10, metadata=_cli("print a status line every N epochs (default: %(default)s)", type="positive_int")
    )
    save_checkpoint: int = field(
        default=50, metadata=_cli("save a checkpoint every N epochs (default: %(default)s)", type="positive_int")
    )
    loss: str = field(default="dice_ce", metadata=_cli("(default: %(default)s)", choices=LOSS_NAMES))
    loss_options: dict = field(
        default_factory=dict,
        metadata={
            "cli": (
                {
                    "help": 'loss options as JSON, e.g. \'{"gamma": 1.5}\' (focal), \'{"alpha": 0.3, "beta": 0.7}\' '
                    '(tversky), \'{"dice_weight": 1, "ce_weight": 1}\' (dice_ce)',
                    "type": "json_object",
                },
                {
                    "help": "per-class weights (background first) for weighted_ce, focal or dice_ce",
                    "key": "class_weights",
                    "flags": "--class-weights",
                    "type": "float_list",
                    "metavar": "W0,W1,...",
                },
            )
        },
    )
    augmentation: AugmentConfig = field(
        default_factory=AugmentConfig,
        metadata={
            "cli": (
                {"help": "turn all augmentation off", "key": "enabled", "negate": True, "flags": "--no-augment"},
                {
                    "help": 'augmentation probabilities/strengths as JSON, e.g. \'{"p_flip": 0, "p_rot90": 0}\' for '
                    "left/right ROIs (names as in train.ipynb's augment_options)",
                    "flags": "--augment-options",
                    "type": "json_object",
                },
            )
        },
    )
    levels: int | None = field(
        default=None, metadata=_cli("U-Net pooling levels (default: planned)", type="positive_int")
    )
    base_filters: int = field(
        default=16, metadata=_cli("filters of level 1 (default: %(default)s)", type="positive_int")
    )
    filter_multiplier: float = field(
        default=2.0, metadata=_cli("filter growth per level (default: %(default)s)", type="float")
    )
    filters: tuple[int, ...] | None = field(
        default=None, metadata=_cli("filters per level and bottleneck, e.g. 16,32,64,128,256", type="int_list")
    )
    pool_sizes: int | tuple[int, ...] = field(
        default=2, metadata=_cli("pool size per level, e.g. 2,2,2,2", type="per_level_int")
    )
    kernel_sizes: int | tuple[int, ...] = field(
        default=3, metadata=_cli("kernel size per level and bottleneck", type="per_level_int")
    )
    dropout: float | tuple[float, ...] = field(
        default=0.0, metadata=_cli("dropout rate, one value or one per level and bottleneck", type="per_level_float")
    )
    batch_norm: bool = field(default=True, metadata=_cli("leave out batch normalisation"))
    instance_norm: bool = field(default=False, metadata=_cli("instance normalisation in place of batch norm"))
    deep_supervision: bool = field(
        default=False,
        metadata=_cli("also apply the loss to the coarser decoder levels' outputs (nnU-Net's deep supervision)"),
    )
    activation: str = field(default="relu", metadata=_cli("(default: %(default)s)"))
    fit_mode: str = field(
        default="patch",
        metadata=_cli(
            "patch: random patches at the planned spacing; resize/pad: whole slices fitted to the input "
            "(default: %(default)s)",
            choices=TRAIN_FIT_MODES,
        ),
    )
    validation_fraction: float | None = field(
        default=None,
        metadata=_cli(
            "share of slices, as whole patients/series, for validation (default: 0.2 when at least 3 "
            "patients/series stay for training, else none: train on all)",
            type="float",
        ),
    )
    validation_dir: str | Path | None = field(
        default=None, metadata=_cli("folder with dicoms/ and labels/ to validate on instead")
    )
    seed: int = field(default=0, metadata=_cli("(default: %(default)s)", type="int"))
    resume: bool = field(default=False, metadata=_cli("continue from the newest checkpoint in --out"))
    overwrite: bool = field(
        default=False,
        metadata=_cli("replace a previous run of --name in --out (only files ctseg wrote and nobody changed since)"),
    )
    max_slices: int | None = field(
        default=None, metadata=_cli("read only this many pairs (smoke runs)", type="positive_int")
    )
    allow_missing_labels: bool = field(
        default=False, metadata=_cli("train even when an ROI value 1..num_labels appears in no training label")
    )
    max_minutes: float | None = field(
        default=None, metadata=_cli("stop with a checkpoint after this much training time", type="float")
    )
    mixed_precision: bool | str = field(
        default="auto",
        metadata=_cli(
            "reduced precision: float16 on a GPU, bfloat16 on a CPU with AMX; auto uses it where it pays "
            "(default: auto)",
            values={"auto": "auto", "on": True, "off": False},
        ),
    )
    devices: str = field(
        default="auto",
        metadata=_cli("auto (all GPUs when several), cpu, gpu, or cpu:N (N logical CPU devices, for tests)"),
    )
    normalization: Normalization | None = None

    def __post_init__(self):
        for name in ("label_names", "filters", "pool_sizes", "kernel_sizes", "dropout", "target_spacing_mm"):
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
        for name in (
            "input_shape",
            "num_labels",
            "epochs",
            "batch_size",
            "print_checkpoint",
            "save_checkpoint",
            "levels",
            "batches_per_epoch",
            "folds",
            "warmup_epochs",
        ):
            value = getattr(self, name)
            if value is None and name in _PLANNED:
                continue
            lowest = 0 if name == "warmup_epochs" else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
                raise CtsegSettingsError(f"{name} must be a positive whole number, got {value!r}")
        if not self.learning_rate > 0:
            raise CtsegSettingsError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.label_names:  # the manual's list with "background" first is accepted too
            object.__setattr__(
                self,
                "label_names",
                check_label_names(
                    self.label_names, self.num_labels, setting="label_names", counted=f"num_labels={self.num_labels}"
                ),
            )
        if self.resume and self.overwrite:
            raise CtsegSettingsError(
                "resume and overwrite exclude each other: resume continues the previous "
                "run, overwrite deletes it; set only one"
            )
        # Checked here, not after minutes of reading data.
        object.__setattr__(self, "loss_options", check_loss_options(self.loss, self.loss_options))
        if self.fit_mode not in TRAIN_FIT_MODES:
            raise CtsegSettingsError(f"fit_mode must be one of {TRAIN_FIT_MODES}, got {self.fit_mode!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise CtsegSettingsError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.postprocessing not in POSTPROCESSING_MODES:
            raise CtsegSettingsError(f"postprocessing must be 'auto' or 'none', got {self.postprocessing!r}")
        if self.foreground_fraction is not None and not 0.0 <= self.foreground_fraction <= 1.0:
            raise CtsegSettingsError(f"foreground_fraction must be within 0..1, got {self.foreground_fraction}")
        if self.target_spacing_mm is not None and (
            len(self.target_spacing_mm) != 2 or not all(float(v) > 0 for v in self.target_spacing_mm)
        ):
            raise CtsegSettingsError(
                f"target_spacing_mm must be two positive numbers (row, col) in mm, got {self.target_spacing_mm!r}"
            )
        if self.mixed_precision not in (True, False, "auto"):
            raise CtsegSettingsError(f"mixed_precision must be True, False or 'auto', got {self.mixed_precision!r}")
        from ctseg_helpers.train.distribute import parse_devices  # noqa: PLC0415 - no TensorFlow import

        parse_devices(self.devices)
        if self.folds > 1 and self.validation_dir:
            raise CtsegSettingsError(
                "folds and validation_dir exclude each other: with folds every patient is "
                "validated in turn; give one of them"
            )
        if self.validation_fraction is not None and not 0.0 <= self.validation_fraction < 1.0:
            raise CtsegSettingsError(f"validation_fraction must be within 0 <= f < 1, got {self.validation_fraction}")
        # Before minutes of reading data: can the pooling levels divide the input side?
        from ctseg_helpers.model.unet import _per_level, check_input_size  # noqa: PLC0415 - no Keras import

        if self.levels is not None:
            if self.input_shape is not None:
                check_input_size(self.input_shape, _per_level(self.pool_sizes, self.levels, "pool_sizes"))
            for name in ("filters", "kernel_sizes", "dropout"):
                if getattr(self, name) is not None:
                    _per_level(getattr(self, name), self.levels + 1, name, float)
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise CtsegSettingsError(f"max_minutes must be positive (or None for no limit), got {self.max_minutes}")

    @property
    def loss_label(self) -> str:
        """What status lines and plots call the loss (``"Dice+CE loss"``)."""
        return loss_label(self.loss)

    def resolved(self, plan=None) -> TrainConfig:
        """This configuration with every planned setting (None) filled in.

        In patch mode from ``plan`` (a :class:`~ctseg_helpers.prepare.plan.TrainingPlan` already
        carrying the user's explicit settings); in resize/pad mode from the classic defaults
        (input 256, 4 levels, batch 8).
        """
        if plan is not None:
            values = dict(
                input_shape=plan.patch_size,
                levels=plan.levels,
                batch_size=plan.batch_size,
                batches_per_epoch=plan.batches_per_epoch,
                foreground_fraction=plan.foreground_fraction,
                target_spacing_mm=plan.target_spacing_mm,
                normalization=plan.normalization,
            )
        else:
            values = dict(input_shape=self.input_shape or 256, levels=self.levels or 4, batch_size=self.batch_size or 8)
        warmup = self.warmup_epochs if self.warmup_epochs is not None else int(round(0.05 * self.epochs))
        return replace(self, **values, warmup_epochs=warmup)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["main_dir"] = str(self.main_dir)
        data["out_dir"] = str(self.out_dir)
        data["validation_dir"] = str(self.validation_dir) if self.validation_dir else None
        data["normalization"] = self.normalization.to_dict() if self.normalization else None
        return data

    def architecture(self) -> dict:
        """The :func:`build_unet` keyword arguments of this configuration."""
        return dict(
            levels=self.levels,
            filters=self.filters,
            base_filters=self.base_filters,
            filter_multiplier=self.filter_multiplier,
            pool_sizes=self.pool_sizes,
            kernel_sizes=self.kernel_sizes,
            batch_norm=self.batch_norm,
            dropout=self.dropout,
            activation=self.activation,
            instance_norm=self.instance_norm,
            deep_supervision=self.deep_supervision,
        )


@dataclass
class TrainingData:
    """Training slices, validation slices when there are any, and the plan they were prepared by.

    In patch mode (``plan`` set) the slices are at the plan's spacing, each at its own size
    (:attr:`SliceSet.shapes`); in resize/pad mode they are fitted to the network input.
    """

    train: SliceSet
    val: SliceSet | None = None
    plan: object = None

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
    model : keras.Model or None
        The model after the last completed epoch (None for a K-fold run).
    out_dir : Path
    best_model_path, last_checkpoint_path, history_csv, curves_png : Path or None
    history : pandas.DataFrame
        One row per epoch (all runs of a resumed training).
    epochs_completed : int
    interrupted : bool
        True when Ctrl-C / a kernel interrupt stopped the run (a checkpoint was saved).
    stopped_by_time : bool
        True when ``max_minutes`` ended the run early.
    loss_label : str
        What the loss is called (``"Dice+CE loss"``).
    validation_dice : dict of str to float
        Dice per ROI of the best model on the validation slices, before and after the chosen
        post-processing (keys ``<roi>`` and ``<roi> (post-processed)``); empty without validation.
    postprocessing : dict or None
        The post-processing stored with the best model.
    ensemble_path : Path or None
        The ensemble file of a K-fold run.
    fold_results : list of TrainResult
        One per fold of a K-fold run.
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
    loss_label: str = "loss"
    validation_dice: dict = field(default_factory=dict)
    postprocessing: dict | None = None
    ensemble_path: Path | None = None
    fold_results: list = field(default_factory=list)
    validation_predictions: list = field(default_factory=list, repr=False)
    validation_truths: list = field(default_factory=list, repr=False)

    @property
    def model_path(self) -> Path | None:
        """What to segment with: the ensemble file of a K-fold run, else the best model."""
        return self.ensemble_path or self.best_model_path

    @property
    def final_metrics(self) -> dict:
        """Last epoch's losses and metrics (empty before any epoch)."""
        if self.history is None or len(self.history) == 0:
            return {}
        return {k: float(v) for k, v in self.history.iloc[-1].items() if k not in ("epoch",)}

    def __str__(self) -> str:
        if self.fold_results:
            lines = [f"{len(self.fold_results)} fold models, ensemble: {self.ensemble_path}"]
            for k, fold in enumerate(self.fold_results):
                dice = ", ".join(f"{name} {value:.3f}" for name, value in fold.validation_dice.items())
                lines.append(f"  fold {k}: {fold.epochs_completed} epochs, validation Dice {dice or 'n/a'}")
            if self.validation_dice:
                lines.append("Out-of-fold Dice: " + ", ".join(f"{n} {v:.3f}" for n, v in self.validation_dice.items()))
            return "\n".join(lines)
        m = self.final_metrics
        label = self.loss_label
        lines = [f"Epochs completed: {self.epochs_completed}" + (" (interrupted)" if self.interrupted else "")]
        if m:
            lines.append(
                f"Final {label}: {m.get('loss', float('nan')):.3f} | "
                f"Final mean dice score: {m.get('mean_dice', float('nan')):.3f}"
            )
            if "val_mean_dice" in m:
                val_loss = f"Final val {label}: {m['val_loss']:.3f} | " if "val_loss" in m else ""
                lines.append(f"{val_loss}Final val mean dice score: {m['val_mean_dice']:.3f}")
        if self.validation_dice:
            lines.append(
                "Validation Dice of the best model: "
                + ", ".join(f"{n} {v:.3f}" for n, v in self.validation_dice.items())
            )
        if self.postprocessing is not None:
            from ctseg_helpers.segment.postprocess import PostProcessing  # noqa: PLC0415

            lines.append(f"Post-processing: {PostProcessing.from_dict(self.postprocessing).describe()}")
        lines.append(f"Best model: {self.best_model_path}")
        lines.append(f"Last checkpoint: {self.last_checkpoint_path}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Files of a run
# ---------------------------------------------------------------------------------------------


def run_files(out_dir: str | Path, model_filename: str) -> dict:
    """Paths of the fixed-name files of a run: best model, last state, history CSV, curves PNG."""
    out_dir = Path(out_dir)
    return {
        "best": out_dir / f"{model_filename}_best.keras",
        "last": out_dir / f"{model_filename}_last.keras",
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


def resume_points(out_dir: str | Path, model_filename: str) -> list[tuple[int, Path]]:
    """``(epoch, path)`` a run can resume from, oldest first: the numbered checkpoints and the
    ``<model_filename>_last.keras`` state written (atomically) after every epoch, so a run
    killed outright loses at most the epoch it was in."""
    from ctseg_helpers.model.settings import read_settings  # noqa: PLC0415 - no TensorFlow

    points = list_checkpoints(out_dir, model_filename)
    last = run_files(out_dir, model_filename)["last"]
    if last.is_file():
        try:
            epoch = int(read_settings(last).extra.get("epochs_trained", 0))
        except CtsegDataError as exc:  # a damaged last state: the numbered checkpoints remain
            logger.warning("%s cannot be resumed from (%s); using the numbered checkpoints", last, exc)
        else:
            points.append((epoch, last))
    # on a tie the numbered checkpoint is named (the same state)
    return sorted(points, key=lambda item: (item[0], item[1] != last))


def previous_run_files(out_dir: str | Path, model_filename: str) -> list[Path]:
    """Files a previous run called ``model_filename`` left in ``out_dir``."""
    files = [p for _, p in list_checkpoints(out_dir, model_filename)]
    files += [p for p in run_files(out_dir, model_filename).values() if p.exists()]
    return files


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def plan_device(devices: str) -> str:
    """``"gpu"`` when training will run on GPUs (``devices`` and what TensorFlow sees), else ``"cpu"``."""
    if str(devices).strip().lower().startswith("cpu"):
        return "cpu"
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    return "gpu" if configure_tensorflow().config.list_physical_devices("GPU") else "cpu"


def plan_training(config: TrainConfig, raw) -> object:
    """The :class:`~ctseg_helpers.prepare.plan.TrainingPlan` for ``raw`` pairs, with the user's
    explicit settings (those not None in ``config``) in place of the planned ones."""
    from ctseg_helpers.prepare.plan import fingerprint, make_plan  # noqa: PLC0415

    fp = fingerprint(
        raw.images,
        raw.labels,
        raw.spacings_mm,
        modality=raw.modality(),
        groups=raw.groups,
        num_labels=config.num_labels,
    )
    plan = make_plan(fp, device=plan_device(config.devices))
    return plan.with_overrides(
        target_spacing_mm=config.target_spacing_mm,
        patch_size=config.input_shape,
        levels=config.levels,
        batch_size=config.batch_size,
        batches_per_epoch=config.batches_per_epoch,
        foreground_fraction=config.foreground_fraction,
        normalization=config.normalization,
    )


def check_labels_present(labels, num_labels: int, source, *, allow: bool = False) -> None:
    """Refuse training data in which an ROI value never appears (unless ``allow``).

    Raises
    ------
    CtsegDataError
        Naming the folder, the missing values and what to do.
    """
    seen = set()
    for label in labels:
        seen.update(int(v) for v in np.unique(label))
        if len(seen) > num_labels:
            break
    missing = [k for k in range(1, num_labels + 1) if k not in seen]
    if not missing:
        return
    text = (
        f"{source}: label value(s) {', '.join(map(str, missing))} appear in no training label, but "
        f"num_labels={num_labels} asks the network to learn 1..{num_labels}; it could not learn them and "
        "their Dice would stay 0. Check num_labels and the label files (all-zero or JPEG-damaged labels; "
        "`ctseg check-data` lists what each file holds)"
    )
    if not allow:
        raise CtsegDataError(text + ", or set allow_missing_labels=True (--allow-missing-labels) if you mean it")
    logger.warning("%s; training anyway (allow_missing_labels=True)", text)


def check_previous_run(config: TrainConfig) -> list[Path]:
    """The files a previous run of this name left in ``out_dir``, after checking the settings say
    what to do with them (called before any data is read, so a rerun fails at once).

    Raises
    ------
    CtsegSettingsError
        If ``out_dir`` is, or is inside, a folder the training reads; if such files exist and
        neither ``resume`` nor ``overwrite`` is set; with ``overwrite``, if one of them was not
        written by ctseg or was changed since; if ``resume`` is
        set but there is nothing to resume from (a fresh start would replace the best model and
        history); for K folds, if the ensemble file exists and neither is set.
    """
    out_dir, name = Path(config.out_dir), config.model_filename
    # the run's PNG and CSV in a labels/ or dicoms/ folder would be read as data next time
    check_outside_inputs(
        out_dir, {"training data": Path(config.main_dir) / "train", "validation data": config.validation_dir}
    )
    if config.folds > 1:
        from ctseg_helpers.segment.ensemble import ENSEMBLE_SUFFIX  # noqa: PLC0415

        ensemble_path = out_dir / f"{name}{ENSEMBLE_SUFFIX}"
        if ensemble_path.exists() and not (config.overwrite or config.resume):
            raise CtsegSettingsError(
                f"{ensemble_path} exists already; set overwrite=True to train the folds again, "
                "resume=True to continue them, or choose another model_filename"
            )
        if config.overwrite:  # every fold's files too, before hours of training the first folds
            folds = [p for k in range(config.folds) for p in previous_run_files(out_dir, f"{name}_fold{k}")]
            _check_replaceable_run([ensemble_path, *folds] if ensemble_path.exists() else folds)
        return []
    previous = previous_run_files(out_dir, name)
    if previous and not (config.resume or config.overwrite):
        listing = ", ".join(p.name for p in previous[:5]) + (" ..." if len(previous) > 5 else "")
        raise CtsegSettingsError(
            f"{out_dir} already holds a training run named {name!r} ({listing}); set resume=True to "
            "continue it, overwrite=True to delete it and start again, or choose another model_filename "
            "or output folder"
        )
    if config.resume and previous and not resume_points(out_dir, name):
        # Starting afresh would replace the previous run's best model and history.
        raise CtsegSettingsError(
            f"{out_dir} holds files of a run named {name!r} ({', '.join(p.name for p in previous[:5])}) but "
            f"no checkpoint {name}_<epoch>.keras to resume from; set overwrite=True (instead of resume) to "
            "delete them and start again, or choose another model_filename or output folder"
        )
    if config.overwrite:
        _check_replaceable_run(previous)
    return previous


def _check_replaceable_run(files) -> None:
    """Check that ``overwrite`` may delete a previous run's files: each written by ctseg, unchanged.

    Raises
    ------
    CtsegSettingsError
        Naming the first file ctseg did not write or that was changed since; nothing is deleted.
    """
    for path in files:
        check_replaceable(path, True, instead="choose another model_filename or output folder")


def _delete_previous_run(files, out_dir: Path, name: str) -> None:
    """Delete a previous run's files (``overwrite``), after checking every one of them again."""
    _check_replaceable_run(files)  # reading the data may have taken minutes
    for path in files:
        path.unlink()
    forget_written(*files)
    logger.warning("overwrite=True: deleted %d files of the previous run %r in %s", len(files), name, out_dir)


def _train_dir(config: TrainConfig) -> Path:
    main_dir = Path(config.main_dir)
    split_dir = main_dir / "train"
    if not split_dir.is_dir():
        raise CtsegDataError(
            f"{main_dir}: no 'train' folder; put the training pairs in {split_dir / 'dicoms'} and "
            f"{split_dir / 'labels'}"
        )
    return split_dir


def _warn_shared_patients(train_groups, val_groups, split_dir, validation_dir) -> None:
    shared = sorted(set(map(str, train_groups)) & set(map(str, val_groups)))
    if shared:
        logger.warning(
            "%s and %s share %d patient(s)/series (%s): their validation slices are near duplicates of "
            "training slices, so validation figures will look better than they are; keep each patient "
            "in one folder",
            split_dir,
            validation_dir,
            len(shared),
            ", ".join(shared[:10]) + (", ..." if len(shared) > 10 else ""),
        )


def prepare_training_data(config: TrainConfig, *, progress: bool = True, raw=None) -> TrainingData:
    """Read ``<main_dir>/train``, plan, normalise and resample (or fit) the slices, split off validation.

    Validation comes from ``config.validation_dir`` when given (a warning names the patients
    it shares with the training folder), otherwise whole patients/series
    (``config.validation_fraction`` of the slices, chosen with ``config.seed``).

    Parameters
    ----------
    config : TrainConfig
    progress : bool
    raw : RawPairs, optional
        Pairs already read (K-fold training reads them once).

    Raises
    ------
    CtsegDataError
        If ``main_dir`` has no ``train`` folder, or the files cannot be used (see
        :func:`ctseg_helpers.prepare.dataset.read_pairs`).
    """
    check_previous_run(config)  # a rerun with the same settings fails before minutes of reading
    split_dir = _train_dir(config)
    if config.fit_mode != "patch":
        resolved = config.resolved()
        slices = load_slices(
            split_dir,
            resolved.input_shape,
            config.num_labels,
            fit_mode=config.fit_mode,
            normalization=config.normalization,
            max_slices=config.max_slices,
            progress=progress,
        )
        check_labels_present(slices.labels, config.num_labels, split_dir, allow=config.allow_missing_labels)
        if config.validation_dir:
            val = load_slices(
                config.validation_dir,
                resolved.input_shape,
                config.num_labels,
                fit_mode=config.fit_mode,
                normalization=slices.normalization,
                max_slices=config.max_slices,
                progress=progress,
            )
            _warn_shared_patients(slices.groups, val.groups, split_dir, config.validation_dir)
            return TrainingData(slices, val)
        train_index, val_index = _split_validation(slices.groups, config)
        if len(val_index) == 0:
            return TrainingData(slices, None)
        return TrainingData(slices.subset(train_index), slices.subset(val_index))

    if raw is None:
        raw = read_pairs(split_dir, config.num_labels, max_slices=config.max_slices, progress=progress)
    check_labels_present(raw.labels, config.num_labels, split_dir, allow=config.allow_missing_labels)
    plan = plan_training(config, raw)
    make = lambda pairs: native_slices(pairs, config.num_labels, plan.normalization, plan.target_spacing_mm)  # noqa: E731
    if config.validation_dir:
        val_raw = read_pairs(config.validation_dir, config.num_labels, max_slices=config.max_slices, progress=progress)
        _warn_shared_patients(raw.groups, val_raw.groups, split_dir, config.validation_dir)
        return TrainingData(make(raw), make(val_raw), plan)
    train_index, val_index = _split_validation(raw.groups, config)
    if len(val_index) == 0:
        return TrainingData(make(raw), None, plan)
    return TrainingData(make(raw.subset(train_index)), make(raw.subset(val_index)), plan)


#: Below this many training patients, setting some aside for validation costs more than it tells
#: (bench/RESULTS.md: models trained on one Sunnybrook patient did much worse on a new patient
#: than models trained on two).
FEW_TRAINING_PATIENTS = 3


#: The share of slices set aside for validation when ``validation_fraction`` is None (auto).
AUTO_VALIDATION_FRACTION = 0.2


def _split_validation(groups, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation positions for ``config.validation_fraction`` (None = auto)."""
    groups = np.asarray(groups, dtype=object)
    if config.validation_fraction is not None:
        train_index, val_index = split_by_group(groups, config.validation_fraction, config.seed)
        if len(val_index):
            _warn_few_training_patients(groups[train_index])
        return train_index, val_index
    n_all = len(set(map(str, groups)))
    n_train = n_all - 1
    if n_all > FEW_TRAINING_PATIENTS:
        train_index, val_index = split_by_group(groups, AUTO_VALIDATION_FRACTION, config.seed)
        n_train = len(set(map(str, groups[train_index])))
        if n_train >= FEW_TRAINING_PATIENTS:
            return train_index, val_index
    logger.info(
        "training on all %d patient(s)/series without a validation split: setting one aside would leave %d for "
        "training, and with so few every patient counts. The model after the last epoch is kept and no "
        "post-processing is chosen; judge it on scans it never saw, or train with folds=%d to validate every "
        "patient in turn (validation_fraction=0.2 forces a split).",
        n_all,
        n_train,
        max(2, min(n_all, 5)),
    )
    return np.arange(len(groups)), np.arange(0)


def _warn_few_training_patients(train_groups) -> None:
    n = len(set(map(str, train_groups)))
    if n < FEW_TRAINING_PATIENTS:
        logger.warning(
            "only %d patient(s)/series are left for training once validation is set aside; with so few, every "
            "patient counts: consider validation_fraction=0 (train on all, keep the last epoch) and judge the "
            "model on scans it never saw (see 'How much data do I need?' in USER_MANUAL.md)",
            n,
        )


def _training_dataset(config: TrainConfig, data: TrainingData, seed: int):
    """The ``tf.data`` pipeline a run trains on, and its steps per epoch (None: one pass)."""
    from ctseg_helpers.prepare.dataset import make_dataset  # noqa: PLC0415

    resolved = config.resolved(data.plan)
    if data.plan is None:
        ds = make_dataset(
            data.train.images,
            data.train.labels,
            resolved.batch_size,
            augment=config.augmentation,
            shuffle=True,
            seed=seed,
        )
        return ds, None
    from ctseg_helpers.prepare.sampling import PatchSampler, make_patch_dataset  # noqa: PLC0415

    sampler = PatchSampler(
        data.train.images,
        data.train.labels,
        data.train.shapes,
        patch_size=resolved.input_shape,
        margin=_margin(resolved.input_shape, config.augmentation),
        batch_size=resolved.batch_size,
        foreground_fraction=resolved.foreground_fraction,
        seed=seed,
    )
    return make_patch_dataset(sampler, augment=config.augmentation, seed=seed), resolved.batches_per_epoch


def _repeat_targets(ds, outputs: int):
    """A ``(x, y)`` dataset as a model with ``outputs`` outputs trains on it: ``(x, (y, ..., y))``."""
    if ds is None:
        return None
    return ds.map(lambda x, y: (x, (y,) * outputs))


def _main_output_logs(logs: dict, model) -> dict:
    """Keras' logs of a deeply supervised model named as a one-output model's.

    Keras prefixes each metric with its output's name (``probabilities_mean_dice``) and adds one
    loss per output; the history, the status lines and the best-model choice keep the names of a
    plain model: the metrics of the full-resolution output and the total (weighted) loss.
    """
    if model is None or len(model.outputs) == 1:
        return logs
    main = model.output_names[0]
    extra = {f"{name}_loss" for name in model.output_names}
    out = {}
    for key, value in logs.items():
        prefix = "val_" if key.startswith("val_") else ""
        bare = key[len(prefix) :]
        if bare in extra:
            continue
        if bare.startswith(main + "_"):
            bare = bare[len(main) + 1 :]
        out[prefix + bare] = value
    return out


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy a file so that ``target`` is never seen half-written (copy beside it, then rename)."""
    import shutil  # noqa: PLC0415

    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    record_written(target)


def _margin(patch_size: int, augmentation: AugmentConfig) -> int:
    """Context cut around each patch so that rotated/zoomed-out patches have no empty corners."""
    if not augmentation.active:
        return 0
    return max(int(patch_size) // 8, math.ceil(int(patch_size) * (augmentation.context_factor - 1.0) / 2.0))


def first_batch(config: TrainConfig, data: TrainingData):
    """The first training batch exactly as the network will see it (augmented when enabled).

    Returns
    -------
    (images, labels)
        ndarrays of shape (B, S, S, 1) float32 and (B, S, S) uint8.
    """
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    configure_tensorflow()
    import keras  # noqa: PLC0415

    keras.utils.set_random_seed(config.seed)  # as train_model does, so its first batch is this one
    ds, _ = _training_dataset(config, data, config.seed)
    images, labels = next(iter(ds))
    return images.numpy(), labels.numpy()


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def format_elapsed(seconds: float) -> str:
    """``0 hrs 0 mins 35 secs`` (whole seconds)."""
    seconds = int(round(seconds))
    return f"{seconds // 3600} hrs {seconds % 3600 // 60} mins {seconds % 60} secs"


def status_line(epoch: int, total: int, logs: dict, elapsed_s: float, loss_name: str = "Dice+CE loss") -> str:
    """The status line of the user manual, naming the loss, with validation figures when there are any.

    ``Completed epochs: 10/500 | Dice+CE loss: 1.262 | Mean dice score: 0.369 | Time elapsed: 0 hrs 0 mins 35 secs``
    """
    line = (
        f"Completed epochs: {epoch}/{total} | {loss_name}: {logs.get('loss', math.nan):.3f} | "
        f"Mean dice score: {logs.get('mean_dice', math.nan):.3f} | Time elapsed: {format_elapsed(elapsed_s)}"
    )
    if "val_loss" in logs:
        line += f" | Val {loss_name}: {logs['val_loss']:.3f}"
    if "val_mean_dice" in logs:
        line += f" | Val mean dice score: {logs['val_mean_dice']:.3f}"
    return line


def learning_rate_at(progress: float, base: float, schedule: str = "poly", warmup: float = 0.0) -> float:
    """Learning rate at ``progress`` (0 = start, 1 = end of the run).

    Linear warm-up over the first ``warmup`` share of the run, then ``"poly"``
    (``(1 - t) ** 0.9``, nnU-Net), ``"cosine"`` or ``"constant"``; never below 1 % of ``base``.

    >>> learning_rate_at(0.0, 1e-3, "poly"), round(learning_rate_at(0.5, 1e-3, "poly"), 6)
    (0.001, 0.000536)
    """
    progress = min(max(float(progress), 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return base * max(progress / warmup, 0.01)
    t = (progress - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
    if schedule == "poly":
        factor = (1.0 - t) ** 0.9
    elif schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * t))
    else:
        factor = 1.0
    return base * max(factor, 0.01)


def _model_settings(config: TrainConfig, data: TrainingData, extra: dict, postprocessing: dict | None = None):
    from ctseg_helpers.model.settings import ModelSettings  # noqa: PLC0415

    resolved = config.resolved(data.plan)
    patch = data.plan is not None
    return ModelSettings(
        input_shape=resolved.input_shape,
        num_labels=config.num_labels,
        label_names=tuple(config.label_names),
        normalization=data.train.normalization,
        fit_mode="patch" if patch else config.fit_mode,
        pixel_spacing_mm=data.train.pixel_spacing_mm,
        extra=extra,
        target_spacing_mm=data.plan.target_spacing_mm if patch else None,
        postprocessing=postprocessing,
    )


def predict_validation(
    predict_fn, slices: SliceSet, input_shape: int, num_classes: int, *, batch_size: int = 8, patch: bool = True
) -> list[np.ndarray]:
    """Label maps of validation slices (each at its own size), as the segmenter would make them.

    Patch-mode slices are tiled with blended overlapping patches; fitted slices are predicted whole.
    """
    from ctseg_helpers.segment.segmenter import Segmenter  # noqa: PLC0415

    segmenter = Segmenter(
        predict_fn,
        input_shape=input_shape,
        num_classes=num_classes,
        mode="tile" if patch else "resize",
        batch_size=batch_size,
    )
    labels = segmenter.segment(slices.images)
    return [labels[i, :r, :c] for i, (r, c) in enumerate(slices.slice_shape(i) for i in range(len(slices)))]


def _truths(slices: SliceSet) -> list[np.ndarray]:
    return [slices.labels[i, :r, :c] for i, (r, c) in enumerate(slices.slice_shape(i) for i in range(len(slices)))]


def train_model(
    config: TrainConfig,
    data: TrainingData | None = None,
    *,
    progress: bool = True,
    init_model: str | Path | None = None,
    extra: dict | None = None,
) -> TrainResult:
    """Train a U-Net as ``config`` says, printing status lines and saving checkpoints.

    Parameters
    ----------
    config : TrainConfig
        With ``folds > 1`` this runs :func:`train_folds`.
    data : TrainingData, optional
        Already prepared data (the notebook passes what it previewed); read from
        ``config.main_dir`` when None.
    progress : bool
        Progress bar while reading the data.
    init_model : path, optional
        A ctseg ``.keras`` model to start from (its weights, loaded in safe mode, with a new
        optimizer) instead of a new U-Net: fine-tuning (:mod:`ctseg_helpers.train.finetune`).
        Its input size and classes must be those of ``config``; a checkpoint to resume wins.
    extra : dict, optional
        More entries for the ``extra`` of every saved model's settings (e.g. its parent model).

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
    if config.folds > 1:
        return train_folds(config, progress=progress)
    out_dir = Path(config.out_dir)
    name = config.model_filename
    previous = check_previous_run(config)
    if data is None:
        data = prepare_training_data(config, progress=progress)
        if data.plan is not None:
            print(data.plan.describe(), flush=True)
    if config.fit_mode == "patch" and data.plan is None:
        raise CtsegSettingsError(
            "fit_mode='patch' needs data prepared by prepare_training_data with the same "
            "settings (it carries the plan); prepare it again or set fit_mode"
        )
    resolved = config.resolved(data.plan)
    if config.overwrite and previous:
        _delete_previous_run(previous, out_dir, name)
    out_dir.mkdir(parents=True, exist_ok=True)

    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    configure_tensorflow()
    import keras  # noqa: PLC0415

    from ctseg_helpers.train.distribute import get_strategy, replica_batch_note  # noqa: PLC0415
    from ctseg_helpers.train.system import configure_precision  # noqa: PLC0415

    strategy = get_strategy(config.devices)
    replica_batch_note(resolved.batch_size, strategy)
    policy_before = keras.mixed_precision.global_policy().name
    policy = configure_precision(config.mixed_precision)
    try:
        return _train(
            config,
            resolved,
            data,
            strategy,
            policy,
            files=run_files(out_dir, name),
            progress=progress,
            init_model=init_model,
            more_extra=extra,
        )
    finally:  # models built after training (e.g. by a caller) get the caller's policy again
        keras.mixed_precision.set_global_policy(policy_before)


def _train(
    config, resolved, data, strategy, policy, files, progress=False, init_model=None, more_extra=None
) -> TrainResult:
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    tf = configure_tensorflow()
    import keras  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    from ctseg_helpers.model.losses import default_metrics, get_loss  # noqa: PLC0415
    from ctseg_helpers.model.settings import load_model  # noqa: PLC0415
    from ctseg_helpers.model.unet import build_unet, deep_supervision_weights, inference_model  # noqa: PLC0415
    from ctseg_helpers.prepare.dataset import make_dataset  # noqa: PLC0415
    from ctseg_helpers.train.distribute import describe_strategy  # noqa: PLC0415

    out_dir, name = Path(config.out_dir), config.model_filename
    keras.utils.set_random_seed(config.seed)

    initial_epoch, rows, elapsed_before = 0, [], 0.0
    best_rows: list[dict] = []  # epochs that may have written the best model, redone ones included
    checkpoints = resume_points(out_dir, name) if config.resume else []
    with strategy.scope():
        if checkpoints:
            initial_epoch, latest = checkpoints[-1]
            model, saved = load_model(latest, compile=True)
            if (saved.input_shape, saved.num_labels) != (resolved.input_shape, config.num_labels):
                raise CtsegSettingsError(
                    f"{latest} was trained with input_shape={saved.input_shape}, num_labels={saved.num_labels} "
                    f"but the settings say input_shape={resolved.input_shape}, num_labels={config.num_labels}; "
                    "use the checkpoint's values to resume, or start a new run (another model_filename)"
                )
            saved_loss = saved.extra.get("loss")
            if saved_loss and saved_loss != config.loss:
                logger.warning(
                    "%s was trained with loss=%r; resuming keeps it (the loss=%r setting applies to new "
                    "runs only: start a new run to change the loss)",
                    latest,
                    saved_loss,
                    config.loss,
                )
            if files["history"].exists():
                old = pd.read_csv(files["history"])
                # Epochs after the checkpoint are trained again; the best model one of them may have
                # saved stays until the resumed run beats it.
                best_rows = old.to_dict("records") if files["best"].exists() else []
                redone = int((old["epoch"] > initial_epoch).sum())
                if redone:
                    logger.warning(
                        "%s: %d epoch(s) after the checkpoint of epoch %d are trained again",
                        files["history"],
                        redone,
                        initial_epoch,
                    )
                old = old[old["epoch"] <= initial_epoch]
                rows = old.to_dict("records")
                if rows:
                    elapsed_before = float(rows[-1].get("elapsed_s", 0.0))
            logger.info("resuming from %s (epoch %d)", latest, initial_epoch)
            print(f"Resuming from {latest.name}: {initial_epoch}/{config.epochs} epochs completed")
        else:
            if config.resume:
                logger.warning(
                    "resume=True but %s holds no checkpoint named %s_<epoch>.keras; starting from epoch 0",
                    out_dir,
                    name,
                )
            if init_model is not None:  # fine-tuning: the weights of a trained model, a new optimizer
                model, _ = load_model(init_model)
            else:
                model = build_unet(resolved.input_shape, config.num_labels, **resolved.architecture())
            outputs = len(model.outputs)
            loss = get_loss(config.loss, **config.loss_options)
            metrics = default_metrics(config.num_labels, config.label_names)
            model.compile(
                optimizer=keras.optimizers.Adam(config.learning_rate),
                # Deep supervision: the same loss on every output (all at the input's size),
                # weights halving per level; the metrics on the full-resolution output only.
                loss=loss if outputs == 1 else [loss] * outputs,
                loss_weights=None if outputs == 1 else deep_supervision_weights(outputs),
                metrics=metrics if outputs == 1 else [metrics] + [[] for _ in range(outputs - 1)],
                jit_compile="auto" if tf.config.list_physical_devices("GPU") else False,
            )
    if initial_epoch >= config.epochs:
        print(
            f"Nothing to do: {initial_epoch} epochs are completed already (epochs={config.epochs}); "
            "raise epochs to train further"
        )

    has_val = data.val is not None and len(data.val) > 0
    patch = data.plan is not None
    train_ds, steps = _training_dataset(config, data, config.seed)
    # Patch mode validates on whole slices through the segmenter (see the monitor); fitted slices
    # also give Keras' validation loss.
    val_ds = (
        make_dataset(data.val.images, data.val.labels, resolved.batch_size, shuffle=False)
        if has_val and not patch
        else None
    )
    if len(model.outputs) > 1:  # deep supervision: every output is compared with the same labels
        train_ds, val_ds = (_repeat_targets(ds, len(model.outputs)) for ds in (train_ds, val_ds))
    # Without validation the model after the last epoch is the one to keep (as nnU-Net keeps its
    # final checkpoint): the learning rate has decayed, and the training loss of augmented patches
    # says little about new patients.
    monitor_key = "val_mean_dice" if has_val else "last"
    previous_best = [r.get(monitor_key) for r in rows + best_rows if r.get(monitor_key) is not None]
    previous_best = [v for v in previous_best if not (isinstance(v, float) and math.isnan(v))]
    sign = -1.0 if monitor_key == "val_mean_dice" else 1.0  # the monitor minimises sign * value
    extra = {
        "loss": config.loss,
        "loss_options": dict(config.loss_options),
        "architecture": {k: (list(v) if isinstance(v, tuple) else v) for k, v in resolved.architecture().items()},
        "augmentation": config.augmentation.to_dict(),
        "batch_size": resolved.batch_size,
        "batches_per_epoch": steps,
        "learning_rate": config.learning_rate,
        "lr_schedule": config.lr_schedule,
        "dtype_policy": policy,
        "devices": describe_strategy(strategy),
        "train_groups": sorted(set(str(g) for g in data.train.groups)),
        "validation_groups": sorted(set(str(g) for g in data.val.groups)) if has_val else [],
        "seed": config.seed,
        "plan": data.plan.to_dict() if patch else None,
        "best_by": monitor_key,
        **(more_extra or {}),
    }
    monitor = _make_monitor_class()(
        config,
        resolved,
        data,
        files,
        extra,
        rows,
        elapsed_before,
        monitor_key,
        sign,
        min(sign * v for v in previous_best) if previous_best else math.inf,
        initial_epoch,
        steps,
        progress=progress,
    )
    interrupted = False
    if initial_epoch < config.epochs:
        print(
            f"Training {name}: {data.describe()}; {model.count_params():,} parameters; "
            f"{describe_strategy(strategy)}, {policy}",
            flush=True,
        )
        try:
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                callbacks=[monitor],
                verbose=0,
                shuffle=False,
            )
        except KeyboardInterrupt:
            interrupted = True
            monitor.save_interrupt_checkpoint(model)
    history = pd.DataFrame(monitor.rows)
    curves = None
    if len(history):
        import matplotlib.pyplot as plt  # noqa: PLC0415

        from ctseg_helpers.show.training import plot_history  # noqa: PLC0415

        fig = plot_history(history, files["curves"], title=f"{name}: {data.describe()}", loss_label=config.loss_label)
        plt.close(fig)
        curves = files["curves"]
        record_written(curves)
    result = TrainResult(
        model=inference_model(model),
        out_dir=out_dir,
        best_model_path=files["best"] if files["best"].exists() else None,
        last_checkpoint_path=None,
        history_csv=files["history"] if files["history"].exists() else None,
        curves_png=curves,
        history=history,
        epochs_completed=monitor.completed,
        interrupted=interrupted,
        stopped_by_time=monitor.stopped_by_time,
        loss_label=config.loss_label,
    )
    if has_val and result.best_model_path is not None and not interrupted:
        _choose_postprocessing(config, resolved, data, result)
    elif config.postprocessing == "auto" and result.best_model_path is not None and not interrupted:
        _postprocessing_from_labels(config, data, result)
    checkpoints = list_checkpoints(out_dir, name)
    result.last_checkpoint_path = checkpoints[-1][1] if checkpoints else None
    return result


def _choose_postprocessing(config: TrainConfig, resolved: TrainConfig, data: TrainingData, result: TrainResult) -> None:
    """Predict the validation slices with the best model, choose post-processing on them, store it."""
    from ctseg_helpers.model.settings import load_model, read_settings, update_settings  # noqa: PLC0415
    from ctseg_helpers.segment.postprocess import PostProcessing, choose_postprocessing, dice_per_label  # noqa: PLC0415
    from ctseg_helpers.segment.segmenter import keras_predict_fn  # noqa: PLC0415

    best, settings = load_model(result.best_model_path)
    predict_fn = keras_predict_fn(best, resolved.input_shape, config.num_labels + 1, source=result.best_model_path)
    predictions = predict_validation(
        predict_fn,
        data.val,
        resolved.input_shape,
        config.num_labels + 1,
        batch_size=resolved.batch_size,
        patch=data.plan is not None,
    )
    truths = _truths(data.val)
    names = list(config.label_names) or [str(k) for k in range(1, config.num_labels + 1)]
    before = dice_per_label(predictions, truths, config.num_labels)
    result.validation_dice = {names[k - 1]: float(v) for k, v in before.items()}
    result.validation_predictions, result.validation_truths = predictions, truths
    if config.postprocessing == "auto":
        chosen, report = choose_postprocessing(predictions, truths, config.num_labels)
        for k, value in report["dice_after"].items():
            result.validation_dice[f"{names[int(k) - 1]} (post-processed)"] = float(value)
        extra = {**settings.extra, "postprocessing_report": report}
    else:
        chosen, extra = PostProcessing(), settings.extra
    result.postprocessing = chosen.to_dict()
    update_settings(
        result.best_model_path,
        replace(read_settings(result.best_model_path), postprocessing=chosen.to_dict(), extra=extra),
    )
    record_written(result.best_model_path)
    print(
        "Validation Dice of the best model: " + ", ".join(f"{n} {v:.3f}" for n, v in result.validation_dice.items()),
        flush=True,
    )
    print(f"Post-processing chosen on the validation slices: {chosen.describe(tuple(names))}", flush=True)


def _postprocessing_from_labels(config: TrainConfig, data: TrainingData, result: TrainResult) -> None:
    """Without validation slices: the post-processing the training labels vouch for, stored with the model."""
    from ctseg_helpers.model.settings import read_settings, update_settings  # noqa: PLC0415
    from ctseg_helpers.segment.postprocess import postprocessing_from_labels  # noqa: PLC0415

    chosen, report = postprocessing_from_labels(_truths(data.train), config.num_labels)
    settings = read_settings(result.best_model_path)
    result.postprocessing = chosen.to_dict()
    update_settings(
        result.best_model_path,
        replace(settings, postprocessing=chosen.to_dict(), extra={**settings.extra, "postprocessing_report": report}),
    )
    record_written(result.best_model_path)
    names = tuple(config.label_names) or tuple(str(k) for k in range(1, config.num_labels + 1))
    print(
        f"Post-processing from the shapes of the training labels (no validation slices): {chosen.describe(names)}",
        flush=True,
    )


def fold_groups(groups, folds: int, seed: int = 0) -> list[list[str]]:
    """Split patients (groups) into ``folds`` folds of about equal numbers of slices.

    Groups are shuffled with ``seed`` and dealt, largest first, to the fold with the fewest slices.

    Raises
    ------
    CtsegSettingsError
        If there are fewer patients than folds.
    """
    from collections import Counter  # noqa: PLC0415

    counts = Counter(str(g) for g in groups)
    if len(counts) < folds:
        raise CtsegSettingsError(
            f"{folds} folds need at least {folds} patients/series, but the data hold {len(counts)} "
            f"({', '.join(sorted(counts))}); use folds <= {len(counts)}"
        )
    names = sorted(counts)
    rank = np.random.default_rng(seed).permutation(len(names))  # the seeded order: names[i] comes rank[i]-th
    order = [names[i] for i in np.argsort(rank)]
    order.sort(key=lambda g: -counts[g])  # stable: ties keep the seeded order
    assigned: list[list[str]] = [[] for _ in range(folds)]
    sizes = [0] * folds
    for group in order:
        k = int(np.argmin(sizes))
        assigned[k].append(group)
        sizes[k] += counts[group]
    return [sorted(a) for a in assigned]


def train_folds(config: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Train ``config.folds`` models on patient-wise folds; write an ensemble of them.

    Fold ``k`` validates on the patients of fold ``k`` and trains on the rest; its best model
    (``<name>_fold<k>_best.keras``) carries the post-processing chosen on its fold. The
    out-of-fold predictions of all folds together choose the ensemble's post-processing, stored
    in ``<name>.ensemble.json`` beside the fold models (segment with that file or the folder).

    Raises
    ------
    CtsegSettingsError
        With fewer patients than folds, or an ensemble file of that name already there (unless
        ``overwrite``; ``resume`` continues every fold).
    """
    from ctseg_helpers.segment.ensemble import ENSEMBLE_SUFFIX, write_ensemble  # noqa: PLC0415
    from ctseg_helpers.segment.postprocess import choose_postprocessing, dice_per_label  # noqa: PLC0415

    out_dir = Path(config.out_dir)
    ensemble_path = out_dir / f"{config.model_filename}{ENSEMBLE_SUFFIX}"
    check_previous_run(config)
    split_dir = _train_dir(config)
    if config.fit_mode != "patch":
        raise CtsegSettingsError("folds need fit_mode='patch' (the default)")
    raw = read_pairs(split_dir, config.num_labels, max_slices=config.max_slices, progress=progress)
    check_labels_present(raw.labels, config.num_labels, split_dir, allow=config.allow_missing_labels)
    assignment = fold_groups(raw.groups, config.folds, config.seed)
    plan = plan_training(config, raw)
    print(plan.describe(), flush=True)
    if config.overwrite and ensemble_path.exists():  # the fold models go as each fold starts
        _delete_previous_run([ensemble_path], out_dir, config.model_filename)
    make = lambda pairs: native_slices(pairs, config.num_labels, plan.normalization, plan.target_spacing_mm)  # noqa: E731
    results = []
    for k, val_groups in enumerate(assignment):
        is_val = np.isin(np.asarray(raw.groups, dtype=object), np.asarray(val_groups, dtype=object))
        data = TrainingData(make(raw.subset(~is_val)), make(raw.subset(is_val)), plan)
        print(f"Fold {k} ({k + 1} of {config.folds}): validating on {', '.join(val_groups)}", flush=True)
        fold_config = replace(
            config,
            folds=1,
            model_filename=f"{config.model_filename}_fold{k}",
            max_minutes=config.max_minutes / config.folds if config.max_minutes else None,
        )
        results.append(train_model(fold_config, data, progress=progress))
    members = [r.best_model_path for r in results]
    if any(m is None for m in members) or any(r.interrupted for r in results):
        print("Not every fold finished with a best model; no ensemble file was written", flush=True)
        ensemble = None
        chosen_dict, report, oof = None, None, {}
    else:
        predictions = [p for r in results for p in r.validation_predictions]
        truths = [t for r in results for t in r.validation_truths]
        names = list(config.label_names) or [str(k) for k in range(1, config.num_labels + 1)]
        oof = {names[k - 1]: float(v) for k, v in dice_per_label(predictions, truths, config.num_labels).items()}
        if config.postprocessing == "auto":
            chosen, report = choose_postprocessing(predictions, truths, config.num_labels)
            oof.update({f"{names[int(k) - 1]} (post-processed)": float(v) for k, v in report["dice_after"].items()})
            chosen_dict = chosen.to_dict()
        else:
            chosen_dict, report = {}, None
        ensemble = write_ensemble(
            ensemble_path,
            members,
            postprocessing=chosen_dict,
            extra={
                "folds": assignment,
                "out_of_fold_dice": oof,
                "postprocessing_report": report,
                "plan": plan.to_dict(),
            },
            overwrite=config.resume,
        )
        record_written(ensemble)
        print(f"Ensemble of {len(members)} fold models: {ensemble}", flush=True)
    return TrainResult(
        model=None,
        out_dir=out_dir,
        best_model_path=None,
        last_checkpoint_path=None,
        history_csv=None,
        curves_png=None,
        history=None,
        epochs_completed=min(r.epochs_completed for r in results),
        interrupted=any(r.interrupted for r in results),
        stopped_by_time=any(r.stopped_by_time for r in results),
        loss_label=config.loss_label,
        validation_dice=oof,
        postprocessing=chosen_dict,
        ensemble_path=ensemble,
        fold_results=results,
    )


def _make_monitor_class():
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    configure_tensorflow()
    import keras  # noqa: PLC0415

    class Monitor(keras.callbacks.Callback):
        """Learning-rate schedule, validation Dice, status lines, history CSV, best model and checkpoints."""

        def __init__(
            self,
            config,
            resolved,
            data,
            files,
            extra,
            rows,
            elapsed_before,
            monitor_key,
            sign,
            best,
            initial_epoch,
            steps,
            progress=False,
        ):
            super().__init__()
            self.show_progress = progress
            self._bar = None
            self.config, self.resolved, self.data, self.files, self.extra = config, resolved, data, files, extra
            self.rows = list(rows)
            self.elapsed_before = elapsed_before
            self.monitor_key, self.sign = monitor_key, sign
            self.best = best
            self.completed = initial_epoch
            self.initial_epoch = initial_epoch
            self.steps = steps
            self.stopped_by_time = False
            self._start = None
            self._epoch = initial_epoch
            self._names = list(config.label_names) or [str(k) for k in range(1, config.num_labels + 1)]
            self._val_seconds, self._last_validated = None, initial_epoch

        def elapsed(self) -> float:
            return self.elapsed_before + (time.perf_counter() - self._start if self._start else 0.0)

        def progress(self, batch: int = 0) -> float:
            """How far the run is, 0..1: epochs done, or the time budget used when that is further.

            The time budget is ``max_minutes`` of this session on top of the time a resumed run
            had already trained, so a resumed run decays its learning rate again from where that
            share leaves it (a warm restart) instead of training at the lowest rate.
            """
            steps = self.steps or 1
            done = (self._epoch + min(batch, steps) / steps) / self.config.epochs
            if self.config.max_minutes:
                done = max(done, self.elapsed() / (self.elapsed_before + 60.0 * self.config.max_minutes))
            return done

        def on_train_begin(self, logs=None):
            self._start = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch
            if not self.show_progress:
                return
            # A bar over each epoch's batches, as Keras' own, so a long first epoch is not silent. In
            # a terminal each epoch's bar goes when the epoch ends (the status lines follow it). In a
            # notebook one bar widget serves the whole run and stays: a closed widget's output would
            # read "Error displaying widget" when the saved notebook is opened again.
            from tqdm.auto import tqdm  # noqa: PLC0415
            from tqdm.notebook import tqdm as notebook_tqdm  # noqa: PLC0415

            description = f"epoch {epoch + 1}/{self.config.epochs}"
            if self._bar is None:
                self._bar = tqdm(
                    total=self.steps, desc=description, unit="batch", leave=issubclass(tqdm, notebook_tqdm)
                )
            else:
                self._bar.reset(total=self.steps)
                self._bar.set_description(description)

        def on_train_batch_end(self, batch, logs=None):
            if self._bar is not None:
                self._bar.update(1)

        def _close_bar(self):
            if self._bar is not None:
                self._bar.close()
                self._bar = None

        def on_train_batch_begin(self, batch, logs=None):
            warmup = self.resolved.warmup_epochs / self.config.epochs
            rate = learning_rate_at(self.progress(batch), self.config.learning_rate, self.config.lr_schedule, warmup)
            self.model.optimizer.learning_rate.assign(rate)

        def _save(self, path, epoch, overwrite=False):
            from ctseg_helpers.model.settings import save_model  # noqa: PLC0415

            settings = _model_settings(self.config, self.data, {**self.extra, "epochs_trained": epoch})
            saved = save_model(self.model, path, settings, overwrite=overwrite)
            record_written(saved)
            return saved

        def _validate_now(self, done: int, ending: bool) -> bool:
            """Validate every epoch while it costs at most a fifth of the training time, else less
            often; always at the first and the last epoch (the last by time, too)."""
            if self.data.plan is None or self.data.val is None or not len(self.data.val):
                return False
            if done == self.config.epochs or ending or self._val_seconds is None:
                return True
            epoch_seconds = max(self.elapsed() - self.elapsed_before, 1e-3) / max(done - self.initial_epoch, 1)
            every = max(1, math.ceil(self._val_seconds / (0.2 * epoch_seconds)))
            return done - self._last_validated >= every

        def _validate(self) -> dict:
            """Dice per ROI on the whole validation slices, as the segmenter will make them."""
            from ctseg_helpers.segment.postprocess import dice_per_label  # noqa: PLC0415

            data = self.data
            model = self.model

            def predict_fn(batch):
                out = model(batch, training=False)
                return np.asarray(out[0] if isinstance(out, (list, tuple)) else out, dtype=np.float32)

            predictions = predict_validation(
                predict_fn,
                data.val,
                self.resolved.input_shape,
                self.config.num_labels + 1,
                batch_size=self.resolved.batch_size,
            )
            dice = dice_per_label(predictions, _truths(data.val), self.config.num_labels)
            values = [v for v in dice.values() if not math.isnan(v)]
            out = {"val_mean_dice": float(np.mean(values)) if values else math.nan}
            out.update({f"val_{dice_column(self.config.label_names, k)}": float(v) for k, v in dice.items()})
            return out

        def on_epoch_end(self, epoch, logs=None):
            if self._bar is not None and not self._bar.leave:
                self._close_bar()
            import pandas as pd  # noqa: PLC0415

            logs = _main_output_logs({k: float(v) for k, v in (logs or {}).items()}, self.model)
            done = epoch + 1
            ending = (
                self.config.max_minutes is not None
                and self.elapsed() - self.elapsed_before >= 60 * self.config.max_minutes
            )
            if self._validate_now(done, ending):
                started = time.perf_counter()
                logs.update(self._validate())
                self._val_seconds = time.perf_counter() - started
                self._last_validated = done
            self.completed = done
            elapsed = self.elapsed()
            row = {
                "epoch": done,
                "elapsed_s": round(elapsed, 3),
                "learning_rate": float(f"{float(self.model.optimizer.learning_rate.numpy()):.6g}"),
                **logs,
            }
            self.rows.append(row)
            tmp = self.files["history"].with_suffix(".csv.tmp")
            pd.DataFrame(self.rows).to_csv(tmp, index=False)
            # The last state before the history: a run killed in between (even in its first
            # epoch) always has a state to resume from; a hard kill loses at most one epoch.
            self._save(self.files["last"], done, overwrite=True)
            tmp.replace(self.files["history"])
            record_written(self.files["history"])
            value = logs.get(self.monitor_key, math.nan)
            if self.monitor_key == "last":
                _copy_atomically(self.files["last"], self.files["best"])
            elif not math.isnan(value) and self.sign * value < self.best:
                self.best = self.sign * value
                self._save(self.files["best"], done, overwrite=True)
            last = done == self.config.epochs
            out_of_time = (
                self.config.max_minutes is not None and elapsed - self.elapsed_before >= 60 * self.config.max_minutes
            )
            if done % self.config.print_checkpoint == 0 or last or out_of_time:
                print(status_line(done, self.config.epochs, logs, elapsed, self.config.loss_label), flush=True)
            if done % self.config.save_checkpoint == 0 or last or out_of_time:
                self._save(
                    checkpoint_path(self.files["best"].parent, self.config.model_filename, done), done, overwrite=True
                )
                print(f"Checkpoint -> Model saved at {done}/{self.config.epochs} epochs", flush=True)
            if out_of_time and not last:
                self.stopped_by_time = True
                self.model.stop_training = True
                print(
                    f"Stopped after {done} epochs: the time limit of {self.config.max_minutes:g} minutes "
                    "was reached (resume=True continues)",
                    flush=True,
                )

        def on_train_end(self, logs=None):
            self._close_bar()

        def save_interrupt_checkpoint(self, model):
            self._close_bar()
            self.set_model(model)
            path = checkpoint_path(self.files["best"].parent, self.config.model_filename, self.completed)
            if self.completed == 0:
                print("Interrupted before the first epoch ended; nothing was saved", flush=True)
            elif path.exists():
                print(
                    f"Interrupted; the checkpoint of epoch {self.completed} is saved already: {path.name}", flush=True
                )
            else:
                self._save(path, self.completed)
                print(
                    f"Interrupted -> Checkpoint -> Model saved at {self.completed}/{self.config.epochs} epochs",
                    flush=True,
                )

    return Monitor
