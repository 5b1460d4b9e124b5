"""``ctseg train``: train a U-Net from a terminal, with the notebook's status lines.

Its options are the fields of :class:`~ctseg_helpers.train.loop.TrainConfig`, each spelt in the
field's metadata (:mod:`ctseg_helpers.cli.options`).
"""

from __future__ import annotations

import argparse

from ctseg_helpers.cli.options import add_command, add_settings_options, set_up_devices, settings_from_args
from ctseg_helpers.train.loop import TrainConfig

_DESCRIPTION = """\
Train a 2D U-Net on DATA_DIR/train/dicoms + DATA_DIR/train/labels. A plan from the data sets
the pixel spacing, patch size, depth, batch size and normalisation (printed first; any of them
given here wins). Every --print-checkpoint epochs a status line is printed; every
--save-checkpoint epochs OUT/NAME_<epoch>.keras is saved, and OUT/NAME_best.keras (best
validation Dice, with the post-processing chosen on validation), NAME_history.csv and
NAME_curves.png are kept up to date. --folds K trains K models on patient-wise folds and writes
OUT/NAME.ensemble.json for `ctseg segment`. Ctrl-C saves a checkpoint and stops; --resume
continues from the newest checkpoint.
"""


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "train",
        run,
        help="train a U-Net on labelled slices",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_options(parser, TrainConfig)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`~ctseg_helpers.train.TrainConfig` the parsed arguments describe."""
    values = settings_from_args(TrainConfig, args)
    if values.get("label_names"):  # checked here too, so that messages name the options
        from ctseg_helpers.io.label_names import check_label_names  # noqa: PLC0415

        values["label_names"] = check_label_names(
            values["label_names"],
            args.num_labels,
            setting="--label-names",
            counted=f"--num-labels is {args.num_labels}",
        )
    return TrainConfig(**values)


def run(args) -> int:
    from ctseg_helpers.train.loop import train_model  # noqa: PLC0415

    config = config_from_args(args)
    set_up_devices(args.devices)
    result = train_model(config, progress=False)
    print(result)
    return 130 if result.interrupted else 0
