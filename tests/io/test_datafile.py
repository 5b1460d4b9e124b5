"""DataFile: HDF5 and TIFF-series volumes read and written in slices, slabs and blocks."""

from __future__ import annotations

import itertools
import math

import h5py
import numpy as np
import pytest
import tifffile

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.datafile import (
    DataFile,
    create_dataset,
    estimate_chunk_shape,
    fill_nonfinite,
    has_nonfinite,
    nonfinite_fill_value,
    nonfinite_stats,
    parse_chunk_shape,
    replace_nonfinite,
)


def ramp(shape, dtype=np.int16):
    """A volume whose every voxel is distinct: value = z * 10000 + y * 100 + x."""
    z, y, x = np.indices(shape)
    return (
        (z * 10000 + y * 100 + x).astype(dtype)
        if np.dtype(dtype).itemsize >= 4
        else (z * 400 + y * 20 + x).astype(dtype)
    )


SHAPE = (7, 9, 11)


# ------------------------------------------------------------------ chunk estimation
def test_chunk_estimate_is_a_cube_of_the_target_size():
    assert estimate_chunk_shape((1000, 1000, 1000), "uint8", 1.0) == (101, 101, 101)
    # float32: 1 MiB = 262144 voxels -> cube side 64
    assert estimate_chunk_shape((500, 500, 500), "float32", 1.0) == (64, 64, 64)


def test_chunk_estimate_spreads_a_short_axis_budget_over_the_others():
    assert estimate_chunk_shape((4, 1000, 1000), "uint8", 1.0) == (4, 512, 512)
    assert estimate_chunk_shape((4, 8, 100000), "uint8", 1.0) == (4, 8, 32768)


def test_chunk_estimate_never_exceeds_volume_or_target():
    for shape, dtype, mb in [((3, 5, 7), "int16", 1.0), ((300, 20, 4000), "float64", 0.5), ((1, 1, 1), "uint8", 8)]:
        chunk = estimate_chunk_shape(shape, dtype, mb)
        assert all(1 <= c <= s for c, s in zip(chunk, shape, strict=True))
        assert math.prod(chunk) * np.dtype(dtype).itemsize <= max(mb * 2**20, np.dtype(dtype).itemsize)
    assert estimate_chunk_shape((3, 5, 7), "int16", 1.0) == (3, 5, 7)


def test_chunk_estimate_rejects_bad_input():
    with pytest.raises(CtsegSettingsError, match="positive number of MB"):
        estimate_chunk_shape((10, 10, 10), "uint8", 0)
    with pytest.raises(CtsegSettingsError, match=r"three positive sizes \(z, y, x\)"):
        estimate_chunk_shape((10, 10), "uint8", 1)


def test_parse_chunk_shape():
    assert parse_chunk_shape("64, 128,128") == (64, 128, 128)
    with pytest.raises(CtsegSettingsError, match="three positive integers 'z,y,x'"):
        parse_chunk_shape("64,128")
    with pytest.raises(CtsegSettingsError, match="three positive integers"):
        parse_chunk_shape("a,b,c")


