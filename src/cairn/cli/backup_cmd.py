"""cairn backup: back up folders and files into a new snapshot."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path
from typing import Any

from cairn.backup.archiver import Archiver, BackupOptions, BackupResult
from cairn.backup.filescache import FilesCache
from cairn.cli.context import Context
from cairn.cli.errors import EXIT_PARTIAL, UsageError
from cairn.cli.output import show_path
from cairn.core.patterns import PatternSet
from cairn.core.units import format_size
from cairn.repository.remoteindex import remote_index
from cairn.repository.repository import Repository
from cairn.repository.unindexed import UnindexedPacks
from cairn.snapshot.select import SnapshotFilter, read_snapshots
from cairn.source.walker import Walker


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("backup", parents=[common], help="back up files and folders")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "-e",
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="exclude paths matching PATTERN (may repeat)",
    )
    p.add_argument(
        "--exclude-file",
        action="append",
        default=[],
        metavar="FILE",
        help="read exclude patterns from FILE, one per line",
    )
    p.add_argument(
        "--exclude-if-present",
        action="append",
        default=[],
        metavar="NAME",
        help="exclude folders that contain a file called NAME",
    )
    p.add_argument(
        "--exclude-caches", action="store_true", help="exclude folders with a CACHEDIR.TAG"
    )
    p.add_argument(
        "-x", "--one-file-system", action="store_true", help="stay on the file systems of PATHs"
    )
    p.add_argument("--tag", action="append", default=[], help="tag the snapshot (may repeat)")
    p.add_argument("--host", default=None, help="host name to record (default: this machine's)")
    p.add_argument(
        "--limit-upload",
        default=None,
        metavar="RATE",
        help="upload at most RATE, e.g. 5MiB/s, for all threads together (or CAIRN_LIMIT_UPLOAD)",
    )
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    args = ctx.args
    paths = [os.fsencode(os.path.abspath(p)) for p in args.paths]
    walker = Walker(
        excludes=PatternSet.compile(_exclude_patterns(args)),
        exclude_if_present=[os.fsencode(n) for n in args.exclude_if_present],
        exclude_caches=args.exclude_caches,
        one_file_system=args.one_file_system,
    )
    repo = ctx.open_repository(load_index=False, session="backup")
    _reuse_unindexed_packs(ctx, repo)
    index = remote_index(repo.backend)
    if index is not None:  # a server answers chunk queries: memory stays bounded (design 14.11)
        repo.use_chunk_index(index)
    else:
        ctx.load_index(repo)
    host = args.host or socket.gethostname()
    options = BackupOptions(paths=paths, host=host, tags=args.tag, parent=_parent(ctx, host, paths))
    cache = _files_cache(ctx, repo.repo_id.hex())
    progress = ctx.progress("backing up")
    try:
        result = Archiver(repo, walker, progress, cache).run(options)
    finally:
        progress.finish()
        if cache is not None:
            cache.close()
    _report(ctx, result)
    return EXIT_PARTIAL if result.errors else 0


def _reuse_unindexed_packs(ctx: Context, repo: Repository) -> None:
    """Index what an earlier run stored on the server but could not index, and have this run
    keep its own such packs for the next (design 14.13). Needs the cache folder; a local
    repository indexes its packs when the run stops, so it needs none of this."""
    base = ctx.cache_dir()
    if base is None or repo.backend.capabilities.local:
        return
    store = UnindexedPacks(base / repo.repo_id.hex() / "unindexed")
    adopted = store.adopt(repo)
    if adopted:
        ctx.output.text(f"indexed {adopted} pack(s) that an interrupted run had stored")
    repo.keep_unindexed_with(store.keep)


def _exclude_patterns(args: argparse.Namespace) -> list[str]:
    patterns = list(args.exclude)
    for file in args.exclude_file:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read the exclude file {file}: {exc.strerror}") from exc
        patterns += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return patterns


def _parent(ctx: Context, host: str, paths: list[bytes]) -> Any:
    repo = ctx.open_repository()
    wanted = sorted(os.path.normpath(os.fsdecode(p)) for p in paths)
    # The parent is only recorded: a damaged older snapshot must not stop a new backup.
    snaps, _unreadable = read_snapshots(repo, SnapshotFilter(hosts=[host]))
    same = [s for s in snaps if sorted(s.body.paths) == wanted]
    return same[-1].name if same else None


def _files_cache(ctx: Context, repo_id: str) -> FilesCache | None:
    base = ctx.cache_dir()
    return FilesCache(base / repo_id / "files.sqlite") if base is not None else None


def _report(ctx: Context, r: BackupResult) -> None:
    out = ctx.output
    for path, message in r.warnings:
        out.text(f"warning: {show_path(path)}: {message}")
    out.text(
        f"files: {r.files} ({r.files_new} new or changed, {r.files_unmodified} unchanged), "
        f"folders: {r.dirs}"
    )
    out.text(
        f"processed {format_size(r.bytes_total)}, read {format_size(r.bytes_read)}, "
        f"added {format_size(r.bytes_added)} to the repository"
    )
    if r.errors:
        out.text(f"{r.errors} file(s) could not be read and are missing from the snapshot")
    limit = ctx.upload_limit()
    if limit:
        out.text(f"uploads were limited to {format_size(limit)}/s")
    out.text(f"snapshot {r.snapshot.short()} saved")
    out.json(
        {
            "snapshot_id": r.snapshot.hex,
            "files": r.files,
            "dirs": r.dirs,
            "files_new": r.files_new,
            "files_unmodified": r.files_unmodified,
            "bytes_total": r.bytes_total,
            "bytes_read": r.bytes_read,
            "bytes_added": r.bytes_added,
            "upload_limit": limit,
            "errors": [{"path": show_path(p), "message": m} for p, m in r.warnings],
        }
    )
