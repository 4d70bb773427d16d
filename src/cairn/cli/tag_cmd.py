"""cairn tag: add, remove or set the tags of existing snapshots (cairn.snapshot.tags)."""

from __future__ import annotations

import argparse
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.cli.filters import add_filter_options, filter_from
from cairn.repository.repository import StoredSnapshot
from cairn.snapshot.select import find_snapshot, read_snapshots
from cairn.snapshot.tags import TagChange, retag, retagged_body


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tag",
        parents=[common],
        help="add, remove or set tags of snapshots (each becomes a new snapshot ID)",
    )
    p.add_argument(
        "snapshots", nargs="*", metavar="ID", help="snapshots to change (default: all that match)"
    )
    p.add_argument("--add", action="append", default=[], metavar="TAG", help="add a tag")
    p.add_argument("--remove", action="append", default=[], metavar="TAG", help="remove a tag")
    p.add_argument(
        "--set",
        action="append",
        dest="set_tags",
        metavar="TAG",
        help="replace all tags (`--set ''` removes every tag)",
    )
    add_filter_options(p)
    p.set_defaults(run=run)


def _change(args: argparse.Namespace) -> TagChange:
    def split(values: list[str]) -> list[str]:
        return [t for v in values for t in v.split(",") if t]

    if args.set_tags is not None and (args.add or args.remove):
        raise UsageError("--set replaces all tags: give it alone, or use --add / --remove")
    if args.set_tags is None and not args.add and not args.remove:
        raise UsageError("say what to change: --add TAG, --remove TAG or --set TAG")
    set_to = split(args.set_tags) if args.set_tags is not None else None
    return TagChange(add=split(args.add), remove=split(args.remove), set_to=set_to)


def run(ctx: Context) -> int:
    change = _change(ctx.args)
    repo = ctx.open_repository(load_index=False, session="tag")
    every, unreadable = read_snapshots(repo)
    chosen = _chosen(ctx, every, unreadable)
    changed = []
    for snap in chosen:
        body = retagged_body(snap, change)
        if body is None:
            ctx.output.text(f"snapshot {snap.name.short()}: tags already {_tags(snap.body.tags)}")
            continue
        new = retag(repo, snap, body, every)
        ctx.output.text(f"snapshot {snap.name.short()} is now {new.short()}: {_tags(body.tags)}")
        changed.append({"old": snap.name.hex, "new": new.hex, "tags": body.tags})
    ctx.output.text(f"{len(changed)} of {len(chosen)} snapshot(s) changed")
    ctx.output.json({"changed": changed, "unchanged": len(chosen) - len(changed)})
    return 0


def _chosen(
    ctx: Context, every: list[StoredSnapshot], unreadable: list[Any]
) -> list[StoredSnapshot]:
    """The snapshots named (ID or latest) or, with none named, every one the filters match."""
    filt = filter_from(ctx.args)
    repo = ctx.open_repository(load_index=False)
    if ctx.args.snapshots:
        found = [find_snapshot(repo, ref, filt) for ref in ctx.args.snapshots]
        return list({s.name: s for s in found}.values())
    if unreadable:
        ctx.output.text(
            f"warning: {len(unreadable)} snapshot(s) cannot be read and are left as they are"
        )
    return [s for s in every if filt.matches(s)]


def _tags(tags: list[str]) -> str:
    return ",".join(tags) if tags else "(none)"
