"""The default training recipe: learning-rate schedule, patch training planned from a DICOM folder,
patient-wise folds and their ensemble, mirrored training, post-processing stored with the model.

The data are written here as a real training folder (``train/dicoms/*.dcm`` CT slices of three
patients, ``train/labels/*.png``): a bright 16 x 16 px square on a dark, noisy background. The
models are tiny (2 levels, 4 base filters, 3 batches per epoch): these tests check what a run
writes and how the pieces fit, not what the network learns.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.model.settings import load_model, read_settings, update_settings
from ctseg_helpers.prepare.augment import AugmentConfig
from ctseg_helpers.prepare.dataset import read_pairs
from ctseg_helpers.segment.ensemble import ENSEMBLE_SUFFIX
from ctseg_helpers.segment.postprocess import PostProcessing
from ctseg_helpers.segment.segmenter import Segmenter
from ctseg_helpers.train import loop
from ctseg_helpers.train.loop import TrainConfig, fold_groups, learning_rate_at, prepare_training_data, train_model
from ctseg_helpers.workflows.segment_folder import run_segmentation

#: Pixel spacing of each patient's slices: two spacings, median 1.25 mm (the mean is 1.17 mm).
MIXED_MM = ((1.25, 1.25), (1.25, 1.25), (1.0, 1.0))
UNIFORM_MM = ((1.0, 1.0),) * 3
SIZE_PX = 48
SLICES_PER_PATIENT = 3


def write_training_folder(main: Path, spacings_mm, *, seed: int = 0) -> Path:
    """``<main>/train/dicoms/p<k>_s<j>.dcm`` (PatientID ``P<k>``) and ``<main>/train/labels/p<k>_s<j>.png``."""
    rng = np.random.default_rng(seed)
    split = main / "train"
    (split / "labels").mkdir(parents=True)
    for p, spacing in enumerate(spacings_mm):
        names = [f"p{p}_s{j}" for j in range(SLICES_PER_PATIENT)]
        labels = np.zeros((SLICES_PER_PATIENT, SIZE_PX, SIZE_PX), np.uint8)
        for label in labels:
            r, c = rng.integers(6, SIZE_PX - 22, 2)
            label[r : r + 16, c : c + 16] = 1
        images = np.where(labels == 1, 300.0, -100.0) + rng.normal(0.0, 20.0, labels.shape)
        write_dicom_series(split / "dicoms", images, pixel_spacing_mm=spacing, names=names, patient_id=f"P{p}")
        for name, label in zip(names, labels, strict=True):
            Image.fromarray(label).save(split / "labels" / f"{name}.png")
    return main


def tiny_config(main: Path, out: Path, **kwargs) -> TrainConfig:
    settings = dict(
        main_dir=main,
        out_dir=out,
        model_filename="tiny",
        input_shape=32,
        levels=2,
        base_filters=4,
        batch_size=4,
        batches_per_epoch=3,
        epochs=3,
        learning_rate=1e-2,
        validation_fraction=0.34,
        label_names=("square",),
        print_checkpoint=1,
        save_checkpoint=3,
        augmentation=AugmentConfig(enabled=False),
        mixed_precision=False,
        devices="cpu",
    )
    settings.update(kwargs)
    return TrainConfig(**settings)


def train_quietly(config: TrainConfig):
    """Train; return the result and everything the run printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = train_model(config, progress=False)
    return result, printed.getvalue()


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    return write_training_folder(tmp_path_factory.mktemp("mixed"), MIXED_MM)


@pytest.fixture(scope="module")
def uniform_folder(tmp_path_factory) -> Path:
    return write_training_folder(tmp_path_factory.mktemp("uniform"), UNIFORM_MM, seed=1)


# --- learning-rate schedule --------------------------------------------------------------------


