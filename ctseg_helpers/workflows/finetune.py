"""Fine-tune a model on a folder of corrected slices: ``ctseg finetune`` and the train notebook call this.

:func:`finetune_model` reads the corrected slices (and the old training data, when given),
checks them against the model, trains on (:mod:`ctseg_helpers.train.finetune` holds the rules)
and writes, in ``out_dir`` (default: the model's folder), with ``NAME`` = ``model_filename``
(default: the model file's stem + ``_finetuned``):

``NAME.keras``
    the fine-tuned model, the one to segment with: the best epoch with a validation folder,
    else the last one; its settings are the parent's, plus ``extra["finetuned_from"]``;
``NAME_best.keras``, ``NAME_last.keras``, ``NAME_<epoch>.keras``, ``NAME_history.csv``, ``NAME_curves.png``
    the training run's files, as ``ctseg train`` writes them (``overwrite`` replaces them).

The model given is only read: a name and folder whose files would include it are refused.
Every file written is recorded for ``overwrite`` (:mod:`ctseg_helpers.io.written`).
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.written import (
    check_outside_inputs,
    check_replaceable,
    forget_written,
    record_written,
    rename_recorded,
)
from ctseg_helpers.model.settings import read_settings, update_settings
from ctseg_helpers.prepare.check import resolve_split_dir
from ctseg_helpers.prepare.dataset import native_slices, read_pairs
from ctseg_helpers.train.finetune import (
    FinetuneConfig,
    check_label_values,
    describe,
    finetune_train_config,
    mix_slices,
    parent_record,
)
from ctseg_helpers.train.loop import TrainingData, TrainResult, check_previous_run, plan_training, run_files

logger = logging.getLogger(__name__)

_WHAT_TO_DO = "choose another --name or --out, or pass --overwrite"

#: The largest label value read before the model's classes are checked (uint8 label maps).
_READ_LIMIT = 255


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced.

    Attributes
    ----------
    model_path : Path or None
        ``NAME.keras``, the fine-tuned model (None when the run was interrupted or ended before
        an epoch).
    parent_path : Path
        The model it was fine-tuned from (unchanged).
    train : TrainResult
        The training run (history, best and last states, validation Dice).
    mixing : dict
        How corrected and old slices were pooled (:func:`~ctseg_helpers.train.finetune.mix_slices`).
    """

    model_path: Path | None
    parent_path: Path
    train: TrainResult
    mixing: dict

    @property
    def interrupted(self) -> bool:
        return self.train.interrupted

    def __str__(self) -> str:
        lines = [str(self.train)]
        if self.model_path is not None:
            lines.append(f"Fine-tuned model: {self.model_path} (from {self.parent_path})")
        else:
            lines.append(f"No fine-tuned model was written; {self.parent_path} is unchanged")
        return "\n".join(lines)


def output_path(config: FinetuneConfig) -> Path:
    """``<out_dir>/<name>.keras``: the fine-tuned model's file."""
    return config.output_dir / f"{config.name}.keras"


def check_not_parent(config: FinetuneConfig) -> None:
    """Refuse a name and folder whose files would include the model being fine-tuned.

    Raises
    ------
    CtsegSettingsError
        Naming the model file and what would write over it.
    """
    model = Path(config.model_path).resolve()
    out, name = config.output_dir, config.name
    written = [output_path(config), *run_files(out, name).values()]
    numbered = re.compile(rf"^{re.escape(name)}_\d+\.keras$")
    if model in [p.resolve() for p in written] or (model.parent == out.resolve() and numbered.match(model.name)):
        raise CtsegSettingsError(
            f"{config.model_path}: is the model being fine-tuned, and --name {name} in {out} would write over it; "
            "ctseg never writes over the model it fine-tunes: choose another --name or --out"
        )


def _check_modality(raw, settings, source) -> None:
    """Refuse slices of another kind of scan than the model's (CT in HU vs MR per image)."""
    modality = raw.modality()
    if modality != settings.normalization.modality:
        raise CtsegDataError(
            f"{source}: holds {modality} slices but the model was trained on {settings.normalization.modality} "
            "(normalised differently); fine-tune it on slices of the same kind of scan"
        )


#: Share of an ROI's pixels outside the model's HU window above which fine-tuning warns.
OUTSIDE_WINDOW_WARN = 0.5


