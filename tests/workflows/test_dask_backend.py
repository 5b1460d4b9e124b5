"""The Dask path (LocalCluster in this process) gives the same labels as the local one."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.io.datafile import DataFile
from ctseg_helpers.segment.segmenter import Segmenter
from ctseg_helpers.workflows.dask_backend import HDF5BlockReader, SegmenterSpec, connect, label_array, run_pass
from ctseg_helpers.workflows.volume import segment_volume
from tests.segment.test_blocks import THRESHOLD, threshold_fn
from tests.workflows.test_volume import left_half_fn

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            yield c


@pytest.fixture
def volume(tmp_path):
    vol = np.random.default_rng(0).integers(0, 100, (18, 24, 28)).astype(np.int16)
    path = tmp_path / "in.h5"
    with DataFile.create(path, vol.shape, vol.dtype, chunk_shape=(6, 8, 8)) as out:
        out.write_block((0, 0, 0), vol)
    return path, vol


def seg(fn, size=16):
    return Segmenter(fn, input_shape=size, num_classes=2, mode="tile", batch_size=4)


def labels(path):
    with h5py.File(path, "r") as f:
        return f["labels"][:]


CAP = 60e3 / 1e9  # several slabs per axis (see tests/workflows/test_volume.py)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"axes": (0,)},
        {"axes": (0, 1, 2)},
        {"axes": (0, 1, 2), "combine": "mean"},
        {"axes": (1, 2), "crop": "2:16,3:,:20"},
        {"axes": (0, 2), "rotate_deg": 90},
    ],
)
def test_dask_equals_local_with_a_non_local_predict_fn(volume, tmp_path, client, kwargs):
    """Whole slice planes per block: even a position-dependent network gives identical labels."""
    path, _ = volume
    local = segment_volume(seg(left_half_fn), path, tmp_path / "local.h5", max_gb=CAP, progress=False, **kwargs)
    remote = segment_volume(
        seg(left_half_fn), path, tmp_path / "dask.h5", max_gb=CAP, progress=False, dask_client=client, **kwargs
    )
    assert local.slabs_done > 1 and remote.slabs_done == local.slabs_done
    np.testing.assert_array_equal(labels(tmp_path / "dask.h5"), labels(tmp_path / "local.h5"))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_dask_with_plane_blocks_and_halo_equals_local(volume, tmp_path, client, axis):
    path, vol = volume
    segment_volume(
        seg(threshold_fn),
        path,
        tmp_path / "dask.h5",
        axes=(axis,),
        max_gb=CAP,
        progress=False,
        dask_client=client,
        dask_plane_chunks=(10, 12),
        dask_halo_px=3,
    )
    np.testing.assert_array_equal(labels(tmp_path / "dask.h5"), vol > THRESHOLD)


def test_halo_gives_context_across_block_edges(tmp_path):
    """A block function that sees its block's extent: with a halo, blocks see beyond their edges."""
    import dask.array as da

    source = da.zeros((4, 20, 20), chunks=(4, 20, 20), dtype=np.float32)

    class WidthSeg:
        num_classes = 2

        def segment(self, images):  # labels = width of the slice the function was given
            return np.full(images.shape, images.shape[2], np.uint8)

    without = label_array(source, WidthSeg(), 0, axis_chunks=(4,), plane_chunks=(10, 10)).compute(scheduler="sync")
    with_halo = label_array(source, WidthSeg(), 0, axis_chunks=(4,), plane_chunks=(10, 10), halo_px=3).compute(
        scheduler="sync"
    )
    assert set(np.unique(without)) == {10}
    assert set(np.unique(with_halo)) == {13}  # each block plus 3 px from one neighbour, none at the faces


def fail_on_marker(batch):
    """Raises on a batch holding the marker value 999 (a copy of it runs on each Dask task)."""
    if (batch == 999).any():
        raise RuntimeError("injected failure")
    return threshold_fn(batch)


def test_dask_resume_after_an_injected_failure(volume, tmp_path, client):
    path, vol = volume
    with DataFile.open(path, mode="r+") as f:
        f.write_block((9, 12, 25), np.full((1, 1, 1), 999, np.int16))
    vol[9, 12, 25] = 999
    out = tmp_path / "dask.h5"
    with pytest.raises(RuntimeError, match="injected failure"):
        segment_volume(seg(fail_on_marker), path, out, axes=(2,), max_gb=CAP, progress=False, dask_client=client)
    with h5py.File(out, "r") as f:
        flags = f["progress/axis2"][:]
    # How many blocks finish before the failing one depends on how the cluster schedules them
    # (all of them on a quiet machine, none when the failing block runs first): never the slice
    # that failed, and whatever was marked done is skipped on resume.
    assert flags[25] == 0
    result = segment_volume(seg(threshold_fn), path, out, axes=(2,), max_gb=CAP, progress=False, dask_client=client)
    assert result.slices_skipped == flags.sum()
    np.testing.assert_array_equal(labels(out), vol > THRESHOLD)


