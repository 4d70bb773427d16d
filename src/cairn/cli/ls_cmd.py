"""cairn ls: list the files of a snapshot."""

from __future__ import annotations

import argparse
from typing import Any

from cairn.cli.context import Context
from cairn.cli.filters import add_filter_options, filter_from
from cairn.cli.nodes import node_json, node_line
from cairn.cli.snapshotpaths import SnapshotPathError, snapshot_path
from cairn.repository.repository import Repository, StoredSnapshot
from cairn.snapshot.select import find_snapshot
from cairn.snapshot.walk import find_node, walk


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ls", parents=[common], help="list files in a snapshot")
    p.add_argument("snapshot", help="snapshot ID or `latest`")
    p.add_argument("dirs", nargs="*", metavar="DIR", help="only list below these absolute paths")
    p.add_argument("-l", "--long", action="store_true", help="show mode, owner, size and time")
    add_filter_options(p)
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    repo = ctx.open_repository()
    snap = find_snapshot(repo, ctx.args.snapshot, filter_from(ctx.args), ctx.skip_damaged)
    prefixes = [snapshot_path(d).rstrip(b"/") for d in ctx.args.dirs]
    _require_present(repo, snap, prefixes, ctx.args.dirs)
    ctx.output.text(
        f"snapshot {snap.name.short()} of {', '.join(snap.body.paths)} at {snap.body.time}:"
    )
    entries = []
    for path, node in walk(repo, snap.body.tree, descend=lambda p, _n: _wanted(p, prefixes, True)):
        if _wanted(path, prefixes, False):
            ctx.output.text(node_line(path, node, ctx.args.long))
            entries.append(node_json(path, node))
    ctx.output.json({"snapshot": snap.name.hex, "nodes": entries})
    return 0


def _require_present(
    repo: Repository, snap: StoredSnapshot, prefixes: list[bytes], given: list[str]
) -> None:
    """A path the snapshot does not hold is an error, not an empty listing (a typo, or a path
    of another snapshot, must not look like an empty folder)."""
    for prefix, text in zip(prefixes, given, strict=True):
        if prefix and find_node(repo, snap.body.tree, prefix) is None:
            raise SnapshotPathError(
                f"{text} is not in snapshot {snap.name.short()} "
                f"(its paths: {', '.join(snap.body.paths)})"
            )


def _wanted(path: bytes, prefixes: list[bytes], descending: bool) -> bool:
    if not prefixes:
        return True
    for prefix in prefixes:
        if path == prefix or path.startswith(prefix + b"/"):
            return True
        if descending and prefix.startswith(path + b"/"):
            return True
    return False
