"""check --repair: rebuilds the index from the packs, keeps healthy snapshots, is idempotent.

Each test damages a repository the way storage does (a lost or flipped object, a truncated pack),
repairs it, and then asks what a user asks: does `check --read-data` pass (after the next backup
where chunks were lost), does every snapshot restore bit-exact, does a second repair write nothing?
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import FrozenClock
from cairn.crypto.kdf import TEST_KDF
from cairn.format.pack import BlobKind, parse_pack
from cairn.format.tree import decode_tree
from cairn.repository.check import Checker
from cairn.repository.locks import LEASE_MS, SKEW_MS, Session
from cairn.repository.prune import PruneOptions, PruneRunning
from cairn.repository.repair import Repairer, RepairRefused, RepairResult
from cairn.repository.repository import Repository
from cairn.snapshot.forget import remove_snapshots
from tests.support.repohelpers import (
    PASS,
    SMALL,
    CrashAt,
    IncompleteLister,
    Killed,
    assert_consistent,
    backup,
    chunks,
    files,
    new_clock,
    open_repo,
    prune,
    two_snapshots,
)


class _Counting(MemoryBackend):
    """Counts saves and removes, so a test can say "nothing was written"."""

    writes = 0

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        self.writes += 1
        super().save(handle, data)

    def remove(self, handle: Handle) -> None:
        self.writes += 1
        super().remove(handle)


def repair(backend: Backend, clock: FrozenClock, read_data: bool = False) -> RepairResult:
    repo = Repository.open(backend, PASS, clock)  # as check does: no index loaded first
    repo.session = Session(backend, clock, "repair", seal=repo._seal_lock)
    repo.session.acquire(renew_in_background=False)
    try:
        return Repairer(repo).run(read_data=read_data)
    finally:
        repo.close()


def check_errors(backend: Backend, clock: FrozenClock, read_data: bool = True) -> list[str]:
    repo = Repository.open(backend, PASS, clock)
    return Checker(repo).run(read_data=read_data).errors


def objects(backend: Backend, kind: ObjectKind) -> list[Handle]:
    return sorted((i.handle for i in backend.list(kind)), key=str)


def replace(backend: MemoryBackend, handle: Handle, data: bytes) -> None:
    backend.remove(handle)
    backend._objects[handle] = data  # storage damage: bytes that no longer match the name


def pack_holding(backend: Backend, clock: FrozenClock, name: bytes) -> Handle:
    """The pack that holds the first data chunk of file `name` of the latest snapshot."""
    repo = open_repo(backend, clock)
    for snap_name in repo.snapshot_names():
        snap = repo.read_snapshot(snap_name)
        for node in decode_tree(repo.fetch_blob(BlobKind.TREE, snap.body.tree)):
            if node.name == name:
                location = repo.index.get(node.content[0])
                assert location is not None
                return Handle(ObjectKind.PACK, location.pack.hex)
    raise AssertionError(f"no file {name!r}")


def test_a_healthy_repository_is_left_exactly_as_it_is(tmp_path: Path) -> None:
    backend, clock = _Counting(), new_clock()
    two_snapshots(backend, clock)
    before = {k: objects(backend, k) for k in ObjectKind if k is not ObjectKind.LOCK}
    writes = backend.writes
    result = repair(backend, clock, read_data=True)
    assert not result.changed
    assert backend.writes - writes == 2  # its own lock, saved and removed
    assert {k: objects(backend, k) for k in ObjectKind if k is not ObjectKind.LOCK} == before
    assert_consistent(backend, clock, tmp_path)


def test_lost_indexes_are_rebuilt_from_the_packs_and_a_second_run_writes_nothing(
    tmp_path: Path,
) -> None:
    backend, clock = _Counting(), new_clock()
    two_snapshots(backend, clock)
    for handle in objects(backend, ObjectKind.INDEX):
        backend.remove(handle)
    assert check_errors(backend, clock, read_data=False)
    result = repair(backend, clock)
    assert result.changed and result.packs_added == result.packs > 0
    assert_consistent(backend, clock, tmp_path)
    writes = backend.writes
    assert not repair(backend, clock, read_data=True).changed
    assert backend.writes - writes == 2


def test_a_damaged_index_is_replaced(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    index = objects(backend, ObjectKind.INDEX)[0]
    replace(backend, index, backend.load(index)[:-7])
    result = repair(backend, clock)
    assert result.changed and result.indexes_replaced == 2
    assert_consistent(backend, clock, tmp_path)


def test_a_flipped_blob_is_lost_alone_and_the_next_backup_stores_it_again(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    Repository.init(backend, PASS, clock, kdf=TEST_KDF, params=SMALL)
    keep = files(keep=chunks(7, 3))
    hit = files(hit=chunks(8, 3))
    repo = open_repo(backend, clock, "backup")
    backup(repo, keep)
    repo.close()
    repo = open_repo(backend, clock, "backup")
    backup(repo, hit)
    repo.close()
    pack = pack_holding(backend, clock, b"hit")
    data = bytearray(backend.load(pack))
    data[20] ^= 0x40  # inside the first blob's sealed bytes
    replace(backend, pack, bytes(data))

    assert not repair(backend, clock).changed  # the trailer is intact: only --read-data sees it
    result = repair(backend, clock, read_data=True)
    assert result.damaged_packs == 1 and result.lost_blobs == 1
    assert pack not in objects(backend, ObjectKind.PACK)
    errors = check_errors(backend, clock)
    assert errors and all("missing" in e for e in errors)

    repo = open_repo(backend, clock, "backup")  # the same files backed up again
    backup(repo, hit)
    repo.close()
    assert_consistent(backend, clock, tmp_path)
    assert not repair(backend, clock, read_data=True).changed


def test_a_truncated_pack_keeps_the_blobs_before_the_cut(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    pack = max(objects(backend, ObjectKind.PACK), key=lambda h: backend.stat(h).size)
    data = backend.load(pack)
    replace(backend, pack, data[: len(data) // 2])
    result = repair(backend, clock)
    assert result.damaged_packs == 1 and result.salvaged_blobs > 0 and result.lost_blobs > 0
    assert not repair(backend, clock, read_data=True).changed
    repo = open_repo(backend, clock, "backup")  # back up everything again: nothing is lost
    backup(repo, files(a1=chunks(1, 6) + chunks(2, 20), old=chunks(3, 20)))
    backup(repo, files(a2=chunks(1, 6) + chunks(2, 20)[:5], b=chunks(4, 8)))
    repo.close()
    assert_consistent(backend, clock, tmp_path)


def test_a_missing_pack_leaves_the_index_and_is_stored_again(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    pack = objects(backend, ObjectKind.PACK)[0]
    backend.remove(pack)
    result = repair(backend, clock)
    assert result.packs_dropped == 1
    repo = open_repo(backend, clock, "backup")
    backup(repo, files(a1=chunks(1, 6) + chunks(2, 20), old=chunks(3, 20)))
    backup(repo, files(a2=chunks(1, 6) + chunks(2, 20)[:5], b=chunks(4, 8)))
    repo.close()
    assert_consistent(backend, clock, tmp_path)


def test_a_damaged_deletion_record_is_removed_and_its_packs_kept(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    first, _ = two_snapshots(backend, clock)
    remove_snapshots(open_repo(backend, clock), [first.hex])
    prune(backend, clock, PruneOptions(max_unused=0))
    (record,) = objects(backend, ObjectKind.DELETION)
    replace(backend, record, b"garbage")
    result = repair(backend, clock)
    assert result.records_removed == 1 and result.packs_added > 0
    assert objects(backend, ObjectKind.DELETION) == []
    assert_consistent(backend, clock, tmp_path)
    prune(backend, clock, PruneOptions(max_unused=0))  # prune works again, and condemns anew
    assert len(objects(backend, ObjectKind.DELETION)) == 1


def test_a_lost_reflist_is_rebuilt_so_prune_can_run(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    reflist = objects(backend, ObjectKind.REFLIST)[0]
    backend.remove(reflist)
    snapshots = len(objects(backend, ObjectKind.SNAPSHOT))
    result = repair(backend, clock)
    assert result.reflists_rebuilt == 1
    assert reflist not in objects(backend, ObjectKind.REFLIST)  # a new salt: a new name
    assert len(objects(backend, ObjectKind.SNAPSHOT)) == snapshots  # rewritten, not added
    assert not repair(backend, clock).changed
    prune(backend, clock, PruneOptions(max_unused=0))
    assert_consistent(backend, clock, tmp_path)


def test_a_lost_reflist_is_rebuilt_in_the_run_that_salvages_its_trees(tmp_path: Path) -> None:
    # Found by the kill harness (tests/robustness): the trees a reflist is rebuilt from may sit
    # in a damaged pack; they are in the salvage pack by then, so one run mends both.
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    repo = open_repo(backend, clock)
    snap = repo.read_snapshot(sorted(repo.snapshot_names())[0])
    root = repo.index.get(snap.body.tree)
    assert root is not None
    pack = Handle(ObjectKind.PACK, root.pack.hex)
    data = bytearray(backend.load(pack))
    other = [e for e in parse_pack(bytes(data)) if e.kind is BlobKind.DATA]
    assert other, "the root tree's pack holds no data blob to damage"
    data[other[0].offset + other[0].length // 2] ^= 0x40
    replace(backend, pack, bytes(data))
    (reflist,) = snap.record.reflists
    backend.remove(Handle(ObjectKind.REFLIST, reflist.hex))

    result = repair(backend, clock, read_data=True)
    assert result.damaged_packs == 1 and result.salvaged_blobs > 0
    assert result.reflists_rebuilt == 1, result.notes
    assert len(objects(backend, ObjectKind.REFLIST)) == 2  # the rebuilt one has a name of its own
    repo = open_repo(backend, clock, "backup")  # the lost chunk is stored again
    backup(repo, files(a1=chunks(1, 6) + chunks(2, 20), old=chunks(3, 20)))
    backup(repo, files(a2=chunks(1, 6) + chunks(2, 20)[:5], b=chunks(4, 8)))
    repo.close()
    assert_consistent(backend, clock, tmp_path)
    assert not repair(backend, clock, read_data=True).changed


def test_repair_and_prune_never_run_at_once() -> None:
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    other = Session(backend, clock, "prune")
    other.acquire(renew_in_background=False)
    with pytest.raises(RepairRefused, match="prune"):
        repair(backend, clock)
    other.release()
    other = Session(backend, clock, "repair")
    other.acquire(renew_in_background=False)
    with pytest.raises(PruneRunning, match="repair"):
        prune(backend, clock)


def test_an_incomplete_pack_listing_changes_nothing() -> None:
    backend, clock = IncompleteLister(), new_clock()
    two_snapshots(backend, clock)
    for handle in objects(backend, ObjectKind.INDEX):
        backend.remove(handle)
    backend.broken = ObjectKind.PACK
    with pytest.raises(RepairRefused, match="completely"):
        repair(backend, clock)
    backend.broken = None
    assert objects(backend, ObjectKind.INDEX) == []


def _damage(backend: MemoryBackend) -> None:
    """Every kind of damage repair mends without losing a snapshot."""
    indexes = objects(backend, ObjectKind.INDEX)
    backend.remove(indexes[0])
    backend.remove(objects(backend, ObjectKind.REFLIST)[0])


def test_a_crash_at_every_step_of_repair_is_mended_by_the_next_run(tmp_path: Path) -> None:
    clock = new_clock()
    probe = CrashAt()
    two_snapshots(probe, clock)
    _damage(probe)
    start = probe.count
    repair(probe, clock)
    steps = probe.count - start
    assert steps >= 4
    for k in range(1, steps + 1):
        backend = CrashAt()
        two_snapshots(backend, clock)
        _damage(backend)
        backend.at = backend.count + k
        with contextlib.suppress(Killed):
            repair(backend, clock)
        assert backend.count >= backend.at, f"step {k} was never reached"
        backend.at = 0
        clock.advance((LEASE_MS + SKEW_MS) / 1000 + 1)  # the killed run's lock ends
        repair(backend, clock)
        assert_consistent(backend, clock, tmp_path)
        assert not repair(backend, clock).changed, f"step {k}: a third run still changed things"


def test_a_backup_running_during_repair_commits_a_whole_snapshot(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    for handle in objects(backend, ObjectKind.INDEX)[:1]:
        backend.remove(handle)
    writer = open_repo(backend, clock, "backup")
    writer.start_writing()
    fresh = chunks(9, 12)
    for chunk in fresh[:6]:
        writer.store_blob(BlobKind.DATA, chunk)
    writer.flush()  # some packs and an index of the running backup are on storage
    repair(backend, clock)
    backup(writer, files(fresh=fresh))
    writer.close()
    assert_consistent(backend, clock, tmp_path)
    assert not repair(backend, clock).changed
