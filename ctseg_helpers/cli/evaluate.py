"""``ctseg evaluate``: compare predicted label maps with manual ones, slice by slice.

Writes ``metrics.csv`` (one row per slice and ROI), ``summary.csv`` (mean, std, median ...
per metric and ROI), ``agreement.csv`` (Bland–Altman, correlation, paired t-test of the areas),
``volume_metrics.csv`` when the slices form a volume, and ``bland_altman.png``; with
``--probabilities RUN/probabilities.h5`` also ``roc_auc.csv`` (ROC AUC and calibration error per
series and ROI, and pooled) and ``calibration.csv`` (reliability bins).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ctseg_helpers.cli.options import add_command, add_overwrite

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = add_command(
        subparsers,
        "evaluate",
        run,
        help="metrics of predicted vs manual label maps (Dice, HD95, ...), area agreement",
        description=(
            "Compare predicted label maps with manual ones. Label files (PNG/NPY) are paired by file "
            "stem with each other and with the DICOM files, whose pixel spacing gives distances in mm "
            "and areas in mm²."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "pred_labels_dir",
        type=Path,
        metavar="PRED_LABELS_DIR",
        help="folder of predicted label maps, e.g. predictions/<run>/labels",
    )
    parser.add_argument("truth_labels_dir", type=Path, metavar="TRUTH_LABELS_DIR", help="folder of manual label maps")
    parser.add_argument(
        "--dicoms",
        type=Path,
        required=True,
        metavar="DICOM_DIR",
        help="folder of the DICOM series the labels belong to (pixel spacing)",
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="NAMES",
        help="ROI names, label 1 first, comma separated; a first name 'background' is dropped "
        "(default: ROI 1, ROI 2, ...)",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--tolerance-mm", type=float, default=2.0, help="tolerance of the surface Dice in mm")
    parser.add_argument(
        "--probabilities",
        type=Path,
        default=None,
        metavar="H5",
        help="probabilities.h5 of the run (ctseg segment --probabilities): adds ROC AUC per ROI (one vs rest, "
        "per series and pooled) and calibration (roc_auc.csv, calibration.csv)",
    )
    add_overwrite(
        parser,
        "replace the files an earlier ctseg evaluation wrote in DIR (never a file ctseg did not "
        "write, or one changed since)",
    )


def run(args) -> int:
    """Evaluate, write the files and print a short summary; returns 0."""
    from ctseg_helpers.io.label_names import check_label_names  # noqa: PLC0415
    from ctseg_helpers.io.written import check_outside_inputs  # noqa: PLC0415
    from ctseg_helpers.workflows.evaluate import evaluate_folders, parse_label_names, write_evaluation  # noqa: PLC0415

    # its PNG and CSVs in a folder it reads would be taken for label maps (or DICOM files) next time
    check_outside_inputs(
        args.out, {"predicted label": args.pred_labels_dir, "manual label": args.truth_labels_dir, "DICOM": args.dicoms}
    )
    names = parse_label_names(args.labels)
    if names is not None:
        names = check_label_names(names, setting="--labels")
    evaluation = evaluate_folders(
        args.pred_labels_dir,
        args.truth_labels_dir,
        args.dicoms,
        label_names=names,
        tolerance_mm=args.tolerance_mm,
        progress=True,
        probabilities=args.probabilities,
    )
    written = write_evaluation(evaluation, args.out, overwrite=args.overwrite)
    n_slices = len(evaluation.metrics.drop_duplicates(["series_uid", "file"]))
    n_series = evaluation.metrics["series_uid"].nunique()
    skipped = f"; {len(evaluation.skipped)} series left out (see the warning above)" if evaluation.skipped else ""
    print(
        f"evaluated {n_slices} slice(s), {len(evaluation.label_names)} ROI(s)"
        + (f", {n_series} series" if n_series > 1 else "")
        + skipped
    )
    summary = evaluation.summary.set_index(["roi", "metric"])
    for roi in evaluation.label_names:
        if (roi, "dice") not in summary.index:
            continue
        dice = summary.loc[(roi, "dice")]
        hd95 = summary.loc[(roi, "hd95")]
        print(
            f"  {roi}: Dice {dice['mean']:.3f} ± {dice['std']:.3f} (median {dice['median']:.3f}, "
            f"n={int(dice['n'])}), HD95 {hd95['mean']:.2f} mm (median {hd95['median']:.2f} mm)"
        )
    if evaluation.volume_metrics is not None:
        for _, row in evaluation.volume_metrics.iterrows():
            series = f"series ...{str(row['series_uid'])[-12:]}"
            print(
                f"  {row['roi']} (volume of {series}): Dice {row['dice']:.3f}, HD95 {row['hd95']:.2f} mm, "
                f"volume {row['pred_volume_mm3'] / 1000:.2f} ml predicted vs "
                f"{row['truth_volume_mm3'] / 1000:.2f} ml manual"
            )
    if evaluation.roc_auc is not None:
        pooled = evaluation.roc_auc[evaluation.roc_auc["series_uid"] == "all"]
        n_series = len(evaluation.roc_auc) // max(len(pooled), 1) - 1
        over = f"pooled over {n_series} series" if n_series > 1 else "all pixels"
        for row in pooled.itertuples():
            print(
                f"  {row.roi}: ROC AUC {row.roc_auc:.4f} ({over}, {row.n_slices} slice(s)), "
                f"calibration error (ECE) {row.ece:.4f}"
            )
    for path in written:
        print(f"wrote {path}")
    return 0
