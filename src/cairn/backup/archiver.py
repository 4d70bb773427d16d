"""The archiver: turns folders into a committed snapshot (design.md sections 5 and 7)."""

from __future__ import annotations

import dataclasses
import getpass
import os
import queue
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from cairn.backup.filescache import FilesCache
from cairn.backup.groups import GROUP_IDS, FileGroups, Files, NodeFuture
from cairn.backup.protocols import BackupTarget
from cairn.backup.scanner import Scanner
from cairn.chunking.holes import split_with_holes
from cairn.core.errors import CairnError
from cairn.core.ids import ChunkId, ObjectName
from cairn.core.pathnames import escape_path
from cairn.core.progress import Progress
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.source.paths import Frames, frame_paths
from cairn.source.reader import find_holes, open_for_backup
from cairn.source.walker import (
    DirDoneEvent,
    EntryEvent,
    ErrorEvent,
    FileEvent,
    Walker,
)


@dataclass(slots=True)
class BackupOptions:
    """What to back up and how to label it."""

    paths: list[bytes]
    host: str = field(default_factory=socket.gethostname)
    tags: list[str] = field(default_factory=list)
    parent: ObjectName | None = None
    dry_run: bool = False
    """Walk and read everything, count what would be added, store nothing, commit no snapshot."""
    count_ahead: bool = False
    """Count the files and bytes on a scanner thread, so progress can show a total (scanner.py)."""
    workers: int = 3  # files read at once; 2, 3 and 4 measured alike here, each costs ~2 max chunks


class NoSourcePath(CairnError):
    """None of the paths to back up can be read (missing, not reachable, permission denied):
    nothing would be backed up, so no snapshot is written."""


@dataclass(slots=True)
class BackupResult:
    """What `backup` reports. `files` are regular files only (`files_new` + `files_unmodified`);
    symlinks and special entries (devices, fifos, sockets) are counted apart; `dirs` counts the
    folders a restore of the snapshot creates (not the root)."""

    snapshot: ObjectName | None
    """None after a dry run."""
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    special: int = 0
    files_new: int = 0
    files_unmodified: int = 0
    bytes_total: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    errors: list[tuple[bytes, str]] = field(default_factory=list)
    """Entries left out of the snapshot (unreadable, or a named path that does not exist)."""
    changed: list[bytes] = field(default_factory=list)
    """Files that changed while they were read: the snapshot holds what was read."""


CHANGED_WHILE_READ = "changed while read: the snapshot holds what was read"


@dataclass(slots=True)
class _Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    special: int = 0
    files_new: int = 0
    files_unmodified: int = 0
    bytes_total: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    errors: list[tuple[bytes, str]] = field(default_factory=list)
    changed: list[bytes] = field(default_factory=list)


BATCH_BYTES = 4 << 20
"""Chunks of a large file held back to be asked about in one batch."""
TREE_BATCH = 256
"""Tree blobs held back to be asked about in one batch (with TREE_BATCH_BYTES)."""
TREE_BATCH_BYTES = 4 << 20


def _done(node: Node | None) -> NodeFuture:
    future: NodeFuture = Future()
    future.set_result(node)
    return future


