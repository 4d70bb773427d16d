"""The in-memory index: where every known chunk lives, plus the chunks being stored now."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from cairn.core.ids import ChunkId, ObjectName
from cairn.format.index import IndexRecord
from cairn.format.pack import PackEntry
from cairn.repository.chunkindex import Location


class MasterIndex:
    """Chunk ID → Location for every chunk in a durable index, and the set of chunks in flight.

    ``reserve`` is the dedup decision: it says "store it" exactly once per new chunk, even when
    several workers meet the same chunk at the same moment.
    """

    def __init__(self) -> None:
        self._known: dict[ChunkId, Location] = {}
        self._others: dict[ChunkId, list[Location]] = {}
        """Further locations of chunks that more than one pack holds (rare: a chunk stored
        again after its pack went missing, or by two backups at once)."""
        self._condemned: dict[ChunkId, Location] = {}
        self._pending: set[ChunkId] = set()
        self._lock = threading.Lock()

    batched = False
    """Every lookup is in memory: nothing to prefetch (chunkindex.ChunkIndex)."""

    def __len__(self) -> int:
        return len(self._known)

    def prefetch(self, chunk_ids: Sequence[ChunkId]) -> None:
        """Nothing to do: everything is loaded."""

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._known

    def get(self, chunk_id: ChunkId) -> Location | None:
        """Where a chunk can be read: a durable index, else a pack a prune condemned but has
        not swept yet (design 13.4). Deduplication never uses the second."""
        location = self._known.get(chunk_id)
        if location is None and self._condemned:
            return self._condemned.get(chunk_id)
        return location

    def reserve(self, chunk_id: ChunkId) -> bool:
        """True when the caller must store this chunk; False when it is known or in flight."""
        with self._lock:
            if chunk_id in self._known or chunk_id in self._pending:
                return False
            self._pending.add(chunk_id)
            return True

    def release(self, chunk_ids: list[ChunkId]) -> None:
        """Forget reservations whose blobs were never stored (a failed pack)."""
        with self._lock:
            self._pending.difference_update(chunk_ids)

    def add_pack(self, pack: ObjectName, entries: list[PackEntry]) -> None:
        """Record a stored pack's blobs, completing their reservations."""
        with self._lock:
            for e in entries:
                location = Location(pack, e.kind, e.offset, e.length)
                known = self._known.setdefault(e.chunk_id, location)
                if known.pack != pack:
                    self._others.setdefault(e.chunk_id, []).append(location)
                self._pending.discard(e.chunk_id)

    def add_record(self, record: IndexRecord) -> None:
        for pack, entries in record.packs.items():
            self.add_pack(pack, entries)

    def add_condemned(self, packs: dict[ObjectName, list[PackEntry]]) -> None:
        """Packs of a deletion record: readable until swept, never deduplicated against."""
        with self._lock:
            for pack, entries in packs.items():
                for e in entries:
                    self._condemned.setdefault(
                        e.chunk_id, Location(pack, e.kind, e.offset, e.length)
                    )

    def condemned_packs(self) -> set[ObjectName]:
        with self._lock:
            return {loc.pack for loc in self._condemned.values()}

    def items(self) -> list[tuple[ChunkId, Location]]:
        with self._lock:
            return list(self._known.items())

    def drop_packs(self, packs: set[ObjectName]) -> None:
        """Forget every location in `packs` (packs storage no longer holds): a chunk another
        pack also holds is read from there, any other chunk is no longer known."""
        with self._lock:
            for chunk_id in [c for c, loc in self._known.items() if loc.pack in packs]:
                others = [o for o in self._others.pop(chunk_id, []) if o.pack not in packs]
                if others:
                    self._known[chunk_id] = others[0]
                    self._others[chunk_id] = others[1:]
                else:
                    del self._known[chunk_id]

    def packs(self) -> set[ObjectName]:
        """Every pack a known chunk can be read from."""
        with self._lock:
            packs = {loc.pack for loc in self._known.values()}
            packs.update(o.pack for others in self._others.values() for o in others)
            return packs
