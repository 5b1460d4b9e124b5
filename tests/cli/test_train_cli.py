"""``ctseg train`` from the command line."""

from __future__ import annotations

import re

import pytest

from ctseg_helpers.cli import build_parser, main


def _args(sunnybrook, out, *extra):
    return [
        "train",
        str(sunnybrook / "lv_myo"),
        "--out",
        str(out),
        "--name",
        "cli",
        "--epochs",
        "2",
        "--input-shape",
        "64",
        "--num-labels",
        "2",
        "--levels",
        "2",
        "--base-filters",
        "4",
        "--batch-size",
        "8",
        "--print-checkpoint",
        "1",
        "--save-checkpoint",
        "2",
        "--max-slices",
        "12",
        "--batches-per-epoch",
        "2",
        "--label-names",
        "blood pool,myocardium",
        *extra,
    ]


def test_train_prints_status_lines_and_writes_the_model(sunnybrook, tmp_path, capsys):
    assert main(_args(sunnybrook, tmp_path / "out", "--no-augment")) == 0
    out = capsys.readouterr().out
    assert "GPU enabled:" in out
    assert "Training plan (cpu):" in out and "set by the user" in out
    assert re.search(r"^Completed epochs: 2/2 \| Dice\+CE loss: \d\.\d{3} \| Mean dice score: ", out, re.M)
    assert "Checkpoint -> Model saved at 2/2 epochs" in out
    assert (tmp_path / "out" / "cli_2.keras").is_file() and (tmp_path / "out" / "cli_history.csv").is_file()
    # A second run into the same folder is refused with exit status 2 and the reason.
    assert main(_args(sunnybrook, tmp_path / "out")) == 2
    assert "set resume=True to continue it" in capsys.readouterr().err
    assert main(_args(sunnybrook, tmp_path / "out", "--resume", "--epochs", "3")) == 0
    assert "Completed epochs: 3/3" in capsys.readouterr().out


def test_options_reach_the_config():
    from ctseg_helpers.cli.train import config_from_args

    args = build_parser().parse_args(
        [
            "train",
            "data",
            "--num-labels",
            "2",
            "--filters",
            "4,8,16",
            "--levels",
            "2",
            "--pool-sizes",
            "2",
            "--dropout",
            "0.1",
            "--kernel-sizes",
            "3,3,5",
            "--no-batch-norm",
            "--loss",
            "focal",
            "--validation-fraction",
            "0.3",
            "--fit-mode",
            "pad",
            "--max-minutes",
            "5",
            "--augment-options",
            '{"p_flip": 0, "p_rot90": 0}',
        ]
    )
    config = config_from_args(args)
    assert config.filters == (4, 8, 16) and config.pool_sizes == 2 and config.dropout == 0.1
    assert config.kernel_sizes == (3, 3, 5) and config.batch_norm is False and config.loss == "focal"
    assert config.validation_fraction == 0.3 and config.fit_mode == "pad" and config.max_minutes == 5.0
    assert config.augmentation.enabled and config.out_dir == "trained_model"
    assert config.augmentation.p_flip == 0 and config.augmentation.p_rot90 == 0
    # planned settings stay None unless given
    assert config.input_shape is None and config.batch_size is None and config.target_spacing_mm is None


def test_recipe_options_reach_the_config():
    from ctseg_helpers.cli.train import config_from_args

    args = build_parser().parse_args(
        [
            "train",
            "data",
            "--num-labels",
            "2",
            "--loss",
            "weighted_ce",
            "--class-weights",
            "0.2,1,3",
            "--lr-schedule",
            "cosine",
            "--warmup-epochs",
            "2",
            "--batches-per-epoch",
            "20",
            "--foreground-fraction",
            "0.5",
            "--target-spacing",
            "1.5",
            "--postprocessing",
            "none",
            "--folds",
            "3",
            "--instance-norm",
            "--mixed-precision",
            "off",
            "--devices",
            "cpu",
            "--input-shape",
            "96",
        ]
    )
    config = config_from_args(args)
    assert config.loss_options == {"class_weights": [0.2, 1.0, 3.0]} and config.lr_schedule == "cosine"
    assert (config.warmup_epochs, config.batches_per_epoch, config.foreground_fraction) == (2, 20, 0.5)
    assert config.target_spacing_mm == (1.5, 1.5) and config.postprocessing == "none" and config.folds == 3
    assert config.instance_norm and config.mixed_precision is False and config.devices == "cpu"
    assert config.input_shape == 96 and config.fit_mode == "patch"
    focal = config_from_args(
        build_parser().parse_args(
            ["train", "data", "--num-labels", "1", "--loss", "focal", "--loss-options", '{"gamma": 1.5}']
        )
    )
    assert focal.loss_options == {"gamma": 1.5}


