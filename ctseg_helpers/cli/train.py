"""``ctseg train``: train a U-Net from a terminal, with the notebook's status lines."""

from __future__ import annotations

import argparse

from ctseg_helpers.model.loss_names import LOSS_NAMES

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
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"p_flip\": 0}}', got {text!r} ({exc})"
        ) from None
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
    parser.add_argument("--input-shape", type=_positive_int, default=None,
                        help="side of the square network input (training patch) in pixels (default: planned)")
    parser.add_argument("--num-labels", type=_positive_int, required=True, help="number of ROIs, background excluded")
    parser.add_argument("--label-names", help="ROI names separated by commas, label 1 first (a first name "
                                              "'background' followed by one name per ROI is dropped)")
    parser.add_argument("--batch-size", type=_positive_int, default=None, help="(default: planned)")
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="peak Adam learning rate (default: %(default)s)")
    parser.add_argument("--lr-schedule", choices=("poly", "cosine", "constant"), default="poly",
                        help="learning-rate decay after the warm-up (default: %(default)s)")
    parser.add_argument("--warmup-epochs", type=int, default=None,
                        help="linear warm-up epochs (default: 5%% of epochs)")
    parser.add_argument("--batches-per-epoch", type=_positive_int, default=None,
                        help="patch batches per epoch (default: planned, 50 on a CPU)")
    parser.add_argument("--foreground-fraction", type=float, default=None,
                        help="share of each batch centred on an ROI pixel (default: planned, 1/3)")
    parser.add_argument("--target-spacing", type=_float_list, default=None, metavar="MM[,MM]",
                        help="pixel spacing to train at, mm (default: planned, the median of the slices)")
    parser.add_argument("--postprocessing", choices=("auto", "none"), default="auto",
                        help="choose largest-region / hole filling per ROI on the validation slices (default: auto)")
    parser.add_argument("--folds", type=_positive_int, default=1,
                        help="train K models on patient-wise folds and an ensemble of them (default: 1)")
    parser.add_argument("--print-checkpoint", type=_positive_int, default=10,
                        help="print a status line every N epochs (default: %(default)s)")
    parser.add_argument("--save-checkpoint", type=_positive_int, default=50,
                        help="save a checkpoint every N epochs (default: %(default)s)")
    parser.add_argument("--loss", default="dice_ce", choices=LOSS_NAMES,
                        help="(default: %(default)s)")
    parser.add_argument("--loss-options", type=_json_object, default={},
                        help='loss options as JSON, e.g. \'{"gamma": 1.5}\' (focal), \'{"alpha": 0.3, "beta": 0.7}\' '
                             "(tversky), '{\"dice_weight\": 1, \"ce_weight\": 1}' (dice_ce)")
    parser.add_argument("--class-weights", type=_float_list, default=None, metavar="W0,W1,...",
                        help="per-class weights (background first) for weighted_ce, focal or dice_ce")
    parser.add_argument("--no-augment", action="store_true", help="turn all augmentation off")
    parser.add_argument("--augment-options", type=_json_object, default={},
                        help='augmentation probabilities/strengths as JSON, e.g. \'{"p_flip": 0, "p_rot90": 0}\' '
                             "for left/right ROIs (names as in train.ipynb's augment_options)")
    parser.add_argument("--levels", type=_positive_int, default=None, help="U-Net pooling levels (default: planned)")
    parser.add_argument("--base-filters", type=_positive_int, default=16,
                        help="filters of level 1 (default: %(default)s)")
    parser.add_argument("--filter-multiplier", type=float, default=2.0,
                        help="filter growth per level (default: %(default)s)")
    parser.add_argument("--filters", type=_int_list, help="filters per level and bottleneck, e.g. 16,32,64,128,256")
    parser.add_argument("--pool-sizes", type=_int_list, help="pool size per level, e.g. 2,2,2,2")
    parser.add_argument("--kernel-sizes", type=_int_list, help="kernel size per level and bottleneck")
    parser.add_argument("--dropout", type=_float_list, help="dropout rate, one value or one per level and bottleneck")
    parser.add_argument("--no-batch-norm", action="store_true", help="leave out batch normalisation")
    parser.add_argument("--instance-norm", action="store_true", help="instance normalisation in place of batch norm")
    parser.add_argument("--activation", default="relu", help="(default: %(default)s)")
    parser.add_argument("--fit-mode", choices=("patch", "resize", "pad"), default="patch",
                        help="patch: random patches at the planned spacing; resize/pad: whole slices fitted to "
                             "the input (default: %(default)s)")
    parser.add_argument("--validation-fraction", type=float, default=None,
                        help="share of slices, as whole patients/series, for validation (default: 0.2 when at "
                             "least 3 patients/series stay for training, else none: train on all)")
    parser.add_argument("--validation-dir", help="folder with dicoms/ and labels/ to validate on instead")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous run of --name in --out (only files ctseg wrote and nobody "
                             "changed since)")
    parser.add_argument("--max-slices", type=_positive_int, help="read only this many pairs (smoke runs)")
    parser.add_argument("--allow-missing-labels", action="store_true",
                        help="train even when an ROI value 1..num_labels appears in no training label")
    parser.add_argument("--max-minutes", type=float, help="stop with a checkpoint after this much training time")
    parser.add_argument("--mixed-precision", choices=("auto", "on", "off"), default="auto",
                        help="reduced precision: float16 on a GPU, bfloat16 on a CPU with AMX; auto uses it where "
                             "it pays (default: auto)")
    parser.add_argument("--devices", default="auto",
                        help="auto (all GPUs when several), cpu, gpu, or cpu:N (N logical CPU devices, for tests)")
    parser.set_defaults(func=run)


