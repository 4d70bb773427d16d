"""cairn snapshots: list snapshots."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from cairn.cli.context import Context
from cairn.cli.filters import add_filter_options, filter_from
from cairn.repository.repository import StoredSnapshot
from cairn.snapshot.select import read_snapshots


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("snapshots", parents=[common], help="list snapshots")
    add_filter_options(p)
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    snaps, unreadable = read_snapshots(ctx.open_repository(load_index=False), filter_from(ctx.args))
    ctx.output.table(
        ["ID", "Time", "Host", "Tags", "Paths"],
        [
            [s.name.short(), _time(s), s.body.host, ",".join(s.body.tags), ", ".join(s.body.paths)]
            for s in snaps
        ],
    )
    ctx.output.text(f"{len(snaps)} snapshot(s)")
    ctx.output.json([snapshot_json(s) for s in snaps])
    for damaged in unreadable:  # the damage is confined to these: the others are listed
        ctx.skip_damaged(damaged, "not listed")
    return 0


def _time(s: StoredSnapshot) -> str:
    return datetime.fromisoformat(s.body.time).strftime("%Y-%m-%d %H:%M:%S")


def snapshot_json(s: StoredSnapshot) -> dict[str, Any]:
    b = s.body
    return {
        "id": s.name.hex,
        "short_id": s.name.short(),
        "time": b.time,
        "host": b.host,
        "username": b.user,
        "paths": b.paths,
        "tags": b.tags,
        "tree": b.tree.hex(),
        "parent": b.parent.hex if b.parent else None,
        "summary": b.summary,
    }
