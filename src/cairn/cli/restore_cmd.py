"""cairn restore: write a snapshot, or part of it, into a folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import EXIT_PARTIAL
from cairn.cli.filters import add_filter_options, filter_from
from cairn.cli.output import show_path
from cairn.core.patterns import PatternSet
from cairn.core.units import format_size
from cairn.restore.restorer import RestoreOptions, Restorer
from cairn.snapshot.select import find_snapshot


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("restore", parents=[common], help="restore a snapshot into a folder")
    p.add_argument("snapshot", help="snapshot ID or `latest`")
    p.add_argument(
        "-t", "--target", required=True, help="folder to restore into (created if missing)"
    )
    p.add_argument(
        "-i",
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="restore only paths matching PATTERN (may repeat)",
    )
    p.add_argument(
        "-e",
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="do not restore paths matching PATTERN (may repeat)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files that differ from the snapshot",
    )
    add_filter_options(p)
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    args = ctx.args
    includes = PatternSet.compile(args.include) if args.include else None
    excludes = PatternSet.compile(args.exclude) if args.exclude else None
    repo = ctx.open_repository()
    snap = find_snapshot(repo, args.snapshot, filter_from(args), ctx.skip_damaged)
    options = RestoreOptions(Path(args.target), includes, excludes, overwrite=args.overwrite)
    progress = ctx.progress("restoring")
    try:
        result = Restorer(repo, progress).run(snap.body.tree, options)
    finally:
        progress.finish()
    out = ctx.output
    for path, message in result.skipped:
        out.text(f"warning: {show_path(path)}: {message}")
    out.text(
        f"restored snapshot {snap.name.short()} into {args.target}: {result.files} files "
        f"({result.files_verified} already present and verified), {result.dirs} folders, "
        f"{format_size(result.bytes_written)} written"
    )
    out.json(
        {
            "snapshot": snap.name.hex,
            "target": args.target,
            "files": result.files,
            "files_verified": result.files_verified,
            "dirs": result.dirs,
            "bytes_written": result.bytes_written,
            "skipped": [{"path": show_path(p), "message": m} for p, m in result.skipped],
        }
    )
    return EXIT_PARTIAL if result.skipped else 0
