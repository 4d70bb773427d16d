"""check while backups commit and forgets remove: neither is ever reported as damage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from cairn.backends.base import Handle, ObjectInfo, ObjectKind
from cairn.backends.errors import NotFound
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import FrozenClock
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import TEST_KDF
from cairn.format.config import RepoParams
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.repository.check import Checker
from cairn.repository.repository import Repository

CLOCK = FrozenClock(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
SMALL = RepoParams(
    chunk_min=1024, chunk_avg=2048, chunk_max=8192, pack_size=16 * 1024, compression=0
)


def backup(backend: MemoryBackend, content: bytes) -> None:
    """One snapshot of one file, committed by its own repository handle (another machine)."""
    repo = Repository.open(backend, b"pw", CLOCK)
    repo.load_index()
    repo.start_writing()
    chunk, _ = repo.store_blob(BlobKind.DATA, content)
    node = Node(
        name=b"f", type="file", mode=0o644, content=[chunk], sizes=[len(content)], size=len(content)
    )
    tree, _ = repo.store_blob(BlobKind.TREE, encode_tree([node]))
    body = SnapshotBody(CLOCK.now().isoformat(), "host", "user", ["/d"], [], tree)
    repo.commit_snapshot(body, {chunk, tree})
    repo.close()


class AfterListing(MemoryBackend):
    """Runs `then` once, right after the first listing of `kind` has been read out."""

    kind = ObjectKind.INDEX
    then: Callable[[], None] | None = None

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        yield from super().list(kind)
        if kind is self.kind and self.then is not None:
            then, self.then = self.then, None
            then()


def test_a_snapshot_committed_while_check_reads_the_indexes_is_not_an_error() -> None:
    backend = AfterListing()
    Repository.init(backend, b"pw", CLOCK, kdf=TEST_KDF, params=SMALL)
    backup(backend, b"first machine " * 200)
    backend.then = lambda: backup(backend, b"second machine " * 200)

    report = Checker(Repository.open(backend, b"pw", CLOCK)).run(read_data=True)

    assert report.errors == []
    assert report.snapshots == 1, "the snapshot listed before the indexes were read"
    later = Checker(Repository.open(backend, b"pw", CLOCK)).run(read_data=True)
    assert later.errors == [] and later.snapshots == 2


def test_a_snapshot_forgotten_while_check_runs_is_not_an_error() -> None:
    backend = AfterListing()
    Repository.init(backend, b"pw", CLOCK, kdf=TEST_KDF, params=SMALL)
    backup(backend, b"first machine " * 200)
    backup(backend, b"second machine " * 200)
    doomed = next(iter(backend.list(ObjectKind.SNAPSHOT))).handle
    backend.kind = ObjectKind.SNAPSHOT
    backend.then = lambda: backend.remove(doomed)  # a forget, just after check listed snapshots

    report = Checker(Repository.open(backend, b"pw", CLOCK)).run(read_data=True)

    assert report.errors == []
    assert report.snapshots == 1


def test_a_listed_snapshot_that_cannot_be_loaded_is_still_an_error() -> None:
    class Unloadable(MemoryBackend):
        def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
            if handle.kind is ObjectKind.SNAPSHOT:
                raise NotFound(f"{handle}")
            return super().load(handle, offset, length)

    backend = Unloadable()
    Repository.init(backend, b"pw", CLOCK, kdf=TEST_KDF, params=SMALL)
    backup(backend, b"first machine " * 200)

    report = Checker(Repository.open(backend, b"pw", CLOCK)).run()

    assert len(report.errors) == 1 and "missing from storage" in report.errors[0]


def test_many_packs_in_no_index_are_one_warning_that_names_a_running_backup() -> None:
    backend = MemoryBackend()
    Repository.init(backend, b"pw", CLOCK, kdf=TEST_KDF, params=SMALL)
    backup(backend, b"committed " * 200)
    for i in range(12):  # what a running backup has uploaded and not yet indexed
        data = b"pack %d" % i
        backend.save(Handle(ObjectKind.PACK, object_name(data).hex), data)

    report = Checker(Repository.open(backend, b"pw", CLOCK)).run()

    unindexed = [w for w in report.warnings if "in no index" in w]
    assert len(unindexed) == 1
    assert unindexed[0].startswith("12 packs are in no index")
    assert "a backup running now" in unindexed[0]
    assert not report.errors
