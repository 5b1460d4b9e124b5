"""Evaluation from arrays: a scan held in memory (a Case), areas along the stack, abrupt jumps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.measure.evaluation import Case, area_jumps, slice_areas


def test_area_jumps_exact():
    assert area_jumps([100.0, 105.0, 20.0, 100.0]).tolist() == [False, False, True, True]
    assert area_jumps([0.0, 0.0, 50.0, 60.0, 0.0]).tolist() == [False, False, True, False, True]
    # a few pixels' change in a tiny ROI stays below min_fraction of the largest area
    assert not area_jumps([1000.0, 900.0, 2.0, 5.0, 2.0]).tolist()[3:].count(True)
    assert area_jumps([7.0]).tolist() == [False]
    with pytest.raises(CtsegDataError, match="rel_threshold must be > 0"):
        area_jumps([1.0, 2.0], rel_threshold=0)
    with pytest.raises(CtsegDataError, match="min_fraction must be >= 0"):
        area_jumps([1.0, 2.0], min_fraction=-1)


def _fake_case(**series_fields):
    defaults = dict(
        images=np.zeros((4, 2, 2), np.float32),
        files=[Path(f"/scan/s{i}.dcm") for i in range(4)],
        positions_mm=np.array([0.0, 0.0, 5.0, 5.0]),
        pixel_spacing_mm=np.ones((4, 2)),
        n_positions=2,
        n_phases=2,
        is_volume=False,
        slice_spacing_mm=None,
        series_uid="1.2.3",
        modality="MR",
    )
    defaults.update(series_fields)
    series = SimpleNamespace(**defaults)
    labels = np.zeros((4, 2, 2), np.uint8)
    labels[:, 0, 0] = 1
    return Case(
        series=series,
        stems=[f"s{i}" for i in range(4)],
        label_names=("roi",),
        prediction=labels,
        truth=None,
        has_prediction=np.ones(4, bool),
        has_truth=np.zeros(4, bool),
    )


def test_cine_series_is_not_a_volume_and_groups_by_position():
    case = _fake_case()
    assert "cine series (2 slice positions x 2 phases)" in case.volume_reason
    assert case.position_groups().tolist() == [0, 0, 1, 1]
    areas = slice_areas(case)
    assert areas["group"].tolist() == [0, 0, 1, 1]
    with pytest.raises(CtsegDataError, match="do not form a volume: the series is a cine series"):
        case.volume_spacing_mm()
    single = _fake_case(positions_mm=np.array([0.0]), n_positions=1, n_phases=1)
    assert single.volume_reason == "a single slice has no volume"
    stack = _fake_case(positions_mm=np.array([0.0, 5.0, 10.0, 15.0]), n_positions=4, n_phases=1)
    assert stack.position_groups().tolist() == [0, 0, 0, 0]
    uneven = _fake_case(positions_mm=np.array([0.0, 5.0, 10.0, 20.0]), n_positions=4, n_phases=1)
    assert "not equally spaced" in uneven.volume_reason


def test_spacing_errors():
    case = _fake_case(pixel_spacing_mm=np.full((4, 2), np.nan))
    with pytest.raises(CtsegDataError, match="s0.dcm: no PixelSpacing"):
        case.slice_spacing_mm(0)
    mixed = _fake_case(
        is_volume=True, slice_spacing_mm=5.0, pixel_spacing_mm=np.array([[1, 1], [1, 1], [2, 2], [1, 1]], float)
    )
    with pytest.raises(CtsegDataError, match="different pixel spacings"):
        mixed.volume_spacing_mm()
