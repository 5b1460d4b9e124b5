"""Fine-tuning: continue training a ctseg model on newly corrected slices.

A model segments new scans; someone corrects its mistakes on a few slices (in 3D Slicer,
ITK-SNAP or any label editor) and saves them as label maps. Fine-tuning trains the same network
a little further on those slices, with a small learning rate, so it learns the corrections
without starting again. Everything the network depends on comes from the model, never from the
new data: the pixel spacing, patch size, batch size, normalisation, ROI names, loss and
augmentation stored in its settings (:mod:`ctseg_helpers.model.settings`, the training plan in
``extra["plan"]``). The training itself is :func:`~ctseg_helpers.train.loop.train_model`,
started from the model's weights (``init_model``) with a new optimizer.

The rules, each in one function here:

- **Settings** (:func:`finetune_train_config`): the model's, with ``epochs`` (default
  :data:`DEFAULT_EPOCHS`), a learning rate of :data:`LEARNING_RATE_FACTOR` times the model's own
  peak rate unless one is given, no warm-up, the model's schedule, and no validation split (a
  few corrected slices are worth more in training); with a validation folder the best epoch is
  kept and the post-processing chosen again, else the last epoch and the model's post-processing.
- **Classes** (:func:`check_label_values`): the network's output classes are fixed, so a label
  value above the model's ``num_labels`` is refused (train a new model for a new ROI).
- **Old data** (:func:`mix_slices`): given the model's old training slices, the slices are
  pooled so that a share ``old_fraction`` (default one half) of the pool is old slices and the
  rest corrected ones, by repeating the smaller side a whole number of times. Patches are drawn
  from slices chosen uniformly from the pool (and ROI-centred patches from the pool's slices
  holding that ROI), so about that share of every batch comes from the old data and the model
  does not forget what it knew.
- **Parentage** (:func:`parent_record`): every saved model's settings carry
  ``extra["finetuned_from"]``: the parent's path, SHA-256 and modification time, the data, and
  the parent's own ``finetuned_from`` when it was fine-tuned itself.

Reading the folders and naming the output file is the job of
:mod:`ctseg_helpers.workflows.finetune`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.written import file_sha256
from ctseg_helpers.prepare.augment import AugmentConfig
from ctseg_helpers.prepare.dataset import SliceSet
from ctseg_helpers.train.loop import TrainConfig

logger = logging.getLogger(__name__)

#: Epochs of a fine-tuning run unless set (each of the model's planned batches per epoch).
DEFAULT_EPOCHS = 10
#: The fine-tuning learning rate, unless set, is this times the model's own peak rate.
LEARNING_RATE_FACTOR = 0.1
#: Share of the slice pool taken by the old training data, when it is given.
DEFAULT_OLD_FRACTION = 0.5
#: Added to the model file's stem to name the fine-tuned model, unless a name is given.
FINETUNED_SUFFIX = "_finetuned"
#: The learning rate a model trained before it was stored is assumed to have had.
_FALLBACK_LEARNING_RATE = 1e-3


def _cli(help: str, **spelling) -> dict:
    """Field metadata: how ``ctseg finetune`` offers the setting (keys: :mod:`ctseg_helpers.cli.options`)."""
    return {"cli": {"help": help, **spelling}}


@dataclass(frozen=True)
class FinetuneConfig:
    """Every setting of a fine-tuning run; the rest comes from the model.

    Each field's metadata says how ``ctseg finetune`` offers it (:mod:`ctseg_helpers.cli.options`).

    Attributes
    ----------
    model_path : path
        The ctseg ``.keras`` model to fine-tune; it is read, never written.
    main_dir : path
        The corrected slices: a folder holding ``dicoms/`` and ``labels/``, or one holding
        ``train/dicoms`` and ``train/labels`` (the layout ``ctseg train`` reads).
    out_dir : path or None
        Where the fine-tuned model and its run's files go; None: the model's folder.
    model_filename : str or None
        Stem of the files written; None: the model file's stem + ``"_finetuned"``.
    epochs : int
        Epochs of the model's planned number of batches.
    learning_rate : float or None
        Peak learning rate; None: :data:`LEARNING_RATE_FACTOR` x the model's.
    max_minutes : float or None
        Stop after the epoch that passes this much training time.
    old_data : path or None
        The model's old training data (same layouts as ``main_dir``), mixed in.
    old_fraction : float
        Share of the slice pool from ``old_data`` (0 < f < 1), see :func:`mix_slices`.
    validation_dir : path or None
        Corrected slices kept apart to choose the best epoch and the post-processing.
    batches_per_epoch : int or None
        None: the model's.
    max_slices : int or None
        Read at most this many pairs from each folder (smoke runs).
    seed, overwrite, print_checkpoint, save_checkpoint, mixed_precision, devices
        As in :class:`~ctseg_helpers.train.loop.TrainConfig`.

    Raises
    ------
    CtsegSettingsError
        On construction, for an ``old_fraction`` outside 0 < f < 1 or a learning rate that is
        not positive (the other settings are checked by :func:`finetune_train_config`).
    """

    model_path: str | Path = field(
        metadata=_cli("the ctseg .keras model to fine-tune (never written)", flags="model", metavar="MODEL")
    )
    main_dir: str | Path = field(
        metadata=_cli(
            "corrected slices: a folder holding dicoms/ and labels/ (or train/dicoms and train/labels)",
            flags="data_dir",
            metavar="DATA_DIR",
        )
    )
    out_dir: str | Path | None = field(
        default=None, metadata=_cli("output folder (default: the model's folder)", flags="--out")
    )
    model_filename: str | None = field(
        default=None,
        metadata=_cli("file name stem of the fine-tuned model (default: <model stem>_finetuned)", flags="--name"),
    )
    epochs: int = field(
        default=DEFAULT_EPOCHS,
        metadata=_cli("epochs of the model's batches per epoch (default: %(default)s)", type="positive_int"),
    )
    learning_rate: float | None = field(
        default=None,
        metadata=_cli("peak learning rate (default: 1/10 of the model's training learning rate)", type="float"),
    )
    max_minutes: float | None = field(
        default=None, metadata=_cli("stop after the epoch that passes this much training time", type="float")
    )
    old_data: str | Path | None = field(
        default=None,
        metadata=_cli("the model's old training data (same layout), mixed in so it does not forget", metavar="DIR"),
    )
    old_fraction: float = field(
        default=DEFAULT_OLD_FRACTION,
        metadata=_cli("share of the training slices drawn from --old-data (default: %(default)s)", type="float"),
    )
    validation_dir: str | Path | None = field(
        default=None,
        metadata=_cli("corrected slices kept apart (dicoms/, labels/) to pick the best epoch and post-processing"),
    )
    batches_per_epoch: int | None = field(
        default=None, metadata=_cli("patch batches per epoch (default: the model's)", type="positive_int")
    )
    seed: int = field(default=0, metadata=_cli("(default: %(default)s)", type="int"))
    overwrite: bool = field(
        default=False,
        metadata=_cli("replace an earlier fine-tuning run of --name in --out (only files ctseg wrote)"),
    )
    max_slices: int | None = field(
        default=None, metadata=_cli("read only this many pairs of each folder (smoke runs)", type="positive_int")
    )
    print_checkpoint: int = field(
        default=1, metadata=_cli("print a status line every N epochs (default: %(default)s)", type="positive_int")
    )
    save_checkpoint: int = field(
        default=50, metadata=_cli("save a checkpoint every N epochs (default: %(default)s)", type="positive_int")
    )
    mixed_precision: bool | str = field(
        default="auto",
        metadata=_cli("reduced precision (default: auto)", values={"auto": "auto", "on": True, "off": False}),
    )
    devices: str = field(default="auto", metadata=_cli("auto, cpu, gpu or cpu:N (default: auto)"))

    def __post_init__(self):
        if not 0.0 < self.old_fraction < 1.0:
            raise CtsegSettingsError(
                f"old_fraction must be within 0 < f < 1 (the share of slices from the old data), "
                f"got {self.old_fraction}"
            )
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise CtsegSettingsError(
                f"learning_rate must be positive (or None for 1/10 of the model's), got {self.learning_rate}"
            )

    @property
    def name(self) -> str:
        """The stem of every file the run writes."""
        return self.model_filename or Path(self.model_path).stem + FINETUNED_SUFFIX

    @property
    def output_dir(self) -> Path:
        """Where the run writes: ``out_dir``, or the model's folder."""
        return Path(self.out_dir) if self.out_dir is not None else Path(self.model_path).parent


