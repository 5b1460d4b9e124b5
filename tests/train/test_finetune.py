"""Fine-tuning a model on corrected slices (train/finetune.py, workflows/finetune.py).

A tiny base model learns bright squares (label 1) on CT slices that also hold darker discs,
labelled background. The "corrected" slices then label the discs (elsewhere in the slice) as
the ROI, as someone correcting the model's misses would. Fine-tuning on four of them, with the
old square slices mixed in, must raise the Dice on held-out disc slices from about 0 to well
above it, and keep the squares. The base model has no batch normalisation: a few dozen batches
do not settle batch statistics, and the test is about fine-tuning, not about those.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.dicom import read_dicom_series
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.io.written import file_sha256, written_by_ctseg
from ctseg_helpers.model.settings import read_settings, update_settings
from ctseg_helpers.prepare.augment import AugmentConfig
from ctseg_helpers.prepare.dataset import SliceSet
from ctseg_helpers.prepare.normalize import Normalization
from ctseg_helpers.train.finetune import (
    FinetuneConfig,
    finetune_train_config,
    mix_slices,
)
from ctseg_helpers.train.loop import TrainConfig, train_model
from ctseg_helpers.workflows.finetune import finetune_data, finetune_model

SIZE_PX = 48
SQUARE_HU, DISC_HU, BACKGROUND_HU = 300.0, 150.0, -100.0


def _disc(centre, radius: float = 6.0) -> np.ndarray:
    rows, cols = np.ogrid[:SIZE_PX, :SIZE_PX]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def write_slices(
    split: Path, n: int, roi: str, *, seed: int, patient: str, modality: str = "CT", label_value: int = 1
) -> np.ndarray:
    """``split/dicoms/<patient>_<j>.dcm`` and ``split/labels/<patient>_<j>.png``; returns the labels.

    ``roi="square"``: squares in the upper left are the ROI, discs in the lower right are not.
    ``roi="disc"``: only discs in the lower right, labelled ``label_value``.
    """
    rng = np.random.default_rng(seed)
    (split / "labels").mkdir(parents=True, exist_ok=True)
    images = np.full((n, SIZE_PX, SIZE_PX), BACKGROUND_HU)
    labels = np.zeros((n, SIZE_PX, SIZE_PX), np.uint8)
    for image, label in zip(images, labels, strict=True):
        disc = _disc(rng.integers(30, 40, 2))
        image[disc] = DISC_HU
        if roi == "square":
            r, c = rng.integers(4, 16, 2)
            image[r : r + 12, c : c + 12] = SQUARE_HU
            label[r : r + 12, c : c + 12] = 1
        else:
            label[disc] = label_value
    # ROI intensities spread, so the planned CT window (from the ROI's HU) holds the discs too
    images += rng.normal(0.0, 20.0, images.shape) + np.where(labels > 0, rng.normal(0.0, 60.0, images.shape), 0.0)
    names = [f"{patient}_{j}" for j in range(n)]
    write_dicom_series(split / "dicoms", images, names=names, patient_id=patient, modality=modality)
    for name, label in zip(names, labels, strict=True):
        Image.fromarray(label).save(split / "labels" / f"{name}.png")
    return labels


def dice(model: Path, split: Path, truth: np.ndarray) -> float:
    """Dice of label 1 of ``model``'s segmentation of ``split/dicoms`` against ``truth``."""
    from ctseg_helpers.segment.segmenter import Segmenter

    series = read_dicom_series(split / "dicoms")
    predicted = Segmenter.from_model_file(model).segment(series.images, pixel_spacing_mm=series.pixel_spacing_mm)
    overlap = np.logical_and(predicted == 1, truth == 1).sum()
    return float(2.0 * overlap / ((predicted == 1).sum() + (truth == 1).sum()))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The folders and a base model trained on the squares (4 epochs of 8 batches)."""
    root = tmp_path_factory.mktemp("finetune")
    folders = {
        "base": root / "base",
        "corrected": root / "corrected",
        "held_out": root / "held_out",
    }
    truths = {
        "base": write_slices(folders["base"] / "train", 6, "square", seed=0, patient="B"),
        "corrected": write_slices(folders["corrected"], 4, "disc", seed=1, patient="C"),
        "held_out": write_slices(folders["held_out"], 4, "disc", seed=2, patient="H"),
    }
    config = TrainConfig(
        main_dir=folders["base"],
        out_dir=root / "models",
        model_filename="base",
        epochs=4,
        input_shape=32,
        levels=2,
        base_filters=8,
        batch_norm=False,
        batch_size=8,
        batches_per_epoch=8,
        learning_rate=1e-2,
        label_names=("target",),
        validation_fraction=0.0,
        augmentation=AugmentConfig(enabled=False),
        print_checkpoint=100,
        save_checkpoint=100,
        mixed_precision=False,
        devices="cpu",
    )
    base = train_model(config, progress=False).best_model_path
    return {"root": root, "base": base, "folders": folders, "truths": truths}


@pytest.fixture(scope="module")
def finetuned(shapes):
    """The base model fine-tuned on the corrected disc slices, with the old square slices mixed in."""
    base = shapes["base"]
    before = {
        "discs": dice(base, shapes["folders"]["held_out"], shapes["truths"]["held_out"]),
        "squares": dice(base, shapes["folders"]["base"] / "train", shapes["truths"]["base"]),
    }
    base_sha = file_sha256(base)
    config = FinetuneConfig(
        base,
        shapes["folders"]["corrected"],
        epochs=4,
        old_data=shapes["folders"]["base"],
        mixed_precision=False,
        devices="cpu",
        print_checkpoint=100,
    )
    result = finetune_model(config, progress=False)
    after = {
        "discs": dice(result.model_path, shapes["folders"]["held_out"], shapes["truths"]["held_out"]),
        "squares": dice(result.model_path, shapes["folders"]["base"] / "train", shapes["truths"]["base"]),
    }
    print(f"Dice before {before}, after {after}")
    return {"config": config, "result": result, "before": before, "after": after, "base_sha": base_sha}


# --- the fine-tuning learns the corrections --------------------------------------------------


def test_finetune_improves_dice_on_shapes_the_base_model_was_not_trained_on(finetuned):
    before, after = finetuned["before"], finetuned["after"]
    assert before["discs"] < 0.2  # the base model calls discs background
    assert after["discs"] > before["discs"] + 0.3
    assert after["squares"] > 0.8  # with the old data mixed in, the squares are kept


def test_the_finetuned_model_is_a_new_file_named_after_the_parent_and_the_parent_is_unchanged(shapes, finetuned):
    result, base = finetuned["result"], shapes["base"]
    assert result.model_path == base.parent / "base_best_finetuned.keras"
    assert result.parent_path == base
    assert file_sha256(base) == finetuned["base_sha"]
    assert written_by_ctseg(result.model_path)
    assert (base.parent / "base_best_finetuned_history.csv").is_file()
    assert "Fine-tuned model: " in str(result)


def test_settings_keep_the_parents_plan_and_record_the_parent_and_the_data(shapes, finetuned):
    parent = read_settings(shapes["base"])
    child = read_settings(finetuned["result"].model_path)
    for name in ("input_shape", "num_labels", "label_names", "normalization", "fit_mode", "target_spacing_mm"):
        assert getattr(child, name) == getattr(parent, name), name
    for name in ("plan", "architecture", "augmentation", "loss", "batch_size", "batches_per_epoch"):
        assert child.extra[name] == parent.extra[name], name
    assert child.postprocessing == parent.postprocessing
    assert child.extra["learning_rate"] == pytest.approx(parent.extra["learning_rate"] / 10)
    record = child.extra["finetuned_from"]
    assert record["model"] == str(shapes["base"].resolve())
    assert record["sha256"] == finetuned["base_sha"]
    assert record["modified"].endswith("+00:00")
    assert record["data"] == str(shapes["folders"]["corrected"].resolve())
    assert record["slices"] == 4 and record["epochs"] == 4
    assert record["learning_rate"] == pytest.approx(1e-3)
    assert record["parent_finetuned_from"] is None
    # the run's other files say so too
    best = read_settings(finetuned["result"].train.best_model_path)
    assert best.extra["finetuned_from"]["sha256"] == finetuned["base_sha"]


def test_old_data_is_mixed_in_when_given(shapes, finetuned):
    record = read_settings(finetuned["result"].model_path).extra["finetuned_from"]
    assert record["old_data"] == str((shapes["folders"]["base"] / "train").resolve())
    # 4 corrected slices, 6 old ones: half/half is nearest with the corrected slices twice
    assert record["old_slices"] == 6 and record["old_fraction"] == pytest.approx(6 / 14, abs=1e-4)
    assert finetuned["result"].mixing == {
        "new_slices": 4,
        "old_slices": 6,
        "new_repeats": 2,
        "old_repeats": 1,
        "old_fraction": pytest.approx(6 / 14, abs=1e-4),
    }
    assert len(finetuned["result"].train.history) == 4


def test_without_old_data_the_pool_is_the_corrected_slices(shapes, tmp_path):
    config = FinetuneConfig(shapes["base"], shapes["folders"]["corrected"], out_dir=tmp_path)
    settings = read_settings(shapes["base"])
    data, mixing, folders = finetune_data(config, settings, finetune_train_config(config, settings), progress=False)
    assert len(data.train) == 4 and mixing["old_slices"] == 0 and folders["old_data"] is None
    assert data.val is None
    assert json.loads(json.dumps(data.plan.to_dict())) == settings.extra["plan"]
    # The model's normalisation, not one planned from the new slices.
    assert data.train.normalization == settings.normalization


def test_a_finetuned_model_can_be_finetuned_again_and_remembers_its_lineage(shapes, finetuned, tmp_path):
    first = finetuned["result"].model_path
    config = FinetuneConfig(first, shapes["folders"]["corrected"], out_dir=tmp_path)
    settings = read_settings(first)
    train_config = finetune_train_config(config, settings)
    assert train_config.learning_rate == pytest.approx(1e-4)  # a tenth of the parent's, again
    assert config.name == "base_best_finetuned_finetuned"


# --- the mixing rule ---------------------------------------------------------------------------


def _slices(k: int, size: int = 8, value: int = 1) -> SliceSet:
    labels = np.full((k, size, size), value, np.uint8)
    return SliceSet(
        labels.astype(np.float32),
        labels,
        np.array(["p"] * k, dtype=object),
        [f"s{i}" for i in range(k)],
        Normalization(),
    )


def test_mix_repeats_the_corrected_slices_to_match_many_old_ones():
    pool, info = mix_slices(_slices(4, value=1), _slices(40, value=2))
    assert len(pool) == 80 and info["new_repeats"] == 10 and info["old_repeats"] == 1
    assert info["old_fraction"] == 0.5
    assert (pool.labels[:, 0, 0] == 1).sum() == 40 and (pool.labels[:, 0, 0] == 2).sum() == 40


def test_mix_repeats_the_old_slices_when_they_are_fewer_and_follows_the_fraction_asked():
    pool, info = mix_slices(_slices(40, value=1), _slices(4, value=2))
    assert (info["new_repeats"], info["old_repeats"], info["old_fraction"]) == (1, 10, 0.5)
    pool, info = mix_slices(_slices(30, value=1), _slices(10, value=2), old_fraction=0.25)
    assert (info["new_repeats"], info["old_repeats"], info["old_fraction"]) == (1, 1, 0.25)
    pool, info = mix_slices(_slices(10, value=1), _slices(10, value=2), old_fraction=0.75)
    assert (info["new_repeats"], info["old_repeats"], info["old_fraction"]) == (1, 3, 0.75)


def test_mix_pads_slices_of_different_sizes_and_keeps_their_real_shapes():
    pool, _ = mix_slices(_slices(2, size=8), _slices(2, size=12, value=2))
    assert pool.images.shape == (4, 12, 12)
    assert pool.shapes.tolist() == [[8, 8], [8, 8], [12, 12], [12, 12]]
    assert pool.labels[0, 8:, :].max() == 0  # zero padding beyond the small slices


def test_mix_without_old_data_returns_the_corrected_slices():
    new = _slices(3)
    pool, info = mix_slices(new, None)
    assert pool is new and info["old_slices"] == 0 and info["old_fraction"] == 0.0


# --- refusals ----------------------------------------------------------------------------------


@pytest.fixture
def model_copy(shapes, tmp_path):
    """A copy of the base model in its own folder (refusal tests may try to write next to it)."""
    path = tmp_path / "models" / "m.keras"
    path.parent.mkdir()
    shutil.copyfile(shapes["base"], path)
    return path


@pytest.mark.parametrize("name", ["m", "m_best", "m_last", "m_7"])
def test_an_output_that_would_write_over_the_input_model_is_refused(shapes, model_copy, name):
    target = model_copy.with_name(f"{name}.keras")
    model_copy.rename(target)
    config = FinetuneConfig(target, shapes["folders"]["corrected"], model_filename="m")
    with pytest.raises(
        CtsegSettingsError, match=r"m.*\.keras: is the model being fine-tuned, and --name m in .* would"
    ):
        finetune_model(config, progress=False)
    assert target.is_file()


def test_an_existing_output_is_refused_without_overwrite(shapes, model_copy):
    (model_copy.parent / "m_finetuned.keras").write_bytes(b"mine")
    config = FinetuneConfig(model_copy, shapes["folders"]["corrected"])
    with pytest.raises(CtsegSettingsError, match=r"m_finetuned\.keras exists already; choose another --name"):
        finetune_model(config, progress=False)
    config = replace(config, overwrite=True)
    with pytest.raises(CtsegSettingsError, match=r"m_finetuned\.keras: not written by ctseg"):
        finetune_model(config, progress=False)


def test_labels_the_model_does_not_know_are_refused(shapes, model_copy, tmp_path):
    folder = tmp_path / "two_rois"
    write_slices(folder, 2, "disc", seed=3, patient="T", label_value=2)
    config = FinetuneConfig(model_copy, folder, out_dir=tmp_path / "out")
    with pytest.raises(
        CtsegDataError,
        match=r"two_rois: label value\(s\) 2 \(in T_0, T_1\) are not classes of .*m\.keras, which knows 1 ROI\(s\) "
        r"\(1 target\); fine-tuning keeps the model's classes: .* --num-labels 2",
    ):
        finetune_model(config, progress=False)
    assert not (tmp_path / "out").exists()


def test_slices_of_another_modality_are_refused(shapes, model_copy, tmp_path):
    folder = tmp_path / "mr"
    write_slices(folder, 2, "disc", seed=4, patient="M", modality="MR")
    config = FinetuneConfig(model_copy, folder, out_dir=tmp_path / "out")
    with pytest.raises(CtsegDataError, match=r"mr: holds MR slices but the model was trained on CT"):
        finetune_model(config, progress=False)


def test_a_model_trained_on_whole_slices_is_refused(shapes, model_copy):
    update_settings(model_copy, replace(read_settings(model_copy), fit_mode="resize"))
    config = FinetuneConfig(model_copy, shapes["folders"]["corrected"])
    with pytest.raises(CtsegSettingsError, match=r"m\.keras: was trained with fit_mode='resize' \(whole slices\)"):
        finetune_model(config, progress=False)


def test_a_deeply_supervised_model_is_finetuned_on_its_full_resolution_output(shapes):
    settings = read_settings(shapes["base"])
    architecture = {**settings.extra["architecture"], "deep_supervision": True}
    settings = replace(settings, extra={**settings.extra, "architecture": architecture})
    train_config = finetune_train_config(FinetuneConfig(shapes["base"], shapes["folders"]["corrected"]), settings)
    assert train_config.deep_supervision is False and train_config.base_filters == 8


def test_an_output_folder_inside_the_corrected_data_is_refused(shapes, model_copy):
    config = FinetuneConfig(model_copy, shapes["folders"]["corrected"], out_dir=shapes["folders"]["corrected"] / "x")
    with pytest.raises(CtsegSettingsError, match=r"is inside the corrected data folder"):
        finetune_model(config, progress=False)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_old_fraction_outside_0_and_1_is_refused(fraction):
    with pytest.raises(CtsegSettingsError, match=rf"old_fraction must be within 0 < f < 1 .*got {fraction}"):
        FinetuneConfig("m.keras", "data", old_fraction=fraction)


def test_a_learning_rate_that_is_not_positive_is_refused():
    with pytest.raises(CtsegSettingsError, match=r"learning_rate must be positive \(or None for 1/10"):
        FinetuneConfig("m.keras", "data", learning_rate=0.0)
