"""``ctseg finetune`` from the command line: a new model file, refusals as one line and exit status 2."""

from __future__ import annotations

import pytest

from ctseg_helpers.cli import build_parser, main
from ctseg_helpers.model.settings import read_settings
from tests.segment.tiny_model import make_tiny_model_file
from tests.train.test_finetune import write_slices

FAST = ["--epochs", "1", "--batches-per-epoch", "2", "--mixed-precision", "off", "--devices", "cpu"]


@pytest.fixture
def model_and_data(tmp_path):
    """A tiny 1x1-convolution patch model (saved without a plan) and two corrected disc slices."""
    model = make_tiny_model_file(
        tmp_path / "models" / "tiny.keras", num_labels=1, label_names=("disc",), fit_mode="patch"
    )
    write_slices(tmp_path / "corrected" / "train", 2, "disc", seed=5, patient="C")
    return model, tmp_path / "corrected"


def test_finetune_writes_a_new_model_beside_the_old_one_and_refuses_to_run_again(model_and_data, capsys):
    model, data = model_and_data
    assert main(["finetune", str(model), str(data), *FAST]) == 0
    out = capsys.readouterr().out
    assert "Fine-tuning on 2 corrected slice(s) from 1 patient(s)/series (disc; the model's spacing native" in out
    assert "learning rate 0.0001" in out  # a tenth of the 1e-3 assumed for a model that does not say
    output = model.parent / "tiny_finetuned.keras"
    assert f"Fine-tuned model: {output}" in out
    settings = read_settings(output)
    assert settings.extra["finetuned_from"]["model"] == str(model.resolve())
    assert settings.target_spacing_mm is None and settings.input_shape == 32
    # The same command again: the output exists.
    assert main(["finetune", str(model), str(data), *FAST]) == 2
    assert "tiny_finetuned.keras exists already; choose another --name or --out, or pass --overwrite" in (
        capsys.readouterr().err
    )
    assert main(["finetune", str(model), str(data), *FAST, "--overwrite"]) == 0


def test_an_output_over_the_input_model_is_refused_in_one_line(model_and_data, capsys):
    model, data = model_and_data
    assert main(["finetune", str(model), str(data), "--name", "tiny", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: {model}: is the model being fine-tuned, and --name tiny in {model.parent}")


def test_labels_the_model_does_not_know_are_refused_in_one_line(model_and_data, tmp_path, capsys):
    model, _ = model_and_data
    write_slices(tmp_path / "three", 1, "disc", seed=6, patient="T", label_value=3)
    assert main(["finetune", str(model), str(tmp_path / "three"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "label value(s) 3 (in T_0) are not classes of" in err and "--num-labels 3 (ctseg train)" in err


def test_options_reach_the_config():
    from ctseg_helpers.cli.finetune import config_from_args

    args = build_parser().parse_args(
        [
            "finetune",
            "m.keras",
            "corrected",
            "--out",
            "o",
            "--name",
            "n",
            "--epochs",
            "3",
            "--learning-rate",
            "2e-4",
            "--max-minutes",
            "5",
            "--old-data",
            "old",
            "--old-fraction",
            "0.3",
            "--validation-dir",
            "val",
            "--mixed-precision",
            "off",
        ]
    )
    config = config_from_args(args)
    assert (config.model_path, config.main_dir, config.out_dir, config.model_filename) == (
        "m.keras",
        "corrected",
        "o",
        "n",
    )
    assert (config.epochs, config.learning_rate, config.max_minutes) == (3, 2e-4, 5.0)
    assert (config.old_data, config.old_fraction, config.validation_dir) == ("old", 0.3, "val")
    assert config.mixed_precision is False and config.overwrite is False
    defaults = config_from_args(build_parser().parse_args(["finetune", "m.keras", "corrected"]))
    assert (defaults.epochs, defaults.learning_rate, defaults.old_fraction, defaults.out_dir) == (10, None, 0.5, None)
    assert defaults.name == "m_finetuned"


def test_an_old_fraction_out_of_range_is_one_line(capsys):
    assert main(["finetune", "m.keras", "corrected", "--old-fraction", "1"]) == 2
    assert "error: old_fraction must be within 0 < f < 1" in capsys.readouterr().err