class Archiver:
    """Backs up paths into a repository. One instance per backup run."""

    def __init__(
        self,
        repo: BackupTarget,
        walker: Walker,
        progress: Progress,
        files_cache: FilesCache | None = None,
    ) -> None:
        self._repo = repo
        self._walker = walker
        self._progress = progress
        self._cache = files_cache
        self._stats = _Stats()
        self._refs: set[ChunkId] = set()
        self._refs_lock = threading.Lock()
        self._chunker = repo.chunker()
        self._small = repo.params.chunk_min
        self._batched = repo.chunk_index.batched
        self._groups = FileGroups(self._save_group, self._small)
        self._trees: list[tuple[ChunkId, bytes]] = []
        self._trees_bytes = 0
        self._trees_lock = threading.Lock()
        self._dry_run = False
        self._would_add: set[ChunkId] = set()
        self._zero_id: ChunkId | None = None

    # ---- the run ------------------------------------------------------------------------

    def run(self, options: BackupOptions) -> BackupResult:
        named, frames = self._readable_paths(options.paths)
        roots = _top_level(named)
        self._walker = dataclasses.replace(self._walker, named=frozenset(named))
        self._dry_run = options.dry_run
        if not self._dry_run:
            self._repo.start_writing()
        scanner = Scanner(self._walker, roots, self._progress) if options.count_ahead else None
        if scanner is not None:
            scanner.start()
        workers = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="file")
        finalizer = _Finalizer(self)
        try:
            root_nodes = self._walk_roots(roots, workers, finalizer, options.workers)
            finalizer.close()
            tree_id = self._store_skeleton(roots, root_nodes, frames)
            self._flush_trees()
        except BaseException:
            finalizer.abort()
            workers.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            if scanner is not None:
                scanner.stop()
        workers.shutdown(wait=True)
        if self._dry_run:
            return self._result(None)
        if self._cache is not None:
            self._cache.commit()
        return self._commit(options, named, tree_id)

    def _readable_paths(self, paths: list[bytes]) -> tuple[list[bytes], Frames]:
        """The named paths that can be read, each with the folders above it; the others are
        warned about. None readable: NoSourcePath, before anything is written."""
        frames, missing = frame_paths(paths)
        if not frames:
            shown = "; ".join(f"{os.fsdecode(p)}: {why}" for p, why in missing)
            raise NoSourcePath(f"no path to back up can be read, no snapshot written: {shown}")
        for path, why in missing:
            self._warn(path, f"{why} (left out of the snapshot)")
        return list(frames), frames

    def _walk_roots(
        self, roots: list[bytes], workers: ThreadPoolExecutor, finalizer: _Finalizer, n: int
    ) -> dict[bytes, NodeFuture]:
        slots = threading.BoundedSemaphore(8 * n)
        children: dict[bytes, list[NodeFuture]] = {}
        root_nodes: dict[bytes, NodeFuture] = {}
        for root in roots:
            for event in self._walker.walk(root):
                future = self._handle(event, workers, finalizer, slots, children)
                if future is not None and event.path == root:
                    root_nodes[root] = future
                elif future is not None:
                    children.setdefault(os.path.dirname(event.path), []).append(future)
            self._groups.submit(workers, slots)
            self._repo.raise_if_failed()
        return root_nodes

    def _handle(
        self,
        event: object,
        workers: ThreadPoolExecutor,
        finalizer: _Finalizer,
        slots: threading.BoundedSemaphore,
        children: dict[bytes, list[NodeFuture]],
    ) -> NodeFuture | None:
        if isinstance(event, FileEvent):
            if (ids := self._groupable(event)) is not None:
                return self._groups.add(event.path, event.node, ids, workers, slots)
            slots.acquire()
            future = workers.submit(self._save_file, event.path, event.node)
            future.add_done_callback(lambda _f: slots.release())
            return future
        if isinstance(event, EntryEvent):
            if event.node.type == "symlink":
                self._count(symlinks=1)
            else:
                self._count(special=1)
            return _done(event.node)
        if isinstance(event, DirDoneEvent):
            kids = children.pop(event.path, [])
            if event.path != b"/":  # the root is no folder a restore creates
                self._count(dirs=1)
            return finalizer.submit(event.node, kids)
        if isinstance(event, ErrorEvent):
            self._warn(event.path, event.message)
        return None

    # ---- groups of files: one hand-off to a worker per group, one query per group for an
    # index that asks a server (design 14.11) ----------------------------------------------

    def _groupable(self, event: FileEvent) -> int | None:
        """How many chunk IDs the file adds to a group, or None if it goes alone: a small
        file (one chunk), or one the files cache knows (its cached chunks, if not too many)."""
        node = event.node
        if node.size < self._small:
            return 1
        cached = self._cached(event.path, node)
        if cached is not None and len(cached[0]) <= GROUP_IDS:
            return len(cached[0])
        return None

    def _save_group(self, files: Files) -> list[Node | None]:
        """Ask about every chunk of the group at once (an index that asks a server), then save
        each file as usual. A local index answers from memory: nothing to ask ahead, and a
        small file is read once, not twice."""
        if not self._batched:
            return [self._save_file(path, node) for path, node in files]
        ids: list[ChunkId] = []
        for path, node in files:
            cached = self._cached(path, node)
            if cached is not None:
                ids.extend(cached[0])
            elif (chunk_id := self._small_file_id(path, node)) is not None:
                ids.append(chunk_id)
        self._repo.chunk_index.prefetch(ids)
        return [self._save_file(path, node) for path, node in files]

    def _small_file_id(self, path: bytes, node: Node) -> ChunkId | None:
        """The chunk ID a small file has now (read again when it is stored; a file that
        changed in between is only asked about again)."""
        try:
            fd = open_for_backup(path)
        except OSError:
            return None  # reported when the file is saved
        try:
            data = _read_small(fd, node.size)
        except OSError:
            return None
        finally:
            os.close(fd)
        return self._repo.blob_id(BlobKind.DATA, data) if data else None

    # ---- files --------------------------------------------------------------------------

    def _cached(self, path: bytes, node: Node) -> tuple[list[ChunkId], list[int]] | None:
        if self._cache is None:
            return None
        return self._cache.lookup(path, (node.dev, node.inode, node.size, node.mtime, node.ctime))

    def _all_stored(self, chunk_ids: list[ChunkId]) -> bool:
        """True when every chunk is durably stored; asks in batches the index can hold."""
        index = self._repo.chunk_index
        for start in range(0, len(chunk_ids), GROUP_IDS):
            part = chunk_ids[start : start + GROUP_IDS]
            index.prefetch(part)
            if not all(c in index for c in part):
                return False
        return True

    def _save_file(self, path: bytes, node: Node) -> Node | None:
        try:
            return self._save_file_checked(path, node)
        except OSError as exc:
            self._warn(path, f"cannot read: {exc.strerror or exc}")
            return None

    def _save_file_checked(self, path: bytes, node: Node) -> Node | None:
        meta = (node.dev, node.inode, node.size, node.mtime, node.ctime)
        cached = self._cache.lookup(path, meta) if self._cache is not None else None
        if cached is not None and self._all_stored(cached[0]):
            node.content, node.sizes = cached
            self._note_file(node, node.content, unmodified=True)
            return node
        fd = open_for_backup(path)
        try:
            content, sizes = self._store_contents(fd, node.size)
            size = sum(sizes)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if (after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns, size) != (
            node.inode,
            node.size,
            node.mtime,
            node.ctime,
            node.size,
        ):
            self._note_changed(path)
            node.mtime, node.ctime = after.st_mtime_ns, after.st_ctime_ns
        elif self._cache is not None and not self._dry_run:
            self._cache.record(path, meta, content, sizes)
        node.content, node.sizes = content, sizes
        node.size = size
        self._note_file(node, content, unmodified=False)
        self._progress.file_action(path, "stored")
        return node

    def _store_contents(self, fd: int, size: int) -> tuple[list[ChunkId], list[int]]:
        """Store the file's chunks; return their IDs and sizes. Holes are not read (holes.py)."""
        content: list[ChunkId] = []
        sizes: list[int] = []
        batch: list[tuple[bytes | memoryview, ChunkId | None]] = []
        held = skipped = 0
        for chunk, zero in self._chunks(fd, size):
            chunk_id = self._zero_chunk_id(chunk) if zero else None
            skipped += len(chunk) if zero else 0
            if not self._batched:
                self._store_chunk(chunk, chunk_id, content, sizes)
                continue
            # Asked about in batches, so they must outlive the chunker's buffer (the zero chunk
            # does, and takes no memory of its own).
            batch.append((chunk, chunk_id) if zero else (bytes(chunk), None))
            held += 0 if zero else len(chunk)
            if held >= BATCH_BYTES or len(batch) >= GROUP_IDS:
                self._store_batch(batch, content, sizes)
                held = 0
        self._store_batch(batch, content, sizes)
        with self._stats.lock:
            self._stats.bytes_read += sum(sizes) - skipped
        return content, sizes

    def _zero_chunk_id(self, zero: memoryview) -> ChunkId:
        if self._zero_id is None:
            self._zero_id = self._repo.blob_id(BlobKind.DATA, zero)
        return self._zero_id

    def _store_batch(
        self,
        batch: list[tuple[bytes | memoryview, ChunkId | None]],
        content: list[ChunkId],
        sizes: list[int],
    ) -> None:
        ids = [known or self._repo.blob_id(BlobKind.DATA, chunk) for chunk, known in batch]
        self._repo.chunk_index.prefetch(ids)
        for (chunk, _), chunk_id in zip(batch, ids, strict=True):
            self._store_chunk(chunk, chunk_id, content, sizes)
        batch.clear()

    def _store_chunk(
        self,
        chunk: bytes | memoryview,
        chunk_id: ChunkId | None,
        content: list[ChunkId],
        sizes: list[int],
    ) -> None:
        chunk_id, added = self._put(BlobKind.DATA, chunk, chunk_id)
        content.append(chunk_id)
        sizes.append(len(chunk))
        self._progress.bytes_done(len(chunk))
        if added:
            with self._stats.lock:
                self._stats.bytes_added += added

    def _chunks(self, fd: int, size: int) -> Iterator[tuple[memoryview, bool]]:
        """(chunk, is the zero chunk of a hole) in file order."""
        if size < self._small:
            # Most files are small: one read, no stream wrapper, no chunker buffer.
            data = _read_small(fd, size)
            if data:
                yield memoryview(data), False
            return
        holes = find_holes(fd, size) if os.fstat(fd).st_blocks * 512 < size else []
        if holes:
            yield from split_with_holes(self._chunker, fd, size, holes)
            return
        with open(fd, "rb", buffering=0, closefd=False) as stream:
            for chunk in self._chunker.split(stream):
                yield chunk, False

    def _note_file(self, node: Node, content: list[ChunkId], *, unmodified: bool) -> None:
        self._add_refs(content)
        self._progress.file_done(node.size)
        if unmodified:
            self._progress.bytes_done(node.size)
        self._count(
            files=1,
            bytes_total=node.size,
            files_unmodified=int(unmodified),
            files_new=int(not unmodified),
        )

    def _put(
        self, kind: BlobKind, data: bytes | memoryview, chunk_id: ChunkId | None = None
    ) -> tuple[ChunkId, int]:
        """Store a blob; in a dry run only count it (plaintext bytes) if the repository lacks it."""
        if not self._dry_run:
            return self._repo.store_blob(kind, data, chunk_id)
        chunk_id = chunk_id or self._repo.blob_id(kind, data)
        index = self._repo.chunk_index
        index.prefetch([chunk_id])
        with self._refs_lock:
            if chunk_id in self._would_add or chunk_id in index:
                return chunk_id, 0
            self._would_add.add(chunk_id)
        return chunk_id, len(data)

    # ---- trees --------------------------------------------------------------------------

    def store_tree(self, nodes: list[Node]) -> ChunkId:
        if not self._batched:
            tree_id, added = self._put(BlobKind.TREE, encode_tree(nodes))
            self._add_refs([tree_id])
            self._count(bytes_added=added)
            return tree_id
        # Held back and asked about in batches; stored in the order they were made (bottom-up).
        data = encode_tree(nodes)
        tree_id = self._repo.blob_id(BlobKind.TREE, data)
        with self._trees_lock:
            self._trees.append((tree_id, data))
            self._trees_bytes += len(data)
            due = len(self._trees) >= TREE_BATCH or self._trees_bytes >= TREE_BATCH_BYTES
        if due:
            self._flush_trees()
        self._add_refs([tree_id])
        return tree_id

    def _flush_trees(self) -> None:
        with self._trees_lock:
            trees, self._trees, self._trees_bytes = self._trees, [], 0
            if not trees:
                return
            self._repo.chunk_index.prefetch([tree_id for tree_id, _ in trees])
            for tree_id, data in trees:
                _, added = self._put(BlobKind.TREE, data, tree_id)
                self._count(bytes_added=added)

    def _store_skeleton(
        self,
        roots: list[bytes],
        root_nodes: dict[bytes, NodeFuture],
        frames: Frames,
    ) -> ChunkId:
        """Build the trees from / down to each backed-up path (design.md 3.7)."""
        if roots == [b"/"]:
            node = root_nodes[b"/"].result() if b"/" in root_nodes else None
            if node is None or node.subtree is None:
                return self.store_tree([])
            return node.subtree
        entries: dict[bytes, list[Node]] = {}
        dirs: dict[bytes, Node] = {}
        for root in roots:
            node = root_nodes[root].result() if root in root_nodes else None
            if node is not None:
                node.name = os.path.basename(root)
                entries.setdefault(os.path.dirname(root), []).append(node)
            for path, anc in frames[root]:
                dirs.setdefault(path, anc)
        self._count(dirs=len(dirs))
        for path in sorted(dirs, key=lambda p: p.count(b"/"), reverse=True):
            node = dirs[path]
            node.subtree = self.store_tree(entries.pop(path, []))
            entries.setdefault(os.path.dirname(path), []).append(node)
        return self.store_tree(entries.pop(b"/", []))

    # ---- the commit ---------------------------------------------------------------------

    def _commit(self, options: BackupOptions, named: list[bytes], tree_id: ChunkId) -> BackupResult:
        s = self._stats
        body = SnapshotBody(
            time=self._repo.clock.now().isoformat(),
            host=options.host,
            user=getpass.getuser(),
            paths=[escape_path(p) for p in named],  # msgpack text: one form (design 11.1)
            tags=sorted(set(options.tags)),
            tree=tree_id,
            parent=options.parent,
            summary={
                "files": s.files,
                "dirs": s.dirs,
                "symlinks": s.symlinks,
                "special": s.special,
                "files_new": s.files_new,
                "files_unmodified": s.files_unmodified,
                "bytes": s.bytes_total,
                "bytes_read": s.bytes_read,
                "bytes_added": s.bytes_added,
                "errors": len(s.errors),
                "changed": len(s.changed),
            },
        )
        return self._result(self._repo.commit_snapshot(body, self._refs))

    def _result(self, name: ObjectName | None) -> BackupResult:
        s = self._stats
        return BackupResult(
            snapshot=name,
            files=s.files,
            dirs=s.dirs,
            symlinks=s.symlinks,
            special=s.special,
            files_new=s.files_new,
            files_unmodified=s.files_unmodified,
            bytes_total=s.bytes_total,
            bytes_read=s.bytes_read,
            bytes_added=s.bytes_added,
            errors=list(s.errors),
            changed=list(s.changed),
        )

    # ---- bookkeeping --------------------------------------------------------------------

    def _add_refs(self, ids: list[ChunkId]) -> None:
        with self._refs_lock:
            self._refs.update(ids)

    def _count(self, **deltas: int) -> None:
        with self._stats.lock:
            for key, value in deltas.items():
                setattr(self._stats, key, getattr(self._stats, key) + value)

    def _warn(self, path: bytes, message: str) -> None:
        """An entry left out of the snapshot."""
        with self._stats.lock:
            self._stats.errors.append((path, message))
        self._progress.warn(path, message)

    def _note_changed(self, path: bytes) -> None:
        """A file that is in the snapshot, but changed while it was read."""
        with self._stats.lock:
            self._stats.changed.append(path)
        self._progress.warn(path, CHANGED_WHILE_READ)


