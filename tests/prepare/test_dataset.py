"""Loading pairs into arrays, fitting them to the input, splitting by patient, the tf.data pipeline."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.prepare.augment import AugmentConfig
from ctseg_helpers.prepare.dataset import (
    fit_image,
    fit_label,
    load_slices,
    make_dataset,
    slices_from_arrays,
    split_by_group,
)
from ctseg_helpers.prepare.normalize import Normalization


def write_split(split_dir, images, labels, *, modality="CT", patient_id="P1", prefix="s"):
    """Write images as one DICOM series in split_dir/dicoms and labels as PNG in split_dir/labels."""
    names = [f"{prefix}{i:03d}" for i in range(len(images))]
    write_dicom_series(
        split_dir / "dicoms",
        np.asarray(images, np.float32),
        modality=modality,
        names=names,
        patient_id=patient_id,
        rescale_intercept=-1024.0 if modality == "CT" else 0.0,
    )
    (split_dir / "labels").mkdir(parents=True, exist_ok=True)
    for name, label in zip(names, labels, strict=True):
        Image.fromarray(np.asarray(label, np.uint8)).save(split_dir / "labels" / f"{name}.png")
    return names


def _square_label(size=40, value=1, top=10, side=12):
    label = np.zeros((size, size), np.uint8)
    label[top : top + side, top : top + side] = value
    return label


# --- fitting -----------------------------------------------------------------------------------


def test_fit_image_resize_and_pad():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    resized = fit_image(image, 8, "resize")
    assert resized.shape == (8, 8) and resized.dtype == np.float32
    assert resized.min() >= image.min() and resized.max() <= image.max()
    padded = fit_image(image, 4, "pad")
    np.testing.assert_array_equal(padded[:3], image)  # an odd row of padding goes below
    np.testing.assert_array_equal(padded[3], 0)
    cropped = fit_image(np.arange(36, dtype=np.float32).reshape(6, 6), 4, "pad")
    np.testing.assert_array_equal(cropped, np.arange(36).reshape(6, 6)[1:5, 1:5])


def test_fit_label_is_nearest_neighbour_only():
    label = np.array([[0, 3], [7, 0]], np.uint8)
    np.testing.assert_array_equal(fit_label(label, 4), np.kron(label, np.ones((2, 2), np.uint8)))
    rng = np.random.default_rng(0)
    odd = rng.choice([0, 2, 9], size=(37, 53)).astype(np.uint8)
    for size in (16, 64, 100):
        assert set(np.unique(fit_label(odd, size))) <= {0, 2, 9}
    assert fit_label(odd, 64, "pad").shape == (64, 64)


# --- in-memory slices --------------------------------------------------------------------------


def test_slices_from_arrays_normalises_and_fits():
    images = [np.full((40, 40), -1000.0), np.full((20, 30), 1000.0)]
    labels = [_square_label(40, 1), np.zeros((20, 30), np.uint8)]
    slices = slices_from_arrays(images, labels, 32, 1, normalization=Normalization("CT"), groups=["a", "b"])
    assert slices.images.shape == (2, 32, 32) and slices.images.dtype == np.float32
    assert slices.labels.shape == (2, 32, 32) and slices.labels.dtype == np.uint8
    np.testing.assert_allclose(slices.images[0], 0.0)
    np.testing.assert_allclose(slices.images[1], 1.0)
    assert slices.label_values() == [0, 1]
    assert len(slices.subset([1])) == 1 and slices.subset([1]).groups.tolist() == ["b"]


def test_slices_from_arrays_refuses_bad_pairs():
    with pytest.raises(CtsegDataError, match="2 images but 1 label maps"):
        slices_from_arrays([np.zeros((8, 8))] * 2, [np.zeros((8, 8))], 16, 1)
    with pytest.raises(CtsegDataError, match=r"slice_0: image shape \(8, 8\) and label shape \(8, 9\) differ"):
        slices_from_arrays([np.zeros((8, 8))], [np.zeros((8, 9))], 16, 1)
    with pytest.raises(CtsegDataError, match=r"label values \[0, 3\] do not fit num_labels=2"):
        slices_from_arrays([np.zeros((8, 8))], [np.eye(8) * 3], 16, 2)


@pytest.mark.parametrize(
    ("size", "mode", "num_labels", "match"),
    [
        (4, "resize", 1, "input_shape must be an integer of at least 8"),
        (32, "stretch", 1, "fit_mode must be one of"),
        (32, "resize", 0, "num_labels must be at least 1"),
    ],
)
def test_bad_fit_settings(size, mode, num_labels, match):
    with pytest.raises(CtsegSettingsError, match=match):
        slices_from_arrays([np.zeros((8, 8))], [np.zeros((8, 8))], size, num_labels, fit_mode=mode)


# --- reading folders ---------------------------------------------------------------------------


def test_load_slices_reads_a_ct_folder(tmp_path):
    split = tmp_path / "train"
    images = np.stack([np.full((40, 40), -1000.0), np.full((40, 40), 0.0), np.full((40, 40), 1000.0)])
    write_split(split, images, [_square_label(40, 1), _square_label(40, 2), np.zeros((40, 40))])
    slices = load_slices(split, 32, 2, progress=False)
    assert len(slices) == 3 and slices.normalization.modality == "CT"
    np.testing.assert_allclose(slices.images[:, 5, 5], [0.0, 0.5, 1.0], atol=1e-3)
    assert slices.label_values() == [0, 1, 2]
    assert set(slices.groups) == {"P1"}
    assert slices.pixel_spacing_mm == (1.0, 1.0)
    assert len(load_slices(split, 32, 2, max_slices=2, progress=False)) == 2


def test_series_of_one_study_without_patient_id_form_one_group(tmp_path):
    """Anonymised files without PatientID: two series of one study are one patient for the split."""
    split = tmp_path / "train"
    for prefix, study in (("sax", "1.2.3"), ("lax", "1.2.3"), ("other", "1.2.4")):
        names = [f"{prefix}{i}" for i in range(2)]
        write_dicom_series(
            split / "dicoms",
            np.zeros((2, 16, 16)),
            modality="MR",
            names=names,
            patient_id="",
            study_uid=study,
            rescale_intercept=0.0,
        )
        (split / "labels").mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.fromarray(np.zeros((16, 16), np.uint8)).save(split / "labels" / f"{name}.png")
    slices = load_slices(split, 16, 1, progress=False)
    assert dict(zip(slices.names, slices.groups.tolist(), strict=True)) == {
        "lax0": "1.2.3",
        "lax1": "1.2.3",
        "other0": "1.2.4",
        "other1": "1.2.4",
        "sax0": "1.2.3",
        "sax1": "1.2.3",
    }


def test_load_slices_refuses_mixed_modalities(tmp_path):
    split = tmp_path / "train"
    write_split(split, np.zeros((1, 16, 16)), [np.zeros((16, 16))], modality="CT", prefix="ct")
    write_split(split, np.full((1, 16, 16), 100.0), [np.zeros((16, 16))], modality="MR", prefix="mr")
    with pytest.raises(CtsegDataError, match="mixes CT with other modalities"):
        load_slices(split, 16, 1, progress=False)


def test_load_slices_names_a_missing_folder(tmp_path):
    with pytest.raises(CtsegDataError, match="training folder not found"):
        load_slices(tmp_path / "nowhere", 32, 1)


def test_load_slices_on_sunnybrook(sunnybrook):
    slices = load_slices(sunnybrook / "lv_myo" / "train", 64, 2, progress=False)
    assert slices.images.shape == (28, 64, 64)
    assert slices.label_values() == [0, 1, 2]
    assert slices.normalization.modality == "MR"
    assert len(set(slices.groups)) == 3  # three patients
    assert 0.0 <= slices.images.min() and slices.images.max() <= 1.0
    few = load_slices(sunnybrook / "lv_myo" / "train", 64, 2, max_slices=6, progress=False)
    assert len(few) == 6 and len(set(few.groups)) == 3  # a smoke run still sees every patient


# --- split -------------------------------------------------------------------------------------


def test_split_keeps_patients_whole_and_is_reproducible():
    groups = ["a"] * 10 + ["b"] * 10 + ["c"] * 10 + ["d"] * 10 + ["e"] * 10
    train, val = split_by_group(groups, 0.2, seed=3)
    assert len(val) == 10 and len(train) == 40
    assert not set(np.asarray(groups)[train]) & set(np.asarray(groups)[val])
    again = split_by_group(groups, 0.2, seed=3)
    np.testing.assert_array_equal(val, again[1])
    chosen = {tuple(split_by_group(groups, 0.2, seed=s)[1]) for s in range(10)}
    assert len(chosen) > 1  # the seed matters


def test_split_always_leaves_training_data():
    train, val = split_by_group(["a", "a", "b"], 0.9)
    assert len(train) > 0 and len(val) > 0


def test_split_takes_the_smallest_patient_when_all_are_large():
    groups = ["big"] * 9 + ["small"] * 3
    for seed in range(5):
        train, val = split_by_group(groups, 0.2, seed=seed)
        assert np.asarray(groups)[val].tolist() == ["small"] * 3


def test_split_without_validation():
    train, val = split_by_group(["a", "b"], 0.0)
    assert len(train) == 2 and len(val) == 0


def test_split_of_one_patient_warns(caplog):
    with caplog.at_level(logging.WARNING):
        train, val = split_by_group(["a"] * 5, 0.2)
    assert len(val) == 0 and "one patient/series" in caplog.text


def test_split_refuses_bad_fraction():
    with pytest.raises(CtsegSettingsError, match="validation_fraction must be within"):
        split_by_group(["a", "b"], 1.0)


# --- tf.data -----------------------------------------------------------------------------------


def test_make_dataset_batches_and_augments():
    images = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    labels = (images > 0.5).astype(np.uint8) * 2
    ds = make_dataset(images, labels, 2, augment=AugmentConfig(p_affine=1.0), seed=1)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    x, y = batches[0]
    assert x.shape == (2, 16, 16, 1) and x.dtype.name == "float32"
    assert y.shape == (2, 16, 16) and y.dtype.name == "uint8"
    assert all(set(np.unique(b[1].numpy())) <= {0, 2} for b in batches)
    # Each epoch draws new augmentations, reproducibly for a seed.
    assert not np.array_equal(next(iter(ds))[0].numpy(), x.numpy())
    ds2 = make_dataset(images, labels, 2, augment=AugmentConfig(p_affine=1.0), seed=1)
    np.testing.assert_array_equal(next(iter(ds2))[0].numpy(), x.numpy())


def test_make_dataset_without_shuffle_keeps_order():
    images = np.arange(3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    labels = np.zeros((3, 8, 8), np.uint8)
    x, _ = next(iter(make_dataset(images, labels, 3, shuffle=False)))
    np.testing.assert_array_equal(x.numpy()[..., 0], images)


def test_make_dataset_refuses_bad_input():
    with pytest.raises(CtsegSettingsError, match="batch_size must be at least 1"):
        make_dataset(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), 0)
    with pytest.raises(CtsegDataError, match="must be non-empty stacks of the same shape"):
        make_dataset(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)), 1)
