"""cairn check: verify the repository's structure, and optionally every byte of data."""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import CheckFailed, UsageError
from cairn.repository.check import Checker, Subset
from cairn.repository.repair import Repairer, RepairResult
from cairn.repository.repository import Repository


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("check", parents=[common], help="check the repository for damage")
    p.add_argument("--read-data", action="store_true", help="read and verify every pack")
    p.add_argument(
        "--repair",
        action="store_true",
        help="rebuild the index from the packs, salvage damaged packs, rebuild lost reflists",
    )
    p.add_argument(
        "--read-data-subset", metavar="n/m|x%", help="read packs in bucket n of m, or x%% of them"
    )
    p.set_defaults(run=run)


def parse_subset(text: str) -> Subset:
    if m := re.fullmatch(r"(\d+)/(\d+)", text):
        n, total = int(m[1]), int(m[2])
        if 1 <= n <= total:
            return Subset(bucket=n, buckets=total)
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)%", text):
        pct = float(m[1])
        if 0 < pct <= 100:
            return Subset(fraction=pct / 100)
    raise UsageError(f"--read-data-subset {text!r}: use n/m (1 <= n <= m) or a percentage like 5%")


def run(ctx: Context) -> int:
    subset = parse_subset(ctx.args.read_data_subset) if ctx.args.read_data_subset else None
    if ctx.args.repair and subset is not None:
        raise UsageError("--repair reads every pack or only suspicious ones; drop the subset")
    # Never through the local cache: check judges what storage holds (design 14.12).
    repo = ctx.open_repository(
        load_index=False, session="repair" if ctx.args.repair else None, cache=False
    )
    out = ctx.output
    repaired = _repair(ctx, repo) if ctx.args.repair else None
    out.text(f"checking repository {repo.repo_id.hex()} at {repo.backend.location()}")
    read_data = ctx.args.read_data and repaired is None  # repair has just read every pack
    report = Checker(repo).run(read_data=read_data, subset=subset)
    for warning in report.warnings:
        out.text(f"warning: {warning}")
    for error in report.errors:
        out.text(f"error: {error}")
    out.text(
        f"{report.snapshots} snapshots, {report.trees} trees, "
        f"{report.blobs} blobs in {report.packs} packs"
        + (
            f"; read {report.packs_read} packs ({report.bytes_read} bytes)"
            if report.packs_read
            else ""
        )
    )
    out.json(
        {
            "repair": None if repaired is None else asdict(repaired),
            "ok": not report.errors,
            "errors": report.errors,
            "warnings": report.warnings,
            "snapshots": report.snapshots,
            "packs": report.packs,
            "blobs": report.blobs,
            "packs_read": report.packs_read,
            "bytes_read": report.bytes_read,
        }
    )
    if report.errors:
        raise CheckFailed(f"check found {len(report.errors)} error(s)")
    out.text("no errors were found")
    return 0


def _repair(ctx: Context, repo: Repository) -> RepairResult:
    out = ctx.output
    out.text(f"repairing repository {repo.repo_id.hex()} at {repo.backend.location()}")
    r = Repairer(repo, log=lambda m: out.text(f"repair: {m}")).run(read_data=ctx.args.read_data)
    if not r.changed:
        out.text(f"repair: {r.packs} packs agree with the index; nothing to change")
        return r
    out.text(
        f"repair: new index of {r.blobs_indexed} blobs replaces {r.indexes_replaced} "
        f"index(es); {r.packs_added} packs indexed again, {r.packs_dropped} missing packs "
        f"dropped, {r.damaged_packs} damaged packs removed ({r.salvaged_blobs} blobs "
        f"salvaged, {r.lost_blobs} lost), {r.records_removed} damaged deletion records "
        f"removed, {r.reflists_rebuilt} reflists rebuilt"
    )
    out.text("repair: chunks still missing are stored again by the next backup of their files")
    return r