def test_warm_up_is_linear_up_to_the_base_rate():
    assert learning_rate_at(0.025, 1.0, "poly", warmup=0.1) == pytest.approx(0.25)
    assert learning_rate_at(0.05, 1.0, "poly", warmup=0.1) == pytest.approx(0.5)
    assert learning_rate_at(0.1, 1.0, "poly", warmup=0.1) == 1.0
    assert learning_rate_at(0.0, 1.0, "poly", warmup=0.1) == 0.01  # the 1 % floor, not 0


def test_poly_at_half_way_is_the_base_times_one_half_to_the_0_9():
    assert learning_rate_at(0.5, 1e-3, "poly") == 1e-3 * 0.5**0.9
    # after a warm-up the decay runs over the rest of the run
    assert learning_rate_at(0.6, 1e-3, "poly", warmup=0.2) == pytest.approx(1e-3 * 0.5**0.9)
    assert learning_rate_at(0.0, 1e-3, "poly") == 1e-3


def test_cosine_at_half_way_is_half_the_base():
    assert learning_rate_at(0.5, 1e-3, "cosine") == pytest.approx(0.5e-3)
    assert learning_rate_at(0.0, 1e-3, "cosine") == 1e-3


@pytest.mark.parametrize("schedule", ["poly", "cosine"])
@pytest.mark.parametrize("progress", [0.999, 1.0, 1.5])
def test_the_rate_never_falls_below_one_percent_of_the_base(schedule, progress):
    assert learning_rate_at(progress, 2e-3, schedule) == pytest.approx(2e-5)


@pytest.mark.parametrize("progress", [-0.5, 0.0, 0.3, 1.0, 2.0])
def test_constant_stays_at_the_base(progress):
    assert learning_rate_at(progress, 1e-3, "constant") == 1e-3


def test_progress_before_the_start_is_the_start():
    assert learning_rate_at(-1.0, 1e-3, "poly") == 1e-3


