"""Choosing snapshots while another machine forgets some: the forgotten ones are left out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from cairn.backends.base import Handle, ObjectInfo, ObjectKind
from cairn.backends.errors import NotFound
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import FrozenClock
from cairn.crypto.kdf import TEST_KDF
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import encode_tree
from cairn.repository.errors import ObjectMissing
from cairn.repository.repository import Repository
from cairn.snapshot.select import SnapshotFilter, load_snapshots

CLOCK = FrozenClock(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))


class AfterSnapshotListing(MemoryBackend):
    """Runs `then` once, right after the first listing of the snapshots has been read out."""

    then: Callable[[], None] | None = None

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        yield from super().list(kind)
        if kind is ObjectKind.SNAPSHOT and self.then is not None:
            then, self.then = self.then, None
            then()


def snapshot(backend: MemoryBackend, host: str) -> None:
    repo = Repository.open(backend, b"pw", CLOCK)
    repo.load_index()
    repo.start_writing()
    tree, _ = repo.store_blob(BlobKind.TREE, encode_tree([]))
    repo.commit_snapshot(SnapshotBody(CLOCK.now().isoformat(), host, "u", ["/d"], [], tree), {tree})
    repo.close()


def repository(backend: MemoryBackend) -> Repository:
    Repository.init(backend, b"pw", CLOCK, kdf=TEST_KDF)
    for host in ("a", "b", "c"):
        snapshot(backend, host)
    return Repository.open(backend, b"pw", CLOCK)


def test_a_snapshot_forgotten_after_the_listing_is_left_out() -> None:
    backend = AfterSnapshotListing()
    repo = repository(backend)
    doomed = next(iter(backend.list(ObjectKind.SNAPSHOT))).handle
    backend.then = lambda: backend.remove(doomed)

    snaps = load_snapshots(repo, SnapshotFilter())

    assert len(snaps) == 2 and doomed.name not in {s.name.hex for s in snaps}


def test_a_listed_snapshot_that_cannot_be_read_is_an_error() -> None:
    class Unloadable(MemoryBackend):
        def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
            if handle.kind is ObjectKind.SNAPSHOT:
                raise NotFound(str(handle))
            return super().load(handle, offset, length)

    repo = repository(Unloadable())
    with pytest.raises(ObjectMissing):
        load_snapshots(repo)
