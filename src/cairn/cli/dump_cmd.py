"""cairn dump: write one file of a snapshot to standard output."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.cli.filters import add_filter_options, filter_from
from cairn.format.pack import BlobKind
from cairn.format.tree import Node
from cairn.repository.repository import Repository
from cairn.snapshot.select import find_snapshot
from cairn.snapshot.walk import load_tree


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("dump", parents=[common], help="print one file of a snapshot to stdout")
    p.add_argument("snapshot", help="snapshot ID or `latest`")
    p.add_argument("path", help="absolute path of the file inside the snapshot")
    add_filter_options(p)
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    repo = ctx.open_repository()
    snap = find_snapshot(repo, ctx.args.snapshot, filter_from(ctx.args), ctx.skip_damaged)
    node = lookup(repo, snap.body.tree, os.fsencode(ctx.args.path))
    if node.type != "file":
        raise UsageError(f"{ctx.args.path} is a {node.type}, not a file")
    out = sys.stdout.buffer
    for chunk_id in node.content:
        out.write(repo.fetch_blob(BlobKind.DATA, chunk_id))
    out.flush()
    return 0


def lookup(repo: Repository, tree_id: bytes, path: bytes) -> Node:
    """The node at an absolute path inside a snapshot."""
    parts = [p for p in path.split(b"/") if p]
    if not parts:
        raise UsageError("give the absolute path of a file inside the snapshot")
    tree: Any = tree_id
    node: Node | None = None
    for i, part in enumerate(parts):
        if tree is None:
            break
        found = [n for n in load_tree(repo, tree) if n.name == part]
        if not found:
            break
        node = found[0]
        tree = node.subtree
        if i == len(parts) - 1:
            return node
    raise UsageError(f"{os.fsdecode(path)} is not in the snapshot")
