"""cairn snapshots: list snapshots."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from cairn.cli.context import Context
from cairn.cli.filters import add_filter_options, filter_from
from cairn.core.units import format_size
from cairn.repository.repository import StoredSnapshot
from cairn.snapshot.forget import group_key
from cairn.snapshot.select import read_snapshots


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("snapshots", parents=[common], help="list snapshots")
    p.add_argument(
        "--latest",
        type=_positive,
        metavar="N",
        help="only the N newest snapshots of each host and set of paths (as restic)",
    )
    add_filter_options(p)
    p.set_defaults(run=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def latest_per_group(snaps: list[StoredSnapshot], n: int) -> list[StoredSnapshot]:
    """The `n` newest of each group (host and paths, restic's default grouping), in the order
    `snaps` had (oldest first)."""
    groups: dict[tuple[str, ...], list[StoredSnapshot]] = {}
    for snap in snaps:
        groups.setdefault(group_key(snap, ("host", "paths")), []).append(snap)
    kept = {s.name for members in groups.values() for s in members[-n:]}
    return [s for s in snaps if s.name in kept]


def run(ctx: Context) -> int:
    snaps, unreadable = read_snapshots(ctx.open_repository(load_index=False), filter_from(ctx.args))
    if ctx.args.latest:
        snaps = latest_per_group(snaps, ctx.args.latest)
    verbose = ctx.verbosity > 0
    ctx.output.table(
        ["ID", "Time", "Host", "Tags", "Paths"] + (_VERBOSE_HEADERS if verbose else []),
        [_row(s) + (_verbose_row(s) if verbose else []) for s in snaps],
    )
    ctx.output.text(f"{len(snaps)} snapshot(s)")
    ctx.output.json([snapshot_json(s) for s in snaps])
    for damaged in unreadable:  # the damage is confined to these: the others are listed
        ctx.skip_damaged(damaged, "not listed")
    return 0


_VERBOSE_HEADERS = ["Files", "Size", "Added", "Original"]
"""What `snapshots -v` adds: the backup's summary, and the snapshot a tag or copy came from."""


def _row(s: StoredSnapshot) -> list[str]:
    b = s.body
    return [
        s.name.short(),
        _time(s),
        b.host,
        ",".join(b.tags),
        ", ".join(b.paths),
    ]


def _verbose_row(s: StoredSnapshot) -> list[str]:
    summary = s.body.summary
    return [
        str(summary.get("files", "")),
        format_size(summary["bytes"]) if "bytes" in summary else "",
        format_size(summary["bytes_added"]) if "bytes_added" in summary else "",
        s.body.original.short() if s.body.original else "",
    ]


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
        "original": b.original.hex if b.original else None,
        "summary": b.summary,
    }
