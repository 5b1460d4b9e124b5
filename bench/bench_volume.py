"""Benchmark for large volumes: peak memory of segment-volume and slab streaming speed.

Two measurements, both on synthetic float32 HDF5 volumes written to ``--workdir`` and deleted
afterwards (``--keep`` keeps them):

1. **Peak RSS of segment-volume** for volumes of ``--sizes`` GB (default 1, 4, 16) under one
   memory cap (``--max-gb``, default 1.0). Each size runs in its own child process, which
   reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (its peak resident set) and the RSS
   after imports (the floor). The network is replaced by a **cheap stand-in predict_fn**
   (a threshold, in the real :class:`Segmenter` with 256 px tiles, Gaussian blending and CT
   normalisation): a real U-Net on 16 GB would take hours on 2 CPU cores, and the memory
   behaviour of slabs, patches and stitching is the same. ``--unet-gb 1`` adds one run with a
   small, untrained U-Net (``build_unet``, 3 levels, 8 base filters) on a 1 GB volume, under
   ``--unet-max-gb`` (default 0.5: TensorFlow itself takes about 0.6 GB).
   The input volumes are lzf-compressed (mostly constant CT background with a disc whose
   radius changes along z) so that 16 GB take about 1 GB of disk.

2. **Slab streaming** from a ``--stream-gb`` volume (default 2 GB, uncompressed float32) with
   default chunks (1 MiB, near-cubic) and from the same data in a contiguous (unchunked) HDF5:
   slabs along axes 0, 1 and 2 via :meth:`DataFile.iter_slabs` (``--slab-gb`` per slab),
   as throughput relative to a plain sequential read of the same file measured just before in
   the same process (median of ``--repeats`` repeats). "cold" runs drop the file's pages from the page cache first
   (``posix_fadvise(DONTNEED)``, this file only); "warm" runs read from the cache. Each
   measurement stops after ``--time-limit`` seconds and reports the rate up to then.

Usage::

    python bench/bench_volume.py                      # everything (about 30-60 min on 2 cores)
    python bench/bench_volume.py --sizes 1 --stream-gb 0.5 --time-limit 20   # quick look

Prints a JSON report (also written to ``--json`` when given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PLANE = (1000, 1000)  # y, x of the synthetic volumes: 4 MB float32 slices
GB = 1e9


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def drop_from_page_cache(path: Path) -> None:
    """Evict one file's clean pages from the page cache (no effect on other files)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- volumes
def synthetic_slices(start: int, stop: int, n_slices: int) -> np.ndarray:
    """CT-like float32 slices: -1000 HU air with a 100 HU disc whose radius follows z."""
    y, x = np.ogrid[: PLANE[0], : PLANE[1]]
    r2 = (y - PLANE[0] / 2) ** 2 + (x - PLANE[1] / 2) ** 2
    out = np.empty((stop - start, *PLANE), np.float32)
    for k, z in enumerate(range(start, stop)):
        radius = 100 + 300 * np.sin(np.pi * (z + 0.5) / n_slices)
        out[k] = np.where(r2 < radius**2, 100.0, -1000.0)
    return out


def make_volume(path: Path, size_gb: float, *, compression, chunked: bool = True) -> tuple:
    from ctseg_helpers.io.datafile import DataFile

    n = max(1, int(round(size_gb * GB / (PLANE[0] * PLANE[1] * 4))))
    shape = (n, *PLANE)
    if chunked:
        out = DataFile.create(path, shape, np.float32, chunk_mb=1.0, compression=compression, overwrite=True)
    else:
        import h5py

        f = h5py.File(path, "w")
        f.create_dataset("data", shape=shape, dtype=np.float32)  # contiguous layout
        out = DataFile.from_h5py(f["data"], _owns_file=True)
    with out:
        step = 64
        for start in range(0, n, step):
            stop = min(start + step, n)
            out.write_slab(0, start, synthetic_slices(start, stop, n))
    return shape


