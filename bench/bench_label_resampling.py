"""How far resampling moves ROI areas: labels to the plan's spacing and back, two ways.

Training resamples every label map to the plan's pixel spacing; a model trained on those maps
can at best reproduce them, and its probabilities are resampled back to the scan's own grid
before areas are measured. This round trip alone, with no network in it, is the floor of the
area error the recipe can reach. Two ways to resample the labels there are compared:

``nearest``  nearest-neighbour sampling on the pixel centres (ctseg until 2026-12-02);
``masks``    :func:`~ctseg_helpers.prepare.resample.resize_label`: each ROI's mask bilinearly,
             then the arg-max (nnU-Net's ``resize_segmentation``, order 1).

The way back is the one segmentation takes: the one-hot map as probabilities, bilinearly
(:func:`~ctseg_helpers.prepare.resample.resize_image`), then the arg-max.

Data: the demo phantom (``--patients`` synthetic patients of 8 slices, 128 px, 2.5-3.5 mm pixels,
to the demo plan's 2.83 mm) and, when ``../shared/datasets/sunnybrook`` is there, the Sunnybrook
lv_myo slices of each patient to the median spacing of the three (1.367 mm).

Run: ``.venv/bin/python bench/bench_label_resampling.py [--patients 8]``.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctseg_helpers.demo.phantom import PHANTOM_LABELS, phantom_series  # noqa: E402
from ctseg_helpers.prepare.resample import resampled_shape, resize_image, resize_label  # noqa: E402
from ctseg_helpers.train.system import cpu_name  # noqa: E402

SUNNYBROOK = ROOT.parent / "shared" / "datasets" / "sunnybrook" / "lv_myo" / "train"


def nearest(label: np.ndarray, shape) -> np.ndarray:
    """Nearest-neighbour sampling on the pixel centres of ``resize_image``."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * label.shape[0] / shape[0]).astype(int), label.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * label.shape[1] / shape[1]).astype(int), label.shape[1] - 1)
    return label[np.ix_(rows, cols)]


def round_trip_errors(label, spacing_mm, target_mm, n_labels, resize) -> np.ndarray:
    """Signed area error (%) of ROIs 1..n_labels after resampling there and back (NaN where absent)."""
    shape = resampled_shape(label.shape, spacing_mm, target_mm)
    small = resize(label, shape)
    proba = np.eye(n_labels + 1, dtype=np.float32)[small]
    back = resize_image(proba, label.shape).argmax(axis=-1)
    true = np.array([np.sum(label == k) for k in range(1, n_labels + 1)], dtype=float)
    got = np.array([np.sum(back == k) for k in range(1, n_labels + 1)], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(true > 0, 100.0 * (got - true) / true, np.nan)


def report(title: str, names, cases) -> None:
    """Mean absolute and signed area error per ROI for both ways; ``cases`` yields (label, spacing, target)."""
    cases = list(cases)
    print(f"\n{title}: {len(cases)} slices")
    print("| ROI | nearest: mean abs % | nearest: bias % | masks: mean abs % | masks: bias % |")
    print("| --- | --- | --- | --- | --- |")
    errors = {}
    for way, resize in (("nearest", nearest), ("masks", resize_label)):
        errors[way] = np.array([round_trip_errors(lab, sp, tg, len(names), resize) for lab, sp, tg in cases])
    for k, name in enumerate(names):
        cells = []
        for way in ("nearest", "masks"):
            e = errors[way][:, k]
            cells += [f"{np.nanmean(np.abs(e)):.2f}", f"{np.nanmean(e):+.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    means = [np.nanmean(np.nanmean(np.abs(errors[w]), axis=0)) for w in ("nearest", "masks")]
    print(f"| all ROIs (mean of ROIs) | **{means[0]:.2f}** | | **{means[1]:.2f}** | |")


def phantom_cases(n_patients: int, target_mm: float = 2.83):
    for seed in range(n_patients):
        slices, info = phantom_series(8, size=128, seed=seed)
        spacing = (info["pixel_spacing_mm"],) * 2
        for s in slices:
            yield s.labels, spacing, (target_mm, target_mm)


def sunnybrook_cases():
    from ctseg_helpers.prepare.dataset import read_pairs  # noqa: PLC0415

    raw = read_pairs(SUNNYBROOK, num_labels=2, progress=False)
    target = raw.median_spacing_mm()
    for label, spacing in zip(raw.labels, raw.spacings_mm, strict=True):
        yield np.asarray(label), spacing, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=8, help="phantom patients (8 slices each)")
    args = parser.parse_args()
    print(f"machine: {cpu_name()}, {platform.machine()}")
    report("Demo phantom to 2.83 mm and back", PHANTOM_LABELS, phantom_cases(args.patients))
    if SUNNYBROOK.is_dir():
        cases = [c for c in sunnybrook_cases() if not np.allclose(c[1], c[2], rtol=0.01)]
        report(
            "Sunnybrook lv_myo slices resampled to the median spacing and back",
            ("LV blood pool", "LV myocardium"),
            cases,
        )
    else:
        print(f"\nSunnybrook skipped: {SUNNYBROOK} is not there")


if __name__ == "__main__":
    main()
