"""Prune over a memory backend: condemn, then sweep; backups running meanwhile lose nothing.

The "crash" tests stop a forget + prune at every storage operation (an exception stands in for
the kill: memory-backend saves are atomic, as local saves are) and check that the repository
stays consistent, every remaining snapshot restores, and the next prune finishes the job.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import FrozenClock
from cairn.core.ids import ChunkId, ObjectName
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import TEST_KDF
from cairn.format.pack import BlobKind, build_pack
from cairn.repository.locks import LEASE_MS, SKEW_MS, Session
from cairn.repository.prune import PruneOptions, PruneRefused, PruneRunning
from cairn.repository.repository import Repository
from cairn.snapshot.forget import remove_snapshots
from tests.support.repohelpers import (
    PASS,
    SMALL,
    CrashAt,
    Gated,
    IncompleteLister,
    Killed,
    Stoppable,
    assert_consistent,
    backup,
    chunks,
    files,
    new_clock,
    open_repo,
    prune,
    stored,
    two_snapshots,
)


def test_forget_then_prune_twice_frees_space_and_keeps_the_rest(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    first, _ = two_snapshots(backend, clock)
    before = stored(backend)
    remove_snapshots(open_repo(backend, clock), [first.hex])
    condemned = prune(backend, clock, PruneOptions(max_unused=0))
    assert condemned.condemned_packs > 0 and condemned.swept_packs == 0
    assert stored(backend) >= before, "nothing is deleted by the prune that condemned it"
    assert_consistent(backend, clock, tmp_path)
    swept = prune(backend, clock, PruneOptions(max_unused=0))
    assert swept.swept_packs == condemned.condemned_packs
    assert swept.swept_reflists == 1
    assert stored(backend) < before * 0.75
    assert swept.condemned_packs == 0
    assert list(backend.list(ObjectKind.DELETION)) == []
    assert_consistent(backend, clock, tmp_path)


def test_nothing_to_do_writes_nothing() -> None:
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    prune(backend, clock, PruneOptions(max_unused=1))
    objects = {k: sorted(i.handle.name for i in backend.list(k)) for k in ObjectKind}
    result = prune(backend, clock, PruneOptions(max_unused=1))
    assert result.condemned_packs == 0 and result.swept_packs == 0
    assert objects == {k: sorted(i.handle.name for i in backend.list(k)) for k in ObjectKind}


def test_a_backup_that_deduplicated_against_condemned_data_keeps_it(tmp_path: Path) -> None:
    """The race that lost data elsewhere: a backup loads the index, a prune condemns chunks it
    then reuses, and the backup commits afterwards."""
    backend, clock = MemoryBackend(), new_clock()
    first, _ = two_snapshots(backend, clock)
    remove_snapshots(open_repo(backend, clock), [first.hex])
    running = open_repo(backend, clock, "backup")  # loaded the index before the prune
    prune(backend, clock, PruneOptions(max_unused=0))
    backup(running, files(again=chunks(3, 20)))  # the forgotten file's chunks: condemned now
    assert_consistent(backend, clock, tmp_path)  # readable through the deletion record
    waiting = prune(backend, clock)
    assert waiting.records_waiting == 1 and waiting.swept_packs == 0
    running.close()
    swept = prune(backend, clock)
    assert swept.kept_packs > 0, "packs the committed snapshot needs are indexed again"
    assert_consistent(backend, clock, tmp_path)
    prune(backend, clock)
    assert_consistent(backend, clock, tmp_path)


class _CountingSaves(MemoryBackend):
    packs_saved = 0

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        self.packs_saved += handle.kind is ObjectKind.PACK
        super().save(handle, data)


def test_the_packs_of_a_running_backup_are_left_alone(tmp_path: Path) -> None:
    """A backup has stored and indexed packs but not committed yet: a prune neither condemns nor
    merges them, so a third backup deduplicates against them instead of storing them again."""
    backend, clock = _CountingSaves(), new_clock()
    two_snapshots(backend, clock)
    running = open_repo(backend, clock, "backup")
    running.start_writing()
    fresh = chunks(11, 12)
    for chunk in fresh:
        running.store_blob(BlobKind.DATA, chunk)
    running.flush()  # its packs and its index are on storage; its snapshot is not
    result = prune(backend, clock, PruneOptions(max_unused=0))
    assert result.condemned_packs == 0
    assert list(backend.list(ObjectKind.DELETION)) == []
    other = open_repo(backend, clock, "backup")
    saved = backend.packs_saved
    backup(other, files(same=fresh))
    other.close()
    assert backend.packs_saved - saved == 1, "only the new tree's pack is stored"
    backup(running, files(fresh=fresh))
    running.close()
    assert_consistent(backend, clock, tmp_path)


def test_the_packs_of_a_killed_backup_are_collected_once_its_lock_ends(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    killed = open_repo(backend, clock, "backup")
    killed.start_writing()
    for chunk in chunks(12, 12):
        killed.store_blob(BlobKind.DATA, chunk)
    killed.flush()  # then the process dies: its lock stays behind
    assert prune(backend, clock, PruneOptions(max_unused=0)).condemned_packs == 0
    clock.advance((LEASE_MS + SKEW_MS) / 1000 + 1)
    assert prune(backend, clock, PruneOptions(max_unused=0)).condemned_packs > 0
    prune(backend, clock, PruneOptions(max_unused=0))
    assert_consistent(backend, clock, tmp_path)


def test_a_killed_backup_lock_is_recovered_without_a_human(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    first, _ = two_snapshots(backend, clock)
    remove_snapshots(open_repo(backend, clock), [first.hex])
    dead = Session(backend, clock, "backup")  # keyless lock: only its lease can end it
    dead.acquire(renew_in_background=False)
    prune(backend, clock, PruneOptions(max_unused=0))
    assert prune(backend, clock).records_waiting == 1
    clock.advance((LEASE_MS + SKEW_MS) / 1000 + 1)
    result = prune(backend, clock)
    assert result.records_waiting == 0 and result.swept_packs > 0
    assert_consistent(backend, clock, tmp_path)


def test_unindexed_packs_of_an_interrupted_backup_are_collected(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    for _ in range(3):  # packs a killed backup stored but never indexed
        blobs = [(ChunkId(os.urandom(32)), BlobKind.DATA, os.urandom(3000)) for _ in range(4)]
        data, _ = build_pack(blobs)
        backend.save(Handle(ObjectKind.PACK, object_name(data).hex), data)
    before = stored(backend)
    prune(backend, clock, PruneOptions(max_unused=1))
    result = prune(backend, clock, PruneOptions(max_unused=1))
    assert result.swept_packs > 0 and stored(backend) < before
    assert_consistent(backend, clock, tmp_path)


def test_repacking_keeps_live_blobs_and_frees_dead_ones(tmp_path: Path) -> None:
    backend, clock = MemoryBackend(), new_clock()
    Repository.init(backend, PASS, clock, kdf=TEST_KDF, params=SMALL)
    repo = open_repo(backend, clock, "backup")
    mixed = chunks(5, 60)
    first = backup(repo, files(mix=mixed))
    repo.close()
    repo = open_repo(backend, clock, "backup")
    backup(repo, files(half=mixed[::2]))  # every pack of `first` is now half dead
    repo.close()
    remove_snapshots(open_repo(backend, clock), [first.hex])
    before = stored(backend)
    result = prune(backend, clock, PruneOptions(max_unused=0))
    assert result.repacked_packs > 0 and result.new_packs > 0
    assert_consistent(backend, clock, tmp_path)
    prune(backend, clock, PruneOptions(max_unused=0))
    assert stored(backend) < before * 0.7
    assert_consistent(backend, clock, tmp_path)


def test_max_repack_size_bounds_the_work() -> None:
    backend, clock = MemoryBackend(), new_clock()
    Repository.init(backend, PASS, clock, kdf=TEST_KDF, params=SMALL)
    repo = open_repo(backend, clock, "backup")
    mixed = chunks(6, 60)
    first = backup(repo, files(mix=mixed))
    backup(repo, files(half=mixed[::2]))
    repo.close()
    remove_snapshots(open_repo(backend, clock), [first.hex])
    result = prune(backend, clock, PruneOptions(max_unused=0, max_repack_bytes=20_000))
    assert 0 < result.repacked_bytes <= 20_000


@pytest.mark.parametrize(
    "kind",
    [ObjectKind.SNAPSHOT, ObjectKind.REFLIST, ObjectKind.INDEX, ObjectKind.PACK, ObjectKind.LOCK],
)
def test_an_incomplete_listing_deletes_nothing(kind: ObjectKind) -> None:
    backend, clock = IncompleteLister(), new_clock()
    first, _ = two_snapshots(backend, clock)
    remove_snapshots(open_repo(backend, clock), [first.hex])
    prune(backend, clock, PruneOptions(max_unused=0))
    objects = {
        k: sorted(i.handle.name for i in backend.list(k))
        for k in ObjectKind
        if k is not ObjectKind.LOCK
    }
    backend.broken = kind
    with pytest.raises(PruneRefused):
        prune(backend, clock, PruneOptions(max_unused=0))
    backend.broken = None
    after = {
        k: sorted(i.handle.name for i in backend.list(k))
        for k in ObjectKind
        if k is not ObjectKind.LOCK
    }
    assert after == objects


def test_a_missing_reflist_stops_prune() -> None:
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    reflist = next(iter(backend.list(ObjectKind.REFLIST))).handle
    backend.remove(reflist)
    with pytest.raises(PruneRefused, match="missing"):
        prune(backend, clock)


def test_two_prunes_do_not_run_at_once() -> None:
    backend, clock = MemoryBackend(), new_clock()
    two_snapshots(backend, clock)
    other = Session(backend, clock, "prune")
    other.acquire(renew_in_background=False)
    with pytest.raises(PruneRunning):
        prune(backend, clock)


def _forget_and_prune(backend: CrashAt, clock: FrozenClock, first: ObjectName) -> None:
    remove_snapshots(open_repo(backend, clock), [first.hex])
    prune(backend, clock, PruneOptions(max_unused=0))
    prune(backend, clock, PruneOptions(max_unused=0))


def test_a_crash_at_every_step_of_forget_and_prune_loses_nothing(tmp_path: Path) -> None:
    clock = new_clock()
    probe = CrashAt()
    first, _ = two_snapshots(probe, clock)
    start = probe.count
    _forget_and_prune(probe, clock, first)
    steps = probe.count - start
    assert steps > 10
    for k in range(1, steps + 1):
        backend = CrashAt()
        first, _ = two_snapshots(backend, clock)
        backend.at = backend.count + k
        with contextlib.suppress(Killed):  # a kill while removing its own lock goes unseen
            _forget_and_prune(backend, clock, first)
        assert backend.count >= backend.at, f"step {k} was never reached"
        backend.at = 0
        assert_consistent(backend, clock, tmp_path)
        clock.advance((LEASE_MS + SKEW_MS) / 1000 + 1)  # the killed run's lock ends
        _forget_and_prune(backend, clock, first)
        prune(backend, clock, PruneOptions(max_unused=0))
        assert_consistent(backend, clock, tmp_path)
        assert list(backend.list(ObjectKind.DELETION)) == [], f"step {k}: a record stays"


class _Forgetful(MemoryBackend):
    """A backend whose listing of one kind comes back empty (an eventually consistent store
    that has not caught up): complete as far as the caller can tell, and wrong."""

    empty: ObjectKind | None = None

    def list(self, kind: ObjectKind):
        if kind is not self.empty:
            yield from super().list(kind)


@pytest.mark.parametrize(
    "kind", [ObjectKind.SNAPSHOT, ObjectKind.REFLIST, ObjectKind.INDEX, ObjectKind.PACK]
)
def test_an_empty_listing_at_marking_loses_nothing(kind: ObjectKind, tmp_path: Path) -> None:
    """Refused (a snapshot names a reflist that is not listed), or condemned and then kept by the
    sweep, which reads everything again: a wrong view at one moment never deletes live data."""
    backend, clock = _Forgetful(), new_clock()
    two_snapshots(backend, clock)
    backend.empty = kind
    condemned = 0
    with contextlib.suppress(PruneRefused):
        condemned = prune(backend, clock, PruneOptions(max_unused=0)).condemned_packs
    if kind in (ObjectKind.SNAPSHOT, ObjectKind.INDEX):
        assert condemned > 0  # it believed live packs unused: the sweep must keep them
    backend.empty = None
    assert_consistent(backend, clock, tmp_path)  # condemned packs stay readable
    for _ in range(3):
        prune(backend, clock, PruneOptions(max_unused=0))
    assert_consistent(backend, clock, tmp_path)


def test_a_sweep_never_deletes_the_reflist_of_a_snapshot_committed_meanwhile(
    tmp_path: Path,
) -> None:
    """A backup that started after the condemn (so no record names its session) commits the
    same files as the forgotten snapshot while a sweep runs. Had both snapshots the same reflist
    name, the sweep, having read the snapshots before that commit, would delete the new
    snapshot's reflist: check would fail and every later prune refuse."""
    clock = new_clock()
    storage = MemoryBackend()
    Repository.init(storage, PASS, clock, kdf=TEST_KDF, params=SMALL)
    same = files(same=chunks(5, 3))
    repo = open_repo(storage, clock, "backup")
    first = backup(repo, same)
    repo.close()
    remove_snapshots(open_repo(storage, clock), [first.hex])
    prune(storage, clock, PruneOptions(max_unused=0))
    writer = open_repo(storage, clock, "backup")
    machine = Gated(storage)
    sweep = Stoppable(
        machine,
        lambda: prune(machine, clock, PruneOptions(max_unused=0)),
        before=("remove", ObjectKind.REFLIST),
    )
    assert sweep.stopped, "the sweep stops before it deletes the forgotten snapshot's reflist"
    backup(writer, same)
    writer.close()
    sweep.resume()
    assert sweep.error is None
    assert_consistent(storage, clock, tmp_path)
    prune(storage, clock, PruneOptions(max_unused=0))
    assert_consistent(storage, clock, tmp_path)


