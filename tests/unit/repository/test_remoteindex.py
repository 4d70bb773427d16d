"""RemoteIndex: the bounded index a backup to a server uses (design 14.11).

The storage's answers come from a plain function here (a dict of known chunks): what is tested is
the index's own logic (the exactly-once dedup decision, the bound, batching); the index against
a real server is tested in tests/integration/test_cli_chunkquery.py.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cairn.core.ids import ChunkId, ObjectName
from cairn.format.pack import BlobKind, PackEntry
from cairn.repository.chunkindex import Location
from cairn.repository.remoteindex import RemoteIndex

PACK = ObjectName(b"\x07" * 32)


class Storage:
    """What a server's chunk table would answer, and how it was asked."""

    def __init__(self, known: list[ChunkId]) -> None:
        self.known = {
            c: Location(PACK, BlobKind.DATA, 8 + 100 * i, 90) for i, c in enumerate(known)
        }
        self.questions: list[list[ChunkId]] = []
        self._lock = threading.Lock()

    def __call__(self, ids: list[ChunkId]) -> dict[ChunkId, Location]:
        with self._lock:
            self.questions.append(list(ids))
        return {c: self.known[c] for c in ids if c in self.known}


def ids(n: int) -> list[ChunkId]:
    return [ChunkId(os.urandom(32)) for _ in range(n)]


def test_prefetched_chunks_are_decided_without_asking_again() -> None:
    known, new = ids(50), ids(50)
    storage = Storage(known)
    index = RemoteIndex(storage, capacity=1000)
    index.prefetch(known + new)
    assert [index.reserve(c) for c in known] == [False] * 50
    assert [index.reserve(c) for c in new] == [True] * 50
    assert all(c in index for c in known) and not any(c in index for c in new)
    assert len(storage.questions) == 1


def test_a_chunk_not_prefetched_is_asked_about_alone() -> None:
    (known,) = ids(1)
    storage = Storage([known])
    index = RemoteIndex(storage)
    assert index.get(known) == storage.known[known]
    assert storage.questions == [[known]]


def test_the_answers_never_exceed_the_capacity() -> None:
    storage = Storage(ids(10))
    index = RemoteIndex(storage, capacity=64)
    for _ in range(20):
        index.prefetch(ids(50))
    assert index.peak == 64 and len(index) == 64


def test_chunks_this_run_stored_are_kept_beyond_the_capacity() -> None:
    new = ids(200)
    index = RemoteIndex(Storage([]), capacity=8)
    index.prefetch(new)
    assert all(index.reserve(c) for c in new[:8])  # only the last 8 answers are held
    index.add_pack(PACK, [PackEntry(c, BlobKind.DATA, 8 + i, 1) for i, c in enumerate(new)])
    assert all(c in index for c in new)
    assert not any(index.reserve(c) for c in new)
    assert index.get(new[0]) == Location(PACK, BlobKind.DATA, 8, 1)


def test_a_released_reservation_can_be_taken_again() -> None:
    (chunk,) = ids(1)
    index = RemoteIndex(Storage([]))
    assert index.reserve(chunk) and not index.reserve(chunk)
    index.release([chunk])
    assert index.reserve(chunk)


@pytest.mark.parametrize("prefetch", [True, False])
def test_the_dedup_decision_is_exactly_once_under_concurrency(prefetch: bool) -> None:
    """Eight workers meet the same chunks at the same moment: each new chunk is stored by
    exactly one of them, and no known chunk by any."""
    known, new = ids(200), ids(200)
    everything = known + new
    index = RemoteIndex(Storage(known), capacity=50)  # evictions while they run
    start = threading.Barrier(8)
    decisions: list[list[tuple[ChunkId, bool]]] = []

    def worker(seed: int) -> None:
        order = everything[seed:] + everything[:seed]
        start.wait()
        mine: list[Any] = []
        for i in range(0, len(order), 16):
            batch = order[i : i + 16]
            if prefetch:
                index.prefetch(batch)
            mine.extend((c, index.reserve(c)) for c in batch)
        decisions.append(mine)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(0, 400, 50)))
    stored = [c for mine in decisions for c, store in mine if store]
    assert sorted(stored) == sorted(new)
    assert index.peak <= 50


def test_a_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RemoteIndex(Storage([]), capacity=0)
