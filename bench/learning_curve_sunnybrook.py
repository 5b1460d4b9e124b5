"""How Dice on a new patient grows with the number of training patients (Sunnybrook lv_myo).

Usage (from the repository root)::

    .venv/bin/python bench/learning_curve_sunnybrook.py --minutes 20 --out /tmp/lc_myo > lc_myo.log 2>&1

Each of the three shared patients in turn is the only training patient; the model (the
defaults, as ``ctseg train DATA --num-labels 2 --max-minutes M`` gives them: no validation, the
last epoch, post-processing from the training labels) is evaluated on each of the two others,
which it never saw. Together with the leave-one-patient-out figures of
``bench/heldout_sunnybrook.py`` (two training patients, same budget) this gives the first two
points of a learning curve: the numbers ``USER_MANUAL.md`` ("How much data do I need?") quotes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from heldout_sunnybrook import LABEL_NAMES, evaluate, train_variant  # noqa: E402

from ctseg_helpers.prepare.dataset import read_pairs  # noqa: E402
from ctseg_helpers.segment.postprocess import postprocessing_from_labels  # noqa: E402
from ctseg_helpers.segment.segmenter import Segmenter  # noqa: E402
from ctseg_helpers.train.system import cpu_name  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "sunnybrook"))
    parser.add_argument("--folder", default="lv_myo", choices=sorted(LABEL_NAMES))
    parser.add_argument("--minutes", type=float, default=20.0, help="training minutes per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    names = LABEL_NAMES[args.folder]
    main_dir = Path(args.data) / args.folder
    out_root = Path(args.out)
    pairs = read_pairs(main_dir / "train", len(names), progress=False)
    report = {
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "cpu": cpu_name(),
        "folder": args.folder,
        "minutes_per_model": args.minutes,
        "command": " ".join(sys.argv),
        "runs": [],
    }
    for trained_on in sorted(set(pairs.groups)):
        is_train = np.array([g == trained_on for g in pairs.groups])
        train_pairs = pairs.subset(is_train)
        run_dir = out_root / f"trained_on_{trained_on}"
        train_dir = run_dir / "data" / "train"
        for sub, suffix in (("dicoms", ".dcm"), ("labels", ".png")):
            (train_dir / sub).mkdir(parents=True, exist_ok=True)
            for name in train_pairs.names:
                link = train_dir / sub / f"{name}{suffix}"
                if not link.exists():
                    link.symlink_to(main_dir / "train" / sub / f"{name}{suffix}")
        done = run_dir / "result.json"
        if done.is_file():
            report["runs"].append(json.loads(done.read_text()))
            continue
        started = time.perf_counter()
        model_path, result = train_variant(
            "patch_aug", run_dir / "data", names, run_dir / "model", args.minutes, args.seed, train_pairs
        )
        run = {
            "trained_on": trained_on,
            "n_train_slices": len(train_pairs),
            "train_minutes": round((time.perf_counter() - started) / 60, 1),
            "epochs": result.epochs_completed,
            "model": str(model_path),
            "tested_on": {},
        }
        chosen, _ = postprocessing_from_labels(list(train_pairs.labels), len(names))
        segmenter = Segmenter.from_model_file(model_path)
        segmenter.postprocessing = chosen
        for patient in sorted(set(pairs.groups) - {trained_on}):
            test_pairs = pairs.subset(np.array([g == patient for g in pairs.groups]))
            run["tested_on"][patient] = evaluate(segmenter, test_pairs, names)
            print(trained_on, "->", patient, json.dumps(run["tested_on"][patient]), flush=True)
        done.write_text(json.dumps(run, indent=2))
        report["runs"].append(run)
    for name in names:
        values = [m[name]["dice"] for r in report["runs"] for m in r["tested_on"].values()]
        report.setdefault("dice_mean_sd", {})[name] = [
            round(float(np.mean(values)), 3),
            round(float(np.std(values)), 3),
        ]
        print(
            f"{name}: Dice on a new patient, one training patient: "
            f"{np.mean(values):.3f} +- {np.std(values):.3f} ({len(values)} pairs)"
        )
    (out_root / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
