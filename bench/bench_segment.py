"""End-to-end segmentation speed of a 512 x 512 DICOM series, against two baselines in the same run.

Four ways to turn a folder of DICOM slices into label maps and areas, all with the same
untrained U-Net (``build_unet``, 4 levels, 16 base filters, 3 classes). Its input is each of
``--inputs`` (default 128 and 256 pixels), so a 512 x 512 slice is covered by overlapping
patches (overlap 0.25: 5 x 5 = 25 patches of 128, or 3 x 3 = 9 patches of 256, per slice):

``ctseg``
    :func:`ctseg_helpers.workflows.run_segmentation`: read the series, normalise, predict the
    patches of several slices per batch, blend overlaps (Gaussian), write one label PNG per
    slice, measure areas, write ``areas.csv`` and ``volumes.csv`` (JPG previews and the GIF
    are switched off here, and timed separately below). Each run loads the model file and
    traces its graph, as a user's run does.
``loaded``
    The same, with a Segmenter built once and passed in (``run_segmentation(...,
    segmenter=...)``, e.g. to segment many folders): model loaded and traced once, as for raw.
``raw``
    ``model.predict(patches, batch_size=8)`` on the same 9 x K normalised patches, already in
    memory: the network alone, nothing read, stitched or written. The goal is ctseg / raw >= 0.9
    (the pipeline costs at most 10 % on top of the network).
``naive``
    A per-slice loop as in common tutorials (e.g. the liver-segmentation tutorials): for each
    file ``pydicom.dcmread``, rescale, normalise, ``model.predict`` on one patch at a time,
    paste the patch (the last patch wins in the overlaps), argmax, ``plt.imsave`` the label
    map, count pixels for the areas, and ``pandas`` the table at the end. Goal: ctseg >= 5x.

Each method runs once untimed (warm-up) and then ``--repeats`` times, interleaved; the median
is reported as slices per second, with the ratios. ``ctseg`` runs are complete runs as a user
makes them, so each includes loading the model file and tracing its graph (about 2 s on 2 busy
cores); ``loaded``, ``raw`` and ``naive`` use a model already in memory and traced. The naive loop runs on
``--naive-slices`` slices only (it has no per-run cost, so its rate does not depend on the
series length). The machine is shared, so only the ratios within one run mean something.

Run: ``.venv/bin/python bench/bench_segment.py [--slices 32] [--inputs 128,256] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: E402


def phantom_series(n_slices: int, size: int = 512) -> np.ndarray:
    """CT-like slices in HU: air, a body ellipse of soft tissue, a bright disc whose size varies."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.full((n_slices, size, size), -1000.0, np.float32)
    body = ((yy - 0.5) / 0.4) ** 2 + ((xx - 0.5) / 0.45) ** 2 < 1
    for k in range(n_slices):
        disc = (yy - 0.55) ** 2 + (xx - 0.5) ** 2 < (0.08 + 0.04 * np.sin(k / 3)) ** 2
        images[k][body] = 40.0
        images[k][disc] = 700.0
    images += rng.normal(0, 15, images.shape).astype(np.float32)
    return np.clip(images, -1024, 3000)


