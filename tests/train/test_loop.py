"""The training loop: status lines, checkpoints, history, refusing to overwrite, resume, interrupt."""

from __future__ import annotations

import json
import re
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.written import MANIFEST_NAME, written_by_ctseg
from ctseg_helpers.model.settings import read_settings
from ctseg_helpers.prepare.augment import AugmentConfig
from ctseg_helpers.prepare.dataset import slices_from_arrays
from ctseg_helpers.train import loop
from ctseg_helpers.train.loop import (
    TrainConfig,
    TrainingData,
    first_batch,
    format_elapsed,
    prepare_training_data,
    status_line,
    train_model,
)

STATUS = re.compile(
    r"^Completed epochs: \d+/\d+ \| Dice\+CE loss: \d+\.\d{3} \| Mean dice score: (\d+\.\d{3}|nan) \| "
    r"Time elapsed: \d+ hrs \d+ mins \d+ secs( \| Val Dice\+CE loss: \d+\.\d{3})?( \| Val mean dice score: "
    r"(\d+\.\d{3}|nan))?$"
)


def _synthetic(n=8, size=32, seed=0, groups=None):
    """Bright squares (label 1) on a noisy dark background."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        label = np.zeros((size, size), np.uint8)
        r, c = rng.integers(2, size - 14, 2)
        label[r : r + 12, c : c + 12] = 1
        images.append(label * 100.0 + rng.normal(0, 10, (size, size)))
        labels.append(label)
    return slices_from_arrays(images, labels, size, 1, groups=groups)


def _config(tmp_path, **kwargs):
    settings = dict(
        main_dir=tmp_path / "data",
        out_dir=tmp_path / "out",
        model_filename="tiny",
        input_shape=32,
        num_labels=1,
        epochs=3,
        batch_size=4,
        learning_rate=1e-2,
        print_checkpoint=1,
        save_checkpoint=2,
        levels=2,
        base_filters=4,
        validation_fraction=0.0,
        augmentation=AugmentConfig(enabled=False),
        fit_mode="resize",
        mixed_precision=False,
    )
    settings.update(kwargs)
    return TrainConfig(**settings)


# --- settings and formatting -------------------------------------------------------------------


def test_status_line_has_the_manuals_form():
    line = status_line(10, 500, {"loss": 1.2624, "mean_dice": 0.3691}, 35.2)
    assert line == (
        "Completed epochs: 10/500 | Dice+CE loss: 1.262 | Mean dice score: 0.369 | Time elapsed: 0 hrs 0 mins 35 secs"
    )
    with_val = status_line(10, 500, {"loss": 1.2624, "mean_dice": 0.3691, "val_loss": 1.5, "val_mean_dice": 0.25}, 35)
    assert with_val.endswith(" | Val Dice+CE loss: 1.500 | Val mean dice score: 0.250")
    # the line names the loss it prints
    focal = status_line(1, 2, {"loss": 0.5, "mean_dice": 0.5}, 1, loss_name="Focal loss")
    assert "| Focal loss: 0.500 |" in focal
    assert format_elapsed(3 * 3600 + 7 * 60 + 59.6) == "3 hrs 8 mins 0 secs"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model_filename": "a/b"}, "model_filename 'a/b' cannot name files"),
        ({"epochs": 0}, "epochs must be a positive whole number, got 0"),
        ({"batch_size": 2.5}, "batch_size must be a positive whole number"),
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
        ({"label_names": ("a", "b")}, r"label_names has 2 name\(s\) \[.a., .b.\] but num_labels=1"),
        ({"resume": True, "overwrite": True}, "resume and overwrite exclude each other"),
        ({"max_minutes": -1.0}, "max_minutes must be positive"),
        ({"loss": "dice_loss"}, "unknown loss 'dice_loss'; choose one of dice_ce"),
        ({"fit_mode": "crop"}, "fit_mode must be one of"),
        ({"validation_fraction": 1.0}, "validation_fraction must be within 0 <= f < 1, got 1.0"),
        ({"levels": 0}, "levels must be a positive whole number, got 0"),
        ({"input_shape": 30}, r"input 30x30 cannot pass the U-Net: at pooling level 2 the feature map is 15x15"),
        ({"pool_sizes": (2, 2, 2)}, r"pool_sizes gives 3 values but the U-Net needs 2"),
        ({"dropout": [0.1, 0.2]}, r"dropout gives 2 values but the U-Net needs 3 \(one per level\)"),
        ({"filters": (4, 8, 16, 32)}, r"filters gives 4 values but the U-Net needs 3"),
        ({"augmentation": {"p_flop": 1}}, "unknown augmentation setting"),
        ({"lr_schedule": "step"}, r"lr_schedule must be one of \('poly', 'cosine', 'constant'\), got 'step'"),
        ({"postprocessing": "always"}, "postprocessing must be 'auto' or 'none', got 'always'"),
        ({"foreground_fraction": 1.5}, "foreground_fraction must be within 0..1, got 1.5"),
        ({"target_spacing_mm": (1.0,)}, r"must be two positive numbers \(row, col\) in mm, got \(1.0,\)"),
        ({"target_spacing_mm": (1.0, 0.0)}, "target_spacing_mm must be two positive numbers"),
        ({"mixed_precision": "on"}, "mixed_precision must be True, False or 'auto', got 'on'"),
        ({"folds": 3, "validation_dir": "val"}, "folds and validation_dir exclude each other"),
    ],
)
def test_bad_settings_are_refused(tmp_path, kwargs, match):
    with pytest.raises(CtsegSettingsError, match=match):
        _config(tmp_path, **kwargs)


def test_every_setting_but_the_normalization_is_an_option_of_ctseg_train():
    """A new setting is one field: its metadata makes it an option (ctseg_helpers.cli.options)."""
    offline = [f.name for f in fields(TrainConfig) if "cli" not in f.metadata]
    assert offline == ["normalization"]  # an object; the modality chooses it


def test_lists_become_tuples_and_dicts_become_augment_settings(tmp_path):
    config = _config(tmp_path, label_names=["roi"], augmentation={"p_flip": 0.1})
    assert config.label_names == ("roi",) and config.augmentation.p_flip == 0.1
    assert config.to_dict()["out_dir"] == str(tmp_path / "out")


def test_first_batch_is_reproducible_and_augmented(tmp_path):
    data = TrainingData(_synthetic(6))
    config = _config(tmp_path, augmentation=AugmentConfig(p_affine=1.0, p_noise=1.0))
    images, labels = first_batch(config, data)
    again, _ = first_batch(config, data)
    assert images.shape == (4, 32, 32, 1) and labels.dtype == np.uint8
    np.testing.assert_array_equal(images, again)
    plain, _ = first_batch(replace(config, augmentation=AugmentConfig(enabled=False)), data)
    assert not np.array_equal(images, plain)


def test_missing_train_folder_is_explained(tmp_path):
    with pytest.raises(CtsegDataError, match="no 'train' folder; put the training pairs in"):
        prepare_training_data(_config(tmp_path))


# --- a run, its files, and what happens to them afterwards -------------------------------------


def test_run_writes_checkpoints_best_history_and_curves(tmp_path, capsys):
    data = TrainingData(_synthetic(8), _synthetic(4, seed=1))
    result = train_model(_config(tmp_path, label_names=("square",)), data)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("Completed epochs")]
    assert len(lines) == 3 and all(STATUS.match(line) for line in lines), out
    assert "Val Dice+CE loss" in lines[0]
    assert "Checkpoint -> Model saved at 2/3 epochs" in out and "Checkpoint -> Model saved at 3/3 epochs" in out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        MANIFEST_NAME,
        "tiny_2.keras",
        "tiny_3.keras",
        "tiny_best.keras",
        "tiny_curves.png",
        "tiny_history.csv",
        "tiny_last.keras",
    ]
    assert all(written_by_ctseg(tmp_path / "out" / name) for name in names[1:])  # what overwrite may replace
    history = pd.read_csv(result.history_csv)
    assert history["epoch"].tolist() == [1, 2, 3]
    assert {"loss", "mean_dice", "dice_square", "mean_iou", "val_loss", "val_mean_dice", "elapsed_s"} <= set(history)
    settings = read_settings(result.last_checkpoint_path)
    assert (settings.input_shape, settings.num_labels, settings.label_names) == (32, 1, ("square",))
    assert settings.normalization.modality == "MR" and settings.extra["epochs_trained"] == 3
    # the best checkpoint is chosen on validation Dice (the first epoch reaching the highest)
    assert read_settings(result.best_model_path).extra["epochs_trained"] == history["val_mean_dice"].idxmax() + 1
    assert result.epochs_completed == 3 and not result.interrupted
    assert "Final Dice+CE loss" in str(result)


def test_second_run_refuses_then_resumes_then_overwrites(tmp_path, capsys):
    data = TrainingData(_synthetic(8))
    config = _config(tmp_path, epochs=2)
    first = train_model(config, data)
    iterations = int(first.model.optimizer.iterations.numpy())
    with pytest.raises(
        CtsegSettingsError,
        match=r"already holds a training run named 'tiny' \(tiny_2.keras.*"
        r"set resume=True to continue it, overwrite=True",
    ):
        train_model(config, data)
    capsys.readouterr()
    resumed = train_model(replace(config, epochs=4, resume=True), data)
    out = capsys.readouterr().out
    assert "Resuming from tiny_2.keras: 2/4 epochs completed" in out
    assert "Completed epochs: 3/4" in out and "Completed epochs: 1/" not in out
    assert resumed.history["epoch"].tolist() == [1, 2, 3, 4]
    assert int(resumed.model.optimizer.iterations.numpy()) == 2 * iterations  # optimizer state carried on
    assert resumed.last_checkpoint_path.name == "tiny_4.keras"
    capsys.readouterr()
    done = train_model(replace(config, epochs=4, resume=True), data)
    assert "Nothing to do: 4 epochs are completed already" in capsys.readouterr().out
    assert done.epochs_completed == 4 and len(done.history) == 4
    with pytest.raises(
        CtsegSettingsError,
        match=r"trained with input_shape=32, num_labels=1 but the settings say "
        r"input_shape=32, num_labels=2",
    ):
        train_model(replace(config, epochs=6, resume=True, num_labels=2), data)
    fresh = train_model(replace(config, epochs=1, overwrite=True), data)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        MANIFEST_NAME,
        "tiny_1.keras",
        "tiny_best.keras",
        "tiny_curves.png",
        "tiny_history.csv",
        "tiny_last.keras",
    ]
    assert fresh.history["epoch"].tolist() == [1]
    assert set(json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["files"]) == {
        "tiny_1.keras",
        "tiny_best.keras",
        "tiny_curves.png",
        "tiny_history.csv",
        "tiny_last.keras",
    }


NEVER = (
    r"ctseg never replaces such files, even with --overwrite \(overwrite=True\): move it away or choose "
    r"another model_filename or output folder"
)


def test_overwrite_never_deletes_a_users_own_file_of_the_runs_name(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny_history.csv").write_bytes(b"epoch,loss\n1,0.5\n")
    (out / "tiny_best.keras").write_bytes(b"a model trained elsewhere")
    with pytest.raises(CtsegSettingsError, match="tiny_best.keras: not written by ctseg; " + NEVER):
        train_model(_config(tmp_path, epochs=1, overwrite=True), TrainingData(_synthetic(4)))
    assert (out / "tiny_history.csv").read_bytes() == b"epoch,loss\n1,0.5\n"
    assert (out / "tiny_best.keras").read_bytes() == b"a model trained elsewhere"
    # K folds: every fold's files are checked before the first fold trains
    (out / "tiny_fold1_last.keras").write_bytes(b"mine")
    with pytest.raises(CtsegSettingsError, match="tiny_fold1_last.keras: not written by ctseg"):
        loop.check_previous_run(_config(tmp_path, folds=2, fit_mode="patch", overwrite=True))
    (out / "tiny.ensemble.json").write_text("{}")
    with pytest.raises(CtsegSettingsError, match="tiny.ensemble.json: not written by ctseg"):
        loop.check_previous_run(_config(tmp_path, folds=2, fit_mode="patch", overwrite=True))
    assert (out / "tiny_fold1_last.keras").read_bytes() == b"mine"


def test_overwrite_never_deletes_a_run_changed_after_ctseg_wrote_it(tmp_path):
    data = TrainingData(_synthetic(4))
    train_model(_config(tmp_path, epochs=1), data)
    history = tmp_path / "out" / "tiny_history.csv"
    edited = history.read_bytes() + b"# kept for the paper\n"
    history.write_bytes(edited)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    with pytest.raises(CtsegSettingsError, match="tiny_history.csv: changed since ctseg wrote it; " + NEVER):
        train_model(_config(tmp_path, epochs=1, overwrite=True), data)
    assert history.read_bytes() == edited
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names  # nothing deleted


@pytest.mark.parametrize("out", ["data/train", "data/train/labels", "val"])
def test_an_output_folder_in_a_folder_the_training_reads_is_refused(tmp_path, out):
    config = _config(tmp_path, out_dir=tmp_path / out, validation_dir=tmp_path / "val")
    with pytest.raises(
        CtsegSettingsError,
        match="the output folder (is|is inside) the (training|validation) data folder .*which this command reads",
    ):
        loop.check_previous_run(config)
    loop.check_previous_run(_config(tmp_path, out_dir=tmp_path / "data" / "models"))  # beside train/: fine


def test_resume_with_nothing_to_resume_starts_fresh(tmp_path, caplog):
    result = train_model(_config(tmp_path, epochs=1, resume=True), TrainingData(_synthetic(4)))
    assert result.epochs_completed == 1 and "starting from epoch 0" in caplog.text


def test_resume_with_another_loss_says_the_checkpoints_loss_is_kept(tmp_path, caplog):
    data = TrainingData(_synthetic(4))
    train_model(_config(tmp_path, epochs=1), data)
    resumed = train_model(_config(tmp_path, epochs=2, resume=True, loss="focal"), data)
    assert resumed.epochs_completed == 2
    assert "tiny_1.keras was trained with loss='dice_ce'; resuming keeps it" in caplog.text


def test_resume_keeps_a_best_model_saved_after_the_last_checkpoint(tmp_path, caplog):
    """Killed at epoch 3 with the last checkpoint at epoch 2: epoch 3 is redone, its best model kept until beaten."""
    data = TrainingData(_synthetic(4), _synthetic(2, seed=1))
    train_model(_config(tmp_path, epochs=3, save_checkpoint=2, postprocessing="none"), data)
    out = tmp_path / "out"
    (out / "tiny_3.keras").unlink()
    (out / "tiny_last.keras").unlink()  # killed while epoch 3's last state was being written
    history = pd.read_csv(out / "tiny_history.csv")
    # epoch 3 wrote a best model nothing can beat; epochs 1-2 anything beats (a redone epoch 3
    # that forgot it would replace the best model)
    history["val_mean_dice"] = np.where(history["epoch"] == 3, 1.0, -1.0)
    history.to_csv(out / "tiny_history.csv", index=False)
    best_epoch = read_settings(out / "tiny_best.keras").extra["epochs_trained"]
    resumed = train_model(_config(tmp_path, epochs=3, resume=True, postprocessing="none"), data)
    assert resumed.history["epoch"].tolist() == [1, 2, 3] and resumed.history["val_mean_dice"].iloc[-1] < 1.0
    # the redone epoch 3 did not replace the best model (the post-processing step rewrites only its settings)
    assert read_settings(out / "tiny_best.keras").extra["epochs_trained"] == best_epoch
    assert "1 epoch(s) after the checkpoint of epoch 2 are trained again" in caplog.text


def test_a_hard_kill_loses_at_most_one_epoch(tmp_path, capsys):
    """Killed outright after epoch 3 with no numbered checkpoint since epoch 0: the last state resumes it."""
    data = TrainingData(_synthetic(4))
    train_model(_config(tmp_path, epochs=3, save_checkpoint=10), data)
    out = tmp_path / "out"
    (out / "tiny_3.keras").unlink()  # the end-of-run checkpoint a kill -9 would not have written
    assert read_settings(out / "tiny_last.keras").extra["epochs_trained"] == 3
    capsys.readouterr()
    resumed = train_model(_config(tmp_path, epochs=4, resume=True, save_checkpoint=10), data)
    assert "Resuming from tiny_last.keras: 3/4 epochs completed" in capsys.readouterr().out
    assert resumed.history["epoch"].tolist() == [1, 2, 3, 4]
    assert read_settings(out / "tiny_last.keras").extra["epochs_trained"] == 4


def test_resume_without_a_checkpoint_keeps_the_previous_best_model(tmp_path):
    """A run killed before its first checkpoint left a best model and history: resume must not replace them."""
    data = TrainingData(_synthetic(4))
    first = train_model(_config(tmp_path, epochs=1, save_checkpoint=10), data)
    first.last_checkpoint_path.unlink()  # as if the kernel died before the checkpoint was written
    (tmp_path / "out" / "tiny_last.keras").unlink()  # ... and before the last state was
    best = (tmp_path / "out" / "tiny_best.keras").read_bytes()
    with pytest.raises(
        CtsegSettingsError,
        match=r"holds files of a run named 'tiny' \(tiny_best.keras.* but no "
        r"checkpoint tiny_<epoch>.keras to resume from; set overwrite=True",
    ):
        train_model(_config(tmp_path, epochs=2, resume=True), data)
    assert (tmp_path / "out" / "tiny_best.keras").read_bytes() == best


def test_validation_folder_sharing_patients_with_training_is_flagged(tmp_path, monkeypatch, caplog):
    train = _synthetic(4, groups=["p1", "p1", "p2", "p2"])
    val = _synthetic(2, groups=["p2", "p3"])
    monkeypatch.setattr(loop, "load_slices", lambda folder, *a, **k: val if Path(folder).name == "val" else train)
    (tmp_path / "data" / "train").mkdir(parents=True)
    data = prepare_training_data(_config(tmp_path, validation_dir=tmp_path / "val"), progress=False)
    assert data.val is val
    assert "share 1 patient(s)/series (p2)" in caplog.text and "near duplicates" in caplog.text


def test_interrupt_saves_a_checkpoint(tmp_path, monkeypatch, capsys):
    make = loop._make_monitor_class

    def interrupting():
        base = make()

        class Interrupting(base):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:
                    raise KeyboardInterrupt

        return Interrupting

    monkeypatch.setattr(loop, "_make_monitor_class", interrupting)
    result = train_model(_config(tmp_path, epochs=5, save_checkpoint=10), TrainingData(_synthetic(4)))
    assert result.interrupted and result.epochs_completed == 1
    assert "Interrupted -> Checkpoint -> Model saved at 1/5 epochs" in capsys.readouterr().out
    assert result.last_checkpoint_path.name == "tiny_1.keras"


def test_time_limit_stops_with_a_checkpoint(tmp_path, capsys):
    result = train_model(_config(tmp_path, epochs=50, max_minutes=1e-6), TrainingData(_synthetic(4)))
    out = capsys.readouterr().out
    assert result.stopped_by_time and result.epochs_completed == 1
    assert "time limit" in out and result.last_checkpoint_path.name == "tiny_1.keras"


def test_tiny_model_learns_sunnybrook_myocardium(sunnybrook, tmp_path, capsys):
    config = TrainConfig(
        main_dir=sunnybrook / "lv_myo",
        out_dir=tmp_path / "out",
        model_filename="sb",
        input_shape=64,
        num_labels=2,
        label_names=("LV blood pool", "LV myocardium"),
        epochs=8,
        batch_size=4,
        learning_rate=3e-3,
        print_checkpoint=4,
        save_checkpoint=8,
        levels=3,
        base_filters=8,
        seed=1,
        validation_fraction=0.34,
    )
    data = prepare_training_data(config, progress=False)
    assert len(data.train) + len(data.val) == 28
    assert not set(data.train.groups) & set(data.val.groups)  # split by patient
    images, labels = first_batch(config, data)
    assert images.shape == (4, 64, 64, 1) and labels.shape == (4, 64, 64)
    assert set(np.unique(labels)) <= {0, 1, 2}
    result = train_model(config, data)
    losses = result.history["loss"].to_numpy()
    assert losses[-1] < losses[0]
    assert "Completed epochs: 8/8" in capsys.readouterr().out


# --- figures (ctseg_helpers.show.training) -----------------------------------------------------


def test_batch_figure_shows_every_roi_in_its_colour(tmp_path):
    import matplotlib.pyplot as plt

    from ctseg_helpers.show.colors import label_color
    from ctseg_helpers.show.training import show_batch

    images = np.random.default_rng(0).random((3, 16, 16, 1)).astype(np.float32)
    labels = np.zeros((3, 16, 16), np.uint8)
    labels[0, 2:6, 2:6] = 1
    labels[1, 8:12, 8:12] = 2
    fig = show_batch(images, labels, ("blood pool", "myocardium"), max_images=2)
    assert "images (3, 16, 16), labels (3, 16, 16)" in fig._suptitle.get_text()
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["blood pool", "myocardium"]
    assert tuple(legend.legend_handles[1].get_facecolor()[:3]) == pytest.approx(label_color(2), abs=1e-3)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 and shown[1].get_title() == "#1  labels [2]"
    plt.close(fig)
    unnamed = show_batch(images, labels, num_labels=2)
    assert [t.get_text() for t in unnamed.legends[0].get_texts()] == ["label 1", "label 2"]
    plt.close(unnamed)


def test_history_figure_is_saved_with_both_curves(tmp_path):
    import matplotlib.pyplot as plt

    from ctseg_helpers.show.training import plot_history

    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "loss": [1.5, 1.2, 1.0],
            "mean_dice": [0.1, 0.3, 0.5],
            "val_loss": [1.6, 1.4, 1.3],
            "val_mean_dice": [0.1, 0.2, 0.3],
        }
    )
    fig = plot_history(history, tmp_path / "curves.png", title="run")
    assert (tmp_path / "curves.png").stat().st_size > 0
    loss_ax, dice_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["training", "validation"]
    np.testing.assert_allclose(dice_ax.lines[1].get_ydata(), [0.1, 0.2, 0.3])
    plt.close(fig)
    no_val = plot_history(history[["epoch", "loss", "mean_dice"]])
    assert [line.get_label() for line in no_val.axes[0].lines] == ["training"]
    plt.close(no_val)


def test_each_epoch_shows_a_progress_bar_over_its_batches(tmp_path, capsys):
    data = TrainingData(_synthetic(8))
    train_model(_config(tmp_path, epochs=2, batch_size=4, save_checkpoint=10), data, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/2: " in err and "epoch 2/2: " in err and "batch" in err
    train_model(_config(tmp_path / "quiet", epochs=1, save_checkpoint=10), data, progress=False)
    assert "epoch 1/1" not in capsys.readouterr().err


def test_deep_supervision_trains_resumes_and_saves_a_one_output_model(tmp_path, capsys):
    from ctseg_helpers.model.settings import load_model

    data = TrainingData(_synthetic(8), _synthetic(4, seed=1))
    config = _config(tmp_path, levels=3, epochs=2, deep_supervision=True, label_names=("square",))
    result = train_model(config, data)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Completed epochs")]
    assert len(lines) == 2 and all(STATUS.match(line) for line in lines), lines
    history = pd.read_csv(result.history_csv)
    # the names of a one-output model: the full-resolution output's metrics, the weighted total loss
    assert {"loss", "mean_dice", "dice_square", "val_loss", "val_mean_dice"} <= set(history)
    assert not [c for c in history if "probabilities" in c or "deep_supervision" in c]
    assert len(result.model.outputs) == 1
    model, settings = load_model(result.best_model_path)
    assert len(model.outputs) == 1 and model.output_shape == (None, 32, 32, 2)
    assert settings.extra["architecture"]["deep_supervision"] is True
    full, _ = load_model(result.last_checkpoint_path, compile=True)  # resuming needs every output
    assert full.output_names == ["probabilities", "deep_supervision_2x"]
    resumed = train_model(replace(config, epochs=3, resume=True), data)
    assert resumed.history["epoch"].tolist() == [1, 2, 3] and not resumed.history["loss"].isna().any()