def config_from_args(args):
    """The :class:`~ctseg_helpers.train.TrainConfig` the parsed arguments describe."""
    from ctseg_helpers.prepare.augment import AugmentConfig  # noqa: PLC0415
    from ctseg_helpers.train.loop import TrainConfig  # noqa: PLC0415

    names = ()
    if args.label_names:
        from ctseg_helpers.io.label_names import check_label_names  # noqa: PLC0415

        names = check_label_names([n.strip() for n in args.label_names.split(",")], args.num_labels,
                                  setting="--label-names", counted=f"--num-labels is {args.num_labels}")
    loss_options = dict(args.loss_options)
    if args.class_weights is not None:
        loss_options["class_weights"] = list(args.class_weights)
    spacing = args.target_spacing
    if spacing is not None and len(spacing) == 1:
        spacing = (spacing[0], spacing[0])
    dropout = args.dropout if args.dropout is None or len(args.dropout) > 1 else args.dropout[0]
    pools = args.pool_sizes if args.pool_sizes is None or len(args.pool_sizes) > 1 else args.pool_sizes[0]
    kernels = args.kernel_sizes if args.kernel_sizes is None or len(args.kernel_sizes) > 1 else args.kernel_sizes[0]
    return TrainConfig(
        main_dir=args.data_dir, model_filename=args.name, out_dir=args.out, input_shape=args.input_shape,
        num_labels=args.num_labels, label_names=names, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, print_checkpoint=args.print_checkpoint,
        save_checkpoint=args.save_checkpoint,
        augmentation=AugmentConfig.from_dict({**args.augment_options, "enabled": not args.no_augment}),
        loss=args.loss, levels=args.levels, filters=args.filters, base_filters=args.base_filters,
        filter_multiplier=args.filter_multiplier, pool_sizes=pools if pools is not None else 2,
        kernel_sizes=kernels if kernels is not None else 3, batch_norm=not args.no_batch_norm,
        dropout=dropout if dropout is not None else 0.0, activation=args.activation, fit_mode=args.fit_mode,
        validation_fraction=args.validation_fraction, validation_dir=args.validation_dir, seed=args.seed,
        resume=args.resume, overwrite=args.overwrite, max_slices=args.max_slices, max_minutes=args.max_minutes,
        mixed_precision={"auto": "auto", "on": True, "off": False}[args.mixed_precision],
        lr_schedule=args.lr_schedule, warmup_epochs=args.warmup_epochs, batches_per_epoch=args.batches_per_epoch,
        foreground_fraction=args.foreground_fraction, target_spacing_mm=spacing, postprocessing=args.postprocessing,
        loss_options=loss_options, instance_norm=args.instance_norm, folds=args.folds, devices=args.devices,
        allow_missing_labels=args.allow_missing_labels,
    )


def run(args) -> int:
    from ctseg_helpers.train.loop import train_model  # noqa: PLC0415
    from ctseg_helpers.train.system import system_info  # noqa: PLC0415

    config = config_from_args(args)
    if args.devices.strip().lower().startswith("cpu:"):  # before TensorFlow sets up its devices
        from ctseg_helpers.train.distribute import parse_devices, split_cpu  # noqa: PLC0415

        split_cpu(parse_devices(args.devices)[1])
    print(system_info())
    result = train_model(config, progress=False)
    print(result)
    return 130 if result.interrupted else 0
