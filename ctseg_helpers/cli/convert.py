"""``ctseg convert SRC OUT.h5``: copy a TIFF series/stack, DICOM folder or NIfTI file into chunked HDF5."""

from __future__ import annotations

import argparse

from ctseg_helpers.cli.options import add_command, add_compression, add_overwrite, compression


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "convert",
        run,
        help="convert a TIFF series, DICOM folder or NIfTI file to a chunked HDF5 volume",
        description="Copy a volume slab by slab (never whole) into a chunked, optionally compressed "
        "HDF5 dataset that 'ctseg segment-volume' and DataFile read along any axis. "
        "SRC is a folder of 2D TIFF files (one per slice), a multi-page TIFF, a folder "
        "of DICOM files of one series, or a .nii/.nii.gz file. The voxel size (spacing_mm) "
        "and, for DICOM and NIfTI sources, the position and orientation (affine_ras) are "
        "recorded as attributes, for 'ctseg segment-volume --nifti'.",
    )
    parser.add_argument("src", metavar="SRC", help="TIFF folder or file, DICOM folder, or NIfTI file")
    parser.add_argument("out", metavar="OUT.h5", help="HDF5 file to create")
    chunks = parser.add_mutually_exclusive_group()
    chunks.add_argument(
        "--chunk-mb", type=float, metavar="X", help="target chunk size in MiB, near-cubic chunks (default 1)"
    )
    chunks.add_argument("--chunk-shape", metavar="Z,Y,X", help="explicit chunk shape, e.g. 64,128,128")
    add_compression(parser, "HDF5 compression (default gzip; lzf is faster, none fastest)")
    parser.add_argument("--dataset", default="data", help="dataset name in OUT.h5 (default: data)")
    parser.add_argument("--series-uid", help="DICOM series to convert when the folder holds several")
    parser.add_argument(
        "--max-gb",
        type=float,
        default=0.5,
        metavar="X",
        help="memory for the slices copied at a time, in GB (default 0.5)",
    )
    add_overwrite(
        parser,
        "replace OUT.h5 written by an earlier ctseg run (never a file ctseg did not write, or one changed since)",
    )


def run(args: argparse.Namespace) -> int:
    from ctseg_helpers.io.convert import convert_to_hdf5  # noqa: PLC0415
    from ctseg_helpers.io.datafile import parse_chunk_shape  # noqa: PLC0415

    chunk_shape = parse_chunk_shape(args.chunk_shape) if args.chunk_shape else None
    result = convert_to_hdf5(
        args.src,
        args.out,
        dataset=args.dataset,
        chunk_shape=chunk_shape,
        chunk_mb=args.chunk_mb,
        compression=compression(args),
        overwrite=args.overwrite,
        series_uid=args.series_uid,
        max_gb=args.max_gb,
    )
    spacing = (
        "" if result.spacing_mm is None else ", spacing " + " x ".join(f"{s:g}" for s in result.spacing_mm) + " mm"
    )
    print(
        f"wrote {result.out_path} [{result.dataset}]: {result.source_kind} volume of shape "
        f"{'x'.join(map(str, result.shape))} {result.dtype}{spacing}, chunks "
        f"{'x'.join(map(str, result.chunk_shape))}"
        + (", position and orientation recorded (affine_ras)" if result.affine_ras is not None else "")
    )
    return 0
