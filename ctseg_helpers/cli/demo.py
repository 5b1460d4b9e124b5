"""``ctseg demo``: the whole workflow on a synthetic lumbar CT phantom, through the notebooks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ctseg_helpers.cli.options import add_command


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "demo",
        run,
        help="train, segment and measure on a synthetic CT phantom (about 10 min on 2 CPU cores)",
        description=(
            "Write a synthetic lumbar CT phantom (real DICOM, six labelled ROIs, exact areas) into "
            "data/phantom unless it is already there, run notebooks/train.ipynb, test.ipynb and "
            "visualize.ipynb on it with papermill, save the executed notebooks, and print where "
            "everything is and the measured area error against the phantom's known areas. "
            "A folder holding other data is never overwritten."
        ),
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="phantom folder (default: data/phantom in the checkout)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="new folder for the run (default: predictions/demo_<timestamp>)"
    )
    from ctseg_helpers.demo.run import DemoSettings  # noqa: PLC0415 - light (no TensorFlow)

    default = {f.name: f.default for f in dataclasses.fields(DemoSettings)}
    parser.add_argument(
        "--slices", type=int, default=default["n_train"], help="phantom training slices (default %(default)s)"
    )
    parser.add_argument(
        "--test-slices", type=int, default=default["n_test"], help="phantom test slices (default %(default)s)"
    )
    parser.add_argument("--epochs", type=int, default=default["epochs"], help="training epochs (default %(default)s)")
    parser.add_argument(
        "--batches-per-epoch",
        type=int,
        default=default["batches_per_epoch"],
        help="patch batches per epoch (default %(default)s)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=default["batch_size"], help="training batch size (default %(default)s)"
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=default["learning_rate"],
        help="peak Adam learning rate (default %(default)s)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=default["size"],
        help="slice rows/columns and network input shape (multiple of 16; default %(default)s)",
    )
    parser.add_argument(
        "--max-train-minutes",
        type=float,
        default=default["max_train_minutes"],
        help="stop training after the epoch that passes this time (default %(default)s; 0 = no limit)",
    )
    parser.add_argument("--seed", type=int, default=0, help="phantom and training seed (default %(default)s)")
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="folder holding train/test/visualize.ipynb (default: notebooks/ in the checkout)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")


def run(args) -> int:
    from ctseg_helpers.demo.run import DemoSettings, format_summary, run_demo  # noqa: PLC0415

    settings = DemoSettings(
        data_dir=args.data_dir,
        out_dir=args.out,
        n_train=args.slices,
        n_test=args.test_slices,
        size=args.size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        batches_per_epoch=args.batches_per_epoch,
        seed=args.seed,
        notebooks_dir=args.notebooks,
        max_train_minutes=args.max_train_minutes or None,
    )
    result = run_demo(settings, progress=not args.no_progress)
    print(format_summary(result))
    return 0