def window_shares(raw, settings) -> dict[int, float]:
    """For CT: the share of each ROI's pixels whose HU lie outside the model's window (MR: {}).

    The model sees every value outside its window as the window's end, so an ROI mostly outside
    it cannot be told from its neighbours by intensity, however long it is fine-tuned.
    """
    norm = settings.normalization
    if norm.modality != "CT":
        return {}
    low, high = norm.hu_window
    inside = np.zeros(settings.num_labels + 1, dtype=np.int64)
    total = np.zeros(settings.num_labels + 1, dtype=np.int64)
    for image, label in zip(raw.images, raw.labels, strict=True):
        label = np.asarray(label).astype(np.int64, copy=False)
        within = (image >= low) & (image <= high)
        total += np.bincount(label.ravel(), minlength=settings.num_labels + 1)[: settings.num_labels + 1]
        inside += np.bincount(label[within].ravel(), minlength=settings.num_labels + 1)[: settings.num_labels + 1]
    return {k: 1.0 - inside[k] / total[k] for k in range(1, settings.num_labels + 1) if total[k]}


def _warn_outside_window(raw, settings, folder) -> None:
    names = list(settings.label_names) or [f"label {k}" for k in range(1, settings.num_labels + 1)]
    low, high = settings.normalization.hu_window
    for k, share in window_shares(raw, settings).items():
        if share > OUTSIDE_WINDOW_WARN:
            logger.warning(
                "%s: %.0f %% of the %s pixels lie outside the model's HU window (%g to %g HU), which it "
                "sees as the window's ends; fine-tuning cannot teach it what they look like: train a new "
                "model (ctseg train plans the window from the data) if the ROI is not found",
                folder,
                100 * share,
                names[k - 1],
                low,
                high,
            )


def _read(folder: Path, config: FinetuneConfig, settings, *, progress: bool):
    """The pairs of one folder, checked against the model's classes and modality."""
    raw = read_pairs(folder, _READ_LIMIT, max_slices=config.max_slices, progress=progress)
    check_label_values(raw.labels, raw.names, settings.num_labels, folder, config.model_path, settings.label_names)
    _check_modality(raw, settings, folder)
    _warn_outside_window(raw, settings, folder)
    return raw


def finetune_data(config: FinetuneConfig, settings, train_config, *, progress: bool = True):
    """Read and prepare the slices of a fine-tuning run, as the model's plan says.

    Returns
    -------
    data : TrainingData
        The pool of corrected (and old) slices at the model's spacing and normalisation, the
        validation slices or None, and the model's plan (``batches_per_epoch`` as set).
    mixing : dict
        :func:`~ctseg_helpers.train.finetune.mix_slices`'s ``info``.
    folders : dict
        The folders read: ``data``, ``old_data``, ``validation_data`` (None when not given).

    Raises
    ------
    CtsegDataError
        For a folder without ``dicoms/`` and ``labels/``, unusable pairs, label values the
        model has no class for, or slices of another modality than the model's.
    """
    from ctseg_helpers.prepare.plan import TrainingPlan  # noqa: PLC0415

    folders = {
        "data": resolve_split_dir(config.main_dir),
        "old_data": resolve_split_dir(config.old_data) if config.old_data else None,
        "validation_data": resolve_split_dir(config.validation_dir) if config.validation_dir else None,
    }
    check_outside_inputs(
        config.output_dir,
        {
            "corrected data": folders["data"],
            "old training data": folders["old_data"],
            "validation data": folders["validation_data"],
        },
    )
    raw = _read(folders["data"], config, settings, progress=progress)
    stored = settings.extra.get("plan")
    if stored:
        plan = TrainingPlan.from_dict(stored).with_overrides(batches_per_epoch=config.batches_per_epoch)
    else:  # a model saved without its plan: planned again, with the model's settings given
        plan = plan_training(train_config, raw)
        if settings.target_spacing_mm is None:  # it works at the slices' own pixels
            plan = replace(plan, target_spacing_mm=None)

    def prepare(pairs):
        return native_slices(pairs, settings.num_labels, settings.normalization, plan.target_spacing_mm)

    old = prepare(_read(folders["old_data"], config, settings, progress=progress)) if folders["old_data"] else None
    pool, mixing = mix_slices(prepare(raw), old, config.old_fraction)
    val = None
    if folders["validation_data"]:
        val = prepare(_read(folders["validation_data"], config, settings, progress=progress))
    return TrainingData(pool, val, plan), mixing, folders