# ----------------------------------------------------------------------------- child: segment
def child_segment(args) -> None:
    floor = rss_mb()
    from ctseg_helpers.prepare.normalize import Normalization
    from ctseg_helpers.segment.segmenter import Segmenter
    from ctseg_helpers.workflows.volume import segment_volume

    if args.model == "unet":
        from ctseg_helpers.model.unet import build_unet
        from ctseg_helpers.segment.segmenter import keras_predict_fn

        model = build_unet(256, 1, levels=3, base_filters=8)
        predict_fn = keras_predict_fn(model, 256, 2)
    else:

        def predict_fn(batch):
            p = (batch[..., 0] > 0.5).astype(np.float32)
            return np.stack([1.0 - p, p], axis=-1)

    segmenter = Segmenter(
        predict_fn, input_shape=256, num_classes=2, mode="tile", batch_size=16, normalization=Normalization("CT")
    )
    floor_loaded = rss_mb()
    t0 = time.perf_counter()
    result = segment_volume(
        segmenter,
        args.input,
        args.output,
        axes=tuple(args.axes),
        max_gb=args.max_gb,
        compression="lzf",
        overwrite=True,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "rss_after_imports_mb": round(floor, 1),
                "rss_before_run_mb": round(floor_loaded, 1),
                "seconds": round(seconds, 1),
                "slabs": result.slabs_done,
            }
        )
    )


def run_child(argv: list[str], timeout: float) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_memory(args, workdir: Path) -> list[dict]:
    rows = []
    cases = [(size, "cheap") for size in args.sizes]
    if args.unet_gb:
        cases.append((args.unet_gb, "unet"))
    for size, model in cases:
        src = workdir / f"vol_{size:g}gb.h5"
        out = workdir / f"labels_{size:g}gb.h5"
        if not src.exists():
            t0 = time.perf_counter()
            shape = make_volume(src, size, compression="lzf")
            made = time.perf_counter() - t0
        else:
            from ctseg_helpers.io.datafile import DataFile

            with DataFile.open(src) as f:
                shape = f.shape
            made = 0.0
        max_gb = args.unet_max_gb if model == "unet" else args.max_gb
        row = run_child(
            ["_segment", str(src), str(out), "--max-gb", str(max_gb), "--model", model, "--axes", *map(str, args.axes)],
            timeout=args.segment_timeout,
        )
        row.update(
            {
                "size_gb": round(np.prod(shape) * 4 / GB, 2),
                "shape": list(shape),
                "model": model,
                "max_gb": max_gb,
                "axes": args.axes,
                "input_on_disk_gb": round(src.stat().st_size / GB, 3),
                "create_seconds": round(made, 1),
                "mvoxel_per_s": round(np.prod(shape) * len(args.axes) / row["seconds"] / 1e6, 2),
            }
        )
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
        out.unlink(missing_ok=True)
        if not args.keep and not (model == "cheap" and args.unet_gb == size and (size, "unet") in cases):
            src.unlink(missing_ok=True)
    return rows


# ----------------------------------------------------------------------------- streaming
def sequential_read(path: Path, time_limit: float) -> float:
    """Bytes per second of a plain read of the file into one reused 64 MiB buffer (the best case)."""
    buffer = bytearray(64 * 2**20)
    done = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buffer)
            if not n:
                break
            done += n
            if time.perf_counter() - t0 > time_limit:
                break
    return done / (time.perf_counter() - t0)


def slab_read(path: Path, axis: int, slab_gb: float, time_limit: float) -> tuple[float, bool]:
    """Voxel bytes per second delivered by DataFile.iter_slabs along ``axis``; and whether it finished."""
    from ctseg_helpers.io.datafile import DataFile

    done = 0
    t0 = time.perf_counter()
    finished = True
    with DataFile.open(path) as f:
        for _, _, slab in f.iter_slabs(axis, slab_gb):
            done += slab.nbytes
            if time.perf_counter() - t0 > time_limit:
                finished = done >= f.nbytes
                break
    return done / (time.perf_counter() - t0), finished