# ------------------------------------------------------------------ round trips
@pytest.fixture(params=["hdf5-chunked", "hdf5-gzip", "tiff"])
def target(request, tmp_path):
    kind = request.param
    if kind == "tiff":
        return tmp_path / "series", {}
    if kind == "hdf5-gzip":
        return tmp_path / "vol.h5", {"chunk_shape": (3, 4, 5), "compression": "gzip"}
    return tmp_path / "vol.h5", {"chunk_mb": 0.001}


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slab_round_trip_along_every_axis(target, axis):
    path, options = target
    vol = ramp(SHAPE)
    with DataFile.create(path, SHAPE, vol.dtype, **options) as out:
        ranges = out.slab_ranges(axis, max_gb=3 * out.slice_nbytes(axis) / 1e9)
        assert ranges[0][0] == 0 and ranges[-1][1] == SHAPE[axis]
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        for start, stop in ranges:
            index = [slice(None)] * 3
            index[axis] = slice(start, stop)
            out.write_slab(axis, start, vol[tuple(index)])
    with DataFile.open(path) as back:
        assert back.shape == SHAPE and back.dtype == vol.dtype
        np.testing.assert_array_equal(back.read_full(), vol)
        for start, stop, slab in back.iter_slabs(axis, max_gb=2 * back.slice_nbytes(axis) / 1e9):
            index = [slice(None)] * 3
            index[axis] = slice(start, stop)
            np.testing.assert_array_equal(slab, vol[tuple(index)])
        for i in (0, SHAPE[axis] // 2, SHAPE[axis] - 1, -1):
            np.testing.assert_array_equal(back.read_slice(i, axis=axis), np.take(vol, i, axis=axis))


def test_blocks_round_trip(target):
    path, options = target
    vol = ramp(SHAPE)
    with DataFile.create(path, SHAPE, vol.dtype, **options) as out:
        out.write_block((0, 0, 0), vol)
        out.write_block((2, 3, 4), np.full((3, 2, 5), -7, vol.dtype))
    vol[2:5, 3:5, 4:9] = -7
    with DataFile.open(path) as back:
        np.testing.assert_array_equal(back.read_block((slice(1, 6), slice(None), slice(3, -1))), vol[1:6, :, 3:-1])
        np.testing.assert_array_equal(back.read_full(), vol)


def test_open_r_plus_edits_in_place(tmp_path):
    path = tmp_path / "vol.h5"
    with DataFile.create(path, SHAPE, np.uint8) as out:
        out.write_block((0, 0, 0), np.ones(SHAPE, np.uint8))
    with DataFile.open(path, mode="r+") as vol:
        vol.write_slab(1, 2, np.zeros((7, 1, 11), np.uint8))
    with DataFile.open(path) as vol:
        assert vol.read_full().sum() == 7 * 8 * 11
        assert vol.read_slice(2, axis=1).sum() == 0


def test_slab_ranges_align_with_chunks_and_respect_the_cap(tmp_path):
    with DataFile.create(tmp_path / "v.h5", (100, 10, 10), np.uint8, chunk_shape=(16, 10, 10)) as vol:
        # 50 slices fit in 5000 bytes; rounded down to 48, a multiple of the chunk side 16
        assert vol.slab_ranges(0, max_gb=5000 / 1e9) == [(0, 48), (48, 96), (96, 100)]
        # fewer slices than a chunk: no rounding
        assert vol.slab_ranges(0, max_gb=1000 / 1e9) == [(i, min(i + 10, 100)) for i in range(0, 100, 10)]
        assert vol.slab_ranges(1, max_gb=1.0) == [(0, 10)]
        with pytest.raises(
            CtsegSettingsError,
            match="needs .* GB of working memory, more than the .* GB allowed for a slab; raise max_gb",
        ):
            vol.slab_ranges(1, max_gb=100 / 1e9)


def test_stats(tmp_path):
    with DataFile.create(tmp_path / "v.h5", (64, 64, 64), np.float32, chunk_mb=0.25, compression="lzf") as vol:
        vol.write_block((0, 0, 0), np.zeros((64, 64, 64), np.float32))
        stats = vol.stats()
    assert stats["shape"] == (64, 64, 64) and stats["dtype"] == "float32"
    assert stats["chunk_shape"] == (40, 40, 40)
    assert stats["chunk_mb"] == pytest.approx(40**3 * 4 / 2**20)
    assert stats["n_chunks"] == 8
    assert stats["size_gb"] == pytest.approx(64**3 * 4 / 1e9)
    assert stats["compression"] == "lzf" and stats["backend"] == "hdf5"
    assert 0 < stats["stored_gb"] < stats["size_gb"]  # zeros compress


def test_tiff_series_files_in_natural_order_and_compressed_files_readable(tmp_path):
    folder = tmp_path / "scan"
    folder.mkdir()
    for i in (1, 2, 10):
        tifffile.imwrite(folder / f"img_{i}.tif", np.full((4, 5), i, np.uint16), compression="zlib")
    (folder / "notes.txt").write_text("not a slice")
    with DataFile.open(folder) as vol:
        assert vol.shape == (3, 4, 5) and vol.chunk_shape is None
        assert [int(vol.read_slice(k)[0, 0]) for k in range(3)] == [1, 2, 10]
        np.testing.assert_array_equal(vol.read_slice(3, axis=2), [[1] * 4, [2] * 4, [10] * 4])
    with DataFile.open(folder, mode="r+") as vol:  # a compressed slice is rewritten whole
        vol.write_block((1, 0, 0), np.zeros((1, 2, 2), np.uint16))
        assert vol.read_slice(1)[:2, :2].sum() == 0 and vol.read_slice(1)[3, 4] == 2


def test_create_dataset_4d_keeps_the_class_axis_whole(tmp_path):
    with h5py.File(tmp_path / "p.h5", "w") as f:
        dset = create_dataset(f, "proba", (50, 60, 70, 3), np.uint8, chunk_mb=0.01)
        assert dset.chunks[3] == 3
        assert math.prod(dset.chunks) <= 0.01 * 2**20


# ------------------------------------------------------------------ resources
def test_context_manager_closes_the_file(tmp_path):
    path = tmp_path / "v.h5"
    with DataFile.create(path, SHAPE, np.uint8) as vol:
        pass
    with pytest.raises(CtsegSettingsError, match="this DataFile is closed; open it again"):
        vol.read_slice(0)
    vol.close()  # idempotent
    with h5py.File(path, "w"):  # truncating would fail if anything still held the file
        pass


def test_nothing_stays_open_after_an_error(tmp_path):
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", shape=(2, 2, 2))
        f.create_dataset("b", shape=(2, 2, 2))
        f.create_dataset("flat", shape=(4, 4))
    with pytest.raises(CtsegDataError, match=r"several 3D datasets \(a, b\); name the one to use"):
        DataFile.open(path)
    with pytest.raises(CtsegDataError, match="no dataset 'c'; the file holds: a, b, flat"):
        DataFile.open(path, "c")
    with pytest.raises(CtsegDataError, match=r"dataset '/flat' has shape \(4, 4\); a 3D volume is needed"):
        DataFile.open(path, "flat")
    with pytest.raises(ZeroDivisionError):
        with DataFile.open(path, "a"):
            raise ZeroDivisionError
    with h5py.File(path, "w"):
        pass


# ------------------------------------------------------------------ errors
def test_open_errors(tmp_path):
    with pytest.raises(CtsegDataError, match="missing.h5: no such file or folder"):
        DataFile.open(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(CtsegDataError, match="text.h5: not an HDF5 file; convert the scan first"):
        DataFile.open(tmp_path / "text.h5")
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(CtsegDataError, match="empty.h5: no 3D dataset"):
        DataFile.open(tmp_path / "empty.h5")
    with pytest.raises(CtsegSettingsError, match="mode must be 'r' or 'r\\+', got 'w'"):
        DataFile.open(tmp_path / "empty.h5", mode="w")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CtsegDataError, match="nothing: no .tif/.tiff files in this folder"):
        DataFile.open(tmp_path / "nothing")


def test_tiff_series_errors(tmp_path):
    multi = tmp_path / "multi"
    multi.mkdir()
    tifffile.imwrite(multi / "a.tif", np.zeros((3, 4, 5), np.uint8), photometric="minisblack")
    with pytest.raises(CtsegDataError, match=r"a.tif: a TIFF series needs one 2D grey-level image per file"):
        DataFile.open(multi)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    tifffile.imwrite(mixed / "1.tif", np.zeros((4, 5), np.uint8))
    tifffile.imwrite(mixed / "2.tif", np.zeros((4, 6), np.uint8))
    with pytest.raises(CtsegDataError, match=r"mixed: slices differ in size or type \(1.tif"):
        DataFile.open(mixed)
    odd = tmp_path / "odd"
    odd.mkdir()
    for name, shape in (("1.tif", (4, 5)), ("2.tif", (4, 4)), ("3.tif", (4, 5))):
        tifffile.imwrite(odd / name, np.zeros(shape, np.uint8))
    with DataFile.open(odd) as vol:
        with pytest.raises(CtsegDataError, match=r"2.tif: slice of shape \(4, 4\) and type uint8 in a series"):
            vol.read_slice(1)


def test_create_errors(tmp_path):
    path = tmp_path / "v.h5"
    DataFile.create(path, SHAPE, np.uint8).close()
    with pytest.raises(CtsegDataError, match="v.h5 exists already; choose another name or pass overwrite=True"):
        DataFile.create(path, SHAPE, np.uint8)
    DataFile.create(path, SHAPE, np.uint8, overwrite=True).close()
    with pytest.raises(CtsegSettingsError, match="compression must be 'gzip', 'lzf' or None, got 'zip'"):
        DataFile.create(tmp_path / "w.h5", SHAPE, np.uint8, compression="zip")
    with pytest.raises(CtsegSettingsError, match="either a chunk shape or a chunk size in MB, not both"):
        DataFile.create(tmp_path / "w.h5", SHAPE, np.uint8, chunk_shape=(2, 2, 2), chunk_mb=1)
    with pytest.raises(CtsegSettingsError, match="chunk and compression options apply to HDF5"):
        DataFile.create(tmp_path / "series", SHAPE, np.uint8, compression="gzip")
    with pytest.raises(CtsegSettingsError, match="give an .h5/.hdf5 file name for HDF5, or a folder name"):
        DataFile.create(tmp_path / "v.nii", SHAPE, np.uint8)
    with pytest.raises(CtsegSettingsError, match=r"a volume shape must be three positive sizes"):
        DataFile.create(tmp_path / "w.h5", (0, 3, 3), np.uint8)
    DataFile.create(tmp_path / "series", SHAPE, np.uint8).close()
    with pytest.raises(CtsegDataError, match="series holds TIFF files already; choose another folder"):
        DataFile.create(tmp_path / "series", SHAPE, np.uint8)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        with pytest.raises(CtsegSettingsError, match="chunk shape must be three positive sizes"):
            create_dataset(f, "d", SHAPE, np.uint8, chunk_shape=(0, 2, 2))


def test_read_and_write_errors(tmp_path):
    path = tmp_path / "v.h5"
    with DataFile.create(path, SHAPE, np.uint8) as vol:
        with pytest.raises(CtsegSettingsError, match=r"does not fit in volume \(7, 9, 11\)"):
            vol.write_block((5, 0, 0), np.zeros((3, 9, 11), np.uint8))
        with pytest.raises(CtsegSettingsError, match="values -1..3 do not fit the volume's type uint8"):
            vol.write_block((0, 0, 0), np.array([[[-1, 3]]], np.int16))
        with pytest.raises(CtsegSettingsError, match=r"write a 3D block at a \(z, y, x\) offset"):
            vol.write_block((0, 0), np.zeros((2, 2), np.uint8))
        with pytest.raises(CtsegSettingsError, match="a slab must be 3D"):
            vol.write_slab(0, 0, np.zeros((2, 2), np.uint8))
        with pytest.raises(CtsegSettingsError, match="slab 5:9 is outside axis 0 of length 7"):
            vol.write_slab(0, 5, np.zeros((4, 9, 11), np.uint8))
        with pytest.raises(CtsegSettingsError, match="slice 9 is outside axis 1 of length 9"):
            vol.read_slice(9, axis=1)
        with pytest.raises(CtsegSettingsError, match="axis must be 0, 1 or 2, got 3"):
            vol.read_slab(3, 0, 1)
        with pytest.raises(CtsegSettingsError, match=r"a block needs three slices \(z, y, x\)"):
            vol.read_block((slice(None),))
        with pytest.raises(CtsegSettingsError, match="must be a slice with step 1"):
            vol.read_block((slice(None, None, 2), slice(None), slice(None)))
        with pytest.raises(CtsegSettingsError, match="on axis 2 is empty"):
            vol.read_block((slice(None), slice(None), slice(5, 5)))
        with pytest.raises(CtsegSettingsError, match="more than max_gb=1e-09; read it in slabs"):
            vol.read_full(max_gb=1e-9)
        vol.write_block((0, 0, 0), np.full((1, 1, 2), 3.0))  # in-range floats are accepted
    with DataFile.open(path) as vol:
        with pytest.raises(CtsegSettingsError, match="opened read-only; open with mode='r\\+' to write"):
            vol.write_block((0, 0, 0), np.zeros((1, 1, 1), np.uint8))
        assert vol.read_block((slice(0, 1), slice(0, 1), slice(0, 3))).ravel().tolist() == [3, 3, 0]


# ------------------------------------------------------------------ damaged files, refused writes
def test_a_truncated_hdf5_file_is_named(tmp_path):
    path = tmp_path / "scan.h5"
    with DataFile.create(path, SHAPE, np.int16) as out:
        out.write_block((0, 0, 0), ramp(SHAPE))
    data = path.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CtsegDataError,
        match=r"cut.h5: cannot be read as HDF5 \(truncated or not an HDF5 file\?\): "
        r".*truncated file.*copy the file again",
    ):
        DataFile.open(tmp_path / "cut.h5")


