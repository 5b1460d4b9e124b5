"""Geometry helpers shared by the tests that check outputs lie on the DICOM scan (NIfTI, HDF5 affines)."""

from __future__ import annotations

import numpy as np


def oblique_orientation() -> tuple[float, ...]:
    """Row and column cosines of a plane turned 30 degrees about z, then tilted 20 degrees about x."""
    a, b = np.radians(30.0), np.radians(20.0)
    turn = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    rotation = tilt @ turn
    return tuple(rotation[:, 0]) + tuple(rotation[:, 1])


def dicom_world_ras(path, rows: int | None = None, cols: int | None = None) -> np.ndarray:
    """DICOM's formula (PS3.3 C.7.6.2.1.1) for pixel (row j, column i) of one file, in RAS mm.

    Returns shape (rows, cols, 3); rows and cols default to the file's own.
    """
    import pydicom

    ds = pydicom.dcmread(path)
    origin = np.array([float(v) for v in ds.ImagePositionPatient])
    cosines = np.array([float(v) for v in ds.ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    rows = ds.Rows if rows is None else rows
    cols = ds.Columns if cols is None else cols
    j, i = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    lps = origin + i[..., None] * col_spacing * cosines[:3] + j[..., None] * row_spacing * cosines[3:]
    return lps * np.array([-1.0, -1.0, 1.0])


def voxel_world(affine, shape) -> np.ndarray:
    """World point of every voxel index of an array of ``shape`` under ``affine``: shape + (3,)."""
    affine = np.asarray(affine)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    return grid @ affine[:3, :3].T + affine[:3, 3]