def finetune_model(config: FinetuneConfig, *, progress: bool = True) -> FinetuneResult:
    """Fine-tune ``config.model_path`` on the corrected slices of ``config.main_dir``.

    Everything is checked before any slice is read: the model's settings, the output name
    (never the model itself), an earlier run of that name (replaced only with ``overwrite``).

    Returns
    -------
    FinetuneResult

    Raises
    ------
    CtsegDataError
        If the model is not a ctseg model; for the data, see :func:`finetune_data`.
    CtsegSettingsError
        If the output would write over the model, the output exists (without ``overwrite``,
        or not written by ctseg), the output folder is inside a folder read, or the model was
        trained on whole slices.
    """
    from ctseg_helpers.train.loop import train_model  # noqa: PLC0415

    parent = Path(config.model_path)
    settings = read_settings(parent)
    train_config = finetune_train_config(config, settings)
    check_not_parent(config)
    output = output_path(config)
    check_replaceable(output, config.overwrite, what_to_do=_WHAT_TO_DO)
    check_previous_run(train_config)
    data, mixing, folders = finetune_data(config, settings, train_config, progress=progress)
    record = parent_record(
        parent,
        settings,
        data=str(folders["data"].resolve()),
        slices=mixing["new_slices"],
        old_data=str(folders["old_data"].resolve()) if folders["old_data"] else None,
        old_slices=mixing["old_slices"],
        old_fraction=mixing["old_fraction"],
        validation_data=str(folders["validation_data"].resolve()) if folders["validation_data"] else None,
        learning_rate=train_config.learning_rate,
        epochs=train_config.epochs,
    )
    n_patients = len({str(g) for g in data.train.groups[: mixing["new_slices"]]})
    print(describe(settings, train_config, mixing, n_patients), flush=True)
    result = train_model(train_config, data, progress=progress, init_model=parent, extra={"finetuned_from": record})
    if result.best_model_path is None or result.interrupted:
        return FinetuneResult(None, parent, result, mixing)
    if result.postprocessing is None:  # not chosen again (no validation): the parent's stays
        best = result.best_model_path
        update_settings(best, replace(read_settings(best), postprocessing=settings.postprocessing))
        record_written(best)
    _write_output(result.best_model_path, output, config.overwrite)
    return FinetuneResult(output, parent, result, mixing)


def finetune_step(model_path: str | Path | None, data_dir: str | Path | None, **options) -> FinetuneResult | None:
    """The train notebook's fine-tuning step: fine-tune when a model is given, else say how.

    Parameters
    ----------
    model_path : path or None
        The model to refine; None skips the step with one line saying what to set.
    data_dir : path or None
        The corrected slices (``dicoms/`` and ``labels/``, or ``train/dicoms`` and
        ``train/labels``).
    **options
        Other :class:`~ctseg_helpers.train.finetune.FinetuneConfig` fields (``old_data``,
        ``epochs``, ``learning_rate``, ``max_minutes``, ``overwrite`` ...).

    Returns
    -------
    FinetuneResult or None
        None when skipped. The training curves are drawn and the result printed.

    Raises
    ------
    CtsegSettingsError
        If ``model_path`` is given without ``data_dir``; otherwise as :func:`finetune_model`.
    """
    if model_path is None:
        print("Fine-tuning skipped: set finetune_model_path (and finetune_data_dir) in the settings cell to run it")
        return None
    if data_dir is None:
        raise CtsegSettingsError(
            f"finetune_data_dir is not set: give the folder of slices corrected for {model_path} "
            "(dicoms/ and labels/ inside it)"
        )
    from ctseg_helpers.show.training import plot_result  # noqa: PLC0415

    result = finetune_model(FinetuneConfig(model_path, data_dir, **options))
    if result.train.history is not None and len(result.train.history):
        plot_result(result.train)
    print(result)
    return result


def _write_output(best: Path, output: Path, overwrite: bool) -> None:
    """``output``: a copy of ``best`` (written beside it, then renamed), replacing an earlier one
    only when ctseg wrote it and nobody changed it since."""
    if check_replaceable(output, overwrite, what_to_do=_WHAT_TO_DO):
        output.unlink()
        forget_written(output)
    tmp = output.with_name(output.name + ".tmp")
    shutil.copyfile(best, tmp)
    rename_recorded(tmp, output)


__all__ = ["FinetuneResult", "check_not_parent", "finetune_data", "finetune_model", "finetune_step", "output_path"]
