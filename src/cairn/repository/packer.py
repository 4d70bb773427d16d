"""Collects sealed blobs into packs, uploads them in parallel, and writes the indexes after them."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import BackendError
from cairn.core.clock import Clock
from cairn.core.errors import CairnError
from cairn.core.ids import ChunkId, ObjectName
from cairn.crypto.hashing import object_name
from cairn.format.index import IndexRecord, encode_index
from cairn.format.pack import BlobKind, build_pack
from cairn.repository.chunkindex import ChunkIndex

Blob = tuple[ChunkId, BlobKind, bytes]


class PackUploader:
    """Packs blobs and stores them; thread-safe.

    Write ordering (design.md 5): a pack is saved (durably) before any index names it, and an index
    object is written every `flush_packs` packs or `flush_seconds`, and at `flush()`. At most
    ``connections + 1`` packs are in memory at once, which bounds memory.

    `guard` (the session's confirm) runs before and after every index is saved: a session a prune
    judged ended may find its packs deleted, so its index must not name them (one saved when the
    second check fails is removed again).
    """

    def __init__(
        self,
        backend: Backend,
        index: ChunkIndex,
        *,
        pack_size: int,
        connections: int,
        clock: Clock,
        flush_packs: int = 64,
        flush_seconds: float = 30.0,
        session: bytes | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self._backend = backend
        self._guard = guard
        self._index = index
        self._pack_size = pack_size
        self._clock = clock
        self._flush_packs = flush_packs
        self._flush_seconds = flush_seconds
        self._session = session
        self._pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="upload")
        self._slots = threading.BoundedSemaphore(connections)
        self._lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._open: list[Blob] = []
        self._open_size = 0
        self._futures: list[Future[None]] = []
        self._unindexed = IndexRecord(session=session)
        self._last_index_write = clock.monotonic()
        self._error: BaseException | None = None
        self.packs_written = 0
        self.bytes_written = 0
        self.indexes_written: list[ObjectName] = []

    def add(self, chunk_id: ChunkId, kind: BlobKind, sealed: bytes) -> None:
        """Queue one sealed blob; uploads a pack when the open one reaches its target size."""
        self.raise_if_failed()
        with self._lock:
            self._open.append((chunk_id, kind, sealed))
            self._open_size += len(sealed)
            if self._open_size < self._pack_size:
                return
            blobs = self._take_open()
        self._submit(blobs)

    def _take_open(self) -> list[Blob]:
        blobs, self._open, self._open_size = self._open, [], 0
        return blobs

    def _submit(self, blobs: list[Blob]) -> None:
        self._slots.acquire()
        self._futures.append(self._pool.submit(self._upload, blobs))

    def _upload(self, blobs: list[Blob]) -> None:
        chunk_ids: list[ChunkId] = []
        try:
            # Random order inside the pack blunts chunk-size fingerprinting (restic#5295).
            secrets.SystemRandom().shuffle(blobs)
            data, entries = build_pack(blobs)
            chunk_ids = [b[0] for b in blobs]
            blobs.clear()  # the pack holds the bytes now; free the pieces early
            name = object_name(data)
            self._backend.save(Handle(ObjectKind.PACK, name.hex), data)
            self._index.add_pack(name, entries)
            with self._lock:
                self._unindexed.packs[name] = entries
                self.packs_written += 1
                self.bytes_written += len(data)
            self._maybe_write_index()
        except BaseException as exc:
            self._index.release(chunk_ids or [b[0] for b in blobs])
            with self._lock:
                self._error = self._error or exc
            raise
        finally:
            self._slots.release()

    def _maybe_write_index(self) -> None:
        due = (
            len(self._unindexed.packs) >= self._flush_packs
            or self._clock.monotonic() - self._last_index_write >= self._flush_seconds
        )
        if due:
            self.write_index()

    def write_index(self) -> None:
        """Write one index object for every pack stored but not yet indexed."""
        with self._index_lock:
            with self._lock:
                record, self._unindexed = self._unindexed, IndexRecord(session=self._session)
            self._last_index_write = self._clock.monotonic()
            if not record.packs:
                return
            try:
                name = save_index(self._backend, record, self._guard)
            except BaseException:
                with self._lock:  # not indexed after all: the next write (or close) tries again
                    record.packs.update(self._unindexed.packs)
                    self._unindexed.packs = record.packs
                raise
            self.indexes_written.append(name)

    def unindexed(self) -> IndexRecord:
        """The packs stored but not yet in an index (a copy)."""
        with self._lock:
            return IndexRecord(packs=dict(self._unindexed.packs), session=self._session)

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def flush(self) -> None:
        """Store the open pack, wait for every upload, then write the index: all durable."""
        with self._lock:
            blobs = self._take_open()
        if blobs:
            self._submit(blobs)
        futures, self._futures = self._futures, []
        for future in futures:
            future.exception()
        self.raise_if_failed()
        self.write_index()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def save_index(
    backend: Backend, record: IndexRecord, guard: Callable[[], None] | None = None
) -> ObjectName:
    """Save `record` as an index object while `guard` (a session's confirm) passes, checked
    before and after the save; one saved when the second check fails is removed again (a
    session a prune judged ended may find its packs deleted, so its index must not name them)."""
    data = encode_index(record)
    name = object_name(data)
    handle = Handle(ObjectKind.INDEX, name.hex)
    if guard is not None:
        guard()
    backend.save(handle, data)
    if guard is not None:
        try:
            guard()
        except CairnError:
            with contextlib.suppress(BackendError):
                backend.remove(handle)
            raise
    return name
