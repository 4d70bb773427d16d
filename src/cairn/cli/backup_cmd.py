"""cairn backup: back up folders and files into a new snapshot."""

from __future__ import annotations

import argparse
import glob
import os
import socket
import sys
from pathlib import Path
from typing import Any

from cairn.backup.archiver import CHANGED_WHILE_READ, Archiver, BackupOptions, BackupResult
from cairn.backup.filescache import FilesCache, FilesCacheUnusable
from cairn.cli.context import Context
from cairn.cli.errors import EXIT_PARTIAL, UnreadableListFile, UsageError
from cairn.cli.output import show_path
from cairn.cli.progress import TerminalProgress
from cairn.core.ids import ObjectName
from cairn.core.pathnames import escape_path
from cairn.core.patterns import PatternSet
from cairn.core.units import format_duration, format_size
from cairn.repository.repository import Repository
from cairn.repository.unindexed import UnindexedPacks
from cairn.snapshot.select import SnapshotFilter, read_snapshots
from cairn.source.walker import Walker


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("backup", parents=[common], help="back up files and folders")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files and folders to back up")
    p.add_argument(
        "--files-from",
        action="append",
        default=[],
        metavar="FILE",
        help="read paths to back up from FILE, one per line; # comments and blank lines are "
        "skipped, wildcards expanded",
    )
    p.add_argument(
        "--files-from-verbatim",
        action="append",
        default=[],
        metavar="FILE",
        help="read paths from FILE, one per line, taken exactly as written",
    )
    p.add_argument(
        "--files-from-raw",
        action="append",
        default=[],
        metavar="FILE",
        help="read paths from FILE, separated by NUL bytes (find -print0)",
    )
    p.add_argument(
        "-n",
        "--dry-run",
        action="store_true",
        help="read everything and report what would be stored; store nothing, save no snapshot",
    )
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
        help="read exclude patterns from FILE, one per line (# comments and blank lines skipped)",
    )
    p.add_argument(
        "--exclude-if-present",
        action="append",
        default=[],
        metavar="NAME",
        help="exclude the contents of folders that hold a file called NAME (the file is kept)",
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
    paths = _source_paths(args)
    walker = Walker(
        excludes=PatternSet.compile(_exclude_patterns(args)),
        exclude_if_present=[os.fsencode(n) for n in args.exclude_if_present],
        exclude_caches=args.exclude_caches,
        one_file_system=args.one_file_system,
    )
    repo = ctx.open_repository(load_index=False, session=None if args.dry_run else "backup")
    if not args.dry_run:
        _reuse_unindexed_packs(ctx, repo)
    if not repo.use_server_chunk_query():
        ctx.load_index(repo)
    host = args.host or socket.gethostname()
    options = BackupOptions(
        paths=paths,
        host=host,
        tags=args.tag,
        parent=None if args.dry_run else _parent(repo, host, paths),
        dry_run=args.dry_run,
    )
    cache = _files_cache(ctx, repo.repo_id.hex())
    started = ctx.clock.monotonic()
    progress = ctx.progress("backing up")
    options.count_ahead = isinstance(progress, TerminalProgress)  # a total for the line
    try:
        result = Archiver(repo, walker, progress, cache).run(options)
    finally:
        progress.finish()
        if cache is not None:
            cache.close()
    if cache is not None and cache.problem is not None:
        ctx.output.text(
            f"warning: the files cache could not be written ({cache.problem}); "
            "the next backup reads every file again"
        )
    _report(ctx, result, ctx.clock.monotonic() - started)
    return EXIT_PARTIAL if result.errors else 0


def _source_paths(args: argparse.Namespace) -> list[bytes]:
    """The PATHs and the paths the --files-from* files list, absolute; at least one."""
    named = [os.fsencode(p) for p in args.paths]
    for file in args.files_from:
        lines = [ln.strip() for ln in _read_list(file).splitlines()]
        named += [p for ln in lines if ln and not ln.startswith(b"#") for p in _expand(ln)]
    for file in args.files_from_verbatim:
        named += [ln for ln in _read_list(file).splitlines() if ln]
    for file in args.files_from_raw:
        named += [p for p in _read_list(file).split(b"\0") if p]
    if not named:
        raise UsageError("nothing to back up: give a PATH, or --files-from FILE")
    return [os.path.abspath(p) for p in named]


def _expand(line: bytes) -> list[bytes]:
    """A --files-from line's glob matches (as restic expands them); the line itself when it
    has no wildcard or matches nothing (then it is reported as missing)."""
    if not any(c in line for c in b"*?["):
        return [line]
    return sorted(glob.glob(line)) or [line]


def _read_list(file: str) -> bytes:
    """The bytes of a file the command line names (`-` is standard input)."""
    try:
        return sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise UnreadableListFile(
            f"cannot read {file}: {(exc.strerror or str(exc)).lower()}"
        ) from exc


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
        lines = _read_list(file).decode("utf-8", "surrogateescape").splitlines()
        patterns += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return patterns


def _parent(repo: Repository, host: str, paths: list[bytes]) -> ObjectName | None:
    """The newest snapshot of the same host and paths, read from the repository this backup
    writes to (reading snapshots needs no index)."""
    wanted = sorted(escape_path(os.path.normpath(p)) for p in paths)  # as recorded (11.1)
    # The parent is only recorded: a damaged older snapshot must not stop a new backup.
    snaps, _unreadable = read_snapshots(repo, SnapshotFilter(hosts=[host]))
    same = [s for s in snaps if sorted(s.body.paths) == wanted]
    return same[-1].name if same else None


def _files_cache(ctx: Context, repo_id: str) -> FilesCache | None:
    """The files cache; a cache folder that cannot be used is a warning, not a failure: the
    cache only saves reading unchanged files again."""
    base = ctx.cache_dir()
    if base is None:
        return None
    try:
        return FilesCache(base / repo_id / "files.sqlite")
    except FilesCacheUnusable as exc:
        ctx.output.text(
            f"warning: cannot use the files cache in {exc}; backing up without it "
            "(every file is read)"
        )
        return None


def _report(ctx: Context, r: BackupResult, seconds: float) -> None:
    out = ctx.output
    for path, message in r.errors:
        out.text(f"warning: {show_path(path)}: {message}")
    for path in r.changed:
        out.text(f"warning: {show_path(path)}: {CHANGED_WHILE_READ}")
    out.text(_counts(r))
    verb = "would add" if r.snapshot is None else "added"
    out.text(
        f"processed {format_size(r.bytes_total)}, read {format_size(r.bytes_read)}, "
        f"{verb} {format_size(r.bytes_added)} to the repository in {format_duration(seconds)}"
    )
    if r.changed:
        out.text(
            f"{len(r.changed)} file(s) changed while they were read: the snapshot holds what "
            "was read (back them up again for a consistent copy)"
        )
    if r.errors:
        out.text(f"{len(r.errors)} path(s) could not be read and are missing from the snapshot")
    limit = ctx.upload_limit()
    if limit and r.snapshot is not None:
        out.text(f"uploads were limited to {format_size(limit)}/s")
    if r.snapshot is None:
        out.text("dry run: nothing was stored, no snapshot was saved")
    else:
        out.text(f"snapshot {r.snapshot.short()} saved")
    out.json(_document(r, limit, seconds))


def _counts(r: BackupResult) -> str:
    """Each kind of entry by name; the files' parts add up to the files."""
    line = (
        f"files: {r.files} ({r.files_new} new or changed, {r.files_unmodified} unchanged), "
        f"folders: {r.dirs}, symlinks: {r.symlinks}"
    )
    if r.special:
        line += f", other entries (devices, fifos, sockets): {r.special}"
    return line


def _document(r: BackupResult, limit: int | None, seconds: float) -> dict[str, Any]:
    return {
        "snapshot_id": r.snapshot.hex if r.snapshot is not None else None,
        "dry_run": r.snapshot is None,
        "files": r.files,
        "dirs": r.dirs,
        "symlinks": r.symlinks,
        "special": r.special,
        "files_new": r.files_new,
        "files_unmodified": r.files_unmodified,
        "bytes_total": r.bytes_total,
        "bytes_read": r.bytes_read,
        "bytes_added": r.bytes_added,
        "upload_limit": limit,
        "seconds": round(seconds, 3),
        "errors": [{"path": show_path(p), "message": m} for p, m in r.errors],
        "changed": [{"path": show_path(p), "message": CHANGED_WHILE_READ} for p in r.changed],
    }