def finetune_train_config(config: FinetuneConfig, settings) -> TrainConfig:
    """The :class:`~ctseg_helpers.train.loop.TrainConfig` that continues a model as ``config`` says.

    Parameters
    ----------
    config : FinetuneConfig
    settings : ModelSettings
        The model's (:func:`~ctseg_helpers.model.settings.read_settings`).

    Returns
    -------
    TrainConfig
        The model's input size, classes, names, spacing, normalisation, loss, augmentation,
        architecture and schedule; ``config``'s epochs, learning rate, output and run settings;
        no warm-up; no validation split; post-processing chosen again only with a validation folder.

    Raises
    ------
    CtsegSettingsError
        If the model was not trained on patches (``fit_mode`` resize or pad), or a setting is
        refused by ``TrainConfig``.
    """
    if settings.fit_mode != "patch":
        raise CtsegSettingsError(
            f"{config.model_path}: was trained with fit_mode={settings.fit_mode!r} (whole slices); fine-tuning "
            "continues models trained on patches (fit_mode='patch', the default): train a new model instead"
        )
    extra = settings.extra
    # Fine-tuning trains the full-resolution output the model segments with: a deeply supervised
    # model's coarser outputs are not loaded (load_model), so neither is its deep supervision.
    architecture = {
        k: v for k, v in (extra.get("architecture") or {}).items() if k not in ("levels", "deep_supervision")
    }
    plan = extra.get("plan") or {}
    return TrainConfig(
        main_dir=config.main_dir,
        out_dir=config.output_dir,
        model_filename=config.name,
        epochs=config.epochs,
        input_shape=settings.input_shape,
        num_labels=settings.num_labels,
        label_names=settings.label_names,
        learning_rate=config.learning_rate or base_learning_rate(settings) * LEARNING_RATE_FACTOR,
        lr_schedule=extra.get("lr_schedule", "poly"),
        warmup_epochs=0,
        batches_per_epoch=config.batches_per_epoch,
        foreground_fraction=plan.get("foreground_fraction"),
        target_spacing_mm=settings.target_spacing_mm,
        postprocessing="auto" if config.validation_dir else "none",
        loss=extra.get("loss", "dice_ce"),
        loss_options=dict(extra.get("loss_options") or {}),
        augmentation=AugmentConfig.from_dict(extra["augmentation"]) if extra.get("augmentation") else AugmentConfig(),
        **architecture,
        validation_fraction=0.0,
        validation_dir=config.validation_dir,
        seed=config.seed,
        overwrite=config.overwrite,
        max_minutes=config.max_minutes,
        mixed_precision=config.mixed_precision,
        devices=config.devices,
        normalization=settings.normalization,
        print_checkpoint=config.print_checkpoint,
        save_checkpoint=config.save_checkpoint,
        allow_missing_labels=True,  # a few corrected slices need not show every ROI
    )