def test_a_loss_option_the_loss_does_not_take_is_refused(tmp_path, capsys):
    assert main(["train", str(tmp_path), "--num-labels", "1", "--loss", "dice", "--loss-options", '{"gamma": 2}']) == 2
    assert "the 'dice' loss takes no option(s) ['gamma']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("--epochs", "0", "expected a positive whole number, got 0"),
        ("--epochs", "ten", "expected a whole number, got 'ten'"),
        ("--filters", "4,x", "expected whole numbers separated by commas"),
        ("--dropout", "a", "expected numbers separated by commas"),
        ("--augment-options", "p_flip=0", "expected a JSON object"),
        ("--augment-options", "[1]", "expected a JSON object"),
    ],
)
def test_bad_option_values_are_explained(option, value, match, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "data", "--num-labels", "1", option, value])
    assert exit_info.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_bad_settings_exit_with_status_2(tmp_path, capsys):
    assert main(["train", str(tmp_path), "--num-labels", "1", "--name", "a/b", "--out", str(tmp_path)]) == 2
    assert "model_filename 'a/b' cannot name files" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--num-labels", "1", "--augment-options", '{"p_flop": 0}']) == 2
    assert "unknown augmentation setting(s) ['p_flop']" in capsys.readouterr().err


def test_overwrite_never_deletes_a_users_file_of_the_runs_name(tmp_path, capsys):
    out = tmp_path / "models"
    out.mkdir()
    (out / "unet_history.csv").write_bytes(b"epoch,loss\n")
    assert main(["train", str(tmp_path / "data"), "--num-labels", "1", "--out", str(out), "--overwrite"]) == 2
    assert (
        "unet_history.csv: not written by ctseg; ctseg never replaces such files, even with --overwrite"
        in capsys.readouterr().err
    )
    assert (out / "unet_history.csv").read_bytes() == b"epoch,loss\n"
    assert main(["train", str(tmp_path / "data"), "--num-labels", "1", "--out", str(tmp_path / "data" / "train")]) == 2
    assert "the output folder is the training data folder" in capsys.readouterr().err


def test_label_names_may_start_with_background(caplog):
    import logging

    from ctseg_helpers.cli.train import config_from_args

    args = build_parser().parse_args(
        ["train", "data", "--num-labels", "2", "--label-names", "background, lv_cavity, lv_myocardium"]
    )
    with caplog.at_level(logging.INFO):
        config = config_from_args(args)
    assert config.label_names == ("lv_cavity", "lv_myocardium")
    assert (
        "--label-names starts with 'background', the name of label 0: dropped, so label 1 is 'lv_cavity'" in caplog.text
    )
    plain = config_from_args(build_parser().parse_args(["train", "data", "--num-labels", "2", "--label-names", "a,b"]))
    assert plain.label_names == ("a", "b")


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (
            "background,lv_cavity,lv_myocardium,extra",
            r"--label-names has 4 name\(s\) \['background', 'lv_cavity', "
            r"'lv_myocardium', 'extra'\] but --num-labels is 2; give one name "
            r"per ROI, label 1 first, e.g. \['ROI 1', 'ROI 2'\]",
        ),
        ("background,lv_cavity", r"names label 1 'background', but the background is label 0 and not an ROI"),
    ],
)
def test_label_names_that_do_not_fit_num_labels_exit_with_status_2(names, match, tmp_path, capsys):
    assert main(["train", str(tmp_path), "--num-labels", "2", "--label-names", names]) == 2
    assert re.search(match, capsys.readouterr().err)
