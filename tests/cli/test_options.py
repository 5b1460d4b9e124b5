"""What the subcommands share: converters, settings dataclasses as options, common options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ctseg_helpers.cli import build_parser
from ctseg_helpers.cli.options import (
    CONVERTERS,
    add_command,
    add_compression,
    add_settings_options,
    compression,
    json_object,
    names,
    number_or_pair,
    positive_int,
    settings_from_args,
)
from ctseg_helpers.cli.train import config_from_args
from ctseg_helpers.segment.segmenter import SegmentSettings
from ctseg_helpers.train.loop import TrainConfig

# --- converters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("convert", "text", "value"),
    [
        (positive_int, "3", 3),
        (CONVERTERS["int_list"], "16,32", (16, 32)),
        (CONVERTERS["float_list"], "0.2,1", (0.2, 1.0)),
        (CONVERTERS["per_level_int"], "2", 2),  # one value: the same for every level
        (CONVERTERS["per_level_int"], "2,2,3", (2, 2, 3)),
        (CONVERTERS["per_level_float"], "0.1", 0.1),
        (CONVERTERS["spacing_mm"], "1.5", (1.5, 1.5)),  # one value: square pixels
        (CONVERTERS["spacing_mm"], "1.5,2", (1.5, 2.0)),
        (CONVERTERS["comma_separated"], " a, b ", ("a", "b")),
        (CONVERTERS["comma_separated"], "", ()),
        (json_object, '{"p_flip": 0}', {"p_flip": 0}),
        (names, "LV, myocardium", ["LV", "myocardium"]),
        (number_or_pair(float), "400", 400.0),
        (number_or_pair(int), "256x192", (256, 192)),
    ],
)
def test_converters_parse_what_they_describe(convert, text, value):
    assert convert(text) == value


@pytest.mark.parametrize(
    ("convert", "text", "message"),
    [
        (positive_int, "ten", "expected a whole number, got 'ten'"),
        (positive_int, "0", "expected a positive whole number, got 0"),
        (CONVERTERS["int_list"], "4,x", "expected whole numbers separated by commas, got '4,x'"),
        (CONVERTERS["float_list"], "a", "expected numbers separated by commas, got 'a'"),
        (CONVERTERS["per_level_float"], "0.1,b", "expected numbers separated by commas, got '0.1,b'"),
        (CONVERTERS["spacing_mm"], "1,mm", "expected numbers separated by commas, got '1,mm'"),
        (json_object, "p_flip=0", "expected a JSON object such as '{\"p_flip\": 0}', got 'p_flip=0' (Expecting value"),
        (json_object, "[1]", "expected a JSON object such as '{\"p_flip\": 0}', got '[1]'"),
        (names, "LV,,myo", "empty name in 'LV,,myo': give names separated by commas, e.g. LV,myocardium"),
        (number_or_pair(float), "wide", "'wide': give one number or ROWS,COLS"),
        (number_or_pair(int), "1,2,3", "'1,2,3': give one number or ROWS,COLS"),
    ],
)
def test_converters_say_what_they_expected(convert, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        convert(text)
    assert str(info.value).startswith(message)


# --- a settings dataclass as options ---------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Every kind of option a settings field can be."""

    folder: str = field(metadata={"cli": {"help": "input folder", "flags": "folder", "metavar": "DIR"}})
    count: int = field(default=1, metadata={"cli": {"help": "count", "type": "positive_int", "required": True}})
    size: int | None = field(
        default=None,
        metadata={"cli": {"help": "size (default: %(default)s)", "type": "positive_int", "flags": ("-s", "--size")}},
    )
    kind: str = field(default="a", metadata={"cli": {"help": "kind", "choices": ("a", "b")}})
    fast: bool = field(default=False, metadata={"cli": {"help": "go fast"}})
    checks: bool = field(default=True, metadata={"cli": {"help": "skip the checks"}})
    precision: bool | str = field(
        default="auto", metadata={"cli": {"help": "precision", "values": {"auto": "auto", "on": True, "off": False}}}
    )
    options: dict = field(
        default_factory=dict,
        metadata={
            "cli": (
                {"help": "off", "key": "enabled", "negate": True, "flags": "--no-options"},
                {"help": "options as JSON", "type": "json_object"},
                {"help": "weights", "key": "weights", "type": "float_list", "flags": "--weights"},
            )
        },
    )
    hidden: object = None  # not on the command line
    left_out: int = field(default=5, metadata={"cli": {"help": "a setting this command does not offer"}})


