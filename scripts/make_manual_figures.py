"""Regenerate the figures of USER_MANUAL.md (docs/figures/*.png) with the project's own code.

Usage (from the repository root)::

    .venv/bin/python scripts/make_manual_figures.py                      # phantom figures
    .venv/bin/python scripts/make_manual_figures.py --demo-run predictions/demo_<timestamp>

The first form draws the figures that need only the phantom (examples, label encoding, HU
histograms, the first augmented training batch). With ``--demo-run`` (a folder written by
``ctseg demo``) it also draws the training curves, a segmentation next to the phantom's truth,
and measured vs true areas. The figures in ``docs/figures`` are this script's output and are
replaced on every run; nothing else is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("make_manual_figures")


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _window(hu, low=-160.0, high=240.0):
    """Soft-tissue CT window (W 400, L 40) for display."""
    return np.clip((np.asarray(hu, dtype=np.float32) - low) / (high - low), 0.0, 1.0)


def phantom_examples(out: Path, seed: int) -> Path:
    from ctseg_helpers.demo.phantom import PHANTOM_LABELS, phantom_series  # noqa: PLC0415
    from ctseg_helpers.show.colors import legend_handles, overlay  # noqa: PLC0415

    plt = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(11, 7.6))
    for col, patient in enumerate(range(3)):
        slices, info = phantom_series(8, size=256, seed=seed + patient)
        s = slices[[0, 4, 7][col]]
        axes[0, col].imshow(_window(s.hu), cmap="gray", interpolation="nearest")
        axes[0, col].set_title(
            f"patient {patient + 1}: CT, W400/L40, {info['pixel_spacing_mm']:.2f} mm pixels", fontsize=9
        )
        axes[1, col].imshow(overlay(_window(s.hu), s.labels), interpolation="nearest")
        areas = s.areas_mm2()
        axes[1, col].set_title("labels: " + ", ".join(f"{a / 100:.1f}" for a in areas) + " cm²", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.legend(handles=legend_handles(PHANTOM_LABELS), loc="lower center", ncol=3, frameon=False)
    fig.suptitle("The demo phantom: synthetic lumbar CT slices (top) and their six labelled ROIs (bottom)")
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    return _save(fig, out / "phantom_examples.png")


def label_encoding(out: Path, seed: int) -> Path:
    from ctseg_helpers.demo.phantom import PHANTOM_LABELS, phantom_series  # noqa: PLC0415
    from ctseg_helpers.show.colors import legend_handles, overlay  # noqa: PLC0415

    plt = _plt()
    (s,), _ = phantom_series(1, size=256, seed=seed)
    fig, axes = plt.subplots(1, 3, figsize=(12, 5.0))
    axes[0].imshow(s.labels, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes[0].set_title("label PNG as an image viewer shows it\n(values 0-6 of 255: nearly black)", fontsize=9)
    shown = axes[1].imshow(s.labels, cmap="gray", vmin=0, vmax=len(PHANTOM_LABELS), interpolation="nearest")
    axes[1].set_title("the same file, contrast stretched:\none grey level per ROI value", fontsize=9)
    fig.colorbar(shown, ax=axes[1], ticks=range(len(PHANTOM_LABELS) + 1), fraction=0.046)
    axes[2].imshow(overlay(_window(s.hu), s.labels), interpolation="nearest")
    axes[2].set_title("as ctseg draws it over the image\n(each value always the same colour)", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.legend(handles=legend_handles(PHANTOM_LABELS), loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 0.97))
    return _save(fig, out / "label_encoding.png")


def hu_histograms(out: Path, seed: int) -> Path:
    from ctseg_helpers.demo.phantom import PHANTOM_LABELS, phantom_series  # noqa: PLC0415
    from ctseg_helpers.show.colors import label_color  # noqa: PLC0415

    plt = _plt()
    slices, _ = phantom_series(12, size=256, seed=seed)
    hu = np.stack([s.hu for s in slices])
    labels = np.stack([s.labels for s in slices])
    fig, ax = plt.subplots(figsize=(9, 4.2))
    bins = np.arange(-300, 1200, 10)
    for value, name in enumerate(PHANTOM_LABELS, start=1):
        ax.hist(
            hu[labels == value], bins=bins, histtype="step", lw=1.6, color=label_color(value), label=name, density=True
        )
    ax.hist(
        hu[labels == 0],
        bins=bins,
        histtype="stepfilled",
        color="0.85",
        label="background (in window)",
        density=True,
        zorder=0,
    )
    ax.axvspan(-1000, 1000, color="none")
    ax.set_xlabel("Hounsfield units")
    ax.set_ylabel("share of pixels (density)")
    ax.set_xlim(-300, 1200)
    ax.set_title("HU of each ROI in 12 phantom slices (the default CT window -1000..1000 HU keeps all)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "hu_histograms.png")


def augmented_batch(out: Path, seed: int) -> Path:
    from ctseg_helpers.demo.phantom import PHANTOM_LABELS, make_phantom_dataset  # noqa: PLC0415
    from ctseg_helpers.demo.run import _LATERAL_SAFE_AUGMENTATION  # noqa: PLC0415
    from ctseg_helpers.prepare.augment import AugmentConfig  # noqa: PLC0415
    from ctseg_helpers.show.training import show_batch  # noqa: PLC0415
    from ctseg_helpers.train.loop import TrainConfig, first_batch, prepare_training_data  # noqa: PLC0415

    _plt()  # the Agg backend, before show_batch draws
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "phantom"
        make_phantom_dataset(data, n_train=16, n_test=1, size=128, seed=seed)
        config = TrainConfig(
            main_dir=data,
            out_dir=Path(tmp) / "model",
            input_shape=128,
            num_labels=len(PHANTOM_LABELS),
            label_names=PHANTOM_LABELS,
            batch_size=8,
            seed=seed,
            augmentation=AugmentConfig(**_LATERAL_SAFE_AUGMENTATION),
        )
        images, labels = first_batch(config, prepare_training_data(config, progress=False))
    fig = show_batch(
        images,
        labels,
        PHANTOM_LABELS,
        title=(f"First augmented training batch: images {images.shape} float32 in 0..1, labels {labels.shape} uint8"),
    )
    return _save(fig, out / "augmented_batch.png")


def demo_figures(out: Path, run: Path) -> list[Path]:
    import pandas as pd  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    from ctseg_helpers.demo.phantom import PHANTOM_LABELS, read_true_areas  # noqa: PLC0415
    from ctseg_helpers.io.dicom import read_dicom_file  # noqa: PLC0415
    from ctseg_helpers.show.colors import label_color, legend_handles, overlay  # noqa: PLC0415
    from ctseg_helpers.show.training import plot_history  # noqa: PLC0415

    plt = _plt()
    written = []
    summary = __import__("json").loads((run / "demo_summary.json").read_text())
    data = Path(summary["data_dir"])
    history = sorted((run / "model").glob("*_history.csv"))
    if history:
        fig = plot_history(pd.read_csv(history[0]), title="Demo training on the phantom")
        written.append(_save(fig, out / "training_curves.png"))
    area_csv = next(iter(sorted((run / "segmentation").rglob("areas.csv"))))
    pred_dir = area_csv.parent / "labels"
    truth = read_true_areas(data / "test")
    files = list(truth.index)
    pick = files[len(files) // 2]
    image = read_dicom_file(data / "test" / "dicoms" / pick).pixels
    stem = Path(pick).stem
    true_map = np.asarray(Image.open(data / "test" / "labels" / f"{stem}.png"))
    pred_map = np.asarray(Image.open(pred_dir / f"{stem}.png"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6))
    for ax, (title, img) in zip(
        axes,
        [
            ("test slice " + stem, np.repeat(_window(image)[..., None], 3, -1)),
            ("phantom truth", overlay(_window(image), true_map)),
            ("demo model's segmentation", overlay(_window(image), pred_map)),
        ],
        strict=True,
    ):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.legend(handles=legend_handles(PHANTOM_LABELS), loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 0.97))
    written.append(_save(fig, out / "segmentation_example.png"))

    measured = pd.read_csv(area_csv, index_col=0)
    measured = measured[measured.index.astype(str).str.startswith("slice number")].set_index("file")
    fig, ax = plt.subplots(figsize=(5.8, 5.4))
    for value, name in enumerate(PHANTOM_LABELS, start=1):
        t = truth.loc[measured.index, name].astype(float) / 100
        m = measured[name].astype(float) / 100
        ax.scatter(t, m, s=18, color=label_color(value), label=name)
    values = (
        np.concatenate(
            [
                truth.loc[measured.index, list(PHANTOM_LABELS)].to_numpy(float).ravel(),
                measured[list(PHANTOM_LABELS)].to_numpy(float).ravel(),
            ]
        )
        / 100
    )
    values = values[values > 0]
    lim = [values.min() / 1.5, values.max() * 1.5]
    ax.plot(lim, lim, color="0.4", lw=1, ls="--", label="identity")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_xlabel("true area (cm²)")
    ax.set_ylabel("measured area (cm²)")
    ax.set_title("Demo: measured vs known areas, test slices", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(_save(fig, out / "area_agreement.png"))
    return written


def _save(fig, path: Path) -> Path:
    plt = _plt()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures", help="figure folder")
    parser.add_argument(
        "--demo-run",
        type=Path,
        default=None,
        help="a folder written by `ctseg demo` (adds training and segmentation figures)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-batch", action="store_true", help="skip the augmented batch (needs TensorFlow)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.demo_run is not None and not (args.demo_run / "demo_summary.json").is_file():
        print(f"error: {args.demo_run} is not a folder written by `ctseg demo` (no demo_summary.json)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    phantom_examples(args.out, args.seed)
    label_encoding(args.out, args.seed)
    hu_histograms(args.out, args.seed)
    if not args.skip_batch:
        augmented_batch(args.out, args.seed)
    if args.demo_run is not None:
        demo_figures(args.out, args.demo_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
