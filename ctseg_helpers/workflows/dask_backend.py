"""Run the volume passes of :func:`~ctseg_helpers.workflows.volume.segment_volume` on Dask.

The same per-chunk function, :func:`~ctseg_helpers.segment.blocks.segment_block`, is mapped
over a ``dask.array`` view of the volume with :func:`dask.array.map_overlap`: each block is a
slab of slices along the pass axis, optionally split within the slice plane
(``plane_chunks``) with ``halo_px`` pixels of context taken from the neighbouring blocks by
Dask's overlap machinery (no padding at the volume's outer faces, so edge slices are
segmented exactly as in the local run). The scheduling is Dask's: blocks are computed on the
workers of a ``dask.distributed`` cluster and the results come back to this process, which
writes them to the output and records each finished slab, so a Dask run resumes like a local
one.

Usage
-----
On one machine::

    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        segment_volume(SegmenterSpec("model.keras"), "scan.h5", "labels.h5", axes=(0, 1, 2),
                       dask_client=client)

On a cluster, start ``dask scheduler`` on one node and ``dask worker tcp://HOST:8786`` on the
others (or use dask-jobqueue / dask-kubernetes), then pass ``Client("tcp://HOST:8786")`` or
``ctseg segment-volume ... --dask-scheduler tcp://HOST:8786``. Workers read the input volume
and load the model from the same paths, so both must be on a shared file system; each worker
loads the model once (:class:`SegmenterSpec`). Only this process writes the output.
"""

from __future__ import annotations

import functools
import itertools
import logging
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.io.datafile import damaged_read_error
from ctseg_helpers.segment.blocks import argmax_uint8, segment_block

logger = logging.getLogger(__name__)


class SegmenterSpec:
    """A picklable recipe for a :class:`~ctseg_helpers.segment.segmenter.Segmenter` from a model file.

    Workers receive the recipe, not the Keras model, and each process builds the Segmenter
    once (:meth:`load` is cached per process). The attributes that define the result
    (``input_shape``, ``num_classes``, ``mode``, ``overlap``, ``blend``, ``tta``) are read from
    the model's stored settings without importing TensorFlow.

    Parameters
    ----------
    model_path : str or Path
        A ctseg ``.keras`` file, at a path every worker can read.
    **options
        Keyword arguments for :meth:`Segmenter.from_model_file` (``mode``, ``overlap``,
        ``blend``, ``batch_size``, ``tta``).
    """

    def __init__(self, model_path: str | Path, **options):
        from ctseg_helpers.model.settings import read_settings  # noqa: PLC0415
        from ctseg_helpers.segment.segmenter import SegmentSettings, mode_for_fit  # noqa: PLC0415

        self.model_path = str(Path(model_path).resolve())
        self.options = dict(sorted(options.items()))
        settings = read_settings(self.model_path)
        self.input_shape = settings.input_shape
        self.num_classes = settings.num_labels + 1
        self.mode = self.options.get("mode") or mode_for_fit(settings.fit_mode)
        self.overlap = float(self.options.get("overlap", SegmentSettings.overlap))
        self.blend = self.options.get("blend", SegmentSettings.blend)
        self.tta = bool(self.options.get("tta", SegmentSettings.tta))
        self.normalization = self.options.get("normalization") or settings.normalization

    def __repr__(self) -> str:
        return f"SegmenterSpec({self.model_path!r}, {self.options})"

    def load(self):
        """The Segmenter, built once per process."""
        return _load_segmenter(self.model_path, tuple(self.options.items()))


@functools.lru_cache(maxsize=4)
def _load_segmenter(model_path: str, options: tuple):
    from ctseg_helpers.segment.segmenter import Segmenter  # noqa: PLC0415

    logger.info("loading %s on this worker", model_path)
    return Segmenter.from_model_file(model_path, **dict(options))


def _resolve(segmenter):
    return segmenter.load() if isinstance(segmenter, SegmenterSpec) else segmenter


def _block_labels(block, *, segmenter, axis, max_slices=None):
    return segment_block(block, _resolve(segmenter), axis, max_slices=max_slices)


def _block_proba(block, *, segmenter, axis, max_slices=None):
    return segment_block(block, _resolve(segmenter), axis, proba=True, max_slices=max_slices)


class HDF5BlockReader:
    """Array-like (``shape``, ``dtype``, ``ndim``, ``__getitem__``) over a box of an HDF5 dataset.

    It opens the file read-only for each read, so it pickles to any worker that can see the
    path; :func:`dask.array.from_array` turns it into a lazy Dask array.
    """

    def __init__(self, path: str | Path, dataset: str, bounds):
        self.path = str(path)
        self.dataset = dataset
        self.bounds = tuple(tuple(int(v) for v in b) for b in bounds)
        self.shape = tuple(e - s for s, e in self.bounds)
        self.ndim = 3
        import h5py  # noqa: PLC0415

        with h5py.File(self.path, "r") as f:
            self.dtype = f[self.dataset].dtype

    def __getitem__(self, index):
        import h5py  # noqa: PLC0415

        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (3 - len(index))
        shifted = []
        for (start, _), n, s in zip(self.bounds, self.shape, index, strict=False):
            if not isinstance(s, slice):
                raise TypeError(f"HDF5BlockReader takes slices only, got {s!r}")
            a, b, step = s.indices(n)
            shifted.append(slice(start + a, start + b, step))
        with h5py.File(self.path, "r") as f:
            try:
                return f[self.dataset][tuple(shifted)]
            except OSError as exc:
                raise damaged_read_error(self.path, self.dataset, shifted, exc) from None


