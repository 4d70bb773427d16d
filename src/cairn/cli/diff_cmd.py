"""cairn diff: what changed between two snapshots."""

from __future__ import annotations

import argparse
from typing import Any

from cairn.cli.context import Context
from cairn.cli.output import show_path
from cairn.snapshot.select import find_snapshot
from cairn.snapshot.walk import diff_trees


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("diff", parents=[common], help="show differences between two snapshots")
    p.add_argument("first", metavar="SNAPSHOT-A")
    p.add_argument("second", metavar="SNAPSHOT-B")
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    repo = ctx.open_repository()
    a = find_snapshot(repo, ctx.args.first, skip=ctx.skip_damaged)
    b = find_snapshot(repo, ctx.args.second, skip=ctx.skip_damaged)
    ctx.output.text(f"comparing snapshot {a.name.short()} to {b.name.short()}:")
    changes = []
    counts = {"+": 0, "-": 0, "M": 0}
    for sign, path, node in diff_trees(repo, a.body.tree, b.body.tree):
        shown = show_path(path) + ("/" if node.type == "dir" else "")
        ctx.output.text(f"{sign}    {shown}")
        counts[sign] += 1
        changes.append(
            {"change": {"+": "added", "-": "removed", "M": "modified"}[sign], "path": shown}
        )
    ctx.output.text(f"\nadded: {counts['+']}  removed: {counts['-']}  modified: {counts['M']}")
    ctx.output.json({"first": a.name.hex, "second": b.name.hex, "changes": changes})
    return 0
