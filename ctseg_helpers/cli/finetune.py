"""``ctseg finetune``: continue training a model on corrected slices, from a terminal.

Its options are the fields of :class:`~ctseg_helpers.train.finetune.FinetuneConfig`, each spelt
in the field's metadata (:mod:`ctseg_helpers.cli.options`); the job is
:func:`ctseg_helpers.workflows.finetune.finetune_model`.
"""

from __future__ import annotations

import argparse

from ctseg_helpers.cli.options import add_command, add_settings_options, set_up_devices, settings_from_args
from ctseg_helpers.train.finetune import FinetuneConfig

_DESCRIPTION = """\
Fine-tune MODEL (a ctseg .keras model) on corrected slices: DATA_DIR holds dicoms/ and labels/
(or train/dicoms and train/labels), one label map per DICOM file, as `ctseg train` reads them.
The model's settings are kept (pixel spacing, patch size, normalisation, ROI names, loss,
augmentation); it trains --epochs more epochs at a small learning rate (default 1/10 of its
own). --old-data DIR mixes in its old training data (--old-fraction of the slices, default
half) so it does not forget. Writes OUT/NAME.keras (default: the model's folder and
<model stem>_finetuned), whose settings record the parent model (path, SHA-256, time) and the
data, beside the run's history, curves and checkpoints. MODEL itself is never written.
"""


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "finetune",
        run,
        help="fine-tune a model on corrected slices",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_options(parser, FinetuneConfig)


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """The :class:`~ctseg_helpers.train.finetune.FinetuneConfig` the parsed arguments describe."""
    return FinetuneConfig(**settings_from_args(FinetuneConfig, args))


def run(args) -> int:
    from ctseg_helpers.workflows.finetune import finetune_model  # noqa: PLC0415

    config = config_from_args(args)
    set_up_devices(args.devices)
    result = finetune_model(config, progress=False)
    print(result)
    return 130 if result.interrupted else 0