class FakeClock:
    """``time.perf_counter`` that moves on one second at every reading."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


@pytest.mark.slow
def test_a_time_limited_run_decays_the_rate_by_the_clock_not_the_epochs(mixed_folder, tmp_path, monkeypatch):
    """1000 epochs planned, 12 s allowed: the schedule runs on the time used, so the rate falls
    to the floor within a few epochs (by epochs alone it would still be above 99 % of the base)."""
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=FakeClock().perf_counter))
    base, limit_s = 1e-2, 12.0
    config = tiny_config(
        mixed_folder,
        tmp_path,
        epochs=1000,
        max_minutes=limit_s / 60,
        warmup_epochs=0,
        learning_rate=base,
        validation_fraction=0.0,
        loss="focal",
        loss_options={"gamma": 1.0},
    )
    result, printed = train_quietly(config)
    history = result.history
    assert result.stopped_by_time and not result.interrupted
    assert 2 <= result.epochs_completed == len(history) < 10
    assert re.search(
        rf"Stopped after {result.epochs_completed} epochs: the time limit of 0.2 minutes was "
        "reached",
        printed,
    )
    rates, ends = history["learning_rate"].to_numpy(), history["elapsed_s"].to_numpy()
    assert ends[-1] >= limit_s > ends[-2]
    assert np.all(np.diff(rates) < 0)
    # each epoch's rate is the schedule somewhere between that epoch's start and end on the clock
    for rate, start, end in zip(rates, np.r_[0.0, ends[:-1]], ends, strict=True):
        assert learning_rate_at(end / limit_s, base) * (1 - 1e-5) <= rate
        assert rate <= learning_rate_at(start / limit_s, base) * (1 + 1e-5)
    assert rates[-1] < 0.2 * base < 0.99 * base < learning_rate_at(len(history) / 1000, base)
    # the status lines name the loss the run used
    status = [line for line in printed.splitlines() if line.startswith("Completed epochs")]
    assert status and all(" | Focal loss: " in line for line in status), printed
    extra = read_settings(result.best_model_path).extra
    assert (extra["loss"], extra["loss_options"], extra["best_by"]) == ("focal", {"gamma": 1.0}, "last")
    # without validation the model kept is the one after the last epoch...
    best, _ = load_model(result.best_model_path)
    last, _ = load_model(tmp_path / "tiny_last.keras")
    for a, b in zip(best.get_weights(), last.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # ...with the post-processing the training labels vouch for (no validation slices to choose it on)
    settings = read_settings(result.best_model_path)
    assert settings.extra["postprocessing_report"]["source"] == "training labels"
    assert settings.postprocessing == result.postprocessing
    assert "Post-processing from the shapes of the training labels (no validation slices):" in printed


# --- a patch-mode run planned from a DICOM folder ------------------------------------------------


@pytest.fixture(scope="module")
def patch_run(mixed_folder, tmp_path_factory):
    """3 epochs of 3 batches; the plan chooses the spacing and the patch (levels are given)."""
    config = tiny_config(mixed_folder, tmp_path_factory.mktemp("patch_out"), input_shape=None)
    result, printed = train_quietly(config)
    return config, result, printed


@pytest.mark.slow
def test_patch_run_trains_at_the_median_spacing_on_a_planned_patch(patch_run):
    config, result, _ = patch_run
    settings = read_settings(result.best_model_path)
    spacings = [s for s in MIXED_MM for _ in range(SLICES_PER_PATIENT)]
    median = tuple(float(v) for v in np.median(spacings, axis=0))
    assert median == (1.25, 1.25)  # not the mean (1.17 mm)
    assert settings.fit_mode == "patch" and config.fit_mode == "patch"  # the default
    assert settings.target_spacing_mm == median
    plan = settings.extra["plan"]
    assert plan["target_spacing_mm"] == [1.25, 1.25]
    assert plan["reasons"]["target_spacing_mm"] == "median of 9 slices"
    # 48 px at 1.25 mm stay 48 px; 48 px at 1 mm become 38 px: the median slice is 48 px
    assert plan["patch_size"] == settings.input_shape == 48
    assert plan["levels"] == 2 and plan["reasons"]["levels"] == "set by the user"
    assert (plan["batch_size"], plan["batches_per_epoch"]) == (4, 3)
    assert plan["normalization"]["modality"] == "CT"
    assert settings.extra["batches_per_epoch"] == 3 and settings.extra["architecture"]["levels"] == 2
    # whole patients are validated
    train_groups, val_groups = settings.extra["train_groups"], settings.extra["validation_groups"]
    assert val_groups and not set(train_groups) & set(val_groups)
    assert sorted(train_groups + val_groups) == ["P0", "P1", "P2"]


@pytest.mark.slow
def test_patch_run_stores_the_postprocessing_chosen_on_validation(patch_run):
    _, result, printed = patch_run
    stored = read_settings(result.best_model_path).postprocessing
    assert isinstance(stored, dict) and set(stored) == {"largest_foreground", "largest", "fill_holes"}
    assert stored == result.postprocessing
    PostProcessing.from_dict(stored)  # a valid setting
    assert "Post-processing chosen on the validation slices: " in printed
    assert set(result.validation_dice) == {"square", "square (post-processed)"}


@pytest.mark.slow
def test_patch_run_history_has_validation_dice_per_roi_and_status_names_the_loss(patch_run):
    _, result, printed = patch_run
    history = pd.read_csv(result.history_csv)
    assert history["epoch"].tolist() == [1, 2, 3]
    assert {"loss", "mean_dice", "learning_rate", "elapsed_s", "val_mean_dice", "val_dice_square"} <= set(history)
    assert history["val_mean_dice"].between(0, 1).all()
    # with one ROI the mean over ROIs is that ROI's Dice
    np.testing.assert_allclose(history["val_mean_dice"], history["val_dice_square"])
    status = [line for line in printed.splitlines() if line.startswith("Completed epochs")]
    assert len(status) == 3 and all(" | Dice+CE loss: " in line for line in status), printed
    assert all(" | Val mean dice score: " in line for line in status)
    # the best model is the first epoch with the highest validation Dice
    best_epoch = read_settings(result.best_model_path).extra["epochs_trained"]
    assert best_epoch == int(history["val_mean_dice"].idxmax()) + 1


@pytest.mark.slow
def test_a_deeply_supervised_patch_run_validates_and_segments_with_its_full_resolution_output(mixed_folder, tmp_path):
    config = tiny_config(mixed_folder, tmp_path / "out", input_shape=None, levels=3, deep_supervision=True)
    result, printed = train_quietly(config)
    history = pd.read_csv(result.history_csv)
    assert history["val_mean_dice"].between(0, 1).all() and "val_dice_square" in history
    assert "Post-processing chosen on the validation slices: " in printed
    segmenter = Segmenter.from_model_file(result.best_model_path)
    image = read_pairs(mixed_folder / "train", 1, progress=False).images[0]
    assert segmenter.predict_proba(image, pixel_spacing_mm=(1.25, 1.25)).shape == image.shape + (2,)


def test_an_unknown_loss_option_is_refused_before_any_data_is_read(tmp_path):
    # main_dir does not exist: reading the data first would fail with "no 'train' folder" instead
    with pytest.raises(
        CtsegSettingsError,
        match=r"the 'focal' loss takes no option\(s\) \['alpha'\]; its options "
        r"are \['gamma', 'class_weights'\]",
    ):
        tiny_config(tmp_path / "nowhere", tmp_path / "out", loss="focal", loss_options={"alpha": 0.5})


# --- folds -------------------------------------------------------------------------------------


def test_fold_groups_deal_patients_largest_first_to_the_emptiest_fold():
    groups = ["A"] * 5 + ["B"] * 4 + ["C"] * 3 + ["D"] * 2 + ["E"]
    # A -> 0 (5, 0); B -> 1 (5, 4); C -> 1 (5, 7); D -> 0 (7, 7); E -> 0 (8, 7)
    assert fold_groups(groups, 2) == [["A", "D", "E"], ["B", "C"]]
    assert fold_groups(groups, 3) == [["A"], ["B", "E"], ["C", "D"]]


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("folds", [2, 3, 5])
def test_fold_groups_are_deterministic_balanced_and_hold_every_patient_once(seed, folds):
    rng = np.random.default_rng(seed + 100)
    counts = {f"P{k:02d}": int(n) for k, n in enumerate(rng.integers(1, 6, 12))}
    groups = [g for g, n in counts.items() for _ in range(n)]
    rng.shuffle(groups)
    assignment = fold_groups(groups, folds, seed=seed)
    assert assignment == fold_groups(list(groups), folds, seed=seed)
    assert len(assignment) == folds and all(assignment)
    assert sorted(g for fold in assignment for g in fold) == sorted(counts)
    sizes = [sum(counts[g] for g in fold) for fold in assignment]
    assert max(sizes) - min(sizes) <= max(counts.values())


def test_fold_groups_break_ties_between_equal_patients_by_the_seed():
    groups = [g for g in "ABCDEF" for _ in range(2)]
    splits = {tuple(map(tuple, fold_groups(groups, 2, seed=s))) for s in range(6)}
    assert len(splits) > 1  # the seed decides among ties
    for split in splits:
        assert [len(fold) for fold in split] == [3, 3]


def test_fold_groups_refuse_more_folds_than_patients():
    with pytest.raises(
        CtsegSettingsError,
        match=r"3 folds need at least 3 patients/series, but the data hold 2 "
        r"\(A, B\); use folds <= 2",
    ):
        fold_groups(["A", "A", "B"], 3)


@pytest.fixture(scope="module")
def fold_run(uniform_folder, tmp_path_factory):
    config = tiny_config(uniform_folder, tmp_path_factory.mktemp("folds_out"), model_filename="ens", folds=2, epochs=2)
    result, printed = train_quietly(config)
    return config, result, printed


@pytest.mark.slow
def test_two_folds_write_two_fold_models_and_an_ensemble_file(fold_run):
    config, result, printed = fold_run
    out = Path(config.out_dir)
    ensemble = out / f"ens{ENSEMBLE_SUFFIX}"
    assert result.ensemble_path == ensemble and result.model_path == ensemble
    assert (out / "ens_fold0_best.keras").is_file() and (out / "ens_fold1_best.keras").is_file()
    record = json.loads(ensemble.read_text())
    assert record["members"] == ["ens_fold0_best.keras", "ens_fold1_best.keras"]
    assert isinstance(record["postprocessing"], dict)
    folds = record["extra"]["folds"]
    assert sorted(g for fold in folds for g in fold) == ["P0", "P1", "P2"]
    # fold k validated on the patients of fold k and trained on the others
    for k, fold in enumerate(result.fold_results):
        extra = read_settings(fold.best_model_path).extra
        assert extra["validation_groups"] == folds[k]
        assert sorted(extra["train_groups"]) == sorted(set(["P0", "P1", "P2"]) - set(folds[k]))
    assert printed.count("Fold ") >= 2 and f"Ensemble of 2 fold models: {ensemble}" in printed


@pytest.mark.slow
def test_the_ensemble_and_its_folder_segment_the_training_slices(fold_run, uniform_folder):
    config, result, _ = fold_run
    raw = read_pairs(uniform_folder / "train", 1, progress=False)
    images = np.stack(raw.images)
    by_file = Segmenter.from_model_file(result.ensemble_path)
    assert isinstance(by_file.model, list) and len(by_file.model) == 2
    assert by_file.target_spacing_mm == (1.0, 1.0) and by_file.mode == "tile"
    labels = by_file.segment(images, pixel_spacing_mm=raw.spacings_mm)
    assert labels.shape == (9, SIZE_PX, SIZE_PX) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1}
    by_folder = Segmenter.from_model_file(config.out_dir)
    np.testing.assert_array_equal(by_folder.segment(images, pixel_spacing_mm=raw.spacings_mm), labels)


@pytest.mark.slow
def test_run_segmentation_takes_the_ensemble_file_as_a_model(fold_run, tmp_path):
    _, result, _ = fold_run
    images = np.full((2, SIZE_PX, SIZE_PX), -100.0)
    images[:, 10:26, 20:36] = 300.0
    scan = tmp_path / "scan"
    write_dicom_series(scan, images, pixel_spacing_mm=(1.0, 1.0), names=["IM_1", "IM_2"])
    run = run_segmentation(
        result.ensemble_path, scan, tmp_path / "predictions", progress=False, previews=False, animation=False
    )
    assert [p.name for p in run.label_paths] == ["IM_1.png", "IM_2.png"]
    assert run.labels.shape == (2, SIZE_PX, SIZE_PX) and run.label_names == ("square",)
    record = json.loads(run.run_json.read_text())
    assert record["model"] == str(result.ensemble_path.resolve())
    assert len(record["model_settings"]["extra"]["ensemble_members"]) == 2
    assert record["segmenter"]["target_spacing_mm"] == [1.0, 1.0]
    expected = Segmenter.from_model_file(result.ensemble_path).segment(run.images, pixel_spacing_mm=(1.0, 1.0))
    np.testing.assert_array_equal(run.labels, expected)


@pytest.mark.slow
def test_an_ensemble_of_patients_at_different_spacings_can_be_used(mixed_folder, tmp_path):
    config = tiny_config(mixed_folder, tmp_path, model_filename="mixed", folds=2, epochs=1, batches_per_epoch=1)
    result, _ = train_quietly(config)
    assert result.ensemble_path is not None and result.ensemble_path.is_file()
    labels = Segmenter.from_model_file(result.ensemble_path).segment(
        np.zeros((1, SIZE_PX, SIZE_PX)), pixel_spacing_mm=(1.0, 1.0)
    )
    assert labels.shape == (1, SIZE_PX, SIZE_PX)


# --- mirrored training on two logical CPUs -------------------------------------------------------

_MIRRORED_CHILD = """
import sys
from ctseg_helpers.train.distribute import split_cpu
split_cpu(2)  # before anything runs TensorFlow
from ctseg_helpers.prepare.augment import AugmentConfig
from ctseg_helpers.train.loop import TrainConfig, train_model
config = TrainConfig(main_dir=sys.argv[1], out_dir=sys.argv[2], model_filename="mirrored", input_shape=32,
                     levels=2, base_filters=4, batch_size=4, batches_per_epoch=2, epochs=2, validation_fraction=0.34,
                     print_checkpoint=1, augmentation=AugmentConfig(enabled=False), mixed_precision=False,
                     devices="cpu:2")