def bench_streaming(args, workdir: Path) -> dict:
    chunked = workdir / "stream_chunked.h5"
    contiguous = workdir / "stream_contiguous.h5"
    shape = make_volume(chunked, args.stream_gb, compression=None)
    make_volume(contiguous, args.stream_gb, compression=None, chunked=False)
    from ctseg_helpers.io.datafile import DataFile

    with DataFile.open(chunked) as f:
        chunks = f.chunk_shape
    report = {
        "shape": list(shape),
        "size_gb": round(np.prod(shape) * 4 / GB, 2),
        "chunk_shape": list(chunks),
        "slab_gb": args.slab_gb,
        "time_limit_s": args.time_limit,
        "rows": [],
    }
    for state in ("cold", "warm"):
        for name, path in (("chunked", chunked), ("contiguous", contiguous)):
            # each repeat measures the sequential baseline and the three axes back to back, so a
            # ratio compares runs taken moments apart; the median over repeats is reported
            seqs, rates, finished = [], {0: [], 1: [], 2: []}, {0: True, 1: True, 2: True}
            for _ in range(args.repeats):
                if state == "cold":
                    drop_from_page_cache(path)
                else:
                    sequential_read(path, args.time_limit)  # fill the cache
                seqs.append(sequential_read(path, args.time_limit))
                for axis in (0, 1, 2):
                    if state == "cold":
                        drop_from_page_cache(path)
                    rate, done = slab_read(path, axis, args.slab_gb, args.time_limit)
                    rates[axis].append(rate / seqs[-1])
                    finished[axis] &= done
            seq = float(np.median(seqs))
            for axis in (0, 1, 2):
                ratio = float(np.median(rates[axis]))
                row = {
                    "cache": state,
                    "layout": name,
                    "axis": axis,
                    "repeats": args.repeats,
                    "slab_gb_per_s": round(ratio * seq / GB, 3),
                    "sequential_gb_per_s": round(seq / GB, 3),
                    "ratio_vs_sequential": round(ratio, 3),
                    "ratio_min_max": [round(min(rates[axis]), 3), round(max(rates[axis]), 3)],
                    "finished_within_limit": finished[axis],
                }
                print(json.dumps(row), file=sys.stderr, flush=True)
                report["rows"].append(row)
    if not args.keep:
        chunked.unlink(missing_ok=True)
        contiguous.unlink(missing_ok=True)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    child = sub.add_parser("_segment", help=argparse.SUPPRESS)
    child.add_argument("input")
    child.add_argument("output")
    child.add_argument("--max-gb", type=float, required=True)
    child.add_argument("--model", choices=("cheap", "unet"), default="cheap")
    child.add_argument("--axes", type=int, nargs="+", default=[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ctseg-bench-volume"))
    parser.add_argument("--sizes", type=float, nargs="*", default=[1, 4, 16])
    parser.add_argument("--max-gb", type=float, default=1.0)
    parser.add_argument("--axes", type=int, nargs="+", default=[0])
    parser.add_argument("--unet-gb", type=float, default=0.0, help="add a small-U-Net run on a volume of this size")
    parser.add_argument("--unet-max-gb", type=float, default=0.5, help="memory cap of the U-Net run")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each streaming measurement")
    parser.add_argument("--stream-gb", type=float, default=2.0, help="0 skips the streaming benchmark")
    parser.add_argument("--slab-gb", type=float, default=0.25)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per streaming measurement")
    parser.add_argument("--segment-timeout", type=float, default=3600.0)
    parser.add_argument("--keep", action="store_true", help="keep the volumes in --workdir")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.cmd == "_segment":
        child_segment(args)
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.workdir).free / GB
    report = {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "command": " ".join([Path(sys.executable).name, "bench/bench_volume.py", *(argv or sys.argv[1:])]),
        "free_disk_gb_before": round(free, 1),
    }
    try:
        if args.sizes or args.unet_gb:
            report["memory"] = bench_memory(args, args.workdir)
        if args.stream_gb > 0:
            report["streaming"] = bench_streaming(args, args.workdir)
    finally:
        if not args.keep:
            for p in args.workdir.glob("*.h5"):
                p.unlink()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
