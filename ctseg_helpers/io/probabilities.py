"""Probability maps of a segmentation run, compact, in one HDF5 file (``probabilities.h5``).

Layout
------
One dataset per segmented series, at the file's root (``series_1``, ``series_2`` ... numbered
as ``ctseg inspect`` lists the series; ``series`` for a series picked by its UID)::

    /series_1   uint8 (slices, classes, rows, cols), chunks (1, classes, rows, cols), gzip

Each value is a probability quantised to 8 bits, ``round(255 * p)``: the probability is
``value / 255`` (the dataset's ``scale`` attribute), within half a step (1/510) of the
network's, and the step between levels is 1/255 (``quantisation_step``). Class 0 is the
background, class k is ROI k. Eight bits are a quarter of float32, and since most pixels are
surely background or surely an ROI (values 0 or 255) gzip shrinks them much further; one chunk
per slice lets a viewer read any slice alone.

Attributes of each dataset: ``class_names`` (``background`` then the ROI names), ``scale``
(255), ``quantisation_step`` (1/255), ``files`` (the source DICOM file names, one per slice,
in order), ``stems`` (the file stems that pair each slice with its label map, see
:mod:`ctseg_helpers.io.naming`), ``pixel_spacing_mm`` (slices x 2, row and column),
``positions_mm`` (position along the slice normal; NaN where unknown), ``series_uid`` and
``series_description``. The file's own attributes: ``format`` (``ctseg-probabilities``),
``version`` (1) and ``axes`` (``slice, class, row, col``).

:func:`write_probabilities` writes the file in one go (a run writes it under a partial name and
renames it, as every output); :func:`read_probabilities` gives the maps back as float32
(slices, rows, cols, classes), the layout of ``Segmenter.predict_proba``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError

logger = logging.getLogger(__name__)

#: File formats a segmentation run can write probabilities in (``--probabilities FORMAT``); the
#: first is the default. ``nifti``: one volume per ROI on the scan's grid, for a viewer
#: (:func:`~ctseg_helpers.io.nifti.write_series_nifti` with ``probability=True``).
PROBABILITY_FORMATS = ("hdf5", "nifti")
#: Value of the file's ``format`` attribute.
PROBABILITIES_FORMAT = "ctseg-probabilities"
#: Newest layout version this code reads and the one it writes.
PROBABILITIES_VERSION = 1
#: Stored value = round(SCALE x probability); probability = value / SCALE.
SCALE = 255
#: Difference between neighbouring stored probability levels.
QUANTISATION_STEP = 1.0 / SCALE


@dataclass
class ProbabilityMaps:
    """The probability maps of one series, as stored in or read from ``probabilities.h5``.

    Attributes
    ----------
    name : str
        Dataset name (``series_1`` ...).
    proba : ndarray of shape (K, M, N, C)
        float32 probabilities in 0..1, or the stored uint8 values (``p x 255``) when read with
        ``quantised=True`` or given so to :func:`write_probabilities`.
    class_names : tuple of str
        ``background`` then the ROI names (C names).
    files : list of str
        Source file name of each slice.
    stems : list of str
        The file stem of each slice (pairs it with its label map).
    pixel_spacing_mm : ndarray of shape (K, 2)
    positions_mm : ndarray of shape (K,)
    series_uid, series_description : str
    """

    name: str
    proba: np.ndarray = field(repr=False)
    class_names: tuple[str, ...]
    files: list[str]
    stems: list[str]
    pixel_spacing_mm: np.ndarray = field(repr=False)
    positions_mm: np.ndarray = field(repr=False)
    series_uid: str = ""
    series_description: str = ""

    @property
    def quantised(self) -> bool:
        """True when ``proba`` holds the stored uint8 values rather than probabilities."""
        return self.proba.dtype == np.uint8


def quantise(proba) -> np.ndarray:
    """Probabilities in 0..1 -> uint8 ``round(255 x p)`` (values outside 0..1 are clipped).

    Examples
    --------
    >>> quantise([0.0, 0.5, 1.0, 1.2]).tolist()
    [0, 128, 255, 255]
    """
    scaled = np.clip(np.asarray(proba, dtype=np.float32), 0.0, 1.0)  # the one float32 temporary, reused
    scaled *= np.float32(SCALE)
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint8)


def dequantise(values) -> np.ndarray:
    """Stored uint8 values -> float32 probabilities ``value / 255``.

    Examples
    --------
    >>> [round(float(p), 4) for p in dequantise(np.array([0, 128, 255], np.uint8))]
    [0.0, 0.502, 1.0]
    """
    return np.asarray(values, dtype=np.float32) / np.float32(SCALE)


def _check_maps(maps: ProbabilityMaps, path: Path) -> np.ndarray:
    proba = np.asarray(maps.proba)
    k = proba.shape[0] if proba.ndim == 4 else -1
    if proba.ndim != 4 or proba.shape[-1] != len(maps.class_names):
        raise CtsegDataError(
            f"{path}: probabilities of {maps.name} must be (slices, rows, cols, classes) with one class per name "
            f"{list(maps.class_names)}; got shape {proba.shape}"
        )
    sizes = {"files": len(maps.files), "stems": len(maps.stems), "pixel_spacing_mm": len(maps.pixel_spacing_mm)}
    sizes["positions_mm"] = len(maps.positions_mm)
    wrong = {name: size for name, size in sizes.items() if size != k}
    if wrong:
        raise CtsegDataError(f"{path}: {maps.name} has {k} slices but {wrong} entries")
    return proba if proba.dtype == np.uint8 else quantise(proba)


def write_probabilities(path: str | Path, series: Sequence[ProbabilityMaps], *, compression_level: int = 1) -> Path:
    """Write the probability maps of one or more series to a new HDF5 file (layout above).

    Parameters
    ----------
    path : path
        The file to write (replaced if it exists: callers decide whether it may be).
    series : sequence of ProbabilityMaps
        float32 probabilities are quantised here; uint8 ones are taken as already quantised.
    compression_level : int
        gzip level, 0..9 (1, the fastest, by default: higher levels shrink the maps little more
        and cost several times the time).

    Returns
    -------
    Path

    Raises
    ------
    CtsegDataError
        If a series' arrays do not fit together, or two series have one name.
    """
    import h5py  # noqa: PLC0415

    path = Path(path)
    names = [s.name for s in series]
    if len(set(names)) != len(names):
        raise CtsegDataError(f"{path}: series names must be distinct, got {names}")
    checked = [_check_maps(s, path) for s in series]  # everything is checked before the file is made
    text = h5py.string_dtype()
    with h5py.File(path, "w") as h5:
        h5.attrs["format"] = PROBABILITIES_FORMAT
        h5.attrs["version"] = PROBABILITIES_VERSION
        h5.attrs["axes"] = "slice, class, row, col"
        for maps, values in zip(series, checked, strict=True):
            planar = np.ascontiguousarray(np.moveaxis(values, -1, 1))  # (K, C, M, N)
            chunks = (1, *planar.shape[1:]) if planar.shape[0] else None
            dset = h5.create_dataset(
                maps.name,
                data=planar,
                chunks=chunks,
                compression="gzip" if chunks else None,
                compression_opts=compression_level if chunks else None,
                shuffle=False,
            )
            dset.attrs["class_names"] = np.array(maps.class_names, dtype=object).astype(text)
            dset.attrs["scale"] = SCALE
            dset.attrs["quantisation_step"] = QUANTISATION_STEP
            dset.attrs.create("files", [str(f) for f in maps.files], dtype=text)
            dset.attrs.create("stems", [str(f) for f in maps.stems], dtype=text)
            dset.attrs["pixel_spacing_mm"] = np.asarray(maps.pixel_spacing_mm, dtype=np.float64).reshape(-1, 2)
            dset.attrs["positions_mm"] = np.asarray(maps.positions_mm, dtype=np.float64)
            dset.attrs["series_uid"] = str(maps.series_uid or "")
            dset.attrs["series_description"] = str(maps.series_description or "")
    return path


def _texts(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def read_probabilities(path: str | Path, *, quantised: bool = False) -> list[ProbabilityMaps]:
    """The probability maps of every series in a ``probabilities.h5`` file.

    Parameters
    ----------
    path : path
    quantised : bool
        False: float32 probabilities (value / 255). True: the stored uint8 values, a quarter of
        the memory (divide by :data:`SCALE`).

    Returns
    -------
    list of ProbabilityMaps
        In the file's order; ``proba`` of shape (K, M, N, C).

    Raises
    ------
    CtsegDataError
        If the file is missing, not HDF5, or not a ctseg probability file of a version this
        code reads.
    """
    import h5py  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise CtsegDataError(
            f"{path}: probability file not found; run 'ctseg segment --probabilities' and give the run's "
            "probabilities.h5"
        )
    if not h5py.is_hdf5(path):
        raise CtsegDataError(f"{path}: not an HDF5 file; give the probabilities.h5 of a 'ctseg segment' run")
    try:
        with h5py.File(path, "r") as h5:
            return _read_open(h5, path, quantised)
    except (OSError, KeyError, ValueError) as exc:
        raise CtsegDataError(
            f"{path}: cannot be read as a ctseg probability file (truncated or damaged?): {exc}; "
            "segment the folder again with --probabilities"
        ) from exc


def _read_open(h5, path: Path, quantised: bool) -> list[ProbabilityMaps]:
    import h5py  # noqa: PLC0415

    kind = h5.attrs.get("format")
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind != PROBABILITIES_FORMAT:
        raise CtsegDataError(
            f"{path}: not a ctseg probability file (format {kind!r}); give the probabilities.h5 of a "
            "'ctseg segment --probabilities' run"
        )
    version = int(h5.attrs.get("version", 0))
    if version > PROBABILITIES_VERSION:
        raise CtsegDataError(
            f"{path}: probability file version {version} is newer than this ctseg reads "
            f"({PROBABILITIES_VERSION}); update ctseg"
        )
    out = []
    for name, dset in h5.items():
        if not isinstance(dset, h5py.Dataset) or dset.ndim != 4:
            continue
        values = np.moveaxis(dset[()], 1, -1)  # (K, M, N, C)
        scale = float(dset.attrs.get("scale", SCALE))
        proba = values if quantised else values.astype(np.float32) / np.float32(scale)
        out.append(
            ProbabilityMaps(
                name=name,
                proba=np.ascontiguousarray(proba),
                class_names=tuple(_texts(dset.attrs["class_names"])),
                files=_texts(dset.attrs["files"]) if len(dset.attrs["files"]) else [],
                stems=_texts(dset.attrs["stems"]) if len(dset.attrs["stems"]) else [],
                pixel_spacing_mm=np.asarray(dset.attrs["pixel_spacing_mm"], dtype=np.float64).reshape(-1, 2),
                positions_mm=np.asarray(dset.attrs["positions_mm"], dtype=np.float64),
                series_uid=_texts(dset.attrs.get("series_uid", ""))[0],
                series_description=_texts(dset.attrs.get("series_description", ""))[0],
            )
        )
    return out


__all__ = [
    "PROBABILITIES_FORMAT",
    "PROBABILITY_FORMATS",
    "QUANTISATION_STEP",
    "SCALE",
    "ProbabilityMaps",
    "dequantise",
    "quantise",
    "read_probabilities",
    "write_probabilities",
]
