"""cairn prune: free the space of forgotten snapshots, without stopping backups (design 13.3)."""

from __future__ import annotations

import argparse
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.core.units import format_size, parse_size
from cairn.repository.prune import PruneOptions, Pruner
from cairn.repository.repository import Repository


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "prune", parents=[common], help="delete data no snapshot needs; backups may run meanwhile"
    )
    p.add_argument(
        "--max-unused",
        default="5%",
        metavar="PCT",
        help="repack partly used packs while more than this share is unused (default 5%%)",
    )
    p.add_argument("--max-repack-size", metavar="SIZE", help="repack at most this much (e.g. 2G)")
    p.add_argument(
        "--grace",
        type=float,
        default=0.0,
        metavar="HOURS",
        help="sweep what an earlier prune condemned only when at least this old",
    )
    p.add_argument("--dry-run", "-n", action="store_true", help="show what prune would do")
    p.set_defaults(run=run)


def _options(args: argparse.Namespace) -> PruneOptions:
    text = args.max_unused.strip().rstrip("%")
    try:
        max_unused = float(text) / 100
    except ValueError:
        raise UsageError(f"--max-unused {args.max_unused!r}: use a percentage like 5%") from None
    if not 0 <= max_unused <= 1:
        raise UsageError("--max-unused must be between 0% and 100%")
    repack = parse_size(args.max_repack_size) if args.max_repack_size else None
    if args.grace < 0:
        raise UsageError("--grace must not be negative")
    return PruneOptions(
        max_unused=max_unused,
        max_repack_bytes=repack,
        grace_ms=int(args.grace * 3600 * 1000),
        dry_run=args.dry_run,
    )


def run(ctx: Context) -> int:
    options = _options(ctx.args)
    repo = ctx.open_repository(load_index=False, session=None if options.dry_run else "prune")
    return prune(ctx, repo, options)


def prune(ctx: Context, repo: Repository, options: PruneOptions | None = None) -> int:
    ctx.output.json(prune_result(ctx, repo, options))
    return 0


def prune_result(
    ctx: Context, repo: Repository, options: PruneOptions | None = None
) -> dict[str, Any]:
    """Prune, tell a human what happened, and return the JSON result (forget --prune puts it in
    its own)."""
    options = options or PruneOptions()
    out = ctx.output
    pruner = Pruner(
        repo.backend,
        ctx.clock,
        repo.session,
        repo.params.pack_size,
        opener=repo.open_lock,
        log=out.text,
    )
    r = pruner.run(options)
    for warning in r.warnings:
        out.text(f"warning: {warning}")
    verb = "would " if options.dry_run else ""
    out.text(
        f"swept: {r.swept_packs} packs ({format_size(r.swept_bytes)}), "
        f"{r.swept_reflists} reflists; kept {r.kept_packs} condemned packs still needed"
    )
    if r.records_waiting:
        out.text(
            f"{r.records_waiting} earlier deletion record(s) wait for sessions that were running"
        )
    out.text(
        f"{verb}condemn {r.condemned_packs} packs ({format_size(r.condemned_bytes)} unused, "
        f"{r.repacked_packs} repacked: {format_size(r.repacked_bytes)}), "
        f"{r.condemned_reflists} reflists; {format_size(r.unused_bytes)} of "
        f"{format_size(r.stored_bytes)} were unused"
    )
    if not options.dry_run and r.condemned_packs + r.condemned_reflists:
        out.text("condemned data is deleted by the next prune, once running sessions have ended")
    return {
        "dry_run": options.dry_run,
        "swept_packs": r.swept_packs,
        "swept_bytes": r.swept_bytes,
        "swept_reflists": r.swept_reflists,
        "kept_packs": r.kept_packs,
        "records_waiting": r.records_waiting,
        "condemned_packs": r.condemned_packs,
        "condemned_bytes": r.condemned_bytes,
        "condemned_reflists": r.condemned_reflists,
        "repacked_packs": r.repacked_packs,
        "repacked_bytes": r.repacked_bytes,
        "new_packs": r.new_packs,
        "stored_bytes": r.stored_bytes,
        "unused_bytes": r.unused_bytes,
        "warnings": r.warnings,
    }
