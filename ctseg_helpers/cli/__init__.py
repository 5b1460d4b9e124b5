"""The ``ctseg`` command line.

Each subcommand lives in its own module ``ctseg_helpers.cli.<module>`` with two functions:

``register(subparsers)``
    adds its ``argparse`` parser, run by ``run`` (:func:`~ctseg_helpers.cli.options.add_command`),
    and its options: those several subcommands share, and those of a settings dataclass, come
    from :mod:`ctseg_helpers.cli.options`;
``run(args) -> int``
    does the work and returns the exit status.

Modules import TensorFlow only inside ``run`` so that ``ctseg --help`` and the data commands
stay fast. Errors the user can fix (:class:`~ctseg_helpers.errors.CtsegError`) are printed as
one line without a traceback, with exit status 2, and so are files or folders the system
refuses to write (no permission, read-only or full disk): see :func:`system_refusal`.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys

from ctseg_helpers import __version__
from ctseg_helpers.errors import CtsegError

#: Subcommand modules, in the order ``ctseg --help`` lists them.
COMMAND_MODULES = (
    "inspect_cmd",
    "check_data",
    "train",
    "finetune",
    "import_labels",
    "segment",
    "areas",
    "evaluate",
    "convert",
    "segment_volume",
    "demo",
)


#: What to do when the system refuses a file, by errno.
_REFUSALS = {
    errno.EACCES: "choose an output folder you can write to (or make the input readable)",
    errno.EPERM: "choose an output folder you can write to (or make the input readable)",
    errno.EROFS: "choose an output folder on a disk you can write to",
    errno.ENOSPC: "free disk space or choose an output folder on another disk",
}
if hasattr(errno, "EDQUOT"):  # disk quotas (Linux, macOS)
    _REFUSALS[errno.EDQUOT] = _REFUSALS[errno.ENOSPC]


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
    except OSError as exc:
        message = system_refusal(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def system_refusal(exc: OSError) -> str | None:
    """One line for an OSError the user can act on (permission, read-only or full disk), else None.

    Parameters
    ----------
    exc : OSError
        Raised by a subcommand.

    Returns
    -------
    str or None
        ``"PATH: REASON; WHAT TO DO"`` when ``exc.errno`` is EACCES, EPERM, EROFS, ENOSPC or
        EDQUOT (any :class:`PermissionError` counts as EACCES); None for any other OSError,
        which the caller re-raises.
    """
    code = errno.EACCES if isinstance(exc, PermissionError) and exc.errno not in _REFUSALS else exc.errno
    if code not in _REFUSALS:
        return None
    if exc.filename is None:  # h5py names the file inside its message only
        return f"{exc}; {_REFUSALS[code]}"
    return f"{exc.filename}: {os.strerror(code)}; {_REFUSALS[code]}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