def _parser():
    parser = argparse.ArgumentParser(prog="x")
    add_settings_options(parser, Settings, exclude=("left_out",))
    return parser


def _values(*argv):
    return settings_from_args(Settings, _parser().parse_args(["data", "--count", "2", *argv]), exclude=("left_out",))


def test_settings_options_are_spelt_from_the_fields():
    parser = _parser()
    flags = [a.option_strings or [a.dest] for a in parser._actions[1:]]
    assert flags == [
        ["folder"],
        ["--count"],
        ["-s", "--size"],
        ["--kind"],
        ["--fast"],
        ["--no-checks"],
        ["--precision"],
        ["--no-options"],
        ["--options"],
        ["--weights"],
    ]
    assert "size (default: None)" in parser.format_help() and "{auto,on,off}" in parser.format_help()


def test_settings_from_args_gives_the_defaults_unless_an_option_is_given():
    assert _values() == {
        "folder": "data",
        "count": 2,
        "kind": "a",
        "fast": False,
        "checks": True,
        "precision": "auto",
        "options": {"enabled": True},
    }
    assert Settings(**_values()).hidden is None and Settings(**_values()).left_out == 5
    given = _values(
        "-s",
        "7",
        "--kind",
        "b",
        "--fast",
        "--no-checks",
        "--precision",
        "off",
        "--no-options",
        "--options",
        '{"enabled": true, "weights": [9], "p": 1}',
        "--weights",
        "0.5,2",
    )
    assert given == {
        "folder": "data",
        "count": 2,
        "size": 7,
        "kind": "b",
        "fast": True,
        "checks": False,
        "precision": False,
        "options": {"enabled": False, "weights": [0.5, 2.0], "p": 1},
    }


def test_required_settings_options_are_required(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["data"])
    assert "the following arguments are required: --count" in capsys.readouterr().err


def test_ctseg_train_without_options_gives_the_train_config_defaults():
    args = build_parser().parse_args(["train", "data", "--num-labels", "1"])
    assert config_from_args(args) == TrainConfig(main_dir="data", num_labels=1)


@pytest.mark.parametrize("command", ["segment", "segment-volume"])
def test_segment_options_default_to_the_segment_settings(command):
    args = build_parser().parse_args([command, "model.keras", "a", "b"][: 3 if command == "segment" else 4])
    values = settings_from_args(SegmentSettings, args)
    assert SegmentSettings(**values) == SegmentSettings()
    assert "mode" not in values  # None: as the model was trained


def test_ctseg_demo_without_options_gives_the_demo_settings_defaults():
    from ctseg_helpers.demo.run import DemoSettings

    args = build_parser().parse_args(["demo"])
    assert DemoSettings(**settings_from_args(DemoSettings, args)) == DemoSettings()
    args = build_parser().parse_args(["demo", "--slices", "4", "--out", "x", "--max-train-minutes", "0"])
    settings = DemoSettings(**settings_from_args(DemoSettings, args))
    assert (settings.n_train, settings.out_dir, settings.max_train_minutes) == (4, Path("x"), None)


# --- common options --------------------------------------------------------------------------------


def test_add_command_runs_its_function():
    parser = argparse.ArgumentParser()

    def run(args):
        return 7

    sub = add_command(parser.add_subparsers(), "go", run, help="go somewhere")
    add_compression(sub, "how to compress")
    args = parser.parse_args(["go", "--compression", "none"])
    assert args.func(args) == 7 and compression(args) is None
    assert compression(parser.parse_args(["go"])) == "gzip"
