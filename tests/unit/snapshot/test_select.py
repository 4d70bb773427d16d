"""Choosing snapshots while other clients change the list."""

from __future__ import annotations

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import SystemClock
from cairn.core.ids import ChunkId
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import TEST_KDF
from cairn.format.snapshot import SnapshotBody, SnapshotRecord, decode_snapshot, encode_snapshot
from cairn.repository.errors import SnapshotNotFound
from cairn.repository.repository import Repository
from cairn.snapshot.select import Unreadable, find_snapshot, find_snapshot_names, load_snapshots


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


def test_snapshots_are_named_by_id_without_opening_them() -> None:
    """forget ID must remove a snapshot whose sealed body does not open (a planted one)."""
    backend = MemoryBackend()
    repo = Repository.init(backend, b"pw", SystemClock(), kdf=TEST_KDF)
    repo.start_writing()
    body = SnapshotBody("2026-11-24T10:00:00+00:00", "h", "u", ["/d"], [], ChunkId(bytes(32)))
    real = repo.commit_snapshot(body, set())
    record = decode_snapshot(backend.load(Handle(ObjectKind.SNAPSHOT, real.hex)))
    broken = encode_snapshot(
        SnapshotRecord(record.repo_id, record.reflists, record.sealed[:-1] + b"\x00")
    )
    fake = object_name(broken)
    backend.save(Handle(ObjectKind.SNAPSHOT, fake.hex), broken)
    with pytest.raises(Exception, match=fake.short()):
        find_snapshot(repo, fake.hex[:8])  # reading it fails, naming it
    assert find_snapshot_names(repo, [fake.hex[:8], real.hex]) == [fake, real]
    missing = next(p for p in ("0000", "1111", "2222") if not fake.hex.startswith(p))
    if not real.hex.startswith(missing):
        with pytest.raises(SnapshotNotFound, match="no snapshot with ID"):
            find_snapshot_names(repo, [missing])
    with pytest.raises(SnapshotNotFound, match="neither"):
        find_snapshot_names(repo, ["ab"])


def test_latest_skips_an_unreadable_snapshot_and_says_so() -> None:
    """Issue 11, item 13: a damaged snapshot blocks no other; `skip` hears of it."""
    backend = MemoryBackend()
    repo = Repository.init(backend, b"pw", SystemClock(), kdf=TEST_KDF)
    repo.start_writing()
    names = []
    for hour in range(2):
        time = f"2026-11-24T1{hour}:00:00+00:00"
        body = SnapshotBody(time, "h", "u", ["/d"], [], ChunkId(bytes(32)))
        names.append(repo.commit_snapshot(body, set()))
    older, newer = names
    handle = Handle(ObjectKind.SNAPSHOT, newer.hex)
    backend.remove(handle)
    backend.save(handle, b"not a snapshot")
    with pytest.raises(Exception, match=newer.short()):
        find_snapshot(repo, "latest")  # without `skip`: refused, as before
    skipped: list[Unreadable] = []
    assert find_snapshot(repo, "latest", skip=skipped.append).name == older
    assert [u.name for u in skipped] == [newer]
    assert [s.name for s in load_snapshots(repo, skip=skipped.append)] == [older]
    with pytest.raises(Exception, match=newer.short()):
        find_snapshot(repo, newer.hex[:8], skip=skipped.append)  # by ID: always an error
