"""cairn stats: logical size of snapshots versus what the repository stores."""

from __future__ import annotations

import argparse
from typing import Any

from cairn.backends.base import ObjectKind
from cairn.cli.context import Context
from cairn.cli.filters import add_filter_options, filter_from
from cairn.core.ids import ChunkId
from cairn.core.units import format_size
from cairn.snapshot.select import find_snapshot, load_snapshots
from cairn.snapshot.walk import walk


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("stats", parents=[common], help="sizes: logical versus stored")
    p.add_argument("snapshots", nargs="*", metavar="SNAPSHOT", help="default: all snapshots")
    add_filter_options(p)
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    repo = ctx.open_repository()
    filt = filter_from(ctx.args)
    snaps = [
        find_snapshot(repo, s, filt, ctx.skip_damaged) for s in ctx.args.snapshots
    ] or load_snapshots(repo, filt, ctx.skip_damaged)
    logical = files = 0
    chunks: set[ChunkId] = set()
    for snap in snaps:
        for _path, node in walk(repo, snap.body.tree):
            if node.type == "file":
                files += 1
                logical += node.size
                chunks.update(node.content)
    referenced = sum(loc.length for c in chunks if (loc := repo.index.get(c)) is not None)
    stored = sum(i.size for kind in ObjectKind for i in repo.backend.list(kind))
    doc = {
        "snapshots": len(snaps),
        "files": files,
        "logical_bytes": logical,
        "unique_chunks": len(chunks),
        "referenced_stored_bytes": referenced,
        "repository_bytes": stored,
        "dedup_ratio": round(logical / referenced, 2) if referenced else None,
    }
    out = ctx.output
    out.text(f"snapshots: {len(snaps)}   files: {files}")
    out.text(f"logical size (what a restore writes): {format_size(logical)}")
    out.text(f"stored for them (deduplicated, compressed, encrypted): {format_size(referenced)}")
    out.text(f"whole repository on storage: {format_size(stored)}")
    if referenced:
        out.text(f"ratio: {logical / referenced:.2f}x")
    out.json(doc)
    return 0
