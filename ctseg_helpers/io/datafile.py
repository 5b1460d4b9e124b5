"""Chunked access to 3D volumes larger than memory: :class:`DataFile`.

A :class:`DataFile` is one 3D array on disk, either

- a dataset in an HDF5 file (``.h5``/``.hdf5``), stored in chunks with optional compression, or
- a TIFF series: a folder of 2D TIFF files, one per index along axis 0, sorted by name with
  numbers compared as numbers (``slice_2.tif`` before ``slice_10.tif``).

Reading and writing go through a few operations that never need the whole volume in memory:

- :meth:`DataFile.read_slice` - one 2D slice along axis 0, 1 or 2;
- :meth:`DataFile.slab_ranges` / :meth:`DataFile.read_slab` / :meth:`DataFile.write_slab` -
  slabs of consecutive slices along an axis, each at most ``max_gb`` in memory and, for chunked
  HDF5, aligned with the chunk grid so each chunk is read once per pass;
- :meth:`DataFile.read_block` / :meth:`DataFile.write_block` - arbitrary 3D blocks;
- :meth:`DataFile.read_full` - the whole volume, refused when it is larger than ``max_gb``.

Volumes are indexed ``(z, y, x)``: axis 0 is the slice axis of the scan (the TIFF file index).
A chunk shape for new HDF5 datasets comes from :func:`estimate_chunk_shape`, which aims at
near-cubic chunks of a target size, so that slabs along any axis read about equally fast.

Example (writes ``scan.h5`` in the working folder)::

    with DataFile.create("scan.h5", shape=(400, 512, 512), dtype="int16", chunk_mb=1) as out:
        for start, stop in out.slab_ranges(axis=0, max_gb=0.1):
            out.write_slab(0, start, np.zeros((stop - start, 512, 512), "int16"))
    with DataFile.open("scan.h5") as vol:
        side_view = vol.read_slice(256, axis=2)
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.naming import natural_key

logger = logging.getLogger(__name__)

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
TIFF_SUFFIXES = (".tif", ".tiff")
COMPRESSIONS = ("gzip", "lzf", None)
#: Chunk size aimed at when none is given: 1 MiB, HDF5's own default chunk cache size.
DEFAULT_CHUNK_MB = 1.0
_GB = 1e9
_MB = 2**20


def estimate_chunk_shape(shape, dtype, target_mb: float = DEFAULT_CHUNK_MB) -> tuple[int, int, int]:
    """Chunk shape of about ``target_mb`` MiB, as close to a cube as the volume allows.

    Near-cubic chunks make slabs along axis 0, 1 and 2 cost the same, which is what
    segmentation along several axes needs. An axis shorter than the cube side is taken whole
    and the remaining budget is spread over the other axes.

    Parameters
    ----------
    shape : tuple of 3 int
        Volume shape ``(z, y, x)`` in voxels.
    dtype : numpy dtype or str
        Voxel type (its item size sets how many voxels fit in ``target_mb``).
    target_mb : float
        Wanted chunk size in MiB (2**20 bytes); the result is at most this size, or one voxel.

    Returns
    -------
    tuple of 3 int
        Chunk shape, each side between 1 and the volume's side.

    Raises
    ------
    CtsegSettingsError
        If ``target_mb`` is not positive or ``shape`` is not three positive sizes.

    Examples
    --------
    >>> estimate_chunk_shape((1000, 1000, 1000), "uint8", 1.0)
    (101, 101, 101)
    >>> estimate_chunk_shape((4, 1000, 1000), "uint8", 1.0)
    (4, 512, 512)
    """
    shape = _check_shape(shape)
    if not target_mb > 0:
        raise CtsegSettingsError(f"chunk size must be a positive number of MB, got {target_mb}")
    budget = max(1.0, target_mb * _MB / np.dtype(dtype).itemsize)  # voxels per chunk
    chunk = [None, None, None]
    free = [0, 1, 2]
    while free:
        side = (budget / math.prod(c for c in chunk if c is not None)) ** (1.0 / len(free))
        clipped = [a for a in free if shape[a] <= side]
        if not clipped:
            for a in free:
                chunk[a] = max(1, int(math.floor(side + 1e-9)))
            break
        for a in clipped:
            chunk[a] = shape[a]
            free.remove(a)
    return tuple(int(c) for c in chunk)


def parse_chunk_shape(text: str) -> tuple[int, int, int]:
    """Parse ``"z,y,x"`` (e.g. ``"64,128,128"``) into a chunk shape.

    Raises
    ------
    CtsegSettingsError
        If the text is not three positive integers separated by commas.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise CtsegSettingsError(f"chunk shape must be three positive integers 'z,y,x' (e.g. 64,128,128), got {text!r}")
    return values


