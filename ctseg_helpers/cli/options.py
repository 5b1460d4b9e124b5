"""What the subcommands share: their parsers, common options, value converters, settings options.

Each subcommand registers itself with :func:`add_command` (its parser, run by its ``run``) and
takes the options several commands have from here (``--labels``, ``--fov`` / ``--matrix-size``,
``--overwrite``, ``--compression``, the model argument), so each is spelt, parsed and converted
in one place.

Options of a settings dataclass
-------------------------------
A step's settings (:class:`~ctseg_helpers.train.loop.TrainConfig`,
:class:`~ctseg_helpers.segment.segmenter.SegmentSettings`) say in each field's metadata how the
command line offers them: ``field(default=..., metadata={"cli": spec})``, ``spec`` a dict, or a
tuple of dicts for a setting given by several options. :func:`add_settings_options` adds the
options of every such field in field order, with the field's default as the option's default
(so ``%(default)s`` in a help text is the dataclass default); :func:`settings_from_args` turns
the parsed options back into the dataclass' keyword arguments. A new setting is one field.
Keys of ``spec``:

``help`` (required)
    The help text. A field without ``"cli"`` metadata is not on the command line.
``flags``
    Option strings (a string or a tuple); default ``--<field-name>`` (``_`` spelt ``-``), and
    ``--no-<field-name>`` for a bool whose default is True. A name without a leading ``-`` is
    a positional argument.
``type``
    A key of :data:`CONVERTERS` (default: the text as given).
``choices``, ``metavar``, ``required``
    As for :meth:`argparse.ArgumentParser.add_argument`.
``values``
    ``{text: value}``: the choices as typed and the settings' values they stand for
    (``{"auto": "auto", "on": True, "off": False}``).
``negate``
    A flag that sets the value to False (bool fields default True: ``--no-batch-norm``).
``key``
    The option gives one entry of a dict-valued setting (``--class-weights`` is
    ``loss_options["class_weights"]``), set over the entries the setting's own option gives
    (tuples become lists, as in JSON); left out when the option is not given.

A bool setting is a flag. An option left at None leaves the setting at the dataclass'
default; a ``json_object`` option's default is ``{}`` (the entries to change).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

# ----------------------------------------------------------------------------------- converters


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """Whole numbers separated by commas: ``"16,32,64"``."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None


def float_list(text: str) -> tuple[float, ...]:
    """Numbers separated by commas: ``"0.2,1,3"``."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _one_or_several(parse: Callable[[str], tuple]) -> Callable[[str], Any]:
    """``parse``, giving a single value as itself (one for every level) and several as a tuple."""

    def convert(text: str):
        values = parse(text)
        return values[0] if len(values) == 1 else values

    convert.__name__ = f"one_or_several_{parse.__name__}"
    return convert


def spacing_mm(text: str) -> tuple[float, ...]:
    """A pixel spacing in mm: ``"1.5"`` (square pixels, ``(1.5, 1.5)``) or ``"ROW,COL"``."""
    values = float_list(text)
    return values * 2 if len(values) == 1 else values


def json_object(text: str) -> dict:
    """A JSON object: ``'{"p_flip": 0}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"p_flip\": 0}}', got {text!r} ({exc})"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"p_flip\": 0}}', got {text!r}")
    return value


def comma_separated(text: str) -> tuple[str, ...]:
    """Texts separated by commas, each stripped (``""`` gives none); checked by the caller."""
    return tuple(n.strip() for n in text.split(",")) if text else ()


def names(text: str) -> list[str]:
    """ROI names separated by commas, none of them empty."""
    found = [n.strip() for n in text.split(",")]
    if not all(found):
        raise argparse.ArgumentTypeError(f"empty name in {text!r}: give names separated by commas, e.g. LV,myocardium")
    return found


