"""``ctseg train``: train a U-Net from a terminal, with the notebook's status lines."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Train a 2D U-Net on DATA_DIR/train/dicoms + DATA_DIR/train/labels. Every --print-checkpoint
epochs a status line is printed; every --save-checkpoint epochs OUT/NAME_<epoch>.keras is
saved, and OUT/NAME_best.keras, NAME_history.csv and NAME_curves.png are kept up to date.
Ctrl-C saves a checkpoint and stops; --resume continues from the newest checkpoint.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _json_object(text: str) -> dict:
    import json  # noqa: PLC0415

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"p_flip\": 0}}', got {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"p_flip\": 0}}', got {text!r}")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a U-Net on labelled slices",
                                   description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder holding train/dicoms and train/labels")
    parser.add_argument("--out", default="trained_model", help="output folder (default: %(default)s)")
    parser.add_argument("--name", default="unet", help="model file name stem (default: %(default)s)")
    parser.add_argument("--epochs", type=_positive_int, default=100, help="total epochs (default: %(default)s)")
    parser.add_argument("--input-shape", type=_positive_int, default=256,
                        help="side of the square network input in pixels (default: %(default)s)")
    parser.add_argument("--num-labels", type=_positive_int, required=True, help="number of ROIs, background excluded")
    parser.add_argument("--label-names", help="ROI names separated by commas, label 1 first")
    parser.add_argument("--batch-size", type=_positive_int, default=8, help="(default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--print-checkpoint", type=_positive_int, default=10,
                        help="print a status line every N epochs (default: %(default)s)")
    parser.add_argument("--save-checkpoint", type=_positive_int, default=50,
                        help="save a checkpoint every N epochs (default: %(default)s)")
    parser.add_argument("--loss", default="dice_ce", choices=("dice_ce", "dice", "focal", "weighted_ce", "tversky"),
                        help="(default: %(default)s)")
    parser.add_argument("--no-augment", action="store_true", help="turn all augmentation off")
    parser.add_argument("--augment-options", type=_json_object, default={},
                        help='augmentation probabilities/strengths as JSON, e.g. \'{"p_flip": 0, "p_rot90": 0}\' '
                             "for left/right ROIs (names as in train.ipynb's augment_options)")
    parser.add_argument("--levels", type=_positive_int, default=4, help="U-Net pooling levels (default: %(default)s)")
    parser.add_argument("--base-filters", type=_positive_int, default=16, help="filters of level 1 (default: %(default)s)")
    parser.add_argument("--filter-multiplier", type=float, default=2.0, help="filter growth per level (default: %(default)s)")
    parser.add_argument("--filters", type=_int_list, help="filters per level and bottleneck, e.g. 16,32,64,128,256")
    parser.add_argument("--pool-sizes", type=_int_list, help="pool size per level, e.g. 2,2,2,2")
    parser.add_argument("--kernel-sizes", type=_int_list, help="kernel size per level and bottleneck")
    parser.add_argument("--dropout", type=_float_list, help="dropout rate, one value or one per level and bottleneck")
    parser.add_argument("--no-batch-norm", action="store_true", help="leave out batch normalisation")
    parser.add_argument("--activation", default="relu", help="(default: %(default)s)")
    parser.add_argument("--fit-mode", choices=("resize", "pad"), default="resize",
                        help="fit slices to the input by resizing or by padding/cropping (default: %(default)s)")
    parser.add_argument("--validation-fraction", type=float, default=0.2,
                        help="share of slices, as whole patients/series, for validation (default: %(default)s)")
    parser.add_argument("--validation-dir", help="folder with dicoms/ and labels/ to validate on instead")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--overwrite", action="store_true", help="delete a previous run of --name in --out first")
    parser.add_argument("--max-slices", type=_positive_int, help="read only this many pairs (smoke runs)")
    parser.add_argument("--max-minutes", type=float, help="stop with a checkpoint after this much training time")
    parser.add_argument("--mixed-precision", action="store_true", help="float16 compute on a GPU")
    parser.set_defaults(func=run)


def config_from_args(args):
    """The :class:`~ctseg_helpers.train.TrainConfig` the parsed arguments describe."""
    from ctseg_helpers.prepare.augment import AugmentConfig  # noqa: PLC0415
    from ctseg_helpers.train.loop import TrainConfig  # noqa: PLC0415

    names = tuple(n.strip() for n in args.label_names.split(",")) if args.label_names else ()
    dropout = args.dropout if args.dropout is None or len(args.dropout) > 1 else args.dropout[0]
    pools = args.pool_sizes if args.pool_sizes is None or len(args.pool_sizes) > 1 else args.pool_sizes[0]
    kernels = args.kernel_sizes if args.kernel_sizes is None or len(args.kernel_sizes) > 1 else args.kernel_sizes[0]
    return TrainConfig(
        main_dir=args.data_dir, model_filename=args.name, out_dir=args.out, input_shape=args.input_shape,
        num_labels=args.num_labels, label_names=names, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, print_checkpoint=args.print_checkpoint,
        save_checkpoint=args.save_checkpoint, augmentation=AugmentConfig.from_dict({**args.augment_options, "enabled": not args.no_augment}),
        loss=args.loss, levels=args.levels, filters=args.filters, base_filters=args.base_filters,
        filter_multiplier=args.filter_multiplier, pool_sizes=pools if pools is not None else 2,
        kernel_sizes=kernels if kernels is not None else 3, batch_norm=not args.no_batch_norm,
        dropout=dropout if dropout is not None else 0.0, activation=args.activation, fit_mode=args.fit_mode,
        validation_fraction=args.validation_fraction, validation_dir=args.validation_dir, seed=args.seed,
        resume=args.resume, overwrite=args.overwrite, max_slices=args.max_slices, max_minutes=args.max_minutes,
        mixed_precision=args.mixed_precision,
    )


def run(args) -> int:
    from ctseg_helpers.train.loop import train_model  # noqa: PLC0415
    from ctseg_helpers.train.system import system_info  # noqa: PLC0415

    config = config_from_args(args)
    print(system_info())
    result = train_model(config, progress=False)
    print(result)
    return 130 if result.interrupted else 0
