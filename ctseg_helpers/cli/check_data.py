"""``ctseg check-data DIR --num-labels K [--json]``: check training data before training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ctseg_helpers.cli.options import add_command


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "check-data",
        run,
        help="check training images and labels (pairs, label values, sizes)",
        description="Read every image/label pair of the training folder and report pairs, label "
        "values, labels never seen, out-of-range values, missing partners and size "
        "mismatches. Exit status 1 when a problem would stop training.",
    )
    parser.add_argument("folder", metavar="DIR", help="main data folder (holding train/) or the train folder itself")
    parser.add_argument(
        "--num-labels", type=int, required=True, metavar="K", help="number of ROIs: label values 1..K, 0 is background"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ctseg_helpers.prepare.check import check_data, resolve_split_dir  # noqa: PLC0415

    given = Path(args.folder)
    split_dir = resolve_split_dir(given)
    used = "the folder given" if split_dir == given else f"the '{split_dir.name}' folder inside {given}"
    report = check_data(split_dir, args.num_labels, progress=not args.json)
    if args.json:
        data = report.to_dict()
        data["folder_given"] = str(given)
        print(json.dumps(data, indent=2))
    else:
        print(f"checking {split_dir} ({used})")
        print(report.to_text())
    return 0 if report.ok else 1
