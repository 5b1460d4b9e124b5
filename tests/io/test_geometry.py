"""Slice geometry: one rule for "these slices form a 3D stack", and pixel spacings as arrays."""

import numpy as np
import pytest

from ctseg_helpers.io.geometry import (
    POSITION_TOLERANCE_MM,
    SPACING_ATOL_MM,
    SPACING_RTOL,
    no_volume_reason,
    pixel_spacing_array_mm,
    position_groups,
    stack_spacing_mm,
)

NOT_EQUAL = "the slice positions are not equally spaced, so the slices do not form one 3D stack"


def test_equally_spaced_positions_in_any_order_are_a_stack():
    assert stack_spacing_mm([10.0, 12.5, 15.0, 17.5]) == 2.5
    assert stack_spacing_mm([17.5, 10.0, 15.0, 12.5]) == 2.5
    assert stack_spacing_mm(np.array([-4.0, -2.0])) == 2.0
    assert no_volume_reason([17.5, 10.0, 15.0, 12.5]) == ""


def test_a_gap_just_over_one_percent_is_header_round_off_and_still_a_stack():
    # the last gap is 1.0105 mm: 0.0105 mm longer, within 1 % of 1 mm plus 0.001 mm
    assert (SPACING_RTOL, SPACING_ATOL_MM) == (0.01, 1e-3)
    assert stack_spacing_mm([0.0, 1.0, 2.0, 3.0105]) == 1.0
    assert stack_spacing_mm([0.0, 1.0, 2.0, 3.0095]) == 1.0
    assert stack_spacing_mm([0.0, 1.0, 2.0, 3.012]) is None
    assert stack_spacing_mm([0.0, 1.0, 2.0, 2.988]) is None
    assert no_volume_reason([0.0, 1.0, 2.0, 3.012]) == NOT_EQUAL
    # 10 mm gaps as on the Sunnybrook MR scans, off by under 0.001 mm
    assert stack_spacing_mm(
        [-148.903887, -138.903882, -128.903873, -118.903868, -108.903864, -98.90454, -88.903863]
    ) == pytest.approx(10.0, abs=1e-5)


def test_gaps_and_unknown_positions_are_no_stack():
    assert stack_spacing_mm([0.0, 5.0, 15.0]) is None  # a missing slice
    assert no_volume_reason([0.0, 5.0, 15.0]) == NOT_EQUAL
    assert stack_spacing_mm([0.0, np.nan]) is None
    assert no_volume_reason([0.0, np.nan]) == (
        "the slice positions are unknown (no ImagePositionPatient/ImageOrientationPatient)"
    )
    assert stack_spacing_mm([0.0]) is None and stack_spacing_mm([]) is None and stack_spacing_mm(None) is None
    assert no_volume_reason([0.0]) == no_volume_reason(None) == "a single slice has no volume"


def test_repeated_positions_are_cine_phases_not_a_stack():
    assert stack_spacing_mm([0.0, 0.0, 5.0, 5.0]) is None
    assert stack_spacing_mm([0.0, 0.0, 0.0]) is None
    # positions at most POSITION_TOLERANCE_MM apart are one position
    assert POSITION_TOLERANCE_MM == 0.05
    assert stack_spacing_mm([0.0, 0.04, 5.0, 5.04, 10.0, 10.04]) is None
    assert stack_spacing_mm([0.0, 0.06, 0.12]) == pytest.approx(0.06)
    assert no_volume_reason([0.0, 0.01, 0.02, 5.0, 5.0, 5.01]) == (
        "the series is a cine series (2 slice positions x 3 phases), not one 3D stack"
    )
    assert no_volume_reason([5.0, 0.0, 5.0]) == (
        "the series is a cine series (2 slice positions x 2 phases), not one 3D stack"
    )


def test_position_groups():
    assert position_groups([]) == []
    assert position_groups([1.0]) == [(0, 1)]
    assert position_groups([0.0, 0.04, 0.08, 0.2]) == [(0, 3), (3, 4)]  # runs of gaps <= 0.05 mm


def test_pixel_spacing_array_puts_nan_where_a_slice_has_none():
    spacings = pixel_spacing_array_mm([(0.5, 0.6), None, [np.nan, np.nan], np.array([1.0, 2.0])])
    assert spacings.shape == (4, 2) and spacings.dtype == np.float64
    np.testing.assert_array_equal(spacings, [[0.5, 0.6], [np.nan, np.nan], [np.nan, np.nan], [1.0, 2.0]])
    assert pixel_spacing_array_mm([]).shape == (0, 2)
