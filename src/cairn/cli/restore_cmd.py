"""cairn restore: write a snapshot, or part of it, into a folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cairn.backends.base import Capabilities
from cairn.cli.context import Context
from cairn.cli.errors import EXIT_PARTIAL
from cairn.cli.filters import add_filter_options, filter_from
from cairn.cli.output import show_path
from cairn.cli.snapshotpaths import snapshot_patterns
from cairn.cli.treepath import folder_tree, split_ref
from cairn.core.patterns import PatternSet
from cairn.core.units import format_size
from cairn.restore.damage import DamagedFile, DamagedFiles, describe
from cairn.restore.restorer import RestoreOptions, Restorer, RestoreResult
from cairn.snapshot.select import find_snapshot


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("restore", parents=[common], help="restore a snapshot into a folder")
    p.add_argument(
        "snapshot",
        help="snapshot ID or `latest`; `ID:/sub/folder` restores that folder's contents",
    )
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
        help="replace existing entries that differ from the snapshot (symlinks are replaced, "
        "never followed; a folder in the way of a file is removed)",
    )
    add_filter_options(p)
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    args = ctx.args
    includes = PatternSet.compile(snapshot_patterns(args.include)) if args.include else None
    excludes = PatternSet.compile(snapshot_patterns(args.exclude)) if args.exclude else None
    ref, folder = split_ref(args.snapshot)
    repo = ctx.open_repository()
    snap = find_snapshot(repo, ref, filter_from(args), ctx.skip_damaged)
    tree = snap.body.tree if folder is None else folder_tree(repo, snap.body.tree, folder)
    options = RestoreOptions(
        Path(args.target),
        includes,
        excludes,
        overwrite=args.overwrite,
        workers=read_workers(repo.backend.capabilities),
    )
    progress = ctx.progress("restoring")
    try:
        result = Restorer(repo, progress).run(tree, options)
    finally:
        progress.finish()
    _report(ctx, snap.name.short(), snap.name.hex, result)
    if result.damaged:
        raise DamagedFiles(result.damaged)
    return EXIT_PARTIAL if result.skipped else 0


def _report(ctx: Context, short: str, full: str, result: RestoreResult) -> None:
    out = ctx.output
    args = ctx.args
    for path, message in result.skipped:
        out.text(f"warning: {show_path(path)}: {message}")
    out.text(
        f"restored snapshot {short} into {args.target}: {result.files} files "
        f"({result.files_verified} already present and verified), {result.dirs} folders inside "
        f"the target, {format_size(result.size)} of file data, "
        f"{format_size(result.bytes_written)} written to disk (holes left as holes)"
    )
    if result.damaged:
        out.text(f"{len(result.damaged)} damaged in the repository, not restored:")
        for damage in result.damaged:
            out.text(f"  {describe(damage)}")
    out.json(
        {
            "snapshot": full,
            "target": args.target,
            "files": result.files,
            "files_verified": result.files_verified,
            "dirs": result.dirs,
            "size": result.size,
            "bytes_written": result.bytes_written,
            "skipped": [{"path": show_path(p), "message": m} for p, m in result.skipped],
            "damaged": [damage_json(d) for d in result.damaged],
        }
    )


def damage_json(damage: DamagedFile) -> dict[str, Any]:
    """A damaged file for --json: its path, size, lost ranges [start, end) and where the
    intact parts are."""
    return {
        "path": show_path(damage.path),
        "type": "dir" if damage.folder else "file",
        "size": damage.size,
        "lost_ranges": [list(r) for r in damage.ranges],
        "lost_bytes": damage.lost,
        "saved_as": None if damage.saved_as is None else show_path(damage.saved_as),
    }


def read_workers(capabilities: Capabilities) -> int:
    """Threads reading packs: two for a local folder (the work is decrypting, on the cores);
    one per connection for a store across a network, whose reads wait on its answers (S3's 8:
    a restore from SeaweedFS took 1.5x restic's with two)."""
    return 2 if capabilities.local else max(2, capabilities.connections)