result = train_model(config, progress=False)
print("BEST", result.best_model_path)
"""


@pytest.mark.slow
def test_mirrored_training_on_two_logical_cpus(mixed_folder, tmp_path, repo_root):
    path = os.pathsep.join(filter(None, [str(repo_root), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", _MIRRORED_CHILD, str(mixed_folder), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo_root,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MirroredStrategy over 2 devices" in done.stdout, done.stdout
    assert "Completed epochs: 2/2" in done.stdout
    best = out / "mirrored_best.keras"
    assert f"BEST {best}" in done.stdout and best.is_file()
    assert read_settings(best).extra["devices"].startswith("MirroredStrategy over 2 devices (")


# --- post-processing stored with a model --------------------------------------------------------


@pytest.mark.slow
def test_the_segmenter_applies_the_postprocessing_stored_with_the_model(tmp_path):
    from tests.segment.tiny_model import make_tiny_model_file

    path = make_tiny_model_file(tmp_path / "tiny.keras", num_labels=1, label_names=("square",), fit_mode="patch")
    update_settings(path, replace(read_settings(path), postprocessing={"largest_foreground": True}))
    image = np.full((64, 64), -1000.0, np.float32)  # HU; the tiny model calls pixels above 0 HU the ROI
    image[10:30, 10:30] = 400.0
    image[55:59, 55:59] = 400.0  # a far-away blob
    square = np.zeros((64, 64), np.uint8)
    square[10:30, 10:30] = 1
    segmenter = Segmenter.from_model_file(path)
    assert segmenter.postprocessing == PostProcessing(largest_foreground=True)
    np.testing.assert_array_equal(segmenter.segment(image), square)
    np.testing.assert_array_equal(segmenter.segment(image, postprocess=False), (image > 0).astype(np.uint8))
    # a caller's own setting wins over the stored one
    plain = Segmenter.from_model_file(path, postprocessing={})
    np.testing.assert_array_equal(plain.segment(image), (image > 0).astype(np.uint8))


# --- labels the network could never learn -------------------------------------------------------


def test_an_roi_value_in_no_label_is_refused_before_training(tmp_path, caplog):
    from ctseg_helpers.errors import CtsegDataError
    from ctseg_helpers.train.loop import check_labels_present

    labels = [np.array([[0, 1], [1, 0]], np.uint8), np.zeros((2, 2), np.uint8)]
    check_labels_present(labels, 1, "data/train")  # all there: nothing happens
    with pytest.raises(
        CtsegDataError,
        match=r"data/train: label value\(s\) 2, 3 appear in no training label, but "
        r"num_labels=3 asks the network to learn 1..3.*allow_missing_labels=True",
    ):
        check_labels_present(labels, 3, "data/train")
    with caplog.at_level("WARNING"):
        check_labels_present(labels, 3, "data/train", allow=True)
    assert "training anyway (allow_missing_labels=True)" in caplog.text


@pytest.mark.realdata
def test_num_labels_above_the_values_present_is_refused_on_real_data(sunnybrook, tmp_path):
    from ctseg_helpers.errors import CtsegDataError

    config = TrainConfig(main_dir=sunnybrook / "lv_myo", out_dir=tmp_path, num_labels=3, max_slices=4)
    with pytest.raises(CtsegDataError, match=r"lv_myo/train: label value\(s\) 3 appear in no training label"):
        prepare_training_data(config, progress=False)
    data = prepare_training_data(replace(config, allow_missing_labels=True), progress=False)
    assert len(data.train) == 4 and data.val is None  # one patient: all of it trains


def test_a_rerun_with_the_same_settings_is_refused_before_any_data_is_read(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "unet_best.keras").write_bytes(b"a model")
    read = []
    monkeypatch.setattr(loop, "read_pairs", lambda *a, **k: read.append(a))
    config = TrainConfig(main_dir=tmp_path / "nowhere", out_dir=out, num_labels=1)
    with pytest.raises(CtsegSettingsError, match=r"already holds a training run named 'unet' \(unet_best.keras\)"):
        prepare_training_data(config, progress=False)
    assert read == []
    (out / "ens.ensemble.json").write_text("{}")
    with pytest.raises(CtsegSettingsError, match=r"ens.ensemble.json exists already; set overwrite=True"):
        prepare_training_data(replace(config, model_filename="ens", folds=2), progress=False)


def test_too_few_training_patients_after_the_split_are_pointed_out(caplog):
    from ctseg_helpers.train.loop import _warn_few_training_patients

    with caplog.at_level("WARNING"):
        _warn_few_training_patients(["p1", "p2", "p3"])
    assert caplog.text == ""
    with caplog.at_level("WARNING"):
        _warn_few_training_patients(["p1", "p1", "p2"])
    assert "only 2 patient(s)/series are left for training" in caplog.text and "validation_fraction=0" in caplog.text


@pytest.mark.parametrize(("patients", "n_train_patients"), [(1, 1), (3, 3), (4, 3), (6, 5)])
def test_the_automatic_validation_split_keeps_three_training_patients(patients, n_train_patients, tmp_path, caplog):
    from ctseg_helpers.train.loop import _split_validation

    groups = [f"p{i}" for i in range(patients) for _ in range(4)]
    config = TrainConfig(main_dir=tmp_path, out_dir=tmp_path / "out", num_labels=1)
    assert config.validation_fraction is None
    with caplog.at_level("INFO"):
        train_index, val_index = _split_validation(groups, config)
    assert len({groups[i] for i in train_index}) == n_train_patients
    assert sorted([*train_index, *val_index]) == list(range(len(groups)))
    if n_train_patients == patients:  # no split: said so, with what to do instead
        assert len(val_index) == 0
        assert f"training on all {patients} patient(s)/series without a validation split" in caplog.text
        assert "validation_fraction=0.2 forces a split" in caplog.text
    else:
        assert not {groups[i] for i in train_index} & {groups[i] for i in val_index}


def test_an_explicit_validation_fraction_splits_even_few_patients(tmp_path, caplog):
    from ctseg_helpers.train.loop import _split_validation

    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    config = TrainConfig(main_dir=tmp_path, out_dir=tmp_path / "out", num_labels=1, validation_fraction=0.3)
    with caplog.at_level("WARNING"):
        train_index, val_index = _split_validation(groups, config)
    assert len(val_index) == 4 and len(train_index) == 8
    assert "only 2 patient(s)/series are left for training" in caplog.text


def test_training_label_names_may_start_with_background(tmp_path):
    config = TrainConfig(
        main_dir=tmp_path,
        out_dir=tmp_path / "out",
        num_labels=2,
        label_names=["Background", "LV blood pool", "LV myocardium"],
    )
    assert config.label_names == ("LV blood pool", "LV myocardium")
    with pytest.raises(
        CtsegSettingsError,
        match=r"label_names has 3 name\(s\) .* but num_labels=2; give one name "
        r"per ROI, label 1 first",
    ):
        TrainConfig(main_dir=tmp_path, out_dir=tmp_path / "out", num_labels=2, label_names=["a", "b", "c"])
