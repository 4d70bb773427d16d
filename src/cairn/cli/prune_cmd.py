"""cairn prune: free the space of forgotten snapshots, without stopping backups (design 13.3)."""

from __future__ import annotations

import argparse
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.core.units import format_size, parse_size
from cairn.repository.prune import PruneOptions, Pruner, PruneResult
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
    for line in _explain(r, options.dry_run):
        out.text(line)
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


def _explain(r: PruneResult, dry_run: bool) -> list[str]:
    """What prune did in the user's words: what was freed now, what the next run frees, and
    why deleting takes two runs (design 13.3-13.4: a backup running now may still use what this
    run set aside, so it is deleted by a later run, once every such backup has ended)."""
    would = "would be " if dry_run else ""
    lines = [
        f"{'would free' if dry_run else 'freed'} now: {format_size(r.swept_bytes)} "
        f"({r.swept_packs} packs an earlier prune set aside"
        + (
            f", and the reference lists of {r.swept_reflists} forgotten snapshots"
            if r.swept_reflists
            else ""
        )
        + ")"
    ]
    if r.kept_packs:
        lines.append(
            f"kept {r.kept_packs} packs set aside earlier: a snapshot made since uses them"
        )
    if r.records_waiting:
        lines.append(
            f"{r.records_waiting} earlier prune(s) set aside data that a backup running then may "
            "still use; a later prune frees it once that backup has ended"
        )
    repacked = (
        f", {r.repacked_packs} of them partly used: what is still used in them was copied "
        "to new packs first"
        if r.repacked_packs
        else ""
    )
    lines.append(
        f"{would}set aside for the next prune: "
        f"{format_size(r.condemned_bytes + r.repacked_bytes)} in "
        f"{r.condemned_packs} packs{repacked}"
        + (
            f"; the reference lists of {r.condemned_reflists} forgotten snapshots"
            if r.condemned_reflists
            else ""
        )
    )
    lines.append(
        f"repository: {format_size(r.stored_bytes)} stored, {format_size(r.unused_bytes)} of it "
        "needed by no snapshot"
    )
    if not dry_run and r.condemned_packs + r.condemned_reflists:
        lines.append(
            "why two runs: a backup running now may still use what was set aside, so it is "
            "deleted by the next `cairn prune` once every backup running now has ended "
            "(backups never wait for prune)"
        )
    return lines
