"""cairn server removed purge: free what replication tokens moved aside (design 17.14).

A receiving server never deletes what a sending server's mirror removes: the object moves to
the copy's removed layout and stays on the area's quota. This command deletes what has been
aside longer than a delay (the mirror's default quarantine, 14 days, unless told), listing it
first and deleting only with `--yes`; each area's purge is in the audit log.
"""

from __future__ import annotations

import argparse
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.cli.serverdata import cli_actor, data_option, server_services
from cairn.core.clock import epoch_ms
from cairn.core.units import format_size, parse_interval

DEFAULT_AGE = "14d"
"""The mirror mode's default quarantine delay: what a sender already waited out, once more."""


def register(actions: Any, shared: argparse.ArgumentParser) -> None:
    """`cairn server removed purge`, under `cairn server`'s actions."""
    removed = actions.add_parser(
        "removed", parents=[shared], help="what replication tokens moved aside in copies"
    )
    sub = removed.add_subparsers(dest="removed_command", metavar="ACTION", required=True)
    purge = sub.add_parser(
        "purge", parents=[shared], help="delete what was moved aside longer ago than a delay"
    )
    data_option(purge)
    purge.add_argument("area", nargs="?", help="one area (a tenant; default: all)")
    purge.add_argument(
        "--older-than",
        default=DEFAULT_AGE,
        metavar="DURATION",
        help="only what was moved aside longer ago (%(default)s)",
    )
    purge.add_argument(
        "--yes", action="store_true", help="delete it (without it: list it, delete nothing)"
    )
    purge.set_defaults(run=run_purge)


def run_purge(ctx: Context) -> int:
    try:
        age_s = parse_interval(ctx.args.older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from exc
    services = server_services(ctx)
    before_ms = epoch_ms(ctx.clock) - int(age_s * 1000)
    if ctx.args.area is not None:
        services.tenants.get(ctx.args.area)  # an unknown area is an error, not nothing to do
    if ctx.args.yes:
        found = services.admin.purge_removed(cli_actor(), before_ms, ctx.args.area)
    else:
        found = services.tenants.moved.older_than(before_ms, ctx.args.area)
    rows = [
        {
            "area": m.tenant,
            "copy": f"{m.server}/{m.copy}",
            "object": f"{m.kind}/{m.name}",
            "size": m.size,
            "moved_ms": m.moved_ms,
        }
        for m in found
    ]
    for row in rows:
        ctx.output.text(f"  {row['area']} {row['copy']} {row['object']}")
    total = format_size(sum(m.size for m in found))
    if ctx.args.yes:
        ctx.output.text(f"{len(found)} object(s) moved aside deleted ({total})")
    else:
        ctx.output.text(
            f"{len(found)} object(s) moved aside before {ctx.args.older_than} ago ({total}); "
            "nothing deleted: run again with --yes to delete them"
        )
    ctx.output.json({"objects": rows, "deleted": len(found) if ctx.args.yes else 0})
    return 0
