"""A bounded index for backups to a Cairn server: ask the server, remember a little (design 14.11).

Instead of loading every index object, a backup asks the server which of its chunks the
tenant's indexes list (`ChunkQuerier.query_chunks`), a batch at a time: the archiver prefetches
the chunks of a file, or of a group of small files, before it stores them. Answers, known and
unknown alike, are kept in an LRU of `capacity` entries; the chunks this backup stored itself are
kept apart, in full (they are its new data, which the index of a local backup holds too). So the
client's memory depends on the batch size and the backup's new data, not on the repository's
size.

The dedup decision stays exactly-once under concurrency: `reserve` decides under one lock, from
the chunks in flight and stored by this run first, then from the server's answer; two workers
that both had to ask about the same chunk decide one after the other, and the second finds the
first's reservation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import cast

from cairn.backends.base import Backend, ChunkQuerier
from cairn.backends.errors import NotFound
from cairn.core.ids import ChunkId, ObjectName
from cairn.format.pack import BlobKind, PackEntry
from cairn.repository.chunkindex import Location

DEFAULT_CAPACITY = 16_384
"""Answers kept (~300 bytes each): many batches of every worker, a few MiB."""

Query = Callable[[list[ChunkId]], dict[ChunkId, Location]]
"""Ask the storage where these chunks live; unknown ones are left out."""


class RemoteIndex:
    """The ChunkIndex of a backup to a server: the server's answers, bounded, and this run's
    own chunks. Thread-safe."""

    batched = True

    def __init__(self, query: Query, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._query = query
        self._capacity = capacity
        self._answers: OrderedDict[ChunkId, Location | None] = OrderedDict()
        self._own: dict[ChunkId, Location] = {}
        self._pending: set[ChunkId] = set()
        self._lock = threading.Lock()
        self.peak = 0
        """The most answers ever held at once (never more than `capacity`)."""
        self.queries = 0
        """Questions asked of the storage (each one round trip per 4,096 chunks)."""

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        with self._lock:
            return len(self._answers) + len(self._own)

    def prefetch(self, chunk_ids: Sequence[ChunkId]) -> None:
        with self._lock:
            wanted = []
            for chunk_id in dict.fromkeys(chunk_ids):
                if chunk_id in self._own or chunk_id in self._pending:
                    continue
                if chunk_id in self._answers:
                    self._answers.move_to_end(chunk_id)  # about to be used: keep it
                else:
                    wanted.append(chunk_id)
        if wanted:
            self._ask(wanted)

    def reserve(self, chunk_id: ChunkId) -> bool:
        with self._lock:
            decision = self._decide(chunk_id, self._answered(chunk_id))
        if decision is not None:
            return decision
        known = chunk_id in self._ask([chunk_id])
        with self._lock:
            decided = self._decide(chunk_id, known)
        assert decided is not None
        return decided

    def _decide(self, chunk_id: ChunkId, known: bool | None) -> bool | None:
        """Under the lock: the dedup decision, or None when the server must be asked first."""
        if chunk_id in self._own or chunk_id in self._pending:
            return False
        if known is None:
            return None
        if known:
            return False
        self._pending.add(chunk_id)
        return True

    def _answered(self, chunk_id: ChunkId) -> bool | None:
        """Under the lock: what the server said of the chunk, None if not asked (or forgotten)."""
        if chunk_id not in self._answers:
            return None
        self._answers.move_to_end(chunk_id)
        return self._answers[chunk_id] is not None

    def release(self, chunk_ids: list[ChunkId]) -> None:
        with self._lock:
            self._pending.difference_update(chunk_ids)

    def add_pack(self, pack: ObjectName, entries: list[PackEntry]) -> None:
        with self._lock:
            for e in entries:
                self._own.setdefault(e.chunk_id, Location(pack, e.kind, e.offset, e.length))
                self._pending.discard(e.chunk_id)

    def get(self, chunk_id: ChunkId) -> Location | None:
        with self._lock:
            if chunk_id in self._own:
                return self._own[chunk_id]
            if chunk_id in self._answers:
                self._answers.move_to_end(chunk_id)
                return self._answers[chunk_id]
        return self._ask([chunk_id]).get(chunk_id)

    def __contains__(self, chunk_id: object) -> bool:
        return self.get(cast(ChunkId, chunk_id)) is not None

    def _ask(self, chunk_ids: list[ChunkId]) -> dict[ChunkId, Location]:
        found = self._query(chunk_ids)
        with self._lock:
            self.queries += 1
            for chunk_id in chunk_ids:
                self._answers[chunk_id] = found.get(chunk_id)
                self._answers.move_to_end(chunk_id)
            while len(self._answers) > self._capacity:
                self._answers.popitem(last=False)
            self.peak = max(self.peak, len(self._answers))
        return found


def remote_index(backend: Backend, capacity: int = DEFAULT_CAPACITY) -> RemoteIndex | None:
    """A RemoteIndex over `backend` if it answers chunk queries, else None (load the index).

    Asks one empty question first: a server without the chunk query answers it 404, and so does
    nothing else a backup does next, so the caller falls back to loading the whole index.
    """
    if not backend.capabilities.chunk_query or not isinstance(backend, ChunkQuerier):
        return None
    try:
        backend.query_chunks([])
    except NotFound:
        return None
    querier = backend
    return RemoteIndex(lambda ids: locations(querier, ids), capacity)


def locations(querier: ChunkQuerier, chunk_ids: list[ChunkId]) -> dict[ChunkId, Location]:
    """The storage's raw answers as Locations; an answer no index could hold is ignored."""
    found: dict[ChunkId, Location] = {}
    packs: dict[bytes, ObjectName] = {}  # one ObjectName per pack, shared by its chunks
    kinds = {int(kind): kind for kind in BlobKind}
    for chunk_id, (pack, kind, offset, length) in querier.query_chunks(chunk_ids).items():
        if kind not in kinds or len(pack) != len(chunk_id):
            continue
        name = packs.get(pack)
        if name is None:
            name = packs[pack] = ObjectName(pack)
        found[ChunkId(chunk_id)] = Location(name, kinds[kind], offset, length)
    return found
