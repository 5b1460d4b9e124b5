"""``ctseg inspect DIR [--json]``: what a DICOM folder holds and how ctseg would stack it."""

from __future__ import annotations

import argparse
import json

from ctseg_helpers.cli.options import add_command


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "inspect",
        run,
        help="list the DICOM series in a folder and how ctseg orders them",
        description="List the DICOM series in a folder (headers only): size, pixel spacing, "
        "positions along the slice normal, files in stacking order, and the files "
        "that are skipped with the reason.",
    )
    parser.add_argument("folder", metavar="DIR", help="folder holding DICOM files")
    parser.add_argument(
        "--json", action="store_true", help='print one JSON object {"folder", "series": [...], "skipped": [...]}'
    )


def run(args: argparse.Namespace) -> int:
    from ctseg_helpers.io.dicom import scan_dicom_folder  # noqa: PLC0415

    scan = scan_dicom_folder(args.folder)
    scan.require_images()
    if args.json:
        print(json.dumps(scan.to_dict(), indent=2))
        return 0
    print(scan.to_text())
    return 0
