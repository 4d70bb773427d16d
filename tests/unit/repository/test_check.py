"""check while backups commit: a snapshot that lands during a check is never reported damaged."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from cairn.backends.base import ObjectInfo, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import FrozenClock
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


class CommitsAfterIndexListing(MemoryBackend):
    """Runs `then` once, right after the first listing of the indexes has been read out."""

    then: Callable[[], None] | None = None

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        yield from super().list(kind)
        if kind is ObjectKind.INDEX and self.then is not None:
            then, self.then = self.then, None
            then()


def test_a_snapshot_committed_while_check_reads_the_indexes_is_not_an_error() -> None:
    backend = CommitsAfterIndexListing()
    Repository.init(backend, b"pw", CLOCK, kdf=TEST_KDF, params=SMALL)
    backup(backend, b"first machine " * 200)
    backend.then = lambda: backup(backend, b"second machine " * 200)

    report = Checker(Repository.open(backend, b"pw", CLOCK)).run(read_data=True)

    assert report.errors == []
    assert report.snapshots == 1, "the snapshot listed before the indexes were read"
    later = Checker(Repository.open(backend, b"pw", CLOCK)).run(read_data=True)
    assert later.errors == [] and later.snapshots == 2