def label_array(
    source,
    segmenter,
    axis: int,
    *,
    axis_chunks,
    plane_chunks=None,
    halo_px: int = 0,
    proba: bool = False,
    max_slices: int | None = None,
):
    """Lazy labels (or probabilities) of a Dask array of voxels, segmented along ``axis``.

    Parameters
    ----------
    source : dask.array.Array of shape (Z, Y, X), or an array-like for ``da.from_array``
        (e.g. :class:`HDF5BlockReader`), which is then read block by block by the tasks.
    segmenter : Segmenter or SegmenterSpec
    axis : {0, 1, 2}
    axis_chunks : tuple of int
        Block sizes along ``axis`` (slab thicknesses).
    plane_chunks : (int, int), optional
        Block size within the slice plane (the two other axes, in order); whole planes if None.
    halo_px : int
        Pixels of context added on each in-plane side of a block from its neighbours and
        trimmed from the result (ignored with whole planes, where there are no neighbours).
        With plane blocks, a model with per-image (MR) normalisation normalises each block on
        its own, so results can differ from whole planes; a warning is logged.
    proba : bool
        Return float32 probabilities (Z, Y, X, C) instead of uint8 labels.
    max_slices : int, optional
        Slices handed to the segmenter at a time within a block (bounds worker memory).

    Returns
    -------
    dask.array.Array

    Raises
    ------
    CtsegSettingsError
        If ``halo_px`` is negative or larger than an in-plane block.
    """
    import dask.array as da  # noqa: PLC0415

    others = [a for a in (0, 1, 2) if a != axis]
    chunks = [None, None, None]
    chunks[axis] = tuple(int(c) for c in axis_chunks)
    for k, a in enumerate(others):
        chunks[a] = source.shape[a] if plane_chunks is None else int(plane_chunks[k])
    if isinstance(source, da.Array):
        arr = source.rechunk(tuple(chunks))
    else:  # each task reads only its own block from disk
        arr = da.from_array(source, chunks=tuple(chunks), asarray=True, fancy=False, name=False)
    halo = int(halo_px)
    if halo < 0:
        raise CtsegSettingsError(f"the Dask halo must be a non-negative number of pixels, got {halo_px}")
    depth = {a: 0 for a in (0, 1, 2)}
    if plane_chunks is not None:
        for a in others:
            if halo > min(arr.chunks[a]):
                raise CtsegSettingsError(
                    f"a halo of {halo} px is larger than the smallest in-plane block ({min(arr.chunks[a])} px) "
                    f"along axis {a}; use larger plane chunks or a smaller halo"
                )
            depth[a] = halo
    norm = getattr(segmenter, "normalization", None)
    if plane_chunks is not None and norm is not None and norm.modality != "CT":
        # per-image (MR) normalisation takes its percentiles from what the segmenter is given
        logger.warning(
            "the model normalises each image by its own percentiles (%s), so with plane blocks each block is "
            "normalised on its own and the labels can differ from a whole-plane run along block edges; "
            "leave --dask-plane-chunk out (whole planes) for the same result as a local run",
            norm.modality,
        )
    fn = _block_proba if proba else _block_labels
    kwargs = {"segmenter": segmenter, "axis": axis, "max_slices": max_slices}
    if proba:
        # map_overlap cannot trim an output with a new class axis, so its three steps are spelled out
        n_classes = int(segmenter.num_classes)
        padded = da.overlap.overlap(arr, depth=depth, boundary="none")
        out = padded.map_blocks(fn, dtype=np.float32, new_axis=[3], chunks=padded.chunks + ((n_classes,),), **kwargs)
        return da.overlap.trim_internal(out, {**depth, 3: 0}, boundary="none")
    return da.map_overlap(fn, arr, depth=depth, boundary="none", dtype=np.uint8, trim=True, **kwargs)


