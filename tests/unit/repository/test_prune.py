"""Prune over a memory backend: condemn, then sweep; backups running meanwhile lose nothing.

The "crash" tests stop a forget + prune at every storage operation (an exception stands in for
the kill: memory-backend saves are atomic, as local saves are) and check that the repository
stays consistent, every remaining snapshot restores, and the next prune finishes the job.
"""

from __future__ import annotations

import contextlib
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import BackendError, ListingIncomplete
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import FrozenClock
from cairn.core.ids import ChunkId, ObjectName
from cairn.core.progress import SilentProgress
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import TEST_KDF
from cairn.format.config import RepoParams
from cairn.format.pack import BlobKind, build_pack
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.repository.check import Checker
from cairn.repository.locks import LEASE_MS, SKEW_MS, Session
from cairn.repository.prune import PruneOptions, Pruner, PruneRefused, PruneResult, PruneRunning
from cairn.repository.repository import Repository
from cairn.restore.restorer import RestoreOptions, Restorer
from cairn.snapshot.forget import remove_snapshots

SMALL = RepoParams(
    chunk_min=1024, chunk_avg=2048, chunk_max=8192, pack_size=16 * 1024, compression=0
)
PASS = b"pw"


def new_clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 24, 12, 0, tzinfo=UTC))


def open_repo(backend: Backend, clock: FrozenClock, session: str | None = None) -> Repository:
    repo = Repository.open(backend, PASS, clock)
    if session is not None:
        repo.session = Session(backend, clock, session, seal=repo._seal_lock)
        repo.session.acquire(renew_in_background=False)
    repo.load_index()
    return repo


def backup(repo: Repository, files: dict[bytes, list[bytes]]) -> ObjectName:
    """A snapshot of one folder of files, each a list of chunks."""
    repo.start_writing()
    nodes, refs = [], set()
    for name, chunks in sorted(files.items()):
        ids = [repo.store_blob(BlobKind.DATA, c)[0] for c in chunks]
        refs.update(ids)
        sizes = [len(c) for c in chunks]
        nodes.append(
            Node(name=name, type="file", mode=0o644, content=ids, sizes=sizes, size=sum(sizes))
        )
    tree_id, _ = repo.store_blob(BlobKind.TREE, encode_tree(nodes))
    body = SnapshotBody(repo.clock.now().isoformat(), "host", "user", ["/d"], [], tree_id)
    return repo.commit_snapshot(body, {*refs, tree_id})


def prune(backend: Backend, clock: FrozenClock, options: PruneOptions | None = None) -> PruneResult:
    repo = Repository.open(backend, PASS, clock)
    session = Session(backend, clock, "prune", seal=repo._seal_lock)
    session.acquire(renew_in_background=False)
    try:
        pruner = Pruner(backend, clock, session, SMALL.pack_size, opener=repo.open_lock)
        return pruner.run(options or PruneOptions())
    finally:
        session.release()


def assert_consistent(backend: Backend, clock: FrozenClock, tmp: Path) -> None:
    """check --read-data passes and every snapshot restores with the bytes it was given."""
    repo = open_repo(backend, clock)
    report = Checker(repo).run(read_data=True)
    assert report.errors == []
    for name in repo.snapshot_names():
        snap = repo.read_snapshot(name)
        target = tmp / f"r{os.urandom(4).hex()}"
        Restorer(repo, SilentProgress()).run(snap.body.tree, RestoreOptions(target=target))
        for path in target.iterdir():
            assert path.read_bytes() == EXPECTED[path.name.encode()]


def chunks(seed: int, n: int) -> list[bytes]:
    """The same chunks for the same seed: half repetitive, half random-looking."""
    return [
        bytes([seed, i]) * 750 + random.Random(seed * 1000 + i).randbytes(500) for i in range(n)
    ]


EXPECTED: dict[bytes, bytes] = {}


def files(**named: list[bytes]) -> dict[bytes, list[bytes]]:
    out = {k.encode(): v for k, v in named.items()}
    EXPECTED.update({k: b"".join(v) for k, v in out.items()})
    return out


def stored(backend: Backend) -> int:
    return sum(i.size for i in backend.list(ObjectKind.PACK))


def two_snapshots(backend: Backend, clock: FrozenClock) -> tuple[ObjectName, ObjectName]:
    Repository.init(backend, PASS, clock, kdf=TEST_KDF, params=SMALL)
    repo = open_repo(backend, clock, "backup")
    shared = chunks(1, 6)
    first = backup(repo, files(a1=shared + chunks(2, 20), old=chunks(3, 20)))
    repo.close()
    repo = open_repo(backend, clock, "backup")
    second = backup(repo, files(a2=shared + chunks(2, 20)[:5], b=chunks(4, 8)))
    repo.close()
    return first, second


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


class _Lister(MemoryBackend):
    """A backend whose listing of one kind cannot finish."""

    broken: ObjectKind | None = None

    def list(self, kind: ObjectKind):  # type: ignore[no-untyped-def, override]
        if kind is self.broken:
            raise ListingIncomplete(f"{kind.value}: the storage stopped answering")
        yield from super().list(kind)


@pytest.mark.parametrize(
    "kind",
    [ObjectKind.SNAPSHOT, ObjectKind.REFLIST, ObjectKind.INDEX, ObjectKind.PACK, ObjectKind.LOCK],
)
def test_an_incomplete_listing_deletes_nothing(kind: ObjectKind) -> None:
    backend, clock = _Lister(), new_clock()
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


class _Killed(BackendError):
    pass


class _CrashAt(MemoryBackend):
    """Counts mutating operations; from the `at`-th on, every one fails, as if the process had
    been killed there (nothing after it happens, not even removing its lock)."""

    def __init__(self) -> None:
        super().__init__()
        self.at = 0
        self.count = 0

    def _tick(self) -> None:
        self.count += 1
        if self.at and self.count >= self.at:
            raise _Killed("killed here")

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        self._tick()
        super().save(handle, data)

    def remove(self, handle: Handle) -> None:
        self._tick()
        super().remove(handle)


def _forget_and_prune(backend: _CrashAt, clock: FrozenClock, first: ObjectName) -> None:
    remove_snapshots(open_repo(backend, clock), [first.hex])
    prune(backend, clock, PruneOptions(max_unused=0))
    prune(backend, clock, PruneOptions(max_unused=0))


def test_a_crash_at_every_step_of_forget_and_prune_loses_nothing(tmp_path: Path) -> None:
    clock = new_clock()
    probe = _CrashAt()
    first, _ = two_snapshots(probe, clock)
    start = probe.count
    _forget_and_prune(probe, clock, first)
    steps = probe.count - start
    assert steps > 10
    for k in range(1, steps + 1):
        backend = _CrashAt()
        first, _ = two_snapshots(backend, clock)
        backend.at = backend.count + k
        with contextlib.suppress(_Killed):  # a kill while removing its own lock goes unseen
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

    def list(self, kind: ObjectKind):  # type: ignore[no-untyped-def, override]
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
