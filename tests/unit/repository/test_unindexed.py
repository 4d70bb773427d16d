"""Packs a run stored but could not index are kept in the cache and indexed by the next run:
those the storage still holds and no deletion record names, as the next run's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import ServerUnreachable
from cairn.backends.memory import MemoryBackend
from cairn.core.ids import ObjectName
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import TEST_KDF
from cairn.format.deletion import DeletionRecord, encode_deletion
from cairn.format.index import decode_index
from cairn.format.pack import BlobKind
from cairn.repository.repository import Repository
from cairn.repository.unindexed import UnindexedPacks
from tests.support.repohelpers import PASS, SMALL, chunks, new_clock, open_repo


class GoneBeforeTheIndex(MemoryBackend):
    """Stores packs, then cannot be reached for the index (a server killed mid-backup)."""

    reachable = False

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        if handle.kind is ObjectKind.INDEX and not self.reachable:
            raise ServerUnreachable("cannot reach the server")
        super().save(handle, data)


def packs_on(backend: MemoryBackend) -> set[ObjectName]:
    return {ObjectName.from_hex(i.handle.name) for i in backend.list(ObjectKind.PACK)}


def indexed_on(backend: MemoryBackend) -> dict[ObjectName, bytes | None]:
    """Every pack an index names, with the session of the index that names it."""
    named: dict[ObjectName, bytes | None] = {}
    for info in backend.list(ObjectKind.INDEX):
        record = decode_index(backend.load(info.handle))
        named.update(dict.fromkeys(record.packs, record.session))
    return named


def interrupted_run(tmp_path: Path) -> tuple[GoneBeforeTheIndex, UnindexedPacks]:
    backend = GoneBeforeTheIndex()
    clock = new_clock()
    Repository.init(backend, PASS, clock, kdf=TEST_KDF, params=SMALL)
    repo = open_repo(backend, clock, "backup")
    store = UnindexedPacks(tmp_path / "unindexed")
    repo.keep_unindexed_with(store.keep)
    repo.start_writing()
    for blob in chunks(5, 60):
        repo.store_blob(BlobKind.DATA, blob)
    with pytest.raises(ServerUnreachable):
        repo.flush()
    repo.close()
    assert len(packs_on(backend)) > 2 and not indexed_on(backend)
    backend.reachable = True
    return backend, store


def test_the_next_run_indexes_the_packs_as_its_own(tmp_path: Path) -> None:
    backend, store = interrupted_run(tmp_path)
    repo = open_repo(backend, new_clock(), "backup")
    assert repo.session is not None
    assert store.adopt(repo) == len(packs_on(backend))
    indexed = indexed_on(backend)
    assert set(indexed) == packs_on(backend)
    assert set(indexed.values()) == {repo.session.id}, "prune leaves a running session's alone"
    assert store.adopt(repo) == 0, "done once"


def test_packs_gone_or_condemned_are_not_indexed_again(tmp_path: Path) -> None:
    backend, store = interrupted_run(tmp_path)
    gone, condemned, *kept = sorted(packs_on(backend), key=lambda p: p.hex)
    backend.remove(Handle(ObjectKind.PACK, gone.hex))
    record = encode_deletion(DeletionRecord(0, [], {condemned: []}, []))
    backend.save(Handle(ObjectKind.DELETION, object_name(record).hex), record)
    repo = open_repo(backend, new_clock(), "backup")
    assert store.adopt(repo) == len(kept)
    assert set(indexed_on(backend)) == set(kept)


def test_an_unreadable_deletion_record_leaves_them_for_later(tmp_path: Path) -> None:
    backend, store = interrupted_run(tmp_path)
    backend.save(Handle(ObjectKind.DELETION, "ab" * 32), b"not a deletion record")
    repo = open_repo(backend, new_clock(), "backup")
    assert store.adopt(repo) == 0
    assert not indexed_on(backend)
    backend.remove(Handle(ObjectKind.DELETION, "ab" * 32))
    assert store.adopt(repo) == len(packs_on(backend)), "kept for the next run"
