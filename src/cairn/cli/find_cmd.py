"""cairn find: find files by name pattern across snapshots."""

from __future__ import annotations

import argparse
import fnmatch
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.cli.filters import add_filter_options, filter_from
from cairn.cli.nodes import node_json, node_line
from cairn.core.pathnames import unescape_path
from cairn.snapshot.select import find_snapshot, load_snapshots
from cairn.snapshot.walk import walk


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("find", parents=[common], help="find files by name across snapshots")
    p.add_argument(
        "patterns", nargs="+", metavar="PATTERN", help="glob on the file name, e.g. '*.odt'"
    )
    p.add_argument(
        "-s", "--snapshot", action="append", default=[], help="search only these snapshots"
    )
    p.add_argument("-l", "--long", action="store_true", help="show mode, owner, size and time")
    add_filter_options(p)
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    repo = ctx.open_repository()
    filt = filter_from(ctx.args)
    if any("\0" in p or not p for p in ctx.args.patterns):
        raise UsageError("a find pattern must be non-empty and contain no NUL")
    patterns = [unescape_path(p) for p in ctx.args.patterns]  # as ls prints names
    snaps = [
        find_snapshot(repo, s, filt, ctx.skip_damaged) for s in ctx.args.snapshot
    ] or load_snapshots(repo, filt, ctx.skip_damaged)
    results = []
    for snap in snaps:
        hits = [
            (p, n)
            for p, n in walk(repo, snap.body.tree)
            if any(fnmatch.fnmatchcase(n.name, pat) for pat in patterns)
        ]
        if hits:
            ctx.output.text(f"snapshot {snap.name.short()} at {snap.body.time}:")
        for path, node in hits:
            ctx.output.text("  " + node_line(path, node, ctx.args.long))
        results.append({"snapshot": snap.name.hex, "matches": [node_json(p, n) for p, n in hits]})
    ctx.output.json(results)
    return 0
