"""cairn copy: copy snapshots from another repository into this one (cairn.snapshot.copy).

The destination is the usual repository (-r / CAIRN_REPOSITORY, its passphrase as always); the
source is `--from-repo` (or CAIRN_FROM_REPOSITORY) with its passphrase from
`--from-password-file`, `--from-password-command`, CAIRN_FROM_PASSWORD_FILE,
CAIRN_FROM_PASSWORD_COMMAND, CAIRN_FROM_PASSWORD, or a prompt (restic's names). A source on a
server takes its token from `--from-token-file` or CAIRN_FROM_TOKEN_FILE / CAIRN_FROM_TOKEN.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import replace
from typing import Any

from cairn.backends.location import TokenFileUnreadable, remote_credentials
from cairn.cli.context import Context, read_secret_file, run_password_command
from cairn.cli.errors import CopyRefused, NoPassphrase, UsageError
from cairn.cli.filters import add_filter_options, filter_from
from cairn.core.units import format_size
from cairn.repository.repository import Repository, StoredSnapshot
from cairn.snapshot.copy import CopyStats, SnapshotCopier, already_copied
from cairn.snapshot.select import find_snapshot, read_snapshots


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "copy",
        parents=[common],
        help="copy snapshots from another repository (--from-repo) into this one",
    )
    p.add_argument(
        "snapshots", nargs="*", metavar="ID", help="snapshots to copy (default: all that match)"
    )
    p.add_argument("--from-repo", help="the source repository (or CAIRN_FROM_REPOSITORY)")
    p.add_argument("--from-password-file", help="the source's passphrase, first line of a file")
    p.add_argument("--from-password-command", help="a command printing the source's passphrase")
    p.add_argument("--from-token-file", help="a server token for a cairns:// source")
    add_filter_options(p)
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    source = _open_source(ctx)
    try:
        return _copy(ctx, source)
    finally:
        source.close()


def _copy(ctx: Context, source: Repository) -> int:
    dest = ctx.open_repository(load_index=False, session="copy")
    if dest.repo_id == source.repo_id:
        raise CopyRefused("the source and the destination are the same repository")
    chosen = _chosen(ctx, source)
    present, _unreadable = read_snapshots(dest)
    done = already_copied(chosen, present)
    todo = [s for s in chosen if s.name not in done]
    for snap in chosen:
        if snap.name in done:
            ctx.output.text(f"snapshot {snap.name.short()} was copied before: skipped")
    if todo:
        ctx.load_index(dest)
        ctx.load_index(source)
        dest.start_writing()
    copier = SnapshotCopier(source, dest)
    copied = []
    for snap in todo:
        before = replace(copier.stats)
        new = copier.copy(snap)
        ctx.output.text(f"snapshot {snap.name.short()} of {snap.body.time} copied as {new.short()}")
        if ctx.verbosity:
            _detail(ctx, before, copier.stats)
        copied.append({"source": snap.name.hex, "copy": new.hex})
    _report(ctx, copier, len(done))
    stats = copier.stats
    ctx.output.json(
        {
            "copied": copied,
            "skipped": sorted(n.hex for n in done),
            "blobs_read": stats.blobs_read,
            "bytes_read": stats.bytes_read,
            "bytes_added": stats.bytes_added,
        }
    )
    return 0


def _chosen(ctx: Context, source: Repository) -> list[StoredSnapshot]:
    filt = filter_from(ctx.args)
    if ctx.args.snapshots:
        found = [find_snapshot(source, ref, filt) for ref in ctx.args.snapshots]
        return list({s.name: s for s in found}.values())
    snaps, unreadable = read_snapshots(source, filt)
    if unreadable:
        ctx.output.text(f"warning: {len(unreadable)} source snapshot(s) cannot be read: not copied")
    return snaps


def _detail(ctx: Context, before: CopyStats, after: CopyStats) -> None:
    """-v: what one snapshot's copy read and added."""
    ctx.output.text(
        f"  {after.trees - before.trees} trees, {after.blobs_read - before.blobs_read} blobs "
        f"read ({format_size(after.bytes_read - before.bytes_read)}), "
        f"{format_size(after.bytes_added - before.bytes_added)} added"
    )


def _report(ctx: Context, copier: SnapshotCopier, skipped: int) -> None:
    s = copier.stats
    ctx.output.text(
        f"copied {s.snapshots} snapshot(s), skipped {skipped} copied before; read "
        f"{s.blobs_read} blobs ({format_size(s.bytes_read)}), added "
        f"{format_size(s.bytes_added)} to the destination"
    )


def _open_source(ctx: Context) -> Repository:
    location = ctx.args.from_repo or os.environ.get("CAIRN_FROM_REPOSITORY")
    if not location:
        raise UsageError("no source repository: use --from-repo or set CAIRN_FROM_REPOSITORY")
    backend = ctx.backend_factory(location, remote=_source_credentials(ctx))
    return Repository.open(backend, _source_passphrase(ctx), ctx.clock)


def _source_credentials(ctx: Context) -> Any:
    environ = dict(os.environ)
    for name in ("CAIRN_TOKEN", "CAIRN_TOKEN_FILE"):
        environ.pop(name, None)
        from_value = os.environ.get(name.replace("CAIRN_", "CAIRN_FROM_"))
        if from_value is not None:
            environ[name] = from_value
    try:
        return remote_credentials(ctx.args.from_token_file, environ)
    except TokenFileUnreadable as exc:
        raise UsageError(str(exc)) from exc


def _source_passphrase(ctx: Context) -> bytes:
    file = ctx.args.from_password_file or os.environ.get("CAIRN_FROM_PASSWORD_FILE")
    command = ctx.args.from_password_command or os.environ.get("CAIRN_FROM_PASSWORD_COMMAND")
    if file:
        return read_secret_file(file, "source repository's password file")
    if command:
        return run_password_command(command)
    env = os.environ.get("CAIRN_FROM_PASSWORD")
    if env is not None:
        return env.encode()
    if not sys.stdin.isatty():
        raise NoPassphrase(
            "no passphrase for the source repository: set CAIRN_FROM_PASSWORD, "
            "or use --from-password-file or --from-password-command"
        )
    return getpass.getpass("passphrase for the source repository: ").encode()