def number_or_pair(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """One number, or two as ``ROWS,COLS`` (or ``ROWSxCOLS``), each parsed by ``kind``."""

    def parse(text: str):
        try:
            values = [kind(v) for v in text.lower().replace("x", ",").split(",")]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: give one number or ROWS,COLS") from exc
        if len(values) not in (1, 2):
            raise argparse.ArgumentTypeError(f"{text!r}: give one number or ROWS,COLS")
        return values[0] if len(values) == 1 else tuple(values)

    parse.__name__ = f"{kind.__name__}_or_pair"
    return parse


#: The converters a settings field's ``"type"`` names: text -> value, raising
#: :class:`argparse.ArgumentTypeError` with what was expected.
CONVERTERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "positive_int": positive_int,
    "int_list": int_list,
    "float_list": float_list,
    "per_level_int": _one_or_several(int_list),
    "per_level_float": _one_or_several(float_list),
    "spacing_mm": spacing_mm,
    "json_object": json_object,
    "comma_separated": comma_separated,
    "path": Path,
}

# ------------------------------------------------------------------------- options of settings


class _Option(NamedTuple):
    """One command-line option of a settings field, resolved from its ``"cli"`` spec."""

    field: str
    flags: tuple[str, ...]
    dest: str
    arguments: dict  # keyword arguments of add_argument
    negate: bool
    values: dict | None
    key: str | None


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _options(settings: type, exclude: Iterable[str]) -> list[_Option]:
    """The options of every field of ``settings`` the command line offers, in field order."""
    found = []
    for field in dataclasses.fields(settings):
        if field.name in exclude:
            continue
        specs = field.metadata.get("cli", ())
        for spec in specs if isinstance(specs, tuple) else (specs,):
            default = None if "key" in spec else _default(field)
            negate = spec.get("negate", default is True)
            flags = spec.get("flags", ("--no-" if negate else "--") + field.name.replace("_", "-"))
            flags = (flags,) if isinstance(flags, str) else tuple(flags)
            long = [f for f in flags if f.startswith("--")] or flags
            arguments = {name: spec[name] for name in ("help", "metavar", "choices", "required") if name in spec}
            if negate or isinstance(default, bool):
                arguments["action"] = "store_true"
            else:
                if "type" in spec:
                    arguments["type"] = CONVERTERS[spec["type"]]
                if "values" in spec:
                    arguments["choices"] = tuple(spec["values"])
                    default = next(text for text, value in spec["values"].items() if value == default)
                if spec.get("type") == "json_object":
                    default = {}
                if default is not dataclasses.MISSING and not spec.get("required"):
                    arguments["default"] = default
            found.append(
                _Option(
                    field.name,
                    flags,
                    long[0].lstrip("-").replace("-", "_"),
                    arguments,
                    negate,
                    spec.get("values"),
                    spec.get("key"),
                )
            )
    return found


def add_settings_options(parser: argparse.ArgumentParser, settings: type, *, exclude: Iterable[str] = ()) -> None:
    """Add an option for each field of the dataclass ``settings`` that says how (module docstring).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    settings : dataclass type
        E.g. :class:`~ctseg_helpers.train.loop.TrainConfig`.
    exclude : iterable of str
        Fields this command does not offer.
    """
    for option in _options(settings, exclude):
        parser.add_argument(*option.flags, **option.arguments)


def settings_from_args(settings: type, args: argparse.Namespace, *, exclude: Iterable[str] = ()) -> dict:
    """The keyword arguments of ``settings`` the options of :func:`add_settings_options` give.

    Options left at None are left out (the setting keeps the dataclass' default); options with
    a ``key`` set that entry of their setting's dict after the setting's own option.
    """
    values: dict = {}
    options = _options(settings, exclude)
    for option in sorted(options, key=lambda o: o.key is not None):  # whole dicts first, then their entries
        value = getattr(args, option.dest)
        if option.negate:
            value = not value
        if option.values is not None:
            value = option.values[value]
        if value is None:
            continue
        if option.key is not None:
            entry = list(value) if isinstance(value, tuple) else value
            values[option.field] = {**values.get(option.field, {}), option.key: entry}
        else:
            values[option.field] = dict(value) if isinstance(value, dict) else value
    return values


# ------------------------------------------------------------------------------ common options


def add_command(
    subparsers, name: str, run: Callable[[argparse.Namespace], int], **parser_options
) -> argparse.ArgumentParser:
    """Add the subcommand ``name``, run by ``run(args) -> exit status``; returns its parser.

    ``parser_options`` (``help``, ``description``, ``formatter_class`` ...) go to
    ``subparsers.add_parser``.
    """
    parser = subparsers.add_parser(name, **parser_options)
    parser.set_defaults(func=run)
    return parser


