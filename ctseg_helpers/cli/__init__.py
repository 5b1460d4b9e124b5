"""The ``ctseg`` command line.

Each subcommand lives in its own module ``ctseg_helpers.cli.<module>`` with two functions:

``register(subparsers)``
    adds its ``argparse`` parser and calls ``parser.set_defaults(func=run)``;
``run(args) -> int``
    does the work and returns the exit status.

Modules import TensorFlow only inside ``run`` so that ``ctseg --help`` and the data commands
stay fast. Errors the user can fix (:class:`~ctseg_helpers.errors.CtsegError`) are printed as
one line without a traceback, with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ctseg_helpers import __version__
from ctseg_helpers.errors import CtsegError

#: Subcommand modules, in the order ``ctseg --help`` lists them.
COMMAND_MODULES = (
    "inspect_cmd",
    "check_data",
    "train",
    "segment",
    "areas",
    "evaluate",
    "convert",
    "segment_volume",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="ctseg",
        description="Train a 2D U-Net on labelled CT/MR slices, segment new scans, measure areas.",
    )
    parser.add_argument("--version", action="version", version=f"ctseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in available_commands():
        importlib.import_module(f"ctseg_helpers.cli.{name}").register(subparsers)
    return parser


def available_commands() -> list[str]:
    """The subcommand modules that are installed (all of COMMAND_MODULES in a release)."""
    found = []
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"ctseg_helpers.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ctseg_helpers.cli.{name}":
                raise
            logging.getLogger(__name__).debug("subcommand module %s is not installed", name)
            continue
        found.append(name)
    return found


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (also used by ``sys.exit``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CtsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
