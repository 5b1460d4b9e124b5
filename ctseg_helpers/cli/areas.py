"""``ctseg areas LABELS_DIR DICOM_DIR --labels NAME,... --out FILE.csv``: areas from existing label maps."""

from __future__ import annotations

import argparse
from pathlib import Path

from ctseg_helpers.cli.options import (
    add_command,
    add_labels,
    add_measure_options,
    add_overwrite,
    add_spacing_arguments,
    measure_options,
    print_mean_areas,
)


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "areas",
        run,
        help="ROI areas (mm2) per slice from existing label maps, e.g. a manual segmentation",
        description="Match the label maps in LABELS_DIR to the DICOM files in DICOM_DIR by name "
        "(IM_0001.png <-> IM_0001.dcm) and write the same area table as 'ctseg segment': "
        "one row per slice, one column per ROI in mm2, then mean and std rows (one pair per "
        "slice position for a cine series). After the areas, each ROI's mean, SD and median "
        "pixel value (<ROI>_mean_hu ... for CT, <ROI>_mean_signal ... for MR), its fat fraction "
        "on CT (<ROI>_fat_fraction, share of pixels in the fat window) and its perimeter and "
        "maximum diameter in mm. When the labelled slices form a 3D stack, ROI volumes (mL) go "
        "to FILE_volumes.csv.",
    )
    parser.add_argument("labels_dir", metavar="LABELS_DIR", help="folder of label maps (PNG, TIFF, NPY; values 0..N)")
    parser.add_argument("dicom_dir", metavar="DICOM_DIR", help="folder of the DICOM files the labels belong to")
    add_labels(parser, "ROI names, label 1 first (a first name 'background' is dropped)", required=True)
    parser.add_argument("--out", required=True, metavar="FILE.csv", help="CSV file to write")
    parser.add_argument("--series-uid", metavar="UID", help="use only this series of DICOM_DIR")
    add_spacing_arguments(parser)
    add_measure_options(parser)
    add_overwrite(
        parser,
        "replace FILE.csv and FILE_volumes.csv written by an earlier ctseg run (never a file "
        "ctseg did not write, or one changed since)",
    )


def run(args: argparse.Namespace) -> int:
    from ctseg_helpers.errors import CtsegSettingsError  # noqa: PLC0415
    from ctseg_helpers.io.label_names import check_label_names  # noqa: PLC0415
    from ctseg_helpers.io.written import check_replaceable, forget_written, record_written  # noqa: PLC0415
    from ctseg_helpers.measure.area import slice_rows  # noqa: PLC0415
    from ctseg_helpers.measure.intensity import FAT_FRACTION, FAT_WINDOW_HU  # noqa: PLC0415
    from ctseg_helpers.workflows.areas import areas_from_folders  # noqa: PLC0415
    from ctseg_helpers.workflows.segment_folder import write_table_csv  # noqa: PLC0415

    names = list(check_label_names(args.labels, setting="--labels"))
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise CtsegSettingsError(f"{out}: the area table is written as CSV; use a file name ending in .csv")
    volumes_path = out.with_name(out.stem + "_volumes.csv")
    measure = measure_options(args)
    fat_window = measure["fat_window_hu"]
    # both files, before any work: --overwrite replaces only what an earlier ctseg run wrote
    replacing = [
        path
        for path in (out, volumes_path)
        if check_replaceable(
            path, args.overwrite, what_to_do="choose another --out or pass --overwrite", instead="choose another --out"
        )
    ]
    table, volumes = areas_from_folders(
        args.labels_dir,
        args.dicom_dir,
        names,
        fov=args.fov,
        matrix_size=args.matrix_size,
        series_uid=args.series_uid,
        **measure,
    )
    write_table_csv(table, out, overwrite=out in replacing)
    record_written(out)
    rows = slice_rows(table)
    n_series = f" of {rows['series'].nunique()} series" if "series" in rows.columns else ""
    print(f"{len(rows)} labelled slice(s){n_series}: areas (mm2) -> {out}")
    print_mean_areas(table, names)
    if f"{names[0]}_{FAT_FRACTION}" in table.columns:
        low, high = fat_window or FAT_WINDOW_HU
        print(f"fat fraction: share of each ROI's pixels from {low:g} to {high:g} HU")
    if volumes is None and volumes_path in replacing:
        volumes_path.unlink()  # an earlier run's volumes; these slices form no 3D stack
        forget_written(volumes_path)
        print(f"no 3D stack: the earlier {volumes_path} was removed")
    if volumes is not None:
        write_table_csv(volumes, volumes_path, overwrite=volumes_path in replacing)
        record_written(volumes_path)
        if "series" in volumes.columns:
            print(f"volumes (mL) of {volumes['series'].nunique()} series -> {volumes_path}")
        else:
            print(
                f"volumes (mL) -> {volumes_path}: "
                + ", ".join(f"{name} {v:.2f}" for name, v in volumes["volume_ml"].items())
            )
    return 0