def test_each_task_reads_only_its_own_block(volume):
    path, vol = volume

    class CountingReader(HDF5BlockReader):
        sizes = []

        def __getitem__(self, index):
            out = super().__getitem__(index)
            self.sizes.append(out.size)
            return out

    reader = CountingReader(path, "data", ((0, 18), (0, 24), (0, 28)))
    result = label_array(reader, seg(threshold_fn), 1, axis_chunks=(8, 8, 8), plane_chunks=(9, 14), halo_px=2)
    np.testing.assert_array_equal(result.compute(scheduler="sync"), vol > THRESHOLD)
    assert max(CountingReader.sizes) <= 9 * 8 * 14


def test_plane_blocks_with_per_image_normalisation_are_flagged(caplog):
    from ctseg_helpers.prepare.normalize import Normalization

    block = np.zeros((4, 16, 16), np.float32)
    mr = Segmenter(threshold_fn, input_shape=16, num_classes=2, normalization=Normalization(modality="MR"))
    ct = Segmenter(threshold_fn, input_shape=16, num_classes=2, normalization=Normalization(modality="CT"))
    with caplog.at_level("WARNING"):
        label_array(block, ct, 0, axis_chunks=(4,), plane_chunks=(8, 8), halo_px=2)
        label_array(block, mr, 0, axis_chunks=(4,))  # whole planes: the same as a local run
        assert "normalised on its own" not in caplog.text
        label_array(block, mr, 0, axis_chunks=(4,), plane_chunks=(8, 8), halo_px=2)
    assert "each block is normalised on its own" in caplog.text and "leave --dask-plane-chunk out" in caplog.text


def test_block_reader_reads_a_box(volume):
    path, vol = volume
    reader = HDF5BlockReader(path, "data", ((2, 10), (0, 24), (5, 9)))
    assert reader.shape == (8, 24, 4) and reader.dtype == np.int16
    np.testing.assert_array_equal(reader[1:3, :, 2:], vol[3:5, :, 7:9])
    with pytest.raises(TypeError, match="HDF5BlockReader takes slices only"):
        reader[1]


def test_errors(volume, tmp_path, client):
    import dask.array as da

    source = da.zeros((4, 20, 20), chunks=(4, 20, 20), dtype=np.float32)
    with pytest.raises(CtsegSettingsError, match="the Dask halo must be a non-negative number of pixels"):
        label_array(source, seg(threshold_fn), 0, axis_chunks=(4,), halo_px=-1)
    with pytest.raises(CtsegSettingsError, match="a halo of 8 px is larger than the smallest in-plane block"):
        label_array(source, seg(threshold_fn), 0, axis_chunks=(4,), plane_chunks=(5, 5), halo_px=8)

    folder = tmp_path / "series"
    DataFile.create(folder, (3, 4, 5), np.uint8).close()

    class Work:
        datafile = DataFile.open(folder)
        bounds = ((0, 3), (0, 4), (0, 5))
        shape = (3, 4, 5)

    with pytest.raises(CtsegSettingsError, match="the Dask backend reads HDF5 volumes; convert the TIFF series"):
        run_pass(client, seg(threshold_fn), Work, 0, [(0, 3)], print, proba=False)
    with pytest.raises(CtsegSettingsError, match="write 'local' or 'local:N' with N worker processes"):
        connect("local:two")


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    import dask.distributed

    def refuse(address, timeout):
        raise OSError(f"Timed out trying to connect to {address}")

    monkeypatch.setattr(dask.distributed, "Client", refuse)
    with pytest.raises(CtsegSettingsError, match="cannot reach the Dask scheduler at tcp://10.0.0.1:8786"):
        connect("tcp://10.0.0.1:8786")


def test_segmenter_spec_loads_the_model_once_per_process(tmp_path, volume, client):
    from tests.segment.tiny_model import make_tiny_model_file

    model = make_tiny_model_file(tmp_path / "tiny.keras", input_shape=16, fit_mode="pad")
    spec = SegmenterSpec(model, batch_size=4)
    assert (spec.input_shape, spec.num_classes, spec.mode) == (16, 3, "tile")
    assert spec.load() is spec.load()
    _, vol = volume
    path = tmp_path / "ct.h5"
    with DataFile.create(path, vol.shape, np.int16) as out:  # HU -400..392: all three classes
        out.write_block((0, 0, 0), vol * 8 - 400)
    segment_volume(spec, path, tmp_path / "dask.h5", axes=(0, 1), max_gb=CAP, progress=False, dask_client=client)
    local = Segmenter.from_model_file(model, batch_size=4)
    segment_volume(local, path, tmp_path / "local.h5", axes=(0, 1), max_gb=CAP, progress=False)
    np.testing.assert_array_equal(labels(tmp_path / "dask.h5"), labels(tmp_path / "local.h5"))
    assert set(np.unique(labels(tmp_path / "local.h5"))) == {0, 1, 2}