def run_pass(
    client,
    segmenter,
    work,
    axis: int,
    todo,
    write,
    *,
    proba: bool,
    halo_px: int = 0,
    plane_chunks=None,
    progress: bool = True,
    max_in_flight: int | None = None,
    max_slices: int | None = None,
) -> None:
    """Segment the slabs ``todo`` along ``axis`` on a Dask cluster and hand them to ``write``.

    Parameters
    ----------
    client : dask.distributed.Client
    segmenter : Segmenter or SegmenterSpec
    work : volume region with ``datafile`` (an HDF5 :class:`DataFile`) and ``bounds``
    axis : {0, 1, 2}
    todo : list of (start, stop)
        Slabs along ``axis`` still to do.
    write : callable
        ``write(start, stop, labels, proba)`` for each finished slab (volume axis order).
    proba : bool
        Also compute the class probabilities (several axes are combined).
    max_in_flight : int, optional
        Blocks computed at once (default: twice the number of worker threads), which bounds
        the memory this process uses for results.
    max_slices : int, optional
        Slices handed to the segmenter at a time within a block.

    Raises
    ------
    CtsegSettingsError
        If the volume is not an HDF5 dataset (Dask workers read HDF5).
    """
    from dask.distributed import as_completed  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    if not todo:
        return
    if work.datafile.backend != "hdf5":
        raise CtsegSettingsError(
            f"{work.datafile.path}: the Dask backend reads HDF5 volumes; convert the TIFF series first (ctseg convert)"
        )
    reader = HDF5BlockReader(work.datafile.path, work.datafile.dataset, work.bounds)
    # Blocks along the axis: the unfinished slabs, with the finished stretches between them.
    edges = sorted({0, work.shape[axis], *(s for s, _ in todo), *(e for _, e in todo)})
    sizes = tuple(b - a for a, b in itertools.pairwise(edges))
    labels = label_array(
        reader,
        segmenter,
        axis,
        axis_chunks=sizes,
        plane_chunks=plane_chunks,
        halo_px=halo_px,
        proba=proba,
        max_slices=max_slices,
    )
    wanted = {edges.index(s) for s, _ in todo}
    starts = [np.cumsum((0,) + c)[:-1] for c in labels.chunks[:3]]
    blocks = [idx for idx in np.ndindex(*labels.numblocks[:3]) if idx[axis] in wanted]
    per_slab = {}
    for idx in blocks:
        per_slab[idx[axis]] = per_slab.get(idx[axis], 0) + 1
    threads = sum(client.nthreads().values()) or 1
    window = max_in_flight or 2 * threads
    pending = list(blocks)
    results = {}
    logger.info("axis %d: %d blocks on %d Dask worker threads", axis, len(blocks), threads)

    index_of = {}

    def submit(idx):
        key = idx + ((0,) if proba else ())
        future = client.compute(labels.blocks[key])
        index_of[future.key] = idx
        return future

    futures = as_completed([submit(pending.pop(0)) for _ in range(min(window, len(pending)))])
    with tqdm(total=len(blocks), desc=f"axis {axis} (dask)", unit="block", disable=not progress) as bar:
        for future in futures:
            idx = index_of.pop(future.key)
            value = future.result()
            future.release()
            if pending:
                futures.add(submit(pending.pop(0)))
            results.setdefault(idx[axis], []).append((idx, value))
            bar.update(1)
            slab = idx[axis]
            if len(results[slab]) == per_slab[slab]:
                _write_slab(results.pop(slab), starts, axis, edges[slab], edges[slab + 1], work.shape, proba, write)


def _write_slab(parts, starts, axis, start, stop, shape, proba, write):
    """Assemble the blocks of one slab and write it (one write per slab keeps resume simple)."""
    slab_shape = list(shape)
    slab_shape[axis] = stop - start
    first = parts[0][1]
    if len(parts) == 1:
        value = first
    else:
        value = np.empty(tuple(slab_shape) + first.shape[3:], dtype=first.dtype)
        for idx, part in parts:
            index = [slice(None)] * 3
            for a in (0, 1, 2):
                if a != axis:
                    index[a] = slice(starts[a][idx[a]], starts[a][idx[a]] + part.shape[a])
            value[tuple(index)] = part
    if proba:
        write(start, stop, argmax_uint8(value), value)
    else:
        write(start, stop, value, None)


def connect(scheduler: str | None, *, n_workers: int = 1, threads_per_worker: int = 1):
    """A ``dask.distributed`` client: ``"local"`` starts a LocalCluster, else an address.

    Parameters
    ----------
    scheduler : str
        ``"local"`` (or ``"local:N"`` for N worker processes) or a scheduler address such as
        ``tcp://10.0.0.5:8786``.

    Returns
    -------
    (Client, LocalCluster or None)
        Close both when done (the cluster only if not None).

    Raises
    ------
    CtsegSettingsError
        If the scheduler cannot be reached.
    """
    from dask.distributed import Client, LocalCluster  # noqa: PLC0415

    if scheduler is None or scheduler.startswith("local"):
        if scheduler and ":" in scheduler:
            try:
                n_workers = int(scheduler.split(":", 1)[1])
            except ValueError:
                raise CtsegSettingsError(
                    f"--dask-scheduler {scheduler!r}: write 'local' or 'local:N' with N worker processes"
                ) from None
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout="20s"), None
    except (OSError, TimeoutError) as exc:
        raise CtsegSettingsError(
            f"cannot reach the Dask scheduler at {scheduler} ({exc}); check the address and that "
            "'dask scheduler' is running there"
        ) from exc


__all__ = ["HDF5BlockReader", "SegmenterSpec", "connect", "label_array", "run_pass"]
