"""``ctseg segment MODEL DICOM_DIR --out DIR``: segment a DICOM series and measure ROI areas."""

from __future__ import annotations

import argparse


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty name in {text!r}: give names separated by commas, e.g. LV,myocardium")
    return names


def _pair(kind):
    def parse(text: str):
        try:
            values = [kind(v) for v in text.lower().replace("x", ",").split(",")]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: give one number or ROWS,COLS") from exc
        if len(values) not in (1, 2):
            raise argparse.ArgumentTypeError(f"{text!r}: give one number or ROWS,COLS")
        return values[0] if len(values) == 1 else tuple(values)

    return parse


def add_spacing_arguments(parser: argparse.ArgumentParser) -> None:
    """``--fov`` and ``--matrix-size``, the fallback when DICOM files have no PixelSpacing."""
    parser.add_argument("--fov", type=_pair(float), metavar="MM",
                        help="field of view in mm (or ROWS,COLS), used when a file has no PixelSpacing")
    parser.add_argument("--matrix-size", type=_pair(int), metavar="PX",
                        help="image size in pixels that --fov spans (default: the image size)")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment a DICOM series with a trained model; write label maps, previews and areas",
        description="Segment every slice of the DICOM series in DICOM_DIR with a ctseg model and "
                    "write, in a new folder under --out: label maps (PNG, values 0..N, named like "
                    "the DICOM files), JPG previews, an animated GIF, areas.csv (ROI area per slice "
                    "in mm2 with mean and std) and volumes.csv (mL) when the slices form a 3D stack.",
    )
    parser.add_argument("model", metavar="MODEL", help="trained model (.keras file saved by ctseg), an ensemble file (NAME.ensemble.json "
                        "written by 'ctseg train --folds') or a folder of fold models")
    parser.add_argument("dicom_dir", metavar="DICOM_DIR", help="folder holding the DICOM files of one series")
    parser.add_argument("--out", default="predictions", metavar="DIR",
                        help="parent folder of the run folders (default: predictions)")
    parser.add_argument("--labels", type=_names, metavar="NAME,NAME,...",
                        help="ROI names, label 1 first (default: the names stored with the model)")
    parser.add_argument("--series-uid", metavar="UID", help="series to segment when the folder holds several")
    add_spacing_arguments(parser)
    parser.add_argument("--mode", choices=("tile", "resize"),
                        help="tile: overlapping patches at native resolution; resize: whole slices "
                             "resized to the input (default: as the model was trained)")
    parser.add_argument("--overlap", type=float, default=0.25, help="patch overlap fraction in tile mode (default 0.25)")
    parser.add_argument("--blend", choices=("gaussian", "hann", "average"), default="gaussian",
                        help="weighting of overlapping patches (default gaussian)")
    parser.add_argument("--batch-size", type=int, default=8, help="patches per prediction batch (default 8)")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: average over flips (4x slower)")
    parser.add_argument("--name", metavar="NAME", help="run folder name (default: the DICOM folder's name)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write to --out/NAME (no time stamp), replacing exactly the files an earlier ctseg "
                             "run recorded in its run.json there (a folder ctseg never wrote is refused)")
    parser.add_argument("--no-previews", action="store_true", help="do not write the JPG previews")
    parser.add_argument("--no-animation", action="store_true", help="do not write the animated GIF")
    parser.add_argument("--include-patient-id", action="store_true",
                        help="record the DICOM PatientID in run.json (left out by default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctseg_helpers.segment.outputs import run_segmentation  # noqa: PLC0415

    result = run_segmentation(
        args.model, args.dicom_dir, args.out, labels_list=args.labels, fov=args.fov, matrix_size=args.matrix_size,
        series_uid=args.series_uid, mode=args.mode, overlap=args.overlap, blend=args.blend,
        batch_size=args.batch_size, tta=args.tta, overwrite=args.overwrite, run_name=args.name,
        previews=not args.no_previews, animation=not args.no_animation,
        include_patient_id=args.include_patient_id, progress=True,
    )
    print(result.summary())
    means = result.areas.loc["mean", list(result.label_names)]
    print("mean area per slice (mm2): " + ", ".join(f"{name} {value:.1f}" for name, value in means.items()))
    if result.volumes is not None:
        print("volume (mL): " + ", ".join(f"{name} {v:.2f}" for name, v in result.volumes["volume_ml"].items()))
    return 0
