"""Real expert-labelled data: ../shared/datasets/sunnybrook (skipped when absent)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ctseg_helpers.io import find_pairs, read_dicom_series, read_pair, scan_dicom_folder
from ctseg_helpers.prepare import check_data

pytestmark = pytest.mark.realdata


def test_cine_folder_stacks_as_12_positions_by_20_phases(sunnybrook):
    folder = sunnybrook / "scans" / "SCD0000101"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the invalid (leading-zero) UIDs must read silently
        series = read_dicom_series(folder)
    assert series.images.shape == (240, 256, 256) and series.images.dtype == np.float32
    assert (series.n_positions, series.n_phases) == (12, 20)
    np.testing.assert_allclose(series.pixel_spacing_mm, 1.367188)
    assert series.spacing_mm == (1.367188, 1.367188)
    assert series.modality == "MR" and series.skipped == []
    # Every position holds 20 phases in increasing trigger time; positions are 10 mm apart.
    times = series.trigger_times_ms.reshape(12, 20)
    assert (np.diff(times, axis=1) > 0).all()
    positions = series.positions_mm.reshape(12, 20)
    assert np.ptp(positions, axis=1).max() < 0.01
    np.testing.assert_allclose(np.diff(positions[:, 0]), 10.0, atol=0.01)
    assert not series.is_volume
    assert series.cine().shape == (12, 20, 256, 256)


def test_scan_of_the_cine_folder_matches_the_read(sunnybrook):
    folder = sunnybrook / "scans" / "SCD0000101"
    (info,) = scan_dicom_folder(folder).series
    assert (info.n_images, info.n_positions, info.n_phases, info.shape) == (240, 12, 20, (256, 256))
    assert info.files == read_dicom_series(folder).files


@pytest.mark.parametrize(
    ("task", "num_labels", "n_pairs", "values"), [("lv_myo", 2, 28, [0, 1, 2]), ("lv_cavity", 1, 56, [0, 1])]
)
def test_training_folders_pair_and_check(sunnybrook, task, num_labels, n_pairs, values):
    split = sunnybrook / task / "train"
    pairs = find_pairs(split)
    assert len(pairs) == n_pairs
    image, labels = read_pair(pairs[0], num_labels)
    assert image.pixels.shape == labels.shape == (256, 256)
    report = check_data(split, num_labels, progress=False)
    assert report.n_pairs == n_pairs
    assert report.label_values == values
    assert report.problems == [] and report.labels_never_seen == []
    assert report.slices_per_label == {v: n_pairs for v in values}
