"""cairn forget: remove snapshots by ID or by a retention policy (design 13.2)."""

from __future__ import annotations

import argparse
from typing import Any

from cairn.cli import prune_cmd
from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.cli.filters import add_filter_options, filter_from
from cairn.snapshot.forget import GROUP_FIELDS, plan_forget, remove_snapshots
from cairn.snapshot.retention import Policy, parse_retention_span
from cairn.snapshot.select import Skip, Unreadable, find_snapshot_names, load_snapshots

PERIODS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
_KEEP_HELP = {"last": "keep the N newest snapshots"}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "forget",
        parents=[common],
        help="remove snapshots by ID or by a retention policy (space is freed by prune)",
    )
    p.add_argument("snapshots", nargs="*", metavar="SNAPSHOT", help="snapshot IDs to remove")
    for period in PERIODS:
        p.add_argument(
            f"--keep-{period}",
            type=int,
            default=0,
            metavar="N",
            help=_KEEP_HELP.get(period, f"keep the newest of each of the last N {period} periods")
            + " (-1: all)",
        )
    p.add_argument(
        "--keep-within", metavar="DURATION", help="keep all within e.g. 7d, 1y2m of the newest"
    )
    p.add_argument(
        "--keep-tag",
        action="append",
        default=[],
        metavar="TAG",
        help="keep snapshots with this tag",
    )
    p.add_argument(
        "--group-by",
        default="host,paths",
        help="group snapshots by these of host, paths, tags (default host,paths; '' for one group)",
    )
    p.add_argument("--dry-run", "-n", action="store_true", help="show what would be removed")
    p.add_argument("--prune", action="store_true", help="run prune afterwards")
    add_filter_options(p)
    p.set_defaults(run=run)


def _policy(args: argparse.Namespace) -> Policy:
    for period in PERIODS:
        if getattr(args, f"keep_{period}") < -1:
            raise UsageError(f"--keep-{period} must be -1 (all) or a count")
    return Policy(
        last=args.keep_last,
        hourly=args.keep_hourly,
        daily=args.keep_daily,
        weekly=args.keep_weekly,
        monthly=args.keep_monthly,
        yearly=args.keep_yearly,
        within=parse_retention_span(args.keep_within) if args.keep_within else None,
        tags=tuple(args.keep_tag),
    )


def _group_by(text: str) -> tuple[str, ...]:
    fields = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in fields if f not in GROUP_FIELDS]
    if unknown:
        raise UsageError(f"--group-by: unknown field {unknown[0]!r} (use host, paths, tags)")
    return fields


def _keep_damaged(ctx: Context) -> Skip:
    """A policy never removes a snapshot it cannot read (its time is unknown); say so."""

    def skip(snapshot: Unreadable) -> None:
        ctx.skip_damaged(
            snapshot, f"kept (forget it by ID: `cairn forget {snapshot.name.short()}`)"
        )

    return skip


def run(ctx: Context) -> int:
    args = ctx.args
    repo = ctx.open_repository(load_index=False, session=None if args.dry_run else "forget")
    out = ctx.output
    if args.snapshots:
        names = [name.hex for name in find_snapshot_names(repo, args.snapshots)]
        groups_json: list[dict[str, Any]] = []
    else:
        snaps = load_snapshots(repo, filter_from(args), _keep_damaged(ctx))
        groups = plan_forget(snaps, _policy(args), _group_by(args.group_by))
        names = []
        groups_json = []
        for group in groups:
            label = ", ".join(f"{k} {v}" for k, v in group.key.items()) or "all snapshots"
            out.text(f"{label}:")
            for d in group.decisions:
                c = d.candidate
                verdict = f"keep ({', '.join(d.reasons)})" if d.keep else "remove"
                out.text(f"  {c.key[:8]}  {c.time:%Y-%m-%d %H:%M:%S}  {verdict}")
                if not d.keep:
                    names.append(c.key)
            groups_json.append(
                {
                    "group": group.key,
                    "keep": [
                        {"id": d.candidate.key, "reasons": d.reasons}
                        for d in group.decisions
                        if d.keep
                    ],
                    "remove": [d.candidate.key for d in group.decisions if not d.keep],
                }
            )
    if args.dry_run:
        out.text(f"would remove {len(names)} snapshot(s) (dry run: nothing changed)")
        removed = 0
    else:
        removed = remove_snapshots(repo, names)
        out.text(f"removed {removed} snapshot(s)")
    result: dict[str, Any] = {
        "dry_run": args.dry_run,
        "removed": removed,
        "to_remove": names,
        "groups": groups_json,
        "prune": None,
    }
    try:
        if args.prune and not args.dry_run:
            result["prune"] = prune_cmd.prune_result(ctx, repo)
    finally:  # one document: a failed prune's error joins what forget did
        out.json(result)
    return 0