class _Finalizer:
    """Builds directory trees in post-order on its own thread, as their children finish."""

    def __init__(self, archiver: Archiver) -> None:
        self._archiver = archiver
        self._queue: queue.Queue[tuple[Node, list[NodeFuture], NodeFuture] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="trees", daemon=True)
        self._thread.start()

    def submit(self, node: Node, children: list[NodeFuture]) -> NodeFuture:
        if self._error is not None:
            raise self._error
        future: NodeFuture = Future()
        self._queue.put((node, children, future))
        return future

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            node, children, future = item
            try:
                kids = [n for n in (c.result() for c in children) if n is not None]
                node.subtree = self._archiver.store_tree(kids)
                future.set_result(node)
            except BaseException as exc:
                self._error = self._error or exc
                future.set_exception(exc)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        self._queue.put(None)


def _top_level(paths: list[bytes]) -> list[bytes]:
    """Absolute, normalised, de-duplicated paths, dropping any inside another one."""
    absolute = sorted({os.path.normpath(os.path.abspath(p)) for p in paths})
    kept: list[bytes] = []
    for p in absolute:
        if not any(p == k or p.startswith(k.rstrip(b"/") + b"/") for k in kept):
            kept.append(p)
    return kept


def _read_small(fd: int, size: int) -> bytes:
    """Read a small file whole; a file that grew since stat is read to its end."""
    data = os.read(fd, size + 1)
    if len(data) <= size:
        return data
    parts = [data]
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)