def _check_shape(shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise CtsegSettingsError(f"a volume shape must be three positive sizes (z, y, x), got {shape}")
    return shape


def _check_axis(axis) -> int:
    if axis not in (0, 1, 2):
        raise CtsegSettingsError(f"axis must be 0, 1 or 2, got {axis!r}")
    return int(axis)


def _open_h5_file(path: Path, mode: str):
    """``h5py.File(path, mode)`` with errors a user can act on.

    Raises
    ------
    CtsegDataError
        If an existing file cannot be read as HDF5 (truncated or damaged).
    OSError
        When the system refuses the file (permission, read-only or full disk): the same
        error with ``filename`` set to ``path``, which h5py leaves empty.
    """
    import h5py  # noqa: PLC0415

    try:
        return h5py.File(path, mode, rdcc_nbytes=64 * _MB)
    except OSError as exc:
        if exc.errno is not None:  # the system refused; h5py names the file only inside its message
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        if mode == "w":
            raise
        raise CtsegDataError(
            f"{path}: cannot be read as HDF5 (truncated or not an HDF5 file?): {exc}; "
            "copy the file again, or convert the scan again with 'ctseg convert'"
        ) from exc


def tiff_series_files(folder: str | Path) -> list[Path]:
    """The ``.tif``/``.tiff`` files of a folder in natural name order (one per slice)."""
    folder = Path(folder)
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES),
        key=natural_key,
    )


