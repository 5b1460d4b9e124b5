"""probabilities.h5: quantised to 8 bits and read back within one step, with its attributes; every refusal."""

import h5py
import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.probabilities import (
    QUANTISATION_STEP,
    SCALE,
    ProbabilityMaps,
    dequantise,
    quantise,
    read_probabilities,
    write_probabilities,
)


def random_proba(shape, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.random(shape, dtype=np.float32) ** 3
    return raw / raw.sum(axis=-1, keepdims=True)


def maps(name="series_1", k=3, rows=20, cols=30, names=("background", "LV", "RV"), proba=None, **fields):
    values = dict(
        name=name,
        proba=random_proba((k, rows, cols, len(names))) if proba is None else proba,
        class_names=names,
        files=[f"IM_{i:04d}.dcm" for i in range(k)],
        stems=[f"IM_{i:04d}" for i in range(k)],
        pixel_spacing_mm=np.tile([0.5, 0.8], (k, 1)),
        positions_mm=np.arange(k) * 5.0,
        series_uid="1.2.3",
        series_description="cine",
    )
    values.update(fields)
    return ProbabilityMaps(**values)


def test_quantised_and_read_back_stay_within_one_step(tmp_path):
    first = maps()
    second = maps("series_2", k=2, rows=7, cols=9, proba=random_proba((2, 7, 9, 3), seed=1), series_uid="9.9")
    path = write_probabilities(tmp_path / "probabilities.h5", [first, second])
    back = read_probabilities(path)
    assert [m.name for m in back] == ["series_1", "series_2"]
    for written, read in zip([first, second], back, strict=True):
        assert read.proba.dtype == np.float32 and read.proba.shape == written.proba.shape
        error = np.abs(read.proba - written.proba)
        assert error.max() <= QUANTISATION_STEP  # one step; rounding keeps it within half of one
        assert error.max() <= 0.5 * QUANTISATION_STEP + 1e-6
        assert read.class_names == ("background", "LV", "RV")
        assert read.files == written.files and read.stems == written.stems
        np.testing.assert_array_equal(read.pixel_spacing_mm, written.pixel_spacing_mm)
        np.testing.assert_array_equal(read.positions_mm, written.positions_mm)
        assert not read.quantised
    assert back[1].series_uid == "9.9" and back[0].series_description == "cine"
    stored = read_probabilities(path, quantised=True)[0]
    assert stored.quantised and stored.proba.dtype == np.uint8
    np.testing.assert_array_equal(stored.proba, quantise(first.proba))


def test_the_file_is_compact_planar_chunked_per_slice_and_self_describing(tmp_path):
    path = write_probabilities(tmp_path / "p.h5", [maps()])
    with h5py.File(path) as h5:
        assert h5.attrs["format"] == "ctseg-probabilities" and h5.attrs["version"] == 1
        assert h5.attrs["axes"] == "slice, class, row, col"
        dset = h5["series_1"]
        assert dset.dtype == np.uint8 and dset.shape == (3, 3, 20, 30)
        assert dset.chunks == (1, 3, 20, 30) and dset.compression == "gzip"
        assert dset.attrs["scale"] == SCALE and dset.attrs["quantisation_step"] == pytest.approx(1 / 255)
        assert list(dset.attrs["class_names"]) == ["background", "LV", "RV"]


def test_already_quantised_maps_are_stored_as_they_are(tmp_path):
    values = np.arange(2 * 4 * 4 * 2, dtype=np.uint8).reshape(2, 4, 4, 2)
    path = write_probabilities(tmp_path / "p.h5", [maps(k=2, names=("background", "A"), proba=values)])
    np.testing.assert_array_equal(read_probabilities(path, quantised=True)[0].proba, values)


def test_quantise_and_dequantise_are_exact_on_the_levels():
    levels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(quantise(dequantise(levels)), levels)
    assert quantise([-0.5, 0.5 / 255, 1.5 / 255, 2.0]).tolist() == [0, 0, 2, 255]  # ties round to even


def test_a_series_without_slices_is_written(tmp_path):
    empty = maps(k=0, proba=np.zeros((0, 4, 4, 3), np.float32))
    back = read_probabilities(write_probabilities(tmp_path / "p.h5", [empty]))[0]
    assert back.proba.shape == (0, 4, 4, 3) and back.files == []


def test_writing_refuses_maps_that_do_not_fit(tmp_path):
    path = tmp_path / "p.h5"
    with pytest.raises(CtsegDataError, match=r"p.h5: probabilities of series_1 must be .* one class per name"):
        write_probabilities(path, [maps(names=("background", "LV"), proba=random_proba((3, 4, 4, 3)))])
    with pytest.raises(CtsegDataError, match=r"series_1 has 3 slices but \{'files': 2\} entries"):
        write_probabilities(path, [maps(files=["a", "b"])])
    with pytest.raises(CtsegDataError, match=r"series names must be distinct, got \['s', 's'\]"):
        write_probabilities(path, [maps("s"), maps("s")])
    assert not path.exists()


def test_reading_refuses_what_is_no_probability_file(tmp_path):
    with pytest.raises(CtsegDataError, match=r"missing.h5: probability file not found; run 'ctseg segment --prob"):
        read_probabilities(tmp_path / "missing.h5")
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(CtsegDataError, match=r"notes.h5: not an HDF5 file"):
        read_probabilities(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["x"] = np.zeros(3)
    with pytest.raises(CtsegDataError, match=r"other.h5: not a ctseg probability file \(format None\)"):
        read_probabilities(other)
    newer = write_probabilities(tmp_path / "newer.h5", [maps()])
    with h5py.File(newer, "a") as h5:
        h5.attrs["version"] = 99
    with pytest.raises(CtsegDataError, match=r"version 99 is newer than this ctseg reads \(1\); update ctseg"):
        read_probabilities(newer)
    damaged = write_probabilities(tmp_path / "damaged.h5", [maps()])
    with h5py.File(damaged, "a") as h5:
        del h5["series_1"].attrs["class_names"]
    with pytest.raises(CtsegDataError, match=r"damaged.h5: cannot be read as a ctseg probability file"):
        read_probabilities(damaged)