def naive_loop(model, files, input_size: int, out_dir: Path, hu_window=(-1000.0, 1000.0)):
    """The per-slice tutorial loop described in the module docstring."""
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415
    import pydicom  # noqa: PLC0415

    rows = []
    for path in files:
        ds = pydicom.dcmread(path)
        image = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        image = np.clip((image - hu_window[0]) / (hu_window[1] - hu_window[0]), 0, 1)
        h, w = image.shape
        step = int(input_size * 0.75)
        starts_r = sorted({min(r, h - input_size) for r in range(0, h - input_size + step, step)})
        starts_c = sorted({min(c, w - input_size) for c in range(0, w - input_size + step, step)})
        proba = np.zeros((h, w, model.output_shape[-1]), np.float32)
        for r in starts_r:
            for c in starts_c:
                patch = image[r : r + input_size, c : c + input_size][None, ..., None]
                proba[r : r + input_size, c : c + input_size] = model.predict(patch, verbose=0)[0]
        labels = np.argmax(proba, axis=-1).astype(np.uint8)
        plt.imsave(out_dir / (Path(path).stem + ".png"), labels, cmap="gray", vmin=0, vmax=255)
        spacing = [float(v) for v in ds.PixelSpacing]
        rows.append(
            {
                "file": Path(path).name,
                **{
                    f"label {v}": float((labels == v).sum()) * spacing[0] * spacing[1]
                    for v in range(1, proba.shape[-1])
                },
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / "areas.csv")
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=32, help="slices of the series (default 32)")
    parser.add_argument(
        "--naive-slices",
        type=int,
        default=8,
        help="slices the naive loop runs on (default 8; it has no per-run fixed cost, so its "
        "slices/s do not depend on the series length)",
    )
    parser.add_argument(
        "--inputs",
        default="128,256",
        help="network input sizes (patch sides) to measure, comma-separated (default 128,256)",
    )
    parser.add_argument("--base-filters", type=int, default=16, help="U-Net filters of the first level (default 16)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    tf = configure_tensorflow()
    import keras  # noqa: PLC0415

    from ctseg_helpers.io.dicom_write import write_dicom_series  # noqa: PLC0415
    from ctseg_helpers.model.settings import ModelSettings, save_model  # noqa: PLC0415
    from ctseg_helpers.model.unet import build_unet  # noqa: PLC0415
    from ctseg_helpers.prepare.normalize import Normalization, normalize_image  # noqa: PLC0415
    from ctseg_helpers.segment import Segmenter  # noqa: PLC0415
    from ctseg_helpers.segment.patches import patch_origins  # noqa: PLC0415
    from ctseg_helpers.workflows import run_segmentation  # noqa: PLC0415

    print(
        f"tensorflow {tf.__version__}, keras {keras.__version__}, TF_ENABLE_ONEDNN_OPTS="
        f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, {os.cpu_count()} CPUs; {args.slices} slices 512x512, "
        f"overlap 0.25, batch {args.batch_size}, median of {args.repeats}"
    )
    for size in (int(v) for v in args.inputs.split(",")):
        keras.utils.set_random_seed(0)
        with tempfile.TemporaryDirectory(prefix="ctseg-bench-") as tmp:
            tmp = Path(tmp)
            images = phantom_series(args.slices)
            files = write_dicom_series(tmp / "series", images, pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=2.5)
            norm = Normalization("CT", (-1000.0, 1000.0))
            model = build_unet(size, 2, levels=4, base_filters=args.base_filters)
            model_path = save_model(
                model,
                tmp / "bench.keras",
                ModelSettings(
                    input_shape=size, num_labels=2, label_names=("body", "bone"), normalization=norm, fit_mode="pad"
                ),
            )
            origins = patch_origins(images.shape[1:], size, 0.25)
            normalised = normalize_image(images, norm)
            patches = np.stack(
                [normalised[k, r : r + size, c : c + size] for k in range(len(images)) for r, c in origins]
            )[..., None]

            def run_ctseg(i, model_path=model_path, tmp=tmp):
                return run_segmentation(
                    model_path,
                    tmp / "series",
                    tmp / "pred",
                    previews=False,
                    animation=False,
                    run_name=f"bench{i}",
                    batch_size=args.batch_size,
                    progress=False,
                )

            loaded = Segmenter.from_model_file(model_path, batch_size=args.batch_size)

            def run_loaded(i, model_path=model_path, tmp=tmp, loaded=loaded):
                return run_segmentation(
                    model_path,
                    tmp / "series",
                    tmp / "pred",
                    previews=False,
                    animation=False,
                    run_name=f"loaded{i}",
                    segmenter=loaded,
                    progress=False,
                )

            def run_raw(i, model=model, patches=patches):
                return model.predict(patches, batch_size=args.batch_size, verbose=0)

            def run_naive(i, model=model, files=files, size=size, tmp=tmp):
                out = tmp / f"naive{i}"
                out.mkdir()
                return naive_loop(model, files[: args.naive_slices], size, out)

            methods = {"ctseg": run_ctseg, "loaded": run_loaded, "raw": run_raw, "naive": run_naive}
            times = {name: [] for name in methods}
            for name, fn in methods.items():  # warm-up: tracing, first file reads
                fn(f"warm-{name}")
            for repeat in range(args.repeats):  # interleaved, so load changes hit all methods alike
                for name, fn in methods.items():
                    t0 = time.perf_counter()
                    fn(repeat)
                    times[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            full = run_segmentation(
                model_path, tmp / "series", tmp / "pred", run_name="full", batch_size=args.batch_size, progress=False
            )
            full_s = time.perf_counter() - t0

        counts = {
            "ctseg": args.slices,
            "loaded": args.slices,
            "raw": args.slices,
            "naive": min(args.naive_slices, args.slices),
        }
        rate = {name: counts[name] / statistics.median(t) for name, t in times.items()}
        print(f"U-Net input {size} ({len(origins)} patches/slice, {model.count_params()} parameters):")
        for name in methods:
            print(f"  {name:6s} {rate[name]:7.3f} slices/s   (runs: {', '.join(f'{t:.2f}' for t in times[name])} s)")
        print(f"  ctseg / raw   = {rate['ctseg'] / rate['raw']:.2f}   (goal >= 0.9)")
        print(f"  loaded / raw  = {rate['loaded'] / rate['raw']:.2f}   (model loaded and traced once, as for raw)")
        print(f"  ctseg / naive = {rate['ctseg'] / rate['naive']:.2f}   (goal >= 5)")
        print(
            f"  full run with {len(full.overlay_paths)} JPG previews and the GIF: {args.slices / full_s:.3f} slices/s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
