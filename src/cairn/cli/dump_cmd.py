"""cairn dump: write one file of a snapshot to standard output, or a folder as a tar or zip."""

from __future__ import annotations

import argparse
import sys
from typing import Any, BinaryIO

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.cli.filters import add_filter_options, filter_from
from cairn.cli.snapshotpaths import snapshot_path
from cairn.cli.treepath import lookup
from cairn.format.tree import Node
from cairn.repository.repository import Repository
from cairn.restore.damage import DamagedFiles
from cairn.restore.dumper import dump_file, dump_tar, dump_zip
from cairn.restore.fswriter import TargetError
from cairn.snapshot.select import find_snapshot


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "dump",
        parents=[common],
        help="print one file of a snapshot to stdout, or a folder as a tar (or zip) archive",
    )
    p.add_argument("snapshot", help="snapshot ID or `latest`")
    p.add_argument("path", help="absolute path of the file or folder inside the snapshot")
    p.add_argument(
        "--archive",
        choices=("tar", "zip"),
        default="tar",
        help="the archive format for a folder (default tar)",
    )
    add_filter_options(p)
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    repo = ctx.open_repository()
    snap = find_snapshot(repo, ctx.args.snapshot, filter_from(ctx.args), ctx.skip_damaged)
    path = snapshot_path(ctx.args.path)
    node = lookup(repo, snap.body.tree, ctx.args.path)
    if node is None:
        node = Node(name=b"", type="dir", mode=0o40755, subtree=snap.body.tree)
    if node.type not in ("file", "dir"):
        raise UsageError(f"{ctx.args.path} is a {node.type}, not a file or folder")
    out = sys.stdout.buffer
    try:
        _dump(repo, node, path, out, ctx.args.archive)
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise TargetError(f"cannot write standard output: {exc.strerror or exc}") from exc
    return 0


def _dump(repo: Repository, node: Node, path: bytes, out: BinaryIO, archive: str) -> None:
    if node.type == "file":
        dump_file(repo, path, node, out)
        return
    writer = dump_zip if archive == "zip" else dump_tar
    damaged = writer(repo, node, path.rstrip(b"/") or b"/", out)
    if damaged:
        out.flush()
        raise DamagedFiles(damaged)