def test_a_sweep_killed_halfway_loses_nothing_later(tmp_path: Path) -> None:
    """Shrunk from the concurrency model. A chunk C has two copies in two condemned packs: X
    (record R1) and Y (record R2, which waits for a running session). A sweep of R1 deletes X and
    is killed before it removes R1; a backup then commits C, deduplicated against Y.

    Readers must find C in Y, not in X (they took the first record's entry and failed); and the
    next sweep of R1 must not index X again because C is needed (it did, so C looked available
    and the sweep of R2 would then delete Y, the only copy)."""
    clock = new_clock()
    storage = MemoryBackend()
    Repository.init(storage, PASS, clock, kdf=TEST_KDF, params=SMALL)
    early = open_repo(storage, clock, "backup")  # its empty index: it stores C again later
    repo = open_repo(storage, clock, "backup")
    first = backup(repo, files(x=chunks(7, 2)))  # pack X
    repo.close()
    remove_snapshots(open_repo(storage, clock), [first.hex])
    prune(storage, clock, PruneOptions(max_unused=0))  # R1 condemns X, waits for `early`
    kept = backup(early, files(y=chunks(7, 2)))  # pack Y
    early.close()
    late = open_repo(storage, clock, "backup")  # knows C in Y
    other = open_repo(storage, clock, "backup")  # keeps R2 waiting
    remove_snapshots(open_repo(storage, clock), [kept.hex])
    graced = prune(storage, clock, PruneOptions(max_unused=0, grace_ms=3_600_000))
    assert graced.records_waiting == 1 and graced.condemned_packs > 0  # R2 condemns Y
    machine = Gated(storage)
    sweep = Stoppable(
        machine,
        lambda: prune(machine, clock, PruneOptions(max_unused=0)),
        before=("remove", ObjectKind.DELETION),
    )
    assert sweep.stopped, "X is deleted, R1 not yet"
    sweep.kill()
    backup(late, files(z=chunks(7, 2)))  # C deduplicated against Y
    late.close()
    assert_consistent(storage, clock, tmp_path)
    clock.advance((LEASE_MS + SKEW_MS) / 1000 + 1)  # the killed prune's lock ends
    assert other.session is not None
    other.session.renew()
    assert prune(storage, clock, PruneOptions(max_unused=0)).records_waiting == 1
    assert_consistent(storage, clock, tmp_path)
    other.close()
    prune(storage, clock, PruneOptions(max_unused=0))
    prune(storage, clock, PruneOptions(max_unused=0))
    assert_consistent(storage, clock, tmp_path)


