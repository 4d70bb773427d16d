"""Readers while a prune swaps indexes (design 13.3: the superseding index is saved, then the old
ones are removed): a reader whose listing still names a removed index reads the new one instead,
where it used to fail with "index ... is missing from storage"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from cairn.backends.base import Handle, ObjectInfo, ObjectKind
from cairn.backends.errors import NotFound
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import FrozenClock
from cairn.core.ids import ObjectName
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import TEST_KDF
from cairn.format.index import IndexRecord, encode_index
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.repository.check import Checker
from cairn.repository.errors import ObjectMissing
from cairn.repository.repository import Repository

CLOCK = FrozenClock(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))


class SwapsAfterIndexListing(MemoryBackend):
    """Runs `then` once, right after the first listing of the indexes has been read out."""

    then: Callable[[], None] | None = None

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        yield from super().list(kind)
        if kind is ObjectKind.INDEX and self.then is not None:
            then, self.then = self.then, None
            then()


def backup(backend: MemoryBackend, content: bytes) -> None:
    repo = Repository.open(backend, b"pw", CLOCK)
    repo.load_index()
    repo.start_writing()
    chunk, _ = repo.store_blob(BlobKind.DATA, content)
    node = Node(name=b"f", type="file", mode=0o644, content=[chunk], sizes=[len(content)])
    tree, _ = repo.store_blob(BlobKind.TREE, encode_tree([node]))
    repo.commit_snapshot(
        SnapshotBody(CLOCK.now().isoformat(), "h", "u", ["/d"], [], tree), {chunk, tree}
    )
    repo.close()


def index_names(backend: MemoryBackend) -> list[ObjectName]:
    return [ObjectName.from_hex(i.handle.name) for i in backend.list(ObjectKind.INDEX)]


def swap(backend: MemoryBackend) -> None:
    """What a prune's swap does: one new index of everything, then the old ones removed."""
    repo = Repository.open(backend, b"pw", CLOCK)
    old = index_names(backend)
    merged = IndexRecord(supersedes=old)
    for name in old:
        merged.packs.update(repo.read_index(name).packs)
    data = encode_index(merged)
    backend.save(Handle(ObjectKind.INDEX, object_name(data).hex), data)
    for name in old:
        backend.remove(Handle(ObjectKind.INDEX, name.hex))


def two_backups() -> SwapsAfterIndexListing:
    backend = SwapsAfterIndexListing()
    Repository.init(backend, b"pw", CLOCK, kdf=TEST_KDF)
    backup(backend, b"first machine " * 300)
    backup(backend, b"second machine " * 300)
    backend.then = lambda: swap(backend)
    return backend


def test_loading_the_index_during_a_swap_reads_the_new_index() -> None:
    backend = two_backups()
    repo = Repository.open(backend, b"pw", CLOCK)
    loaded = repo.load_index()
    assert loaded == index_names(backend), "the merged index was read"
    for name in repo.snapshot_names():
        snap = repo.read_snapshot(name)
        assert repo.index.get(snap.body.tree) is not None


def test_check_during_a_swap_finds_nothing_wrong() -> None:
    report = Checker(Repository.open(two_backups(), b"pw", CLOCK)).run(read_data=True)
    assert report.errors == [] and report.snapshots == 2


def test_an_index_still_listed_but_unreadable_is_an_error() -> None:
    class Unreadable(MemoryBackend):
        def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
            if handle.kind is ObjectKind.INDEX:
                raise NotFound(str(handle))
            return super().load(handle, offset, length)

    backend = Unreadable()
    Repository.init(backend, b"pw", CLOCK, kdf=TEST_KDF)
    repo = Repository.open(backend, b"pw", CLOCK)
    repo.start_writing()
    tree, _ = repo.store_blob(BlobKind.TREE, encode_tree([]))
    repo.commit_snapshot(SnapshotBody(CLOCK.now().isoformat(), "h", "u", ["/d"], [], tree), {tree})
    repo.close()
    with pytest.raises(ObjectMissing):
        Repository.open(backend, b"pw", CLOCK).load_index()
    report = Checker(Repository.open(backend, b"pw", CLOCK)).run()
    assert any("missing from storage" in e for e in report.errors)