def base_learning_rate(settings) -> float:
    """The peak learning rate the model was trained with (1e-3 when its settings do not say)."""
    return float(settings.extra.get("learning_rate") or _FALLBACK_LEARNING_RATE)


def check_label_values(labels, names, num_labels: int, source, model_path, label_names=()) -> None:
    """Refuse label maps holding a value the model has no class for.

    Parameters
    ----------
    labels : sequence of ndarray
        The label maps read (any values 0..255).
    names : sequence of str
        The pair name of each.
    num_labels : int
        The model's number of ROIs.
    source, model_path : path
        The folder read and the model, for the message.
    label_names : sequence of str
        The model's ROI names, for the message.

    Raises
    ------
    CtsegDataError
        Naming the folder, the values, the first files holding them and the model's ROIs.
    """
    bad_values: set[int] = set()
    bad_files: list[str] = []
    for name, label in zip(names, labels, strict=True):
        values = {int(v) for v in np.unique(label) if v > num_labels}
        if values:
            bad_values |= values
            bad_files.append(name)
    if not bad_values:
        return
    rois = ", ".join(f"{k} {n}" for k, n in enumerate(label_names, start=1)) if label_names else f"1..{num_labels}"
    shown = ", ".join(bad_files[:5]) + (f", ... ({len(bad_files)} files)" if len(bad_files) > 5 else "")
    raise CtsegDataError(
        f"{source}: label value(s) {', '.join(map(str, sorted(bad_values)))} (in {shown}) are not classes of "
        f"{model_path}, which knows {num_labels} ROI(s) ({rois}); fine-tuning keeps the model's classes: "
        f"fix those label maps, or train a new model with --num-labels {max(bad_values)} (ctseg train)"
    )