def test_a_refused_hdf5_file_is_a_system_error_with_its_name(tmp_path, monkeypatch):
    def refuse(name, mode="r", **kwargs):  # what h5py raises: errno set, file named in the message only
        raise PermissionError(13, f"Unable to synchronously create file (name = '{name}', errno = 13)")

    monkeypatch.setattr(h5py, "File", refuse)
    with pytest.raises(PermissionError) as info:
        DataFile.create(tmp_path / "out.h5", SHAPE, np.int16)
    assert info.value.errno == 13 and info.value.filename == str(tmp_path / "out.h5")


# ------------------------------------------------------------------ non-finite voxels
def test_nonfinite_voxels_are_counted_and_replaced_by_the_minimum(caplog):
    values = np.array([[[np.nan, 3.0], [5.0, np.inf]], [[-np.inf, 2.0], [7.0, 4.0]]], np.float32)
    assert has_nonfinite(values) and not has_nonfinite(np.ones(3, np.int16)) and not has_nonfinite(np.ones(3))
    assert nonfinite_stats(values) == (3, 2.0)
    assert nonfinite_stats(np.array([1.0, 5.0])) == (0, 1.0)
    with caplog.at_level("WARNING", logger="ctseg_helpers.io.datafile"):
        out = replace_nonfinite("scan.nii", values)
    assert out is values
    np.testing.assert_array_equal(values, [[[2, 3], [5, 2]], [[2, 2], [7, 4]]])
    assert [r.getMessage() for r in caplog.records] == [
        "scan.nii: 3 of 8 voxels are NaN or infinite; they are replaced by the minimum finite value 2"
    ]


def test_a_volume_without_finite_voxels_is_refused():
    with pytest.raises(CtsegDataError, match="scan.h5: every voxel is NaN or infinite; there is no image"):
        replace_nonfinite("scan.h5", np.full((2, 3), np.nan))
    assert nonfinite_fill_value("scan.h5", 0, 6, None) is None  # nothing to replace
    assert fill_nonfinite(np.array([1.0, np.nan]), -5.0).tolist() == [1.0, -5.0]
