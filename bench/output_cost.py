"""What the optional outputs of ``ctseg segment`` cost on top of a run: NIfTI, DICOM-SEG, probabilities.

One series (synthetic CT slices of 512 x 512 written with ``write_dicom_series``, or ``--dicoms``
DIR) is segmented by :func:`ctseg_helpers.workflows.run_segmentation` with one Segmenter built
once (``segmenter=``, so loading and tracing the model is not counted) and an untrained U-Net
(``build_unet``, 4 levels, 16 base filters, 3 classes, input ``--input``; or ``--model`` FILE),
in tile mode (overlap 0.25, Gaussian blending, batch 8), without JPG previews and GIF:

``base``           label PNGs, ``areas.csv`` (with the per-slice uncertainty, always computed) and ``volumes.csv``
``nifti``          base + ``segmentation.nii.gz``
``dicom_seg``      base + ``segmentation.dcm`` (with ``include_patient_id``)
``probabilities``  base + ``probabilities.h5``
``all``            base + the three

Each variant runs once untimed (warm-up), then ``--repeats`` times, interleaved; the median is
reported with the extra time of each variant over ``base``, as a share of ``base`` (goal: the
three outputs together under 10 %). The time of the per-slice uncertainty
(:func:`~ctseg_helpers.measure.uncertainty.slice_uncertainty` on the whole series' probabilities)
is reported as a share of ``base`` too. An untrained network's probabilities are noisy, which
gzip compresses worse than a trained model's (mostly 0 and 255): the probability cost measured
here is the pessimistic one. The machine may be shared: only the ratios within one run mean
something.

Run: ``.venv/bin/python bench/output_cost.py [--slices 16] [--input 128] [--repeats 3]``.
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

from bench_segment import phantom_series  # noqa: E402  (bench/ is on sys.path when run as a script)

from ctseg_helpers.train.system import cpu_name  # noqa: E402

VARIANTS = {
    "base": {},
    "nifti": {"nifti": True},
    "dicom_seg": {"dicom_seg": True, "include_patient_id": True},
    "probabilities": {"probabilities": True},
    "all": {"nifti": True, "dicom_seg": True, "include_patient_id": True, "probabilities": True},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=16, help="slices of the synthetic series (default 16)")
    parser.add_argument("--input", type=int, default=128, help="U-Net input size of the untrained model (default 128)")
    parser.add_argument("--model", type=Path, help="a trained ctseg model to use instead of the untrained U-Net")
    parser.add_argument("--dicoms", type=Path, help="a DICOM folder (one series) to use instead of the phantom")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    tf = configure_tensorflow()
    import keras  # noqa: PLC0415

    from ctseg_helpers.io.dicom_write import write_dicom_series  # noqa: PLC0415
    from ctseg_helpers.measure.uncertainty import slice_uncertainty  # noqa: PLC0415
    from ctseg_helpers.model.settings import ModelSettings, save_model  # noqa: PLC0415
    from ctseg_helpers.model.unet import build_unet  # noqa: PLC0415
    from ctseg_helpers.prepare.normalize import Normalization  # noqa: PLC0415
    from ctseg_helpers.segment import Segmenter  # noqa: PLC0415
    from ctseg_helpers.workflows import run_segmentation  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory(prefix="ctseg-bench-") as tmp:
        tmp = Path(tmp)
        if args.dicoms:
            series_dir = args.dicoms
        else:
            series_dir = tmp / "series"
            write_dicom_series(
                series_dir,
                phantom_series(args.slices),
                pixel_spacing_mm=(0.7, 0.7),
                slice_thickness_mm=2.5,
                patient_id="BENCH-1",
            )
        model_path = args.model
        if model_path is None:
            model_path = save_model(
                build_unet(args.input, 2, levels=4, base_filters=16),
                tmp / "bench.keras",
                ModelSettings(
                    input_shape=args.input,
                    num_labels=2,
                    label_names=("body", "bone"),
                    normalization=Normalization("CT", (-1000.0, 1000.0)),
                    fit_mode="pad",
                ),
            )
        segmenter = Segmenter.from_model_file(model_path, batch_size=8)

        def run(name: str, i) -> float:
            start = time.perf_counter()
            run_segmentation(
                model_path,
                series_dir,
                tmp / "pred",
                previews=False,
                animation=False,
                run_name=f"{name}{i}",
                segmenter=segmenter,
                progress=False,
                **VARIANTS[name],
            )
            return time.perf_counter() - start

        for name in VARIANTS:  # warm-up: tracing, first file reads, imports of nibabel and highdicom
            run(name, "warm")
        times = {name: [] for name in VARIANTS}
        for i in range(args.repeats):
            for name in VARIANTS:
                times[name].append(run(name, i))
        # the uncertainty of the series' probabilities, as run_segmentation computes it
        from ctseg_helpers.io.dicom import read_dicom_series  # noqa: PLC0415

        series = read_dicom_series(series_dir)
        prediction = segmenter.predict(series.images, pixel_spacing_mm=series.pixel_spacing_mm)
        start = time.perf_counter()
        slice_uncertainty(prediction.proba, prediction.labels)
        uncertainty_s = time.perf_counter() - start
        h5 = next((tmp / "pred").glob("probabilities*/probabilities.h5"))
        h5_mb = h5.stat().st_size / 1e6
        raw_mb = prediction.proba.size / 1e6  # uint8: one byte per probability

    n_slices, rows, cols = series.images.shape
    median = {name: statistics.median(t) for name, t in times.items()}
    base = median["base"]
    model = f"model {args.model}" if args.model else f"untrained U-Net input {args.input}"
    print(
        f"CPU: {cpu_name()} ({os.cpu_count()} CPUs); tensorflow {tf.__version__}; "
        f"{n_slices} slices {rows}x{cols}, {model}; median of {args.repeats} interleaved runs after a warm-up"
    )
    print("| variant | seconds (median) | slices/s | extra over base |")
    print("| --- | --- | --- | --- |")
    for name, seconds in median.items():
        extra = "" if name == "base" else f"{100 * (seconds - base) / base:+.1f} %"
        print(f"| {name} | {seconds:.2f} | {n_slices / seconds:.2f} | {extra} |")
    share = 100 * uncertainty_s / base
    print(f"per-slice uncertainty (entropy, inside base): {uncertainty_s:.3f} s = {share:.1f} % of base")
    print(f"probabilities.h5: {h5_mb:.2f} MB for {raw_mb:.1f} MB of uint8 probabilities ({h5_mb / raw_mb:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