def add_model(parser: argparse.ArgumentParser, help: str) -> None:
    """The ``MODEL`` argument: the trained model to segment with."""
    parser.add_argument("model", metavar="MODEL", help=help)


def add_labels(parser: argparse.ArgumentParser, help: str, *, required: bool = False) -> None:
    """``--labels NAME,NAME,...``: ROI names, parsed into a list (an empty name is refused)."""
    parser.add_argument("--labels", type=names, required=required, metavar="NAME,NAME,...", help=help)


def add_spacing_arguments(parser: argparse.ArgumentParser) -> None:
    """``--fov`` and ``--matrix-size``, the fallback when DICOM files have no PixelSpacing."""
    parser.add_argument(
        "--fov",
        type=number_or_pair(float),
        metavar="MM",
        help="field of view in mm (or ROWS,COLS), used when a file has no PixelSpacing",
    )
    parser.add_argument(
        "--matrix-size",
        type=number_or_pair(int),
        metavar="PX",
        help="image size in pixels that --fov spans (default: the image size)",
    )


def add_measure_options(parser: argparse.ArgumentParser) -> None:
    """``--fat-window LOW HIGH`` and ``--areas-only``: what the area table measures besides the area."""
    parser.add_argument(
        "--fat-window",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="CT only: the HU window counted as fat in <ROI>_fat_fraction, both ends included "
        "(default -190 -30, the adipose-tissue window of body-composition studies)",
    )
    parser.add_argument(
        "--areas-only",
        action="store_true",
        help="only the area columns: no pixel values, fat fraction, perimeter or diameter",
    )


def measure_options(args: argparse.Namespace) -> dict:
    """``measures`` and ``fat_window_hu`` from :func:`add_measure_options`' options, checked.

    Raises
    ------
    CtsegSettingsError
        A window that is not LOW < HIGH, or ``--fat-window`` with ``--areas-only``.
    """
    from ctseg_helpers.errors import CtsegSettingsError  # noqa: PLC0415
    from ctseg_helpers.measure.intensity import check_fat_window  # noqa: PLC0415

    fat_window = check_fat_window(args.fat_window, setting="--fat-window") if args.fat_window else None
    if fat_window is not None and args.areas_only:
        raise CtsegSettingsError("--fat-window needs the fat fraction column: leave out --areas-only")
    return {"measures": not args.areas_only, "fat_window_hu": fat_window}


def print_mean_areas(table, names, over: str = "") -> None:
    """One line of mean areas per ROI (one per position for a cine table's per-position rows)."""
    from ctseg_helpers.measure.area import summary_rows  # noqa: PLC0415

    for label, means in summary_rows(table, "mean").iterrows():
        where = label[len("mean") :]  # "" or, for cine, " @ 12.5 mm" (the mean over its phases)
        print(f"mean area per slice{over}{where} (mm2): " + ", ".join(f"{name} {means[name]:.1f}" for name in names))


def set_up_devices(devices: str) -> None:
    """Split the CPU into logical devices for ``--devices cpu:N`` (before TensorFlow sets up its
    devices), then print the system report that training runs start with."""
    from ctseg_helpers.train.system import system_info  # noqa: PLC0415

    if devices.strip().lower().startswith("cpu:"):
        from ctseg_helpers.train.distribute import parse_devices, split_cpu  # noqa: PLC0415

        split_cpu(parse_devices(devices)[1])
    print(system_info())


def add_overwrite(parser: argparse.ArgumentParser, help: str) -> None:
    """``--overwrite``: replace what an earlier ctseg run wrote (``help`` says what, for this command)."""
    parser.add_argument("--overwrite", action="store_true", help=help)


def add_compression(parser: argparse.ArgumentParser, help: str) -> None:
    """``--compression {gzip,lzf,none}`` of an HDF5 output (default gzip); read it with :func:`compression`."""
    parser.add_argument("--compression", choices=("gzip", "lzf", "none"), default="gzip", help=help)


def compression(args: argparse.Namespace) -> str | None:
    """The HDF5 compression ``--compression`` asks for (None for ``none``)."""
    return None if args.compression == "none" else args.compression
