"""``ctseg demo``: the whole workflow on a synthetic lumbar CT phantom, through the notebooks."""

from __future__ import annotations

from ctseg_helpers.cli.options import add_command, add_settings_options, settings_from_args


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
    from ctseg_helpers.demo.run import DemoSettings  # noqa: PLC0415 - light (no TensorFlow)

    add_settings_options(parser, DemoSettings)
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")


def run(args) -> int:
    from ctseg_helpers.demo.run import DemoSettings, format_summary, run_demo  # noqa: PLC0415

    settings = DemoSettings(**settings_from_args(DemoSettings, args))
    result = run_demo(settings, progress=not args.no_progress)
    print(format_summary(result))
    return 0
