"""Leave-one-patient-out cross-validation on Sunnybrook, with an ablation of the training recipe.

Usage (from the repository root)::

    .venv/bin/python bench/heldout_sunnybrook.py --folder lv_myo --minutes 3 --out /tmp/cv_myo > cv_myo.log 2>&1

For each of the three shared patients in turn, models are trained on the other two and
evaluated on the held-out one, which no model sees in training or in choosing settings
(checkpoint, post-processing). Each variant trains for at most ``--minutes`` minutes:

``old``       the earlier defaults: whole slices resized to 256 px, the earlier augmentation,
              constant learning rate, no validation, no post-processing;
``patch``     the plan (native spacing, 128 px patches, a third centred on an ROI, poly
              learning rate), with the earlier augmentation;
``patch_aug_rot30`` + the current augmentation (scaling 0.7-1.4, blur, low resolution...) with
              rotations up to 30 degrees (the default until 2026-12-01);
``patch_aug`` the defaults: as ``patch_aug_rot30`` with rotations by any angle; with two
              training patients the default sets none aside for validation;
``patch_aug_pp`` the same model + the post-processing chosen on the inner folds below;
``patch_aug_labels_pp`` the same model + the post-processing the training labels vouch for
              (``postprocessing_from_labels``: what a run without validation slices applies);
``patch_aug_tta`` ``patch_aug_labels_pp`` with test-time augmentation (the views the model was
              trained on: the 4 quarter turns for the defaults);
``patch_aug_fp32`` ``patch_aug`` in float32 (the default is bfloat16 on CPUs with AMX);
``no_<group>`` ``patch_aug`` without one augmentation group (``spatial``, ``intensity``,
              ``noise_blur``, ``lowres``; see ``AUGMENTATION_GROUPS``), to measure what it adds;
``ds``        ``patch_aug`` with deep supervision (``deep_supervision=True``); ``ds_labels_pp`` and
              ``ds_tta`` evaluate its models as ``patch_aug_labels_pp`` / ``patch_aug_tta`` do;
``mix``       the ensemble of the ``patch_aug`` and ``ds`` models of the fold (two models, both trained
              on both training patients: 2 x ``--minutes``), post-processing from the labels;
              ``mix_tta`` the same with TTA;
``ensemble``  ``folds=2`` on the two training patients (each fold model validates on the other
              patient; the post-processing is chosen on their out-of-fold predictions), both
              models averaged: what ``ctseg train --folds 2`` gives.

Slices are segmented at their own resolution through :class:`Segmenter` (resampled to the
model's spacing and back), so Dice, HD95 and areas are measured on the scan's own pixels.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctseg_helpers.measure.metrics import dice, hd95  # noqa: E402
from ctseg_helpers.prepare.augment import AUGMENTATION_GROUPS, AugmentConfig  # noqa: E402
from ctseg_helpers.prepare.dataset import read_pairs  # noqa: E402
from ctseg_helpers.segment.ensemble import ENSEMBLE_SUFFIX, write_ensemble  # noqa: E402
from ctseg_helpers.segment.postprocess import PostProcessing, postprocessing_from_labels  # noqa: E402
from ctseg_helpers.segment.segmenter import Segmenter  # noqa: E402
from ctseg_helpers.train.loop import TrainConfig, train_model  # noqa: E402
from ctseg_helpers.train.system import cpu_name  # noqa: E402

LABEL_NAMES = {"lv_myo": ("LV blood pool", "LV myocardium"), "lv_cavity": ("LV blood pool",)}
#: The augmentation defaults before this recipe (flips and quarter turns were already off).
OLD_AUGMENTATION = AugmentConfig(
    p_affine=0.5,
    max_rotation_deg=15.0,
    scale_range=(0.9, 1.1),
    p_elastic=0.2,
    p_brightness=0.3,
    p_contrast=0.3,
    contrast_range=(0.8, 1.2),
    p_gamma=0.3,
    gamma_range=(0.8, 1.25),
    p_noise=0.2,
    noise_std=0.02,
    p_blur=0.0,
    p_lowres=0.0,
    p_brightness_mult=0.0,
)
VARIANTS = (
    "old",
    "patch",
    "patch_aug_rot30",
    "patch_aug",
    "patch_aug_pp",
    "patch_aug_labels_pp",
    "patch_aug_tta",
    "patch_aug_fp32",
    *(f"no_{g}" for g in AUGMENTATION_GROUPS),
    "ds",
    "ds_labels_pp",
    "ds_tta",
    "mix",
    "mix_tta",
    "ensemble",
)
#: Variants that evaluate another variant's models instead of training their own.
EVALUATED_ONLY = ("patch_aug_pp", "patch_aug_labels_pp", "patch_aug_tta", "ds_labels_pp", "ds_tta", "mix", "mix_tta")


def evaluate(segmenter, pairs, names) -> dict:
    """Dice (pooled), mean per-slice HD95 (mm) and mean absolute area error (%) per ROI."""
    out = {}
    predictions = [
        segmenter.segment(image, pixel_spacing_mm=spacing)
        for image, spacing in zip(pairs.images, pairs.spacings_mm, strict=True)
    ]
    for k, name in enumerate(names, start=1):
        pred = np.concatenate([(p == k).ravel() for p in predictions])[None]
        truth = np.concatenate([(t == k).ravel() for t in pairs.labels])[None]
        distances, errors, missed = [], [], 0
        for p, t, spacing in zip(predictions, pairs.labels, pairs.spacings_mm, strict=True):
            if not (t == k).any():
                continue
            if not (p == k).any():
                missed += 1
            else:
                distances.append(hd95(p == k, t == k, spacing))
            errors.append(abs(float((p == k).sum()) - float((t == k).sum())) / float((t == k).sum()) * 100)
        out[name] = {
            "dice": round(float(dice(pred, truth)), 4),
            "hd95_mm": round(float(np.mean(distances)), 2) if distances else None,
            "slices_missed": missed,
            "area_error_pct": round(float(np.mean(errors)), 2),
        }
    return out


def train_variant(variant, main_dir, names, out_dir, minutes, seed, pairs_train) -> Path:
    common = dict(
        main_dir=main_dir,
        out_dir=out_dir,
        num_labels=len(names),
        label_names=names,
        epochs=1000,
        max_minutes=minutes,
        print_checkpoint=20,
        save_checkpoint=100000,
        seed=seed,
    )
    if variant == "old":
        config = TrainConfig(
            **common,
            model_filename=variant,
            fit_mode="resize",
            input_shape=256,
            augmentation=OLD_AUGMENTATION,
            lr_schedule="constant",
            validation_fraction=0.0,
            postprocessing="none",
            mixed_precision=False,
        )
    elif variant == "patch":
        config = TrainConfig(
            **common,
            model_filename=variant,
            augmentation=OLD_AUGMENTATION,
            validation_fraction=0.0,
            postprocessing="none",
        )
    elif variant == "patch_aug":  # the defaults: with two training patients, no validation split
        config = TrainConfig(**common, model_filename=variant)
    elif variant == "ds":  # the defaults with deep supervision
        config = TrainConfig(**common, model_filename=variant, deep_supervision=True)
    elif variant == "patch_aug_rot30":  # the defaults with rotations up to 30 degrees (until 2026-12-01)
        config = TrainConfig(
            **common,
            model_filename=variant,
            validation_fraction=0.0,
            postprocessing="none",
            augmentation=AugmentConfig(max_rotation_deg=30.0),
        )
    elif variant == "patch_aug_fp32":  # the same in float32: does bfloat16 (on AMX CPUs) keep the accuracy?
        config = TrainConfig(
            **common, model_filename=variant, validation_fraction=0.0, postprocessing="none", mixed_precision=False
        )
    elif variant.startswith("no_"):
        config = TrainConfig(
            **common,
            model_filename=variant,
            validation_fraction=0.0,
            postprocessing="none",
            augmentation=AugmentConfig().without(variant[3:]),
        )
    else:  # ensemble
        config = TrainConfig(**common, model_filename=variant, folds=2)
        config = dataclasses.replace(config, max_minutes=minutes * 2)  # each fold gets `minutes`
    from ctseg_helpers.train.loop import TrainingData, prepare_training_data  # noqa: PLC0415

    if variant == "ensemble":
        result = train_model(config, progress=False)
        return result.model_path, result
    data = prepare_training_data(config, progress=False, raw=pairs_train) if config.fit_mode == "patch" else None
    if data is None:
        from ctseg_helpers.prepare.dataset import slices_from_arrays  # noqa: PLC0415

        norm = pairs_train.default_normalization()
        slices = slices_from_arrays(
            pairs_train.images,
            pairs_train.labels,
            256,
            len(names),
            groups=pairs_train.groups,
            names=pairs_train.names,
            normalization=norm,
        )
        data = TrainingData(slices, None)
    result = train_model(config, data, progress=False)
    # Without validation data the model after the last epoch is evaluated.
    last = result.last_checkpoint_path
    return last, result


def _mean_sd(values) -> tuple[float, float]:
    """Mean and standard deviation (NumPy's, ddof=0) of a metric over folds, to 3 decimals."""
    return round(float(np.mean(values)), 3), round(float(np.std(values)), 3)


def markdown_tables(report: dict) -> str:
    """Per-fold and mean +- SD tables of a report, as bench/RESULTS.md shows them."""
    variants = [v for v in VARIANTS if any(v in f["variants"] for f in report["folds"])]
    names = LABEL_NAMES[report["folder"]]
    lines = []
    for name in names:
        lines += [
            f"**{name}**",
            "",
            "| variant | " + " | ".join(f["held_out"] for f in report["folds"]) + " | mean +- SD |",
            "| --- |" + " --- |" * (len(report["folds"]) + 1),
        ]
        for metric, label in (("dice", "Dice"), ("hd95_mm", "HD95 mm"), ("area_error_pct", "area error %")):
            for variant in variants:
                values = [
                    f["variants"].get(variant, {}).get("metrics", {}).get(name, {}).get(metric) for f in report["folds"]
                ]
                cells = ["-" if v is None else f"{v:.3g}" for v in values]
                known = [v for v in values if v is not None]
                summary = f"{np.mean(known):.3g} +- {np.std(known):.2g}" if known else "-"
                lines.append(f"| {variant} ({label}) | " + " | ".join(cells) + f" | {summary} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--table":  # print the tables of a finished report
        print(markdown_tables(json.loads(Path(sys.argv[2]).read_text())))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "sunnybrook"))
    parser.add_argument("--folder", default="lv_myo", choices=sorted(LABEL_NAMES))
    parser.add_argument("--minutes", type=float, default=20.0, help="training minutes per model")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--held-out", default=None, help="only this patient (default: each in turn)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    names = LABEL_NAMES[args.folder]
    variants = [v for v in args.variants.split(",") if v]
    main_dir = Path(args.data) / args.folder
    out_root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ctseg_cv_"))
    pairs = read_pairs(main_dir / "train", len(names), progress=False)
    patients = sorted(set(pairs.groups))
    report = {
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "folder": args.folder,
        "minutes_per_model": args.minutes,
        "command": " ".join(sys.argv),
        "folds": [],
    }
    for held_out in [args.held_out] if args.held_out else patients:
        is_test = np.array([g == held_out for g in pairs.groups])
        train_pairs, test_pairs = pairs.subset(~is_test), pairs.subset(is_test)
        fold_dir = out_root / held_out
        # A training folder of the two other patients only (links to the shared files).
        train_dir = fold_dir / "data" / "train"
        for sub in ("dicoms", "labels"):
            (train_dir / sub).mkdir(parents=True, exist_ok=True)
        for name in train_pairs.names:
            for sub, suffix in (("dicoms", ".dcm"), ("labels", ".png")):
                link = train_dir / sub / f"{name}{suffix}"
                if not link.exists():
                    link.symlink_to(main_dir / "train" / sub / f"{name}{suffix}")
        fold = {
            "held_out": held_out,
            "train_patients": sorted(set(train_pairs.groups)),
            "n_train_slices": len(train_pairs),
            "n_test_slices": len(test_pairs),
            "variants": {},
        }
        for variant in [v for v in VARIANTS if v in variants and v not in EVALUATED_ONLY]:
            print(f"== {held_out}: {variant}", flush=True)
            done_file = fold_dir / variant / "result.json"
            if done_file.is_file():  # finished by an earlier run of this bench: reuse it
                fold["variants"][variant] = json.loads(done_file.read_text())
                print(f"(reused {done_file})", flush=True)
            else:
                started = time.perf_counter()
                model_path, result = train_variant(
                    variant, fold_dir / "data", names, fold_dir / variant, args.minutes, args.seed, train_pairs
                )
                minutes = (time.perf_counter() - started) / 60
                segmenter = Segmenter.from_model_file(model_path)
                if variant != "ensemble":
                    segmenter.postprocessing = None
                fold["variants"][variant] = {
                    "train_minutes": round(minutes, 1),
                    "epochs": result.epochs_completed,
                    "metrics": evaluate(segmenter, test_pairs, names),
                    "postprocessing": segmenter.postprocessing.to_dict() if segmenter.postprocessing else None,
                    "model": str(model_path),
                }
                if variant == "ensemble":
                    fold["variants"][variant]["inner_fold_dice"] = result.validation_dice
                done_file.write_text(json.dumps(fold["variants"][variant], indent=2))
            print(json.dumps(fold["variants"][variant]), flush=True)
        if "patch_aug_pp" in variants and {"ensemble", "patch_aug"} <= set(fold["variants"]):
            segmenter = Segmenter.from_model_file(fold["variants"]["patch_aug"]["model"])
            chosen = fold["variants"]["ensemble"]["postprocessing"]
            segmenter.postprocessing = PostProcessing.from_dict(chosen)
            fold["variants"]["patch_aug_pp"] = {
                "metrics": evaluate(segmenter, test_pairs, names),
                "postprocessing": chosen,
            }
            print(json.dumps(fold["variants"]["patch_aug_pp"]), flush=True)
        for base in ("patch_aug", "ds"):  # the trained model + post-processing from labels (+ TTA)
            if base not in fold["variants"]:
                continue
            chosen, _ = postprocessing_from_labels(list(train_pairs.labels), len(names))
            for tta in (False, True):
                variant = f"{base}_tta" if tta else f"{base}_labels_pp"
                if variant not in variants:
                    continue
                segmenter = Segmenter.from_model_file(fold["variants"][base]["model"], tta=tta)
                segmenter.postprocessing = chosen
                fold["variants"][variant] = {"metrics": evaluate(segmenter, test_pairs, names)}
                fold["variants"][variant].update(
                    {"tta_views": segmenter.tta_views} if tta else {"postprocessing": chosen.to_dict()}
                )
                print(json.dumps(fold["variants"][variant]), flush=True)
        if {"patch_aug", "ds"} <= set(fold["variants"]):  # two full-data models averaged
            members = [fold["variants"][v]["model"] for v in ("patch_aug", "ds")]
            ensemble = write_ensemble(fold_dir / f"mix{ENSEMBLE_SUFFIX}", members, overwrite=True)
            chosen, _ = postprocessing_from_labels(list(train_pairs.labels), len(names))
            for variant, tta in (("mix", False), ("mix_tta", True)):
                if variant in variants:
                    segmenter = Segmenter.from_model_file(ensemble, tta=tta)
                    segmenter.postprocessing = chosen
                    fold["variants"][variant] = {"metrics": evaluate(segmenter, test_pairs, names), "members": members}
                    print(json.dumps(fold["variants"][variant]), flush=True)
        report["folds"].append(fold)
        (out_root / "report.json").write_text(json.dumps(report, indent=2))
    summary = {}
    for variant in variants:
        rows = [f["variants"][variant]["metrics"] for f in report["folds"] if variant in f["variants"]]
        metrics = ("dice", "hd95_mm", "area_error_pct")
        summary[variant] = (
            {
                name: {
                    metric: _mean_sd([r[name][metric] for r in rows if r[name][metric] is not None])
                    for metric in metrics
                }
                for name in names
            }
            if rows
            else {}
        )
    report["summary_mean_sd"] = summary
    (out_root / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
