"""Held-out Dice on Sunnybrook: train on two patients with the default settings, test on the third.

Usage (from the repository root; takes up to ``--max-minutes`` of training)::

    .venv/bin/python bench/heldout_sunnybrook.py --folder lv_myo --max-minutes 19 > heldout.log 2>&1

The held-out patient is never seen in training, nor used to choose the model: training runs
without validation data and the model after the last epoch is evaluated. Dice is reported per
ROI, pooled over all pixels of the held-out patient's slices, and as the mean of per-slice
Dice over the slices where the ROI is in the expert label.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctseg_helpers.prepare.dataset import load_slices  # noqa: E402
from ctseg_helpers.train.loop import TrainConfig, TrainingData, train_model  # noqa: E402

LABEL_NAMES = {"lv_myo": ("LV blood pool", "LV myocardium"), "lv_cavity": ("LV blood pool",)}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float("nan") if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "sunnybrook"))
    parser.add_argument("--folder", default="lv_myo", choices=sorted(LABEL_NAMES))
    parser.add_argument("--held-out", default=None, help="patient to hold out (default: the last one)")
    parser.add_argument("--max-minutes", type=float, default=19.0)
    parser.add_argument("--epochs", type=int, default=100, help="TrainConfig default: 100")
    parser.add_argument("--out", default=None, help="output folder (default: a temporary folder)")
    args = parser.parse_args()

    names = LABEL_NAMES[args.folder]
    main_dir = Path(args.data) / args.folder
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ctseg_heldout_"))
    config = TrainConfig(main_dir=main_dir, model_filename="heldout", out_dir=out_dir, num_labels=len(names),
                         label_names=names, epochs=args.epochs, validation_fraction=0.0,
                         max_minutes=args.max_minutes, print_checkpoint=5, save_checkpoint=1000)
    slices = load_slices(main_dir / "train", config.input_shape, config.num_labels, progress=False)
    patients = sorted(set(slices.groups.tolist()))
    held_out = args.held_out or patients[-1]
    is_test = slices.groups == held_out
    train = slices.subset(~is_test)
    test = slices.subset(is_test)
    print(f"training on {sorted(set(train.groups))} ({len(train)} slices), testing on {held_out} ({len(test)} slices)")
    started = time.perf_counter()
    result = train_model(config, TrainingData(train, None), progress=False)
    minutes = (time.perf_counter() - started) / 60

    probabilities = result.model.predict(test.images[..., None], batch_size=4, verbose=0)
    predicted = probabilities.argmax(axis=-1)
    report = {
        "date": datetime.date.today().isoformat(),
        "folder": args.folder,
        "train_patients": sorted(set(train.groups.tolist())),
        "held_out_patient": held_out,
        "n_train_slices": len(train),
        "n_test_slices": len(test),
        "epochs_completed": result.epochs_completed,
        "training_minutes": round(minutes, 1),
        "final_training_loss": round(float(result.history["loss"].iloc[-1]), 4),
        "final_training_mean_dice": round(float(result.history["mean_dice"].iloc[-1]), 4),
        "settings": {k: v for k, v in config.to_dict().items() if k not in ("main_dir", "out_dir")},
        "dice": {},
    }
    for k, name in enumerate(names, start=1):
        pooled = dice(predicted == k, test.labels == k)
        per_slice = [dice(p == k, t == k) for p, t in zip(predicted, test.labels) if (t == k).any()]
        report["dice"][name] = {"pooled": round(pooled, 4), "mean_per_slice": round(float(np.mean(per_slice)), 4),
                                "slices_with_roi": len(per_slice)}
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
