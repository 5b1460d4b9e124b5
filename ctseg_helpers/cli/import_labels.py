"""``ctseg import-labels LABELS.nii.gz DICOM_DIR OUT_DIR``: a corrected NIfTI label volume into a training folder.

The job is :func:`ctseg_helpers.workflows.import_labels.import_labels`.
"""

from __future__ import annotations

import argparse

from ctseg_helpers.cli.options import add_command, add_overwrite, positive_int

_DESCRIPTION = """\
Cut a corrected NIfTI label volume (ctseg segment --nifti's segmentation.nii.gz, corrected in
3D Slicer or ITK-SNAP and saved as .nii/.nii.gz) back into one label map per DICOM file of the
series it was drawn on, by position in space (the volume may store its axes in any order or
direction, but must lie on the scan's grid), and write the folder ctseg finetune and ctseg
train read: OUT_DIR/dicoms/<stem>.dcm (copies of the DICOM files) and OUT_DIR/labels/<stem>.png
(8-bit label maps, values 0..N). All slices by default; --slices-with-labels-only writes only
those holding an ROI. A 4D volume (positions x phases) goes with a cine series.
"""


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "import-labels",
        run,
        help="a corrected NIfTI label volume into a training folder (dicoms/ + labels/)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("label_path", metavar="LABELS.nii.gz", help="the corrected NIfTI label volume")
    parser.add_argument("dicom_dir", metavar="DICOM_DIR", help="folder of the DICOM series the volume was drawn on")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="training folder to write dicoms/ and labels/ into")
    parser.add_argument("--series-uid", metavar="UID", help="the series of DICOM_DIR, when it holds several")
    parser.add_argument(
        "--slices-with-labels-only",
        "--labelled-only",
        dest="slices_with_labels_only",
        action="store_true",
        help="write only the slices holding an ROI (default: every slice; slices without ROI teach the "
        "model where there is none, but only put in slices you checked)",
    )
    parser.add_argument(
        "--num-labels",
        type=positive_int,
        metavar="N",
        help="number of ROIs (the model's): refuse label values above N (default: up to 255)",
    )
    parser.add_argument(
        "--prefix",
        default="",
        metavar="TEXT",
        help="put TEXT before every file stem (p02_IM_0001), to add several scans to one OUT_DIR",
    )
    add_overwrite(
        parser,
        "replace the files an earlier import wrote for this series, and remove those of slices not written "
        "now (never a file ctseg did not write, or one changed since)",
    )


def run(args: argparse.Namespace) -> int:
    from ctseg_helpers.workflows.import_labels import import_labels  # noqa: PLC0415

    result = import_labels(
        args.label_path,
        args.dicom_dir,
        args.out_dir,
        series_uid=args.series_uid,
        slices_with_labels_only=args.slices_with_labels_only,
        num_labels=args.num_labels,
        prefix=args.prefix,
        overwrite=args.overwrite,
    )
    print(result.summary())
    return 0