def mix_slices(new: SliceSet, old: SliceSet | None, old_fraction: float = DEFAULT_OLD_FRACTION):
    """Pool corrected and old slices so that a share ``old_fraction`` of the pool is old.

    The smaller side is repeated a whole number of times (the nearest to the share asked; at
    least once), so slices drawn uniformly from the pool come from the old data with about that
    probability. Both sides must be at the same spacing and normalisation.

    Parameters
    ----------
    new : SliceSet
        The corrected slices.
    old : SliceSet or None
        The old training slices; None or empty: ``new`` is returned.
    old_fraction : float
        0 < f < 1.

    Returns
    -------
    pool : SliceSet
        ``new`` repeated, then ``old`` repeated, zero-padded to a common size (``shapes`` keep
        each slice's real size); the pixel spacing is ``new``'s.
    info : dict
        ``{"new_slices", "old_slices", "new_repeats", "old_repeats", "old_fraction"}``, the
        last the share of the pool that is old.

    Examples
    --------
    Four corrected slices and forty old ones, half/half: each corrected slice is taken ten times.

    >>> from ctseg_helpers.prepare.normalize import Normalization
    >>> make = lambda k: SliceSet(np.zeros((k, 8, 8), np.float32), np.zeros((k, 8, 8), np.uint8),
    ...                           np.array(["p"] * k, dtype=object), ["s"] * k, Normalization())
    >>> pool, info = mix_slices(make(4), make(40))
    >>> len(pool), info["new_repeats"], info["old_repeats"], info["old_fraction"]
    (80, 10, 1, 0.5)
    """
    n = len(new)
    if old is None or not len(old):
        return new, {"new_slices": n, "old_slices": 0, "new_repeats": 1, "old_repeats": 0, "old_fraction": 0.0}
    m = len(old)
    wanted = old_fraction / (1.0 - old_fraction)  # old : new in the pool
    if m >= wanted * n:
        new_repeats, old_repeats = max(1, round(m / (wanted * n))), 1
    else:
        new_repeats, old_repeats = 1, max(1, round(wanted * n / m))
    parts = [(new, new_repeats), (old, old_repeats)]
    rows = max(s.images.shape[1] for s, _ in parts)
    cols = max(s.images.shape[2] for s, _ in parts)

    def padded(array, count):
        out = np.zeros((len(array), rows, cols), array.dtype)
        out[:, : array.shape[1], : array.shape[2]] = array
        return np.tile(out, (count, 1, 1))

    def shapes(s):
        return s.shapes if s.shapes is not None else np.tile(s.images.shape[1:3], (len(s), 1))

    pool = SliceSet(
        images=np.concatenate([padded(s.images, k) for s, k in parts]),
        labels=np.concatenate([padded(s.labels, k) for s, k in parts]),
        groups=np.concatenate([np.tile(np.asarray(s.groups, dtype=object), k) for s, k in parts]),
        names=[name for s, k in parts for name in list(s.names) * k],
        normalization=new.normalization,
        pixel_spacing_mm=new.pixel_spacing_mm,
        shapes=np.concatenate([np.tile(shapes(s), (k, 1)) for s, k in parts]),
    )
    share = old_repeats * m / (new_repeats * n + old_repeats * m)
    info = {
        "new_slices": n,
        "old_slices": m,
        "new_repeats": int(new_repeats),
        "old_repeats": int(old_repeats),
        "old_fraction": round(share, 4),
    }
    return pool, info


def parent_record(model_path: str | Path, settings, **data) -> dict:
    """What a fine-tuned model's settings say about its parent (``extra["finetuned_from"]``).

    Parameters
    ----------
    model_path : path
        The parent model file.
    settings : ModelSettings
        The parent's settings.
    **data
        What it was fine-tuned on (folders, slice counts, learning rate...), stored as given.

    Returns
    -------
    dict
        ``model`` (absolute path), ``sha256``, ``modified`` (the file's modification time, UTC,
        ISO 8601), ``epochs_trained`` (the parent's), the entries of ``data``, and
        ``parent_finetuned_from`` (the parent's own record, or None).
    """
    path = Path(model_path)
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).isoformat(timespec="seconds")
    return {
        "model": str(path.resolve()),
        "sha256": file_sha256(path),
        "modified": modified,
        "epochs_trained": settings.extra.get("epochs_trained"),
        **data,
        "parent_finetuned_from": settings.extra.get("finetuned_from"),
    }


def describe(settings, train_config: TrainConfig, info: dict, n_patients: int) -> str:
    """One line saying what the fine-tuning will do (printed before it starts)."""
    names = ", ".join(settings.label_names) or f"{settings.num_labels} ROI(s)"
    spacing = settings.target_spacing_mm
    text = (
        f"Fine-tuning on {info['new_slices']} corrected slice(s) from {n_patients} patient(s)/series "
        f"({names}; the model's spacing "
        + (f"{spacing[0]:g} x {spacing[1]:g} mm" if spacing else "native")
        + f", patch {settings.input_shape} px): {train_config.epochs} epochs, learning rate "
        f"{train_config.learning_rate:.3g}"
    )
    if info["old_slices"]:
        text += (
            f"; {info['old_slices']} old slice(s) mixed in, {info['old_fraction']:.0%} of the pool "
            f"(corrected slices x{info['new_repeats']}, old x{info['old_repeats']})"
        )
    return text


__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_OLD_FRACTION",
    "FINETUNED_SUFFIX",
    "LEARNING_RATE_FACTOR",
    "FinetuneConfig",
    "base_learning_rate",
    "check_label_values",
    "describe",
    "finetune_train_config",
    "mix_slices",
    "parent_record",
]
