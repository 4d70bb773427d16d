"""The restorer: writes a snapshot (or the part selected by patterns) into a target folder.

Three phases (design.md section 8):

1. plan: walk the trees, apply include/exclude patterns, refuse unsafe names, and look at what the
   target already holds: a file whose contents already match is kept (a second run resumes or
   verifies instead of rewriting), a different one stops the restore before anything is written
   unless overwriting was asked for;
2. write: folders, then file contents (blobs read pack by pack in worker threads, see
   fetcher.py, and written by this thread alone), then symlinks, devices and hardlinks;
3. metadata: files as they finish, folders last, deepest first.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from cairn.core.errors import CairnError, IntegrityError
from cairn.core.ids import ChunkId
from cairn.core.patterns import PatternSet
from cairn.core.progress import Progress
from cairn.format.pack import BlobKind
from cairn.format.tree import Node
from cairn.repository.repository import Repository
from cairn.restore.fetcher import fetch, plan_reads
from cairn.restore.fswriter import Components, SafeTarget, UnsafePathError, check_name
from cairn.restore.openfiles import OpenFiles
from cairn.snapshot.walk import load_tree


class RestoreConflict(CairnError):
    """The target holds different data where the restore would write."""


@dataclass(slots=True)
class RestoreOptions:
    """What to restore and how."""

    target: Path
    includes: PatternSet | None = None
    excludes: PatternSet | None = None
    overwrite: bool = False
    workers: int = 2


@dataclass(slots=True)
class RestoreResult:
    """What `restore` reports."""

    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes_written: int = 0
    files_verified: int = 0
    skipped: list[tuple[bytes, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Plan:
    dirs: list[tuple[Components, Node]] = field(default_factory=list)
    files: list[tuple[Components, Node]] = field(default_factory=list)
    others: list[tuple[Components, Node]] = field(default_factory=list)
    hardlinks: list[tuple[Components, Components]] = field(default_factory=list)
    keep: set[Components] = field(default_factory=set)
    replace: set[Components] = field(default_factory=set)


class Restorer:
    """Restores one snapshot tree into a target."""

    def __init__(self, repo: Repository, progress: Progress) -> None:
        self._repo = repo
        self._progress = progress
        self._result = RestoreResult()
        self._lock = threading.Lock()

    def run(self, tree_id: ChunkId, options: RestoreOptions) -> RestoreResult:
        target = SafeTarget(options.target)
        try:
            plan = self._plan(tree_id, options)
            self._check_existing(target, plan, options.overwrite)
            self._write(target, plan, options.workers)
        finally:
            target.close()
        return self._result

    # ---- 1. plan ------------------------------------------------------------------------

    def _plan(self, tree_id: ChunkId, options: RestoreOptions) -> _Plan:
        plan = _Plan()
        first_link: dict[tuple[int, int], Components] = {}
        for comps, node in self._select(tree_id, (), options):
            if node.type == "dir":
                plan.dirs.append((comps, node))
            elif node.type == "file" and node.links > 1 and (node.dev, node.inode) in first_link:
                plan.hardlinks.append((comps, first_link[(node.dev, node.inode)]))
            elif node.type == "file":
                if node.links > 1:
                    first_link[(node.dev, node.inode)] = comps
                plan.files.append((comps, node))
                self._progress.add_total(1, node.size)
            else:
                plan.others.append((comps, node))
        return plan

    def _select(
        self, tree_id: ChunkId, parent: Components, options: RestoreOptions
    ) -> Iterator[tuple[Components, Node]]:
        """Yield selected nodes in pre-order; a folder is yielded when anything below it is."""
        for node in load_tree(self._repo, tree_id):
            path = b"/" + b"/".join((*parent, node.name))
            try:
                check_name(node.name)
            except UnsafePathError as exc:
                self._skip(path, str(exc))
                continue
            if options.excludes is not None and options.excludes.matches(path):
                continue
            comps = (*parent, node.name)
            selected = options.includes is None or options.includes.matches(path)
            if node.type == "dir" and node.subtree is not None:
                if selected or (
                    options.includes is not None and options.includes.could_match_below(path)
                ):
                    below = list(self._select(node.subtree, comps, _widen(options, selected)))
                    if selected or below:
                        yield comps, node
                        yield from below
            elif selected:
                yield comps, node

    def _check_existing(self, target: SafeTarget, plan: _Plan, overwrite: bool) -> None:
        """Keep files that already match; refuse (or plan to replace) those that differ."""
        conflicts = []
        for comps, node in plan.files:
            state = self._existing_state(target, comps, node)
            if state == "match":
                plan.keep.add(comps)
            elif state == "differs" and not overwrite:
                conflicts.append(b"/".join(comps).decode(errors="replace"))
            elif state == "differs":
                plan.replace.add(comps)
        if conflicts:
            shown = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
            raise RestoreConflict(
                f"{len(conflicts)} existing file(s) in the target differ from the snapshot "
                f"({shown}); restore into an empty folder, or pass --overwrite to replace them"
            )

    def _existing_state(self, target: SafeTarget, comps: Components, node: Node) -> str:
        try:
            fd = target.open_existing(comps)
        except FileNotFoundError:
            return "absent"  # a parent folder does not exist yet
        except (OSError, UnsafePathError):
            return "differs"  # something else (a symlink, a file) is in the way
        if fd is None:
            return "absent"
        with os.fdopen(fd, "rb", buffering=0) as stream:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != node.size:
                return "differs"
            chunker = self._repo.chunker()
            ids = [
                self._repo.blob_id(BlobKind.DATA, c) for c in chunker.split_file(stream, st.st_size)
            ]
        return "match" if ids == node.content else "differs"

    # ---- 2. write -----------------------------------------------------------------------

    def _write(self, target: SafeTarget, plan: _Plan, workers: int) -> None:
        for comps, _node in plan.dirs:
            target.make_dir(comps)
            self._result.dirs += 1
        self._write_files(target, plan, workers)
        for comps, node in plan.others:
            self._restore_other(target, comps, node)
        for comps, existing in plan.hardlinks:
            self._replace_with_link(target, comps, existing)
        for comps, node in sorted(plan.dirs, key=lambda d: len(d[0]), reverse=True):
            target.apply_metadata(comps, node, is_dir=True)

    def _write_files(self, target: SafeTarget, plan: _Plan, workers: int) -> None:
        """Write every file's contents: blobs are read pack by pack and each is written to
        every place that holds it; this thread alone touches the target."""
        files = OpenFiles(target, partial(self._finish_file, target))
        wanted: dict[ChunkId, list[tuple[int, int, int]]] = {}
        for comps, node in plan.files:
            if comps in plan.keep:
                self._result.files_verified += 1
                self._finish_file(target, comps, node, None)
                continue
            number = files.add(comps, node, replace=comps in plan.replace)
            offset = 0
            for chunk_id, size in zip(node.content, node.sizes, strict=True):
                wanted.setdefault(chunk_id, []).append((number, offset, size))
                offset += size
        spans = plan_reads(self._repo, wanted)
        try:
            for chunk_id, data in fetch(self._repo, spans, workers):
                for number, offset, size in wanted.pop(chunk_id):
                    if len(data) != size:
                        raise IntegrityError(
                            f"a tree says chunk {chunk_id.hex()[:8]} holds {size} bytes; "
                            f"it holds {len(data)}"
                        )
                    files.write(number, offset, data)
                    self._progress.bytes_done(size)
        finally:
            files.close_all()
        self._result.bytes_written += files.bytes_written

    def _finish_file(
        self, target: SafeTarget, comps: Components, node: Node, written: int | None
    ) -> None:
        """Metadata once the contents are complete (`written` is None for a kept file)."""
        if written is not None and written != node.size:
            self._skip(
                b"/" + b"/".join(comps), f"restored {written} bytes, snapshot says {node.size}"
            )
        target.apply_metadata(comps, node)
        self._progress.file_done(node.size)
        action = "verified" if written is None else "restored"
        self._progress.file_action(b"/" + b"/".join(comps), action)
        self._result.files += 1

    def _restore_other(self, target: SafeTarget, comps: Components, node: Node) -> None:
        path = b"/" + b"/".join(comps)
        try:
            target.remove_if_exists(comps)
            if node.type == "symlink":
                target.make_symlink(comps, node.target)
            elif node.type == "socket":
                self._skip(path, "sockets cannot be restored; skipped")
                return
            elif not target.make_special(comps, node):
                self._skip(path, "device nodes need root; skipped")
                return
            target.apply_metadata(comps, node)
            with self._lock:
                self._result.links += node.type == "symlink"
        except OSError as exc:
            self._skip(path, f"cannot create: {exc.strerror or exc}")

    def _replace_with_link(
        self, target: SafeTarget, comps: Components, existing: Components
    ) -> None:
        try:
            target.remove_if_exists(comps)
            target.make_hardlink(comps, existing)
            with self._lock:
                self._result.files += 1
        except OSError as exc:
            self._skip(b"/" + b"/".join(comps), f"cannot hardlink: {exc.strerror or exc}")

    def _skip(self, path: bytes, message: str) -> None:
        with self._lock:
            self._result.skipped.append((path, message))
        self._progress.warn(path, message)


def _widen(options: RestoreOptions, selected: bool) -> RestoreOptions:
    """Below a selected folder everything is selected (excludes still apply)."""
    if not selected or options.includes is None:
        return options
    return RestoreOptions(
        target=options.target,
        includes=None,
        excludes=options.excludes,
        overwrite=options.overwrite,
        workers=options.workers,
    )
