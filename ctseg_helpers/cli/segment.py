"""``ctseg segment MODEL DICOM_DIR --out DIR``: segment the DICOM series of a folder and measure ROI areas."""

from __future__ import annotations

import argparse

from ctseg_helpers.cli.options import (
    add_command,
    add_labels,
    add_measure_options,
    add_model,
    add_overwrite,
    add_settings_options,
    add_spacing_arguments,
    measure_options,
    print_mean_areas,
    settings_from_args,
)
from ctseg_helpers.io.probabilities import PROBABILITY_FORMATS
from ctseg_helpers.segment.segmenter import SegmentSettings


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "segment",
        run,
        help="segment the DICOM series of a folder with a trained model; write label maps, previews and areas",
        description="Segment every slice of every DICOM series in DICOM_DIR (each series its own stack; "
        "--series-uid picks one) with a ctseg model and write, in a new folder under --out: "
        "label maps (PNG, values 0..N, named like the DICOM files), JPG previews, an animated "
        "GIF per series, areas.csv (ROI area per slice in mm2 with mean and std; with several "
        "series, each slice's series first) and volumes.csv (mL) for series that form a 3D "
        "stack; with --nifti a NIfTI label volume and with --dicom-seg a DICOM Segmentation "
        "object per series, for 3D Slicer, ITK-SNAP or a PACS; with --probabilities the class "
        "probabilities (probabilities.h5, or NIfTI per ROI). areas.csv also scores each slice's uncertainty, and "
        "the slices most worth checking are listed at the end.",
    )
    add_model(
        parser,
        "trained model (.keras file saved by ctseg), an ensemble file (NAME.ensemble.json written "
        "by 'ctseg train --folds') or a folder of fold models",
    )
    parser.add_argument(
        "dicom_dir",
        metavar="DICOM_DIR",
        help="folder of DICOM files; every series in it is segmented ('ctseg inspect' lists them)",
    )
    parser.add_argument(
        "--out", default="predictions", metavar="DIR", help="parent folder of the run folders (default: predictions)"
    )
    add_labels(
        parser,
        "ROI names, label 1 first; a first name 'background' is dropped (default: the names stored with the model)",
    )
    parser.add_argument(
        "--series-uid", metavar="UID", help="segment only this series of DICOM_DIR (default: every series)"
    )
    add_spacing_arguments(parser)
    add_settings_options(parser, SegmentSettings)
    parser.add_argument("--name", metavar="NAME", help="run folder name (default: the DICOM folder's name)")
    add_overwrite(
        parser,
        "write to --out/NAME (no time stamp), replacing exactly the files an earlier ctseg run "
        "recorded in its run.json there (a folder ctseg never wrote is refused)",
    )
    parser.add_argument("--no-previews", action="store_true", help="do not write the JPG previews")
    parser.add_argument("--no-animation", action="store_true", help="do not write the animated GIF")
    parser.add_argument(
        "--include-patient-id",
        action="store_true",
        help="record the DICOM PatientID in run.json (left out by default); needed for --dicom-seg",
    )
    parser.add_argument(
        "--nifti",
        action="store_true",
        help="also write each series' label maps as a NIfTI volume on the scan's grid "
        "(segmentation.nii.gz; a cine series as one 4D volume)",
    )
    parser.add_argument(
        "--dicom-seg",
        action="store_true",
        help="also write each series' label maps as a DICOM Segmentation object referencing the "
        "images (segmentation.dcm; one per phase of a cine series); it carries the patient's "
        "name and ID as the scan does, so it needs --include-patient-id",
    )
    parser.add_argument(
        "--probabilities",
        nargs="?",
        const=PROBABILITY_FORMATS[0],
        default=None,
        choices=PROBABILITY_FORMATS,
        metavar="FORMAT",
        help="also write every series' class probabilities, 8 bits (steps of 1/255), gzip-compressed: "
        "probabilities.h5 (FORMAT hdf5, the default), which 'ctseg evaluate --probabilities' reads for "
        "ROC AUC; or 'nifti': one probabilities_<ROI>.nii.gz per ROI on the scan's grid, for a viewer",
    )
    add_measure_options(parser)
    parser.add_argument(
        "--check",
        type=int,
        default=5,
        metavar="N",
        help="list the N slices most worth checking (uncertainty, abrupt area changes); 0: none (default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from ctseg_helpers.errors import CtsegSettingsError  # noqa: PLC0415
    from ctseg_helpers.workflows.segment_folder import run_segmentation  # noqa: PLC0415

    if args.check < 0:
        raise CtsegSettingsError(f"--check must be 0 (no list) or a number of slices, got {args.check}")

    result = run_segmentation(
        args.model,
        args.dicom_dir,
        args.out,
        labels_list=args.labels,
        fov=args.fov,
        matrix_size=args.matrix_size,
        series_uid=args.series_uid,
        overwrite=args.overwrite,
        run_name=args.name,
        previews=not args.no_previews,
        animation=not args.no_animation,
        include_patient_id=args.include_patient_id,
        nifti=args.nifti,
        dicom_seg=args.dicom_seg,
        probabilities=args.probabilities or False,
        **measure_options(args),
        progress=True,
        **settings_from_args(SegmentSettings, args),
    )
    print(result.summary())
    several = len(result.series) > 1
    if several:
        print(f"segmented {len(result.series)} series of {args.dicom_dir}")
    print_mean_areas(result.areas, list(result.label_names), " (all series)" if several else "")
    for out in result.series:
        if out.volumes is not None:
            which = f", {out.title}" if several else ""
            print(
                f"volume (mL){which}: " + ", ".join(f"{name} {v:.2f}" for name, v in out.volumes["volume_ml"].items())
            )
    check = result.slices_to_check(args.check) if args.check else None
    if check is not None and len(check):
        print(f"check these slices first ({len(check)}):")
        for row in check.itertuples():
            series = f"series {row.series} " if several else ""
            print(f"  {series}{row.file}: {row.reasons}")
    return 0
