"""Slice geometry: which slice positions form one 3D stack, and pixel spacings as arrays.

One answer to "do these slices form a 3D stack, and how far apart are they", used by
:attr:`ctseg_helpers.io.dicom.DicomSeries.slice_spacing_mm` (so by ``ctseg segment`` and
``ctseg evaluate``) and by :func:`ctseg_helpers.workflows.areas.areas_from_folders`
(``ctseg areas``), so both write the same volumes for the same slices.

Tolerances
----------
Positions are along the slice normal, in mm, in any order.

- Positions at most :data:`POSITION_TOLERANCE_MM` apart are one position (cine phases, or
  duplicate copies of a slice).
- The slice spacing is the median gap between neighbouring positions. The slices form a stack
  when there are two or more positions and every gap is within
  ``SPACING_RTOL * spacing + SPACING_ATOL_MM`` of the spacing. The relative part (1 %) takes
  slight differences between gaps; the absolute part (0.001 mm) takes header round-off (a
  position written with 3 decimals, direction cosines with 6). On real scans the gaps differ
  far less: the 10 mm gaps of the Sunnybrook cardiac MR scan SCD0000101 differ from each other
  by at most 0.0014 mm (0.014 %). Positions ``[0, 1, 2, 3.0105]`` mm (a last gap 0.0105 mm,
  1.05 %, longer) are a stack with 1 mm spacing; ``[0, 1, 2, 3.02]`` are not.

The module never imports TensorFlow or Keras, nor anything of ctseg.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Images whose positions along the normal differ by at most this are at the same position.
POSITION_TOLERANCE_MM = 0.05

#: Relative tolerance on the gaps between positions for slices to count as a stack.
SPACING_RTOL = 0.01

#: Absolute tolerance (mm) on the gaps between positions, for header round-off.
SPACING_ATOL_MM = 1e-3


def position_groups(sorted_positions_mm: Sequence[float]) -> list[tuple[int, int]]:
    """(start, stop) index ranges of runs of positions at most :data:`POSITION_TOLERANCE_MM` apart.

    Parameters
    ----------
    sorted_positions_mm : sequence of float, sorted (ascending or descending, as a stack runs)

    Examples
    --------
    >>> position_groups([0.0, 0.01, 5.0, 5.02, 10.0])
    [(0, 2), (2, 4), (4, 5)]
    >>> position_groups([10.0, 5.0, 5.0])
    [(0, 1), (1, 3)]
    """
    positions = np.asarray(sorted_positions_mm, dtype=np.float64)
    if not positions.size:
        return []
    groups = []
    start = 0
    for i in range(1, positions.size):
        if abs(positions[i] - positions[i - 1]) > POSITION_TOLERANCE_MM:
            groups.append((start, i))
            start = i
    groups.append((start, positions.size))
    return groups


def stack_spacing_mm(positions_mm: Sequence[float] | None) -> float | None:
    """Distance between slices in mm if the positions form one 3D stack, else None.

    Parameters
    ----------
    positions_mm : sequence of float or None
        Position of each slice along the slice normal (mm), in any order; NaN where unknown.

    Returns
    -------
    float or None
        The median gap between neighbouring positions, when there are at least two positions,
        all known, all distinct and equally spaced (see the module documentation for the
        tolerances); None otherwise (one slice, an unknown position, repeated positions such
        as cine phases, or a gap: use :func:`no_volume_reason` to say which).

    Examples
    --------
    >>> stack_spacing_mm([0.0, 1.0, 2.0, 3.0105])
    1.0
    >>> stack_spacing_mm([0.0, 2.5, 7.5]) is None  # a missing slice
    True
    >>> stack_spacing_mm([0.0, 0.0, 5.0, 5.0]) is None  # two cine phases
    True
    """
    if positions_mm is None:
        return None
    positions = np.asarray(positions_mm, dtype=np.float64).ravel()
    if positions.size < 2 or not np.all(np.isfinite(positions)):
        return None
    gaps = np.diff(np.sort(positions))
    spacing = float(np.median(gaps))
    if gaps.min() <= POSITION_TOLERANCE_MM:
        return None
    if np.any(np.abs(gaps - spacing) > SPACING_RTOL * spacing + SPACING_ATOL_MM):
        return None
    return spacing


def no_volume_reason(positions_mm: Sequence[float] | None) -> str:
    """Why slices at these positions have no volume, in words; "" when they form a stack.

    Examples
    --------
    >>> no_volume_reason([0.0, 0.0, 5.0, 5.0])
    'the series is a cine series (2 slice positions x 2 phases), not one 3D stack'
    >>> no_volume_reason([0.0, 5.0])
    ''
    """
    positions = np.asarray([] if positions_mm is None else positions_mm, dtype=np.float64).ravel()
    if positions.size < 2:
        return "a single slice has no volume"
    if not np.all(np.isfinite(positions)):
        return "the slice positions are unknown (no ImagePositionPatient/ImageOrientationPatient)"
    groups = position_groups(np.sort(positions))
    if len(groups) < positions.size:
        n_phases = max(stop - start for start, stop in groups)
        return f"the series is a cine series ({len(groups)} slice positions x {n_phases} phases), not one 3D stack"
    if stack_spacing_mm(positions) is None:
        return "the slice positions are not equally spaced, so the slices do not form one 3D stack"
    return ""


def pixel_spacing_array_mm(spacings_mm: Sequence[Sequence[float] | None]) -> np.ndarray:
    """(row, col) pixel spacings of K slices as one array, NaN where a slice has none.

    Parameters
    ----------
    spacings_mm : sequence of K (float, float) pairs or None
        Each slice's ``PixelSpacing`` in mm; None (or a NaN pair) for a slice without one.

    Returns
    -------
    ndarray of shape (K, 2) and dtype float64

    Examples
    --------
    >>> pixel_spacing_array_mm([(0.5, 0.6), None])
    array([[0.5, 0.6],
           [nan, nan]])
    """
    rows = [(np.nan, np.nan) if s is None else s for s in spacings_mm]
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


__all__ = [
    "POSITION_TOLERANCE_MM",
    "SPACING_ATOL_MM",
    "SPACING_RTOL",
    "no_volume_reason",
    "pixel_spacing_array_mm",
    "position_groups",
    "stack_spacing_mm",
]