@pytest.mark.xfail(
    strict=True,
    reason="known gap: between prune's index swap and its deletion record the condemned packs "
    "are in no index and no record, so a snapshot committed meanwhile by a backup that "
    "deduplicated against them cannot be restored until a later prune condemns them again "
    "(data stays on storage). Closing it needs a provisional record or condemned entries in the "
    "new index (a format change).",
)
def test_a_prune_killed_between_its_swap_and_its_record_leaves_new_snapshots_restorable(
    tmp_path: Path,
) -> None:
    clock = new_clock()
    storage = MemoryBackend()
    first, _ = two_snapshots(storage, clock)
    remove_snapshots(open_repo(storage, clock), [first.hex])
    running = open_repo(storage, clock, "backup")  # its index lists the forgotten data
    machine = Gated(storage)
    run = Stoppable(
        machine,
        lambda: prune(machine, clock, PruneOptions(max_unused=0)),
        before=("save", ObjectKind.DELETION),
    )
    assert run.stopped
    backup(running, files(again=chunks(3, 20)))
    running.close()
    run.kill()
    assert_consistent(storage, clock, tmp_path)


def test_a_pack_condemned_twice_stays_while_the_later_record_waits(tmp_path: Path) -> None:
    """Shrunk from the concurrency model. Prune condemned a backup's pack X while it was still
    unindexed (record R1); the backup then indexed it; a later prune condemned X again (R2),
    with a session that had loaded that index. Sweeping R1 deleted X while R2 still waited for
    that session, which then committed a snapshot deduplicated against X."""
    clock = new_clock()
    storage = MemoryBackend()
    Repository.init(storage, PASS, clock, kdf=TEST_KDF, params=SMALL)
    keeper = open_repo(storage, clock, "backup")  # keeps R1 waiting
    machine = Gated(storage)
    writer = open_repo(machine, clock, "backup")
    data = files(x=chunks(9, 3))
    run = Stoppable(machine, lambda: backup(writer, data), before=("save", ObjectKind.INDEX))
    assert run.stopped, "pack X is saved, its index not yet"
    prune(storage, clock, PruneOptions(max_unused=0))  # R1: X, unindexed
    run.resume()
    assert run.result is not None
    writer.close()
    remove_snapshots(open_repo(storage, clock), [run.result.hex])
    later = open_repo(storage, clock, "backup")  # its index lists X
    prune(storage, clock, PruneOptions(max_unused=0))  # R2: X again, waits for `later`
    keeper.close()
    assert prune(storage, clock, PruneOptions(max_unused=0)).records_waiting == 1
    backup(later, data)  # deduplicated against X
    later.close()
    assert_consistent(storage, clock, tmp_path)
    prune(storage, clock, PruneOptions(max_unused=0))
    prune(storage, clock, PruneOptions(max_unused=0))
    assert_consistent(storage, clock, tmp_path)
