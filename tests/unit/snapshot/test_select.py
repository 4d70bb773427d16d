"""Choosing snapshots while other clients change the list."""

from __future__ import annotations

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import SystemClock
from cairn.core.ids import ChunkId
from cairn.crypto.kdf import TEST_KDF
from cairn.format.snapshot import SnapshotBody
from cairn.repository.repository import Repository
from cairn.snapshot.select import find_snapshot, load_snapshots


class _ForgetOnFirstRead(MemoryBackend):
    """Removes the snapshot a reader listed just before the reader loads it (a forget that
    runs meanwhile)."""

    armed = False

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        if self.armed and handle.kind is ObjectKind.SNAPSHOT:
            self.armed = False
            self.remove(handle)
        return super().load(handle, offset, length)


def test_a_snapshot_forgotten_while_the_list_is_read_is_left_out() -> None:
    # Found by the kill harness (tests/robustness): a backup looking for its parent snapshot
    # failed with CAIRN-E021 because a concurrent forget removed one it had listed.
    backend = _ForgetOnFirstRead()
    repo = Repository.init(backend, b"pw", SystemClock(), kdf=TEST_KDF)
    repo.start_writing()
    for hour in range(3):
        time = f"2026-11-24T1{hour}:00:00+00:00"
        body = SnapshotBody(time, "host", "user", ["/d"], [], ChunkId(bytes(32)))
        repo.commit_snapshot(body, set())
    backend.armed = True
    snaps = load_snapshots(repo)
    assert not backend.armed, "a snapshot was removed between the listing and its read"
    assert len(snaps) == 2
    assert find_snapshot(repo, "latest").name in {s.name for s in snaps}
