"""Speed of ctseg's surface-distance metrics against MedPy, measured in the same process.

``compute_metrics`` computes Dice, IoU, HD, HD95, ASSD, surface Dice and the rest in one pass,
on the bounding box of the two masks. The baseline is MedPy computing the four metrics most
papers report (``dc``, ``hd``, ``hd95``, ``assd``), each of which recomputes the boundaries
and distance maps on the whole array. The values are checked to agree before timing.

Cases: a 256 x 256 slice with a small ROI (the usual per-slice evaluation: a muscle or a
ventricle in a large field of view), the same with a large ROI, and a 24 x 256 x 256 volume.

Run: ``.venv/bin/python bench/bench_metrics.py``. Prints one line per case with the median
time of each and the ratio MedPy / ctseg (higher = ctseg faster).
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
from scipy import ndimage

os.environ.setdefault("MPLBACKEND", "Agg")

from ctseg_helpers.measure.metrics import compute_metrics  # noqa: E402


def _blob(rng, shape, centre, radius):
    grid = np.indices(shape).astype(float)
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 3) * radius * 0.5
    return dist + noise < radius


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    from medpy.metric import binary  # noqa: PLC0415

    rng = np.random.default_rng(0)
    cases = {
        "256x256 slice, ROI ~ 30 px across": ((256, 256), (0.7, 0.7), (120, 140), 15, 15),
        "256x256 slice, ROI ~ 160 px across": ((256, 256), (0.7, 0.7), (128, 128), 80, 7),
        "24x256x256 volume, ROI ~ 60 px across": ((24, 256, 256), (3.0, 0.7, 0.7), (12, 128, 128), 30, 3),
    }
    for name, (shape, spacing, centre, radius, repeats) in cases.items():
        truth = _blob(rng, shape, centre, radius)
        pred = _blob(rng, shape, tuple(c + 1 for c in centre), radius * 1.05)

        def ours(pred=pred, truth=truth, spacing=spacing):
            return compute_metrics(pred, truth, spacing)

        def medpy(pred=pred, truth=truth, spacing=spacing):
            return (
                binary.dc(pred, truth),
                binary.hd(pred, truth, spacing),
                binary.hd95(pred, truth, spacing),
                binary.assd(pred, truth, spacing),
            )

        mine, theirs = ours(), medpy()
        assert np.allclose([mine["dice"], mine["hd"], mine["hd95"], mine["assd"]], theirs), name
        t_medpy = _median_time(medpy, repeats)
        t_ours = _median_time(ours, repeats)
        print(
            f"{name}: MedPy {t_medpy * 1000:.1f} ms, ctseg {t_ours * 1000:.1f} ms (all 11 metrics), "
            f"ratio {t_medpy / t_ours:.1f}x"
        )


if __name__ == "__main__":
    main()