def slab_thickness(
    shape,
    axis: int,
    bytes_per_voxel: float,
    max_gb: float,
    align: int | None = None,
    *,
    source: str | Path | None = None,
) -> int:
    """Slices per slab along ``axis`` so one slab's arrays stay under ``max_gb``.

    The one rule for slab sizes: :meth:`DataFile.slab_ranges` (reading) and the volume
    segmentation (working arrays of several bytes per voxel) both use it.

    Parameters
    ----------
    shape : tuple of int
        Volume shape.
    axis : int
        Axis the slabs are cut along.
    bytes_per_voxel : float
        Memory one voxel needs (the dtype's size, or the sum over working arrays).
    max_gb : float
        Cap per slab in GB (1e9 bytes).
    align : int, optional
        Round the thickness down to a multiple of this (a chunk side) when at least one fits.
    source : path, optional
        Named in the error message.

    Raises
    ------
    CtsegSettingsError
        If a single slice already needs more than ``max_gb``.

    Examples
    --------
    >>> slab_thickness((100, 10, 10), 0, 4, 2e-6)  # 400 bytes per slice, 2000 allowed
    5
    """
    per_slice = math.prod(shape) // shape[axis] * bytes_per_voxel
    thickness = int(max_gb * _GB // per_slice)
    if thickness < 1:
        where = f"{source}: " if source else ""
        raise CtsegSettingsError(
            f"{where}one slice along axis {axis} needs {per_slice / _GB:.3g} GB of working memory, more than the "
            f"{max_gb:.3g} GB allowed for a slab; raise max_gb (--max-gb) or crop the volume"
        )
    thickness = min(thickness, shape[axis])
    if align and thickness >= align:
        thickness -= thickness % align
    return thickness


class DataFile:
    """One 3D volume on disk (HDF5 dataset or TIFF series), read and written in pieces.

    Create instances with :meth:`open`, :meth:`create` or :meth:`from_h5py`, and use them as
    context managers; :meth:`close` is idempotent. Instances are not thread-safe.

    Attributes
    ----------
    path : Path
        The HDF5 file or the TIFF folder.
    dataset : str or None
        Name of the HDF5 dataset (None for a TIFF series).
    shape : tuple of 3 int
        ``(z, y, x)`` in voxels.
    dtype : numpy.dtype
    chunk_shape : tuple of 3 int or None
        HDF5 chunk shape; None for contiguous HDF5 and TIFF series (for which one slice along
        axis 0 is the natural unit).
    compression : str or None
    writable : bool
    """

    def __init__(
        self,
        *,
        path,
        dataset,
        shape,
        dtype,
        chunk_shape,
        compression,
        writable,
        backend,
        h5file=None,
        h5dataset=None,
        tiff_files=None,
        owns_file=True,
    ):
        self.path = Path(path)
        self.dataset = dataset
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.chunk_shape = tuple(int(c) for c in chunk_shape) if chunk_shape else None
        self.compression = compression
        self.writable = writable
        self.backend = backend
        self._h5file = h5file
        self._h5 = h5dataset
        self._tiff_files = tiff_files
        self._owns_file = owns_file
        self._closed = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, dataset: str | None = None, *, mode: str = "r") -> DataFile:
        """Open an existing volume.

        Parameters
        ----------
        path : str or Path
            An HDF5 file or a folder of TIFF files.
        dataset : str, optional
            HDF5 dataset name. If omitted, the file must hold exactly one 3D dataset.
        mode : {"r", "r+"}
            ``"r+"`` allows writing into the existing volume.

        Raises
        ------
        CtsegDataError
            If the path does not exist, is not HDF5 or a TIFF folder, cannot be read as HDF5
            (truncated or damaged), the dataset is missing or ambiguous, is not 3D, or the TIFF
            files disagree in size or type.
        CtsegSettingsError
            If ``mode`` is not ``"r"`` or ``"r+"``.
        """
        if mode not in ("r", "r+"):
            raise CtsegSettingsError(f"DataFile.open mode must be 'r' or 'r+', got {mode!r}")
        path = Path(path)
        if not path.exists():
            raise CtsegDataError(f"{path}: no such file or folder")
        if path.is_dir():
            return cls._open_tiff(path, writable=mode == "r+")
        return cls._open_hdf5(path, dataset, mode)

    @classmethod
    def _open_hdf5(cls, path: Path, dataset: str | None, mode: str) -> DataFile:
        import h5py  # noqa: PLC0415

        if not h5py.is_hdf5(path):
            raise CtsegDataError(
                f"{path}: not an HDF5 file; convert the scan first with 'ctseg convert {path.name} OUT.h5'"
            )
        h5file = _open_h5_file(path, mode)
        try:
            if dataset is None:
                found = []
                h5file.visititems(
                    lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else None
                )
                if len(found) != 1:
                    what = "no 3D dataset" if not found else f"several 3D datasets ({', '.join(found)})"
                    raise CtsegDataError(f"{path}: {what}; name the one to use (dataset=... / --dataset)")
                dataset = found[0]
            if dataset not in h5file or not isinstance(h5file[dataset], h5py.Dataset):
                names = []
                h5file.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
                raise CtsegDataError(f"{path}: no dataset {dataset!r}; the file holds: {', '.join(names) or 'nothing'}")
            return cls.from_h5py(h5file[dataset], _owns_file=True)
        except BaseException:
            h5file.close()
            raise

    @classmethod
    def from_h5py(cls, dset, *, _owns_file: bool = False) -> DataFile:
        """Wrap an open ``h5py.Dataset`` (the caller keeps the file open and closes it).

        Raises
        ------
        CtsegDataError
            If the dataset is not 3D.
        """
        if dset.ndim != 3:
            raise CtsegDataError(
                f"{dset.file.filename}: dataset {dset.name!r} has shape {dset.shape}; a 3D volume is needed"
            )
        return cls(
            path=dset.file.filename,
            dataset=dset.name.lstrip("/"),
            shape=dset.shape,
            dtype=dset.dtype,
            chunk_shape=dset.chunks,
            compression=dset.compression,
            writable=dset.file.mode == "r+",
            backend="hdf5",
            h5file=dset.file,
            h5dataset=dset,
            owns_file=_owns_file,
        )

    @classmethod
    def _open_tiff(cls, folder: Path, writable: bool) -> DataFile:
        import tifffile  # noqa: PLC0415

        files = tiff_series_files(folder)
        if not files:
            raise CtsegDataError(f"{folder}: no .tif/.tiff files in this folder; a TIFF series has one file per slice")
        shapes = {}
        for f in (files[0], files[-1]):
            with tifffile.TiffFile(f) as tif:
                page = tif.pages[0]
                if len(tif.pages) != 1 or len(page.shape) != 2:
                    raise CtsegDataError(
                        f"{f}: a TIFF series needs one 2D grey-level image per file; this file holds "
                        f"{len(tif.pages)} page(s) of shape {page.shape} "
                        "(convert a multi-page stack with ctseg convert)"
                    )
                shapes[f] = (tuple(page.shape), np.dtype(page.dtype))
        (s0, d0), (s1, d1) = shapes[files[0]], shapes[files[-1]]
        if (s0, d0) != (s1, d1):
            raise CtsegDataError(
                f"{folder}: slices differ in size or type ({files[0].name}: {s0} {d0}, "
                f"{files[-1].name}: {s1} {d1}); all files of a series must match"
            )
        return cls(
            path=folder,
            dataset=None,
            shape=(len(files), *s0),
            dtype=d0,
            chunk_shape=None,
            compression=None,
            writable=writable,
            backend="tiff",
            tiff_files=files,
        )

    @classmethod
    def create(
        cls,
        path: str | Path,
        shape,
        dtype,
        *,
        dataset: str = "data",
        chunk_shape=None,
        chunk_mb: float | None = None,
        compression: str | None = None,
        overwrite: bool = False,
        attrs: dict | None = None,
    ) -> DataFile:
        """Create a new, writable volume filled with zeros.

        Parameters
        ----------
        path : str or Path
            ``*.h5``/``*.hdf5`` for HDF5; a folder name without suffix for a TIFF series
            (one uncompressed file per slice along axis 0, ``slice_00000.tif`` ...).
        shape : tuple of 3 int
            ``(z, y, x)``.
        dtype : numpy dtype or str
        dataset : str
            HDF5 dataset name.
        chunk_shape : tuple of 3 int, optional
            HDF5 chunk shape; clipped to the volume. Give this or ``chunk_mb``, not both.
        chunk_mb : float, optional
            Target chunk size in MiB for :func:`estimate_chunk_shape` (default 1 MiB).
        compression : {"gzip", "lzf", None}
            HDF5 compression (with the byte-shuffle filter, which helps on CT numbers).
        overwrite : bool
            Replace an existing file (HDF5) or the TIFF files of an existing folder.
        attrs : dict, optional
            Attributes to store on the HDF5 dataset (e.g. ``spacing_mm``).

        Raises
        ------
        CtsegDataError
            If the output exists and ``overwrite`` is False.
        CtsegSettingsError
            For an unknown compression, both chunk options, or a bad shape.
        """
        path = Path(path)
        shape = _check_shape(shape)
        dtype = np.dtype(dtype)
        if compression not in COMPRESSIONS:
            raise CtsegSettingsError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")
        if chunk_shape is not None and chunk_mb is not None:
            raise CtsegSettingsError("give either a chunk shape or a chunk size in MB, not both")
        if path.suffix.lower() in HDF5_SUFFIXES:
            if path.exists() and not overwrite:
                raise CtsegDataError(f"{path} exists already; choose another name or pass overwrite=True (--overwrite)")
            path.parent.mkdir(parents=True, exist_ok=True)
            h5file = _open_h5_file(path, "w")
            try:
                dset = create_dataset(
                    h5file, dataset, shape, dtype, chunk_shape=chunk_shape, chunk_mb=chunk_mb, compression=compression
                )
                for key, value in (attrs or {}).items():
                    dset.attrs[key] = value
                return cls.from_h5py(dset, _owns_file=True)
            except BaseException:
                h5file.close()
                raise
        if path.suffix == "" or path.is_dir():
            if compression is not None or chunk_shape is not None or chunk_mb is not None:
                raise CtsegSettingsError(
                    f"{path}: a TIFF series is written uncompressed, one file per slice; "
                    "chunk and compression options apply to HDF5 (.h5) outputs only"
                )
            if path.is_dir() and tiff_series_files(path):
                if not overwrite:
                    raise CtsegDataError(
                        f"{path} holds TIFF files already; choose another folder or pass overwrite=True"
                    )
                for f in tiff_series_files(path):
                    f.unlink()
            path.mkdir(parents=True, exist_ok=True)
            import tifffile  # noqa: PLC0415

            digits = max(5, len(str(shape[0] - 1)))
            files = [path / f"slice_{i:0{digits}d}.tif" for i in range(shape[0])]
            for f in files:
                mm = tifffile.memmap(f, shape=shape[1:], dtype=dtype, photometric="minisblack")
                mm.flush()
                del mm
            return cls(
                path=path,
                dataset=None,
                shape=shape,
                dtype=dtype,
                chunk_shape=None,
                compression=None,
                writable=True,
                backend="tiff",
                tiff_files=files,
            )
        raise CtsegSettingsError(
            f"{path}: give an .h5/.hdf5 file name for HDF5, or a folder name without suffix for a TIFF series"
        )

    # ------------------------------------------------------------------ resource handling
    def close(self) -> None:
        """Close the underlying file (HDF5); safe to call twice."""
        if not self._closed and self._h5file is not None and self._owns_file:
            self._h5file.close()
        self._closed = True

    def __enter__(self) -> DataFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"{self.path}:{self.dataset}" if self.dataset else str(self.path)
        return f"DataFile({where}, shape={self.shape}, dtype={self.dtype}, chunks={self.chunk_shape})"

    def _check_open(self, writing: bool = False) -> None:
        if self._closed:
            raise CtsegSettingsError(f"{self.path}: this DataFile is closed; open it again")
        if writing and not self.writable:
            raise CtsegSettingsError(f"{self.path}: opened read-only; open with mode='r+' to write")

    # ------------------------------------------------------------------ statistics
    @property
    def nbytes(self) -> int:
        """Size of the uncompressed volume in bytes."""
        return int(math.prod(self.shape)) * self.dtype.itemsize

    def slice_nbytes(self, axis: int) -> int:
        """Bytes of one 2D slice along ``axis``."""
        axis = _check_axis(axis)
        return self.nbytes // self.shape[axis]

    def stats(self) -> dict:
        """Shape, type, size and chunking, as a plain dict (for logs and the CLI).

        Returns
        -------
        dict
            ``backend``, ``path``, ``dataset``, ``shape``, ``dtype``, ``size_gb``
            (uncompressed), ``chunk_shape``, ``chunk_mb``, ``n_chunks``, ``compression``,
            ``stored_gb`` (bytes on disk, HDF5 only; None for TIFF).
        """
        chunk_mb = n_chunks = stored = None
        if self.chunk_shape:
            chunk_mb = math.prod(self.chunk_shape) * self.dtype.itemsize / _MB
            n_chunks = math.prod(math.ceil(s / c) for s, c in zip(self.shape, self.chunk_shape, strict=True))
        if self._h5 is not None and not self._closed:
            stored = self._h5.id.get_storage_size() / _GB
        return {
            "backend": self.backend,
            "path": str(self.path),
            "dataset": self.dataset,
            "shape": self.shape,
            "dtype": str(self.dtype),
            "size_gb": self.nbytes / _GB,
            "chunk_shape": self.chunk_shape,
            "chunk_mb": chunk_mb,
            "n_chunks": n_chunks,
            "compression": self.compression,
            "stored_gb": stored,
        }

    # ------------------------------------------------------------------ slabs
    def slab_ranges(self, axis: int, max_gb: float) -> list[tuple[int, int]]:
        """Split ``range(shape[axis])`` into slabs of at most ``max_gb`` each.

        For chunked HDF5 the slab thickness is rounded down to a multiple of the chunk side
        along ``axis`` (when at least one chunk fits), so every chunk is read by one slab only.

        Parameters
        ----------
        axis : {0, 1, 2}
        max_gb : float
            Memory cap per slab in GB (1e9 bytes) of this volume's dtype.

        Returns
        -------
        list of (start, stop)
            Consecutive, non-overlapping, covering the whole axis.

        Raises
        ------
        CtsegSettingsError
            If one slice along ``axis`` is already larger than ``max_gb``.
        """
        axis = _check_axis(axis)
        thickness = slab_thickness(
            self.shape,
            axis,
            self.dtype.itemsize,
            max_gb,
            align=self.chunk_shape[axis] if self.chunk_shape else None,
            source=self.path,
        )
        n = self.shape[axis]
        return [(start, min(start + thickness, n)) for start in range(0, n, thickness)]

    def _slab_index(self, axis: int, start: int, stop: int) -> tuple[slice, slice, slice]:
        axis = _check_axis(axis)
        if not 0 <= start < stop <= self.shape[axis]:
            raise CtsegSettingsError(
                f"{self.path}: slab {start}:{stop} is outside axis {axis} of length {self.shape[axis]}"
            )
        index = [slice(None)] * 3
        index[axis] = slice(start, stop)
        return tuple(index)

    def read_slab(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` along ``axis``, in the volume's own axis order.

        Returns
        -------
        ndarray of this volume's dtype
            E.g. shape ``(z, stop - start, x)`` for ``axis=1``.
        """
        return self.read_block(self._slab_index(axis, start, stop))

    def write_slab(self, axis: int, start: int, data: np.ndarray) -> None:
        """Write ``data`` (volume axis order) as slices ``start:start + data.shape[axis]``."""
        data = np.asarray(data)
        if data.ndim != 3:
            raise CtsegSettingsError(f"{self.path}: a slab must be 3D, got shape {data.shape}")
        self._slab_index(axis, start, start + data.shape[axis])
        offset = [0, 0, 0]
        offset[axis] = start
        self.write_block(tuple(offset), data)

    def iter_slabs(self, axis: int, max_gb: float):
        """Yield ``(start, stop, slab)`` along ``axis``, each slab at most ``max_gb`` GB."""
        for start, stop in self.slab_ranges(axis, max_gb):
            yield start, stop, self.read_slab(axis, start, stop)

    def read_slice(self, index: int, axis: int = 0) -> np.ndarray:
        """One 2D slice along ``axis`` (for ``axis=1``: all ``z`` and ``x`` at ``y=index``).

        Raises
        ------
        CtsegSettingsError
            If ``index`` is outside the axis.
        """
        axis = _check_axis(axis)
        if not -self.shape[axis] <= index < self.shape[axis]:
            raise CtsegSettingsError(f"{self.path}: slice {index} is outside axis {axis} of length {self.shape[axis]}")
        index %= self.shape[axis]
        return np.take(self.read_slab(axis, index, index + 1), 0, axis=axis)

    # ------------------------------------------------------------------ blocks
    def _normalize_block(self, block) -> tuple[slice, slice, slice]:
        if len(block) != 3:
            raise CtsegSettingsError(f"{self.path}: a block needs three slices (z, y, x), got {block!r}")
        out = []
        for axis, s in enumerate(block):
            if not isinstance(s, slice) or s.step not in (None, 1):
                raise CtsegSettingsError(f"{self.path}: block index {s!r} on axis {axis} must be a slice with step 1")
            start, stop, _ = s.indices(self.shape[axis])
            if stop <= start:
                raise CtsegSettingsError(f"{self.path}: block {s!r} on axis {axis} is empty")
            out.append(slice(start, stop))
        return tuple(out)

    def read_block(self, block) -> np.ndarray:
        """Read a 3D block given as three slices, e.g. ``(slice(0, 10), slice(None), slice(5, 9))``.

        Returns
        -------
        ndarray of this volume's dtype, the block's shape.

        Raises
        ------
        CtsegSettingsError
            If the block is not three non-empty step-1 slices or the file is closed.
        CtsegDataError
            If HDF5 cannot decode the block's stored data (a damaged or truncated file).
        """
        self._check_open()
        block = self._normalize_block(block)
        if self.backend == "hdf5":
            out = np.empty(tuple(s.stop - s.start for s in block), dtype=self.dtype)
            try:
                self._h5.read_direct(out, source_sel=block)
            except OSError as exc:
                raise damaged_read_error(self.path, self.dataset, block, exc) from None
            return out
        return np.stack([self._read_tiff(i, block[1:]) for i in range(block[0].start, block[0].stop)])

    def write_block(self, offset, data: np.ndarray) -> None:
        """Write ``data`` with its first voxel at ``offset = (z, y, x)``.

        Raises
        ------
        CtsegSettingsError
            If the block does not fit in the volume, its values do not fit the dtype
            (e.g. negative values into unsigned), or the file is read-only.
        """
        self._check_open(writing=True)
        data = np.asarray(data)
        if data.ndim != 3 or len(offset) != 3:
            raise CtsegSettingsError(
                f"{self.path}: write a 3D block at a (z, y, x) offset, got {data.shape} at {offset}"
            )
        block = tuple(slice(int(o), int(o) + n) for o, n in zip(offset, data.shape, strict=True))
        if any(s.start < 0 or s.stop > n for s, n in zip(block, self.shape, strict=True)):
            raise CtsegSettingsError(
                f"{self.path}: block of shape {data.shape} at {tuple(offset)} does not fit in volume {self.shape}"
            )
        if data.dtype != self.dtype:
            if self.dtype.kind in "iub" and not np.can_cast(data.dtype, self.dtype) and data.size:
                info = np.iinfo(self.dtype) if self.dtype.kind in "iu" else None
                low, high = data.min(), data.max()
                if info is not None and (low < info.min or high > info.max):
                    raise CtsegSettingsError(
                        f"{self.path}: values {low}..{high} do not fit the volume's type {self.dtype}"
                    )
            data = data.astype(self.dtype)
        if self.backend == "hdf5":
            self._h5.write_direct(np.ascontiguousarray(data), dest_sel=block)
            return
        for k, z in enumerate(range(block[0].start, block[0].stop)):
            self._write_tiff(z, block[1:], data[k])

    def read_full(self, max_gb: float = 4.0) -> np.ndarray:
        """The whole volume, if it takes at most ``max_gb`` GB in memory.

        Raises
        ------
        CtsegSettingsError
            If the volume is larger than ``max_gb``: read it in slabs instead.
        """
        if self.nbytes > max_gb * _GB:
            raise CtsegSettingsError(
                f"{self.path}: the volume takes {self.nbytes / _GB:.3g} GB, more than max_gb={max_gb}; "
                "read it in slabs (iter_slabs) or raise max_gb"
            )
        return self.read_block((slice(None),) * 3)

    def flush(self) -> None:
        """Push written data to disk (HDF5)."""
        if self._h5file is not None and not self._closed:
            self._h5file.flush()

    # ------------------------------------------------------------------ TIFF backend
    def _read_tiff(self, z: int, plane) -> np.ndarray:
        import tifffile  # noqa: PLC0415

        path = self._tiff_files[z]
        try:
            mm = tifffile.memmap(path, mode="r")
        except ValueError:  # compressed or tiled: decode the whole slice
            image = tifffile.imread(path)
            self._check_tiff_slice(path, image.shape, image.dtype)
            return np.ascontiguousarray(image[plane])
        try:
            self._check_tiff_slice(path, mm.shape, mm.dtype)
            return np.array(mm[plane])
        finally:
            del mm

    def _write_tiff(self, z: int, plane, values: np.ndarray) -> None:
        import tifffile  # noqa: PLC0415

        path = self._tiff_files[z]
        try:
            mm = tifffile.memmap(path, mode="r+")
        except ValueError:  # compressed file: rewrite it whole, uncompressed
            image = tifffile.imread(path)
            self._check_tiff_slice(path, image.shape, image.dtype)
            image[plane] = values
            tifffile.imwrite(path, image, photometric="minisblack")
            return
        try:
            self._check_tiff_slice(path, mm.shape, mm.dtype)
            mm[plane] = values
            mm.flush()
        finally:
            del mm

    def _check_tiff_slice(self, path: Path, shape, dtype) -> None:
        if tuple(shape) != self.shape[1:] or np.dtype(dtype) != self.dtype:
            raise CtsegDataError(
                f"{path}: slice of shape {tuple(shape)} and type {np.dtype(dtype)} in a series of "
                f"{self.shape[1:]} {self.dtype}; all files of a series must match"
            )


# ------------------------------------------------------------------ non-finite voxels
# ctseg's rule: NaN and +-Inf voxels are replaced by the minimum finite value of the volume (a
# volume with no finite voxel is refused), with one warning per file. Normalisation would
# otherwise spread the NaN over whole slices and change the labels everywhere.


def has_nonfinite(values: np.ndarray) -> bool:
    """Whether an array holds NaN or +-Inf, without a temporary array of its size.

    Examples
    --------
    >>> has_nonfinite(np.array([1.0, np.nan])), has_nonfinite(np.array([1, 2]))
    (True, False)
    """
    values = np.asarray(values)
    if values.dtype.kind != "f" or values.size == 0:
        return False
    return not (np.isfinite(values.min()) and np.isfinite(values.max()))  # NaN and Inf reach min/max


def _planes(values: np.ndarray):
    return values if values.ndim > 1 else values[np.newaxis]


def nonfinite_stats(values: np.ndarray) -> tuple[int, float | None]:
    """Number of NaN/+-Inf values and the minimum finite value, plane by plane along axis 0.

    Returns
    -------
    (int, float or None)
        The count, and the minimum of the finite values (None when there is none).

    Examples
    --------
    >>> nonfinite_stats(np.array([[np.nan, 3.0], [-np.inf, 2.0]]))
    (2, 2.0)
    """
    values = np.asarray(values)
    if not has_nonfinite(values):
        return 0, (float(values.min()) if values.size else None)
    count, low = 0, None
    for plane in _planes(values):
        finite = np.isfinite(plane)
        count += plane.size - int(np.count_nonzero(finite))
        if finite.any():
            low = min(float(plane[finite].min()), np.inf if low is None else low)
    return count, low


def nonfinite_fill_value(source, count: int, total: int, min_finite: float | None) -> float | None:
    """Apply ctseg's rule for non-finite voxels: the value that replaces them, with one warning.

    Parameters
    ----------
    source : str or Path
        The file, named in the warning and the error.
    count, total : int
        Non-finite voxels and all voxels.
    min_finite : float or None
        Minimum finite value (:func:`nonfinite_stats`).

    Returns
    -------
    float or None
        ``min_finite``, or None when ``count`` is 0 (nothing to replace, no warning).

    Raises
    ------
    CtsegDataError
        If no voxel is finite.
    """
    if count == 0:
        return None
    if min_finite is None:
        raise CtsegDataError(
            f"{source}: every voxel is NaN or infinite; there is no image in this volume. "
            "Check how the file was exported or converted"
        )
    logger.warning(
        "%s: %d of %d voxels are NaN or infinite; they are replaced by the minimum finite value %g",
        source,
        count,
        total,
        min_finite,
    )
    return min_finite


def fill_nonfinite(values: np.ndarray, fill: float) -> np.ndarray:
    """Set the NaN/+-Inf values of a float array to ``fill``, in place, plane by plane; return it."""
    if has_nonfinite(values):
        for plane in _planes(values):
            np.copyto(plane, fill, where=~np.isfinite(plane))
    return values


def replace_nonfinite(source, values: np.ndarray) -> np.ndarray:
    """Apply ctseg's rule to a whole volume in memory (in place): see :func:`nonfinite_fill_value`.

    Raises
    ------
    CtsegDataError
        If no voxel is finite.
    """
    count, low = nonfinite_stats(values)
    fill = nonfinite_fill_value(source, count, np.asarray(values).size, low)
    return values if fill is None else fill_nonfinite(values, fill)


def damaged_read_error(path, dataset: str, block, exc: OSError) -> Exception:
    """What to raise when HDF5 fails to read ``block`` of ``dataset`` in ``path``.

    An error the system gave (``exc.errno`` set: permission, I/O) is returned as it is, for the
    caller's report; HDF5's own failure to decode stored data (errno None, e.g. "filter returned
    failure during read") becomes one :class:`CtsegDataError` naming the file, the dataset and
    the voxels, and saying what to do.
    """
    if exc.errno is not None:
        return exc
    where = ", ".join(f"{s.start}:{s.stop}" for s in block)
    return CtsegDataError(
        f"{path}: the voxels [{where}] of dataset '{dataset}' cannot be read ({exc}): the file is "
        "damaged (for example an interrupted copy or a failing disk); copy it again from its source "
        "or convert the scan again with `ctseg convert`"
    )


def create_dataset(group, name: str, shape, dtype, *, chunk_shape=None, chunk_mb=None, compression=None, fillvalue=0):
    """Create a chunked HDF5 dataset in an open ``h5py`` file or group.

    Parameters
    ----------
    group : h5py.Group
    name : str
    shape : tuple of int
        3D ``(z, y, x)``, or 4D ``(z, y, x, c)`` for per-class values (chunks then span all ``c``).
    dtype : numpy dtype
    chunk_shape : tuple of 3 int, optional
        Clipped to the volume; estimated from ``chunk_mb`` when omitted.
    chunk_mb : float, optional
        Target chunk size in MiB (default :data:`DEFAULT_CHUNK_MB`).
    compression : {"gzip", "lzf", None}
    fillvalue : number
        Value of chunks never written (they take no disk space).

    Returns
    -------
    h5py.Dataset
    """
    dtype = np.dtype(dtype)
    spatial = _check_shape(shape[:3])
    extra = tuple(int(s) for s in shape[3:])
    if chunk_shape is None:
        per_voxel = dtype.itemsize * math.prod(extra)
        chunk_shape = estimate_chunk_shape(
            spatial, np.dtype(f"V{per_voxel}"), DEFAULT_CHUNK_MB if chunk_mb is None else chunk_mb
        )
    else:
        chunk_shape = tuple(min(int(c), s) for c, s in zip(chunk_shape, spatial, strict=False))
        if len(chunk_shape) != 3 or min(chunk_shape) < 1:
            raise CtsegSettingsError(f"chunk shape must be three positive sizes, got {chunk_shape}")
    options = {}
    if compression == "gzip":
        options = {"compression": "gzip", "compression_opts": 4, "shuffle": dtype.itemsize > 1}
    elif compression == "lzf":
        options = {"compression": "lzf", "shuffle": dtype.itemsize > 1}
    return group.create_dataset(
        name, shape=spatial + extra, dtype=dtype, chunks=chunk_shape + extra, fillvalue=fillvalue, **options
    )
