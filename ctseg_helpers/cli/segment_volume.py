"""``ctseg segment-volume MODEL IN.h5 OUT.h5``: segment a large 3D volume along one or more axes."""

from __future__ import annotations

import argparse
import logging

from ctseg_helpers.cli.options import (
    add_command,
    add_compression,
    add_model,
    add_overwrite,
    add_settings_options,
    compression,
    settings_from_args,
)
from ctseg_helpers.segment.segmenter import SegmentSettings


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "segment-volume",
        run,
        help="segment a 3D HDF5 volume slab by slab along one or several axes (resumable)",
        description="Segment the 2D slices of a volume along each requested axis, a slab of slices "
        "at a time under a memory cap, and write uint8 labels to OUT.h5 (dataset "
        "'labels'). Several axes are combined by a majority vote (ties go to the tied "
        "class with the highest summed probability, then the lowest class) or by the "
        "mean probability. Re-running the same command resumes an interrupted run; an "
        "existing OUT.h5 from other settings is never overwritten without --overwrite, and "
        "--overwrite replaces only an OUT.h5 that ctseg wrote (never a file ctseg did not "
        "write, or a finished one changed since). --nifti also writes the labels as NIfTI for "
        "3D Slicer or ITK-SNAP.",
    )
    add_model(parser, "trained ctseg model (.keras)")
    parser.add_argument("input", metavar="IN.h5", help="volume to segment (HDF5, see 'ctseg convert')")
    parser.add_argument("out", metavar="OUT.h5", help="HDF5 file for the labels")
    parser.add_argument("--dataset", help="input dataset when IN.h5 holds several 3D datasets")
    parser.add_argument(
        "--axes",
        default="0",
        metavar="A,B,C",
        help="axes to slice along, e.g. 0 or 0,1,2 (default 0: the stored slices)",
    )
    parser.add_argument(
        "--max-gb",
        type=float,
        default=1.0,
        metavar="X",
        help="memory cap in GB for one slab's working set: the slab's arrays and the "
        "segmenter's (default 1); TensorFlow and the model come on top",
    )
    parser.add_argument(
        "--crop",
        metavar="Z0:Z1,Y0:Y1,X0:X1",
        help="segment only this box (empty ends: whole axis); labels keep the input's shape",
    )
    parser.add_argument(
        "--rotate-deg",
        type=float,
        default=0.0,
        metavar="A",
        help="rotate about the Z axis by A degrees before slicing (default 0)",
    )
    parser.add_argument(
        "--combine", choices=("vote", "mean"), default="vote", help="how several axes are combined (default vote)"
    )
    add_settings_options(parser, SegmentSettings)
    add_compression(parser, "compression of the output datasets (default gzip)")
    parser.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="run on Dask: 'local' or 'local:N' (a LocalCluster of N processes) or a "
        "scheduler address such as tcp://host:8786 (workers must see MODEL and IN.h5)",
    )
    parser.add_argument(
        "--dask-plane-chunk",
        type=int,
        metavar="PX",
        help="with Dask: split slice planes into PX x PX blocks (default: whole planes)",
    )
    parser.add_argument(
        "--dask-halo",
        type=int,
        default=0,
        metavar="PX",
        help="with --dask-plane-chunk: context pixels around each block (default 0)",
    )
    parser.add_argument(
        "--nifti",
        metavar="OUT.nii.gz",
        help="also write the final labels as a NIfTI label volume (uint8), placed on the scan when IN.h5 "
        "records its position and orientation (affine_ras, from 'ctseg convert' of DICOM or NIfTI); with "
        "only spacing_mm it gets a diagonal affine (a warning says so); refused when IN.h5 has neither. "
        "Written whole from memory: the labels must fit --max-gb",
    )
    parser.add_argument("--no-disk-check", action="store_true", help="skip the free disk space check")
    add_overwrite(parser, "replace an OUT.h5 that ctseg wrote instead of resuming it")


def run(args: argparse.Namespace) -> int:
    from ctseg_helpers.errors import CtsegSettingsError  # noqa: PLC0415
    from ctseg_helpers.io.written import file_sha256  # noqa: PLC0415
    from ctseg_helpers.model.settings import read_settings  # noqa: PLC0415
    from ctseg_helpers.workflows.volume import parse_axes, parse_crop, segment_volume  # noqa: PLC0415

    axes = parse_axes(args.axes)
    crop = parse_crop(args.crop)
    read_settings(args.model)  # a clear error for a missing or foreign model before any work
    if args.dask_plane_chunk is not None and args.dask_scheduler is None:
        raise CtsegSettingsError("--dask-plane-chunk applies to Dask runs only; add --dask-scheduler")
    options = settings_from_args(SegmentSettings, args)
    common = dict(
        dataset=args.dataset,
        axes=axes,
        max_gb=args.max_gb,
        crop=crop,
        rotate_deg=args.rotate_deg,
        combine=args.combine,
        overwrite=args.overwrite,
        model_id=file_sha256(args.model),
        compression=compression(args),
        check_disk=not args.no_disk_check,
        nifti_path=args.nifti,
    )
    if args.dask_scheduler:
        from ctseg_helpers.workflows.dask_backend import SegmenterSpec, connect  # noqa: PLC0415

        spec = SegmenterSpec(args.model, **options)
        client, cluster = connect(args.dask_scheduler)
        try:
            plane = (args.dask_plane_chunk,) * 2 if args.dask_plane_chunk else None
            result = segment_volume(
                spec,
                args.input,
                args.out,
                dask_client=client,
                dask_halo_px=args.dask_halo,
                dask_plane_chunks=plane,
                **common,
            )
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        from ctseg_helpers.segment.segmenter import Segmenter  # noqa: PLC0415 - imports TensorFlow

        segmenter = Segmenter.from_model_file(args.model, **options)
        result = segment_volume(segmenter, args.input, args.out, **common)
    if result.already_complete:
        print(f"{result.out_path} is complete already (same settings); nothing to do")
    else:
        logging.getLogger(__name__).debug("result: %s", result)
        print(
            f"wrote {result.out_path} [labels]: shape {'x'.join(map(str, result.shape))}, axes "
            f"{','.join(map(str, axes))}, {result.slabs_done} slab(s) segmented"
            + (f", {result.slices_skipped} slice(s) already done" if result.slices_skipped else "")
            + f" in {result.seconds:.1f} s"
        )
    if result.nifti_path is not None:
        where = (
            "on the scan's position and orientation"
            if result.nifti_placed
            else "voxel size only: position and orientation unknown"
        )
        print(f"wrote {result.nifti_path} [NIfTI labels, {where}]")
    return 0
