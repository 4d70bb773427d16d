"""The restorer: writes a snapshot (or the part selected by patterns) into a target folder.

Three phases (design.md section 8):

1. plan: walk the trees, apply include/exclude patterns, refuse unsafe names, and look at what the
   target already holds: a file whose contents already match is kept (a second run resumes or
   verifies instead of rewriting); anything else in the way (different contents, a folder where
   the snapshot has a file, a file or symlink where it has a folder) stops the restore before
   anything is written unless overwriting was asked for;
2. write: folders, then file contents (blobs read pack by pack in worker threads, see
   fetcher.py, and written by this thread alone, each file under its partial name and renamed into
   place when complete), then symlinks, devices and hardlinks;
3. metadata: files as they finish (before the rename), folders last, deepest first.

Lost data (damage.py) does not stop a restore: every intact file is written, a damaged one is
never given its own name, and the result lists it with the byte ranges it lost.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from cairn.core.errors import CairnError, FormatError, IntegrityError
from cairn.core.ids import ChunkId
from cairn.core.patterns import PatternSet
from cairn.core.progress import Progress
from cairn.format.tree import Node
from cairn.restore.damage import DamagedFile
from cairn.restore.existing import State, describe_conflict, existing_state
from cairn.restore.fetcher import Lost, fetch, plan_reads
from cairn.restore.fswriter import (
    Components,
    SafeTarget,
    TargetError,
    UnsafePathError,
    check_name,
    damaged_name,
)
from cairn.restore.openfiles import OpenFiles
from cairn.restore.protocols import RestoreSource
from cairn.snapshot.walk import load_tree


class RestoreConflict(CairnError):
    """The target holds something else where the restore would write."""


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
    """Folders of the snapshot below the restored folder (the target itself not counted)."""
    links: int = 0
    bytes_written: int = 0
    """Bytes written to disk: holes of sparse files and files already present not counted."""
    size: int = 0
    """The logical size of the files restored (written or verified)."""
    files_verified: int = 0
    skipped: list[tuple[bytes, str]] = field(default_factory=list)
    damaged: list[DamagedFile] = field(default_factory=list)


@dataclass(slots=True)
class _Plan:
    dirs: list[tuple[Components, Node]] = field(default_factory=list)
    files: list[tuple[Components, Node]] = field(default_factory=list)
    others: list[tuple[Components, Node]] = field(default_factory=list)
    hardlinks: list[tuple[Components, Node, Components]] = field(default_factory=list)
    keep: set[Components] = field(default_factory=set)
    clear: set[Components] = field(default_factory=set)
    """Entries in the way of another type (--overwrite): removed before anything is written."""
    names: set[Components] = field(default_factory=set)


class Restorer:
    """Restores one snapshot tree into a target."""

    def __init__(self, repo: RestoreSource, progress: Progress) -> None:
        self._repo = repo
        self._progress = progress
        self._result = RestoreResult()
        self._lock = threading.Lock()
        self._damaged_at: dict[Components, DamagedFile] = {}

    def run(self, tree_id: ChunkId, options: RestoreOptions) -> RestoreResult:
        target = SafeTarget(options.target)
        try:
            plan = self._plan(tree_id, options)
            self._check_existing(target, plan, options.overwrite)
            self._write(target, plan, options.workers)
        except OSError as exc:  # the net under the wrapped calls: always name the target
            raise TargetError(f"cannot write {options.target}: {exc.strerror or exc}") from exc
        finally:
            target.close()
        return self._result

    # ---- 1. plan ------------------------------------------------------------------------

    def _plan(self, tree_id: ChunkId, options: RestoreOptions) -> _Plan:
        plan = _Plan()
        first_link: dict[tuple[int, int], Components] = {}
        for comps, node in self._select(tree_id, (), options):
            plan.names.add(comps)
            if node.type == "dir":
                plan.dirs.append((comps, node))
            elif node.type == "file" and node.links > 1 and (node.dev, node.inode) in first_link:
                plan.hardlinks.append((comps, node, first_link[(node.dev, node.inode)]))
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
        for node in self._listing(tree_id, parent):
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

    def _listing(self, tree_id: ChunkId, comps: Components) -> list[Node]:
        """A folder's entries; a damaged listing below the root loses that folder's contents
        (reported as damaged), not the rest of the restore."""
        try:
            return load_tree(self._repo, tree_id)
        except (IntegrityError, FormatError):
            if not comps:
                raise
            path = b"/" + b"/".join(comps)
            self._result.damaged.append(DamagedFile(path, 0, folder=True))
            self._progress.warn(path, "the folder's listing is damaged; its contents are lost")
            return []

    def _check_existing(self, target: SafeTarget, plan: _Plan, overwrite: bool) -> None:
        """Keep what already matches; refuse (or plan to replace) whatever else is in the way."""
        conflicts: list[str] = []
        entries = [*plan.dirs, *plan.files, *plan.others]
        entries += [(comps, node) for comps, node, _ in plan.hardlinks]
        absent: set[Components] = set()
        for comps, node in entries:
            # Folders come first, parents before children: below an absent folder nothing is
            # there, so a restore into a new folder looks at each folder once, not every entry.
            if comps[:-1] in absent:
                state: State = "absent"
            else:
                state = existing_state(self._repo, target, comps, node)
            if state == "absent" and node.type == "dir":
                absent.add(comps)
            if state == "match" and node.type == "file":
                plan.keep.add(comps)
            elif state in ("differs", "blocked") and not overwrite:
                conflicts.append(describe_conflict(target, comps, node, state))
            elif state == "blocked":
                plan.clear.add(comps)
        if conflicts:
            shown = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
            raise RestoreConflict(
                f"the target holds {len(conflicts)} "
                f"{'entry' if len(conflicts) == 1 else 'entries'} that differ from the snapshot "
                f"({shown}); nothing was written. Restore into an empty folder, or pass "
                "--overwrite to replace them"
            )

    # ---- 2. write -----------------------------------------------------------------------

    def _write(self, target: SafeTarget, plan: _Plan, workers: int) -> None:
        for comps in sorted(plan.clear, key=len):
            target.clear(comps)
        for comps, _node in plan.dirs:
            target.make_dir(comps)
            self._result.dirs += 1
        self._write_files(target, plan, workers)
        for comps, node in plan.others:
            self._restore_other(target, comps, node)
        for comps, node, existing in plan.hardlinks:
            self._replace_with_link(target, comps, node, existing)
        for comps, node in sorted(plan.dirs, key=lambda d: len(d[0]), reverse=True):
            target.apply_metadata(comps, node, is_dir=True)

    def _write_files(self, target: SafeTarget, plan: _Plan, workers: int) -> None:
        """Write every file's contents: blobs are read pack by pack and each is written to
        every place that holds it; this thread alone touches the target."""
        files = OpenFiles(target, partial(self._finish_file, target, plan.names))
        wanted: dict[ChunkId, list[tuple[int, int, int]]] = {}
        try:
            for comps, node in plan.files:
                if comps in plan.keep:
                    self._keep_file(target, comps, node)
                    continue
                number = files.add(comps, node)
                offset = 0
                for chunk_id, size in zip(node.content, node.sizes, strict=True):
                    wanted.setdefault(chunk_id, []).append((number, offset, size))
                    offset += size
            self._fill(files, wanted, workers)
        except BaseException:  # interrupted or failed: no partial file is left behind
            files.discard_unfinished()
            raise
        self._result.bytes_written += files.bytes_written

    def _fill(
        self, files: OpenFiles, wanted: dict[ChunkId, list[tuple[int, int, int]]], workers: int
    ) -> None:
        missing: list[ChunkId] = []
        spans = plan_reads(self._repo, wanted, missing)
        for chunk_id in missing:
            for number, offset, size in wanted.pop(chunk_id):
                files.lose(number, offset, size)
        for chunk_id, data in fetch(self._repo, spans, workers):
            for number, offset, size in wanted.pop(chunk_id):
                if isinstance(data, Lost):
                    files.lose(number, offset, size)
                    continue
                if len(data) != size:
                    raise IntegrityError(
                        f"a tree says chunk {chunk_id.hex()[:8]} holds {size} bytes; "
                        f"it holds {len(data)}"
                    )
                files.write(number, offset, data)
                self._progress.bytes_done(size)

    def _keep_file(self, target: SafeTarget, comps: Components, node: Node) -> None:
        """A file already present with the snapshot's contents: only its metadata is set."""
        target.discard_partial(comps)  # one a killed run may have left
        target.apply_metadata(comps, node)
        self._result.files_verified += 1
        self._count_file(comps, node, "verified")

    def _finish_file(
        self,
        target: SafeTarget,
        names: set[Components],
        comps: Components,
        node: Node,
        damage: DamagedFile | None,
    ) -> None:
        """Publish a complete file under its name, or set a damaged one aside."""
        if damage is not None:
            self._set_aside(target, names, comps, node, damage)
            return
        if sum(node.sizes) != node.size:
            self._skip(
                b"/" + b"/".join(comps),
                f"restored {sum(node.sizes)} bytes, snapshot says {node.size}",
            )
        target.publish(comps, node)
        self._count_file(comps, node, "restored")

    def _set_aside(
        self,
        target: SafeTarget,
        names: set[Components],
        comps: Components,
        node: Node,
        damage: DamagedFile,
    ) -> None:
        """A damaged file never gets its own name: its intact parts (lost ranges as zeros)
        go to NAME.cairn-damaged, unless the snapshot itself has that name."""
        marked = damaged_name(comps[-1])
        aside = None if marked is None else (*comps[:-1], marked)
        try:
            if aside is None or aside in names:
                raise TargetError("no room for a marked name")
            target.publish(comps, node, as_name=marked)
            damage.saved_as = b"/" + b"/".join(aside)
        except TargetError:
            target.discard_partial(comps)
        self._damaged_at[comps] = damage
        self._result.damaged.append(damage)
        self._progress.file_done(node.size)
        self._progress.warn(damage.path, "damaged in the repository; not restored")

    def _count_file(self, comps: Components, node: Node, action: str) -> None:
        self._progress.file_done(node.size)
        self._progress.file_action(b"/" + b"/".join(comps), action)
        self._result.files += 1
        self._result.size += node.size

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
        except TargetError as exc:
            self._skip(path, f"cannot create: {exc}")

    def _replace_with_link(
        self, target: SafeTarget, comps: Components, node: Node, existing: Components
    ) -> None:
        path = b"/" + b"/".join(comps)
        lost = self._damaged_at.get(existing)
        if lost is not None:  # the same contents, lost the same way
            self._result.damaged.append(DamagedFile(path, lost.size, list(lost.ranges)))
            return
        try:
            target.remove_if_exists(comps)
            target.make_hardlink(comps, existing)
            with self._lock:
                self._result.files += 1
        except TargetError as exc:
            self._skip(path, f"cannot hardlink: {exc}")

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
