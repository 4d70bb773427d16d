"""The snapshot filter options shared by several commands."""

from __future__ import annotations

import argparse

from cairn.snapshot.select import SnapshotFilter


def add_filter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host", action="append", default=[], help="only snapshots of this host (may repeat)"
    )
    p.add_argument(
        "--tag", action="append", default=[], help="only snapshots with these tags: a,b means both"
    )
    p.add_argument(
        "--path",
        dest="filter_paths",
        action="append",
        default=[],
        help="only snapshots of exactly these paths",
    )


def filter_from(args: argparse.Namespace) -> SnapshotFilter:
    return SnapshotFilter(hosts=args.host, tags=args.tag, paths=args.filter_paths)
