"""R7: writers, forget and prune interleaved on one repository, on machines whose clocks disagree.

A hypothesis state machine drives several writers (each a Repository with its own session on the
same storage), forget, and prune on two machines. A backup spans many steps; a commit or a prune
can stop before any storage change while other machines act, then go on or be killed there.
Time passes for everyone; one machine's clock can jump forward or back, or the machine can sleep.

The model is small: the acknowledged snapshots (commit returned) not forgotten since, and the
bytes of every chunk. After every step each of them must restore bit-exact from what is on
storage now (the index, or a deletion record's fallback entries). A commit must fail, and may
only fail, if its session's lease ran out by its own clock or a prune removed its lock. At the end
every run is finished, every lock runs out, prune runs until nothing is left to sweep, and
`check --read-data` must be clean.

Known gaps, reported with xfail tests, are left out or checked weaker: while a prune is stopped
or dead between its index swap and its deletion record, a chunk in no index need only still be
on storage (test_prune.py); a stale commit is never killed just as it takes its snapshot back
(test_clock.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TypeVar

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.ids import ChunkId, ObjectName
from cairn.crypto.kdf import TEST_KDF
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, decode_tree, encode_tree
from cairn.repository.check import Checker
from cairn.repository.locks import LEASE_MS, SKEW_MS, LeaseExpired, Session, now_ms, read_locks
from cairn.repository.masterindex import MasterIndex
from cairn.repository.packs import read_trailer
from cairn.repository.prune import PruneOptions, PruneResult, PruneRunning
from cairn.repository.repository import Repository
from cairn.snapshot.forget import remove_snapshots
from tests.support.repohelpers import (
    PASS,
    SMALL,
    Gated,
    Killed,
    MachineClock,
    ReplayableRandomness,
    Stoppable,
    World,
)
from tests.support.repohelpers import prune as run_prune

WRITERS = 3
PRUNERS = 2
FILE_NAMES = [b"a", b"b", b"c", b"d"]
CHUNK_POOL = 12
"""Chunks come from a small pool, so backups deduplicate against each other and against the
data of forgotten snapshots (the race that lost data in other tools)."""
MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
LEASE_S = LEASE_MS // 1000
SKEW_S = SKEW_MS // 1000
T = TypeVar("T")


def chunk_bytes(seed: int) -> bytes:
    return bytes([seed]) * 700 + random.Random(seed).randbytes(400)


@dataclass(frozen=True)
class SnapModel:
    tree: ChunkId
    files: dict[bytes, list[ChunkId]]
    refs: frozenset[ChunkId]


@dataclass
class Writer:
    host: str
    clock: MachineClock
    machine: Gated | None = None
    repo: Repository | None = None
    files: dict[bytes, list[ChunkId]] = field(default_factory=dict)
    commit: Stoppable[ObjectName] | None = None
    snapshot: SnapModel | None = None
    lock_saved: tuple[int, float] = (0, 0.0)
    """(created ms, monotonic s) of the lock the session saved last."""
    fenced: bool = False
    """A prune removed this session's lock (it judged the session ended)."""

    def __repr__(self) -> str:
        return self.host

    @property
    def backing_up(self) -> bool:
        return self.repo is not None and self.commit is None


@dataclass
class PruneMachine:
    clock: MachineClock
    run: Stoppable[PruneResult] | None = None
    machine: Gated | None = None

    def __repr__(self) -> str:
        return self.clock.name


steps = st.one_of(st.none(), st.none(), st.integers(1, 8))
"""Where a run stops for others to act: mostly it runs through."""
file_chunks = st.lists(st.integers(0, CHUNK_POOL - 1), min_size=1, max_size=4)
MACHINES = [f"w{i}" for i in range(WRITERS)] + [f"p{i}" for i in range(PRUNERS)]
CLOCK_TROUBLE = [
    ("jump", SKEW_S - 1),
    ("jump", -SKEW_S - 1),
    ("jump", HOUR),
    ("jump", -HOUR),
    ("jump", 30 * DAY),
    ("jump", -30 * DAY),
    ("sleep", LEASE_S + 1),
    ("sleep", DAY),
    ("set right", 0),
    ("set right", 0),
    ("set right", 0),
]


class ConcurrencyModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.randomness = ReplayableRandomness(seed=7)
        self.world = World()
        self.storage = MemoryBackend()
        Repository.init(self.storage, PASS, MachineClock(self.world), kdf=TEST_KDF, params=SMALL)
        self.reader = Repository.open(self.storage, PASS, MachineClock(self.world))
        self.writers = [Writer(f"w{i}", MachineClock(self.world, f"w{i}")) for i in range(WRITERS)]
        self.pruners = [PruneMachine(MachineClock(self.world, f"p{i}")) for i in range(PRUNERS)]
        self.blobs: dict[ChunkId, tuple[BlobKind, bytes]] = {}
        self.acked: dict[ObjectName, SnapModel] = {}
        self.steps = 0
        self.swap_left_open = False

    # ---- writers --------------------------------------------------------------------------

    def _pick(self, data: st.DataObject, which: list[Writer]) -> Writer:
        return _choose(data, which, "writer")

    @precondition(lambda self: any(w.repo is None for w in self.writers))
    @rule(data=st.data(), name=st.sampled_from(FILE_NAMES), seeds=file_chunks)
    def start_backup(self, data: st.DataObject, name: bytes, seeds: list[int]) -> None:
        """A session starts (its lock is saved before the index is loaded) and stores a file."""
        w = self._pick(data, [w for w in self.writers if w.repo is None])
        w.machine = Gated(self.storage)
        repo = Repository.open(w.machine, PASS, w.clock)
        repo.session = Session(w.machine, w.clock, "backup", seal=repo._seal_lock)
        repo.session.acquire(renew_in_background=False)
        w.lock_saved = (now_ms(w.clock), w.clock.monotonic())
        repo.load_index()
        repo.start_writing(connections=1)  # one upload at a time: every run replays exactly
        w.repo, w.files, w.fenced = repo, {}, False
        self._store_file(w, name, seeds)

    @precondition(lambda self: any(w.backing_up for w in self.writers))
    @rule(
        data=st.data(),
        name=st.sampled_from(FILE_NAMES),
        seeds=file_chunks,
        write_index=st.sampled_from([False, False, True]),
    )
    def add_file(
        self, data: st.DataObject, name: bytes, seeds: list[int], write_index: bool
    ) -> None:
        """One more file (or a file changed); sometimes the periodic index of a long backup."""
        w = self._pick(data, [w for w in self.writers if w.backing_up])
        self._store_file(w, name, seeds)
        if write_index and w.repo is not None:
            assert w.repo._uploader is not None
            try:
                w.repo._uploader.write_index()
            except LeaseExpired as exc:
                self._refused(w, exc)

    def _store_file(self, w: Writer, name: bytes, seeds: list[int]) -> None:
        assert w.repo is not None
        ids = []
        try:
            for seed in seeds:
                content = chunk_bytes(seed)
                chunk_id, _ = w.repo.store_blob(BlobKind.DATA, content)
                self.blobs[chunk_id] = (BlobKind.DATA, content)
                ids.append(chunk_id)
            _wait_for_uploads(w.repo)
        except LeaseExpired as exc:  # a periodic index write found the session stale
            self._refused(w, exc)
            return
        w.files[name] = ids

    def _refused(self, w: Writer, exc: LeaseExpired) -> None:
        """The session refuses to go on: it may only if its lease held and its lock is there."""
        assert _lease_passed(w) or self._fenced(w), f"{w} refused: {exc}"
        event("backup: refused, " + ("lock removed" if w.fenced else "lease ran out"))
        assert w.repo is not None
        w.repo.close()
        w.repo = None

    def _renew(self, w: Writer) -> None:
        assert w.repo is not None and w.repo.session is not None
        created = max(_session_now(w), w.lock_saved[0] + 1)
        w.repo.session.renew()
        w.lock_saved = (created, w.clock.monotonic())

    @precondition(lambda self: any(w.backing_up for w in self.writers))
    @rule(data=st.data(), stop_at=steps)
    def commit(self, data: st.DataObject, stop_at: int | None) -> None:
        w = self._pick(data, [w for w in self.writers if w.backing_up])
        repo = w.repo
        assert repo is not None and w.machine is not None
        nodes = []
        for name, ids in sorted(w.files.items()):
            sizes = [len(self.blobs[c][1]) for c in ids]
            nodes.append(Node(name, "file", 0o644, content=ids, sizes=sizes, size=sum(sizes)))
        tree = encode_tree(nodes)
        try:
            tree_id, _ = repo.store_blob(BlobKind.TREE, tree)
        except LeaseExpired as exc:
            self._refused(w, exc)
            return
        _wait_for_uploads(repo)
        self.blobs[tree_id] = (BlobKind.TREE, tree)
        refs = frozenset({tree_id, *(c for ids in w.files.values() for c in ids)})
        w.snapshot = SnapModel(tree_id, dict(w.files), refs)
        body = SnapshotBody(w.clock.now().isoformat(), w.host, "user", ["/d"], [], tree_id)
        w.commit = Stoppable(w.machine, lambda: repo.commit_snapshot(body, set(refs)), stop_at)
        self._commit_went_on(w)

    @precondition(lambda self: any(w.commit is not None for w in self.writers))
    @rule(data=st.data(), stop_at=steps, kill=st.booleans())
    def resume_commit(self, data: st.DataObject, stop_at: int | None, kill: bool) -> None:
        """A commit stopped before a storage change goes on, or its process dies there."""
        w = self._pick(data, [w for w in self.writers if w.commit is not None])
        assert w.commit is not None and w.machine is not None
        if kill and w.machine.pending == ("remove", ObjectKind.SNAPSHOT):
            # Killed while taking back a snapshot it saved when its session was stale: a
            # known double fault the model leaves out (test_clock.py shows it, xfail).
            kill = False
        if kill:
            w.commit.kill()
        else:
            w.commit.resume(stop_at)
        self._commit_went_on(w)

    def _commit_went_on(self, w: Writer) -> None:
        run = w.commit
        assert run is not None and w.repo is not None and w.snapshot is not None
        if run.stopped:
            return
        w.commit = None
        if run.error is None:
            assert run.result is not None
            assert not _lease_passed(w), f"{w} committed after its lease ran out by its clock"
            assert not self._fenced(w), f"{w} committed after a prune removed its lock"
            self.acked[run.result] = w.snapshot
            w.repo.close()
            event("commit: acknowledged")
        elif isinstance(run.error, LeaseExpired):
            self._refused(w, run.error)
            return
        elif isinstance(run.error, Killed):
            _abandon(w.repo)
            event("commit: killed")
        else:
            raise run.error
        w.repo = None

    def _fenced(self, w: Writer) -> bool:
        session = w.repo.session if w.repo is not None else None
        if session is not None and session.name is not None:
            w.fenced |= not self.storage.exists(Handle(ObjectKind.LOCK, session.name.hex))
        return w.fenced

    @precondition(lambda self: any(w.backing_up for w in self.writers))
    @rule(data=st.data())
    def crash_writer(self, data: st.DataObject) -> None:
        """kill -9 mid-backup: the open pack is lost, stored packs may be unindexed, the lock
        stays."""
        w = self._pick(data, [w for w in self.writers if w.backing_up])
        assert w.repo is not None
        _abandon(w.repo)
        w.repo = None

    # ---- forget and prune ------------------------------------------------------------------

    @precondition(lambda self: bool(self.acked))
    @rule(data=st.data())
    def forget(self, data: st.DataObject) -> None:
        present = sorted(i.handle.name for i in self.storage.list(ObjectKind.SNAPSHOT))
        chosen = data.draw(st.lists(st.sampled_from(present), unique=True, min_size=1))
        remove_snapshots(self.reader, chosen)
        for name in chosen:
            self.acked.pop(ObjectName.from_hex(name), None)

    @precondition(lambda self: any(p.run is None for p in self.pruners))
    @rule(
        data=st.data(),
        grace=st.sampled_from([0, 0, HOUR]),
        max_unused=st.sampled_from([0.0, 0.0, 0.05, 0.5]),
        stop_at=steps,
    )
    def prune(
        self, data: st.DataObject, grace: int, max_unused: float, stop_at: int | None
    ) -> None:
        p = _choose(data, [p for p in self.pruners if p.run is None], "pruner")
        machine = p.machine = Gated(self.storage)
        options = PruneOptions(max_unused=max_unused, grace_ms=grace * 1000)
        p.run = Stoppable(machine, lambda: run_prune(machine, p.clock, options), stop_at)
        self._prune_went_on(p)

    @precondition(lambda self: any(p.run is not None for p in self.pruners))
    @rule(data=st.data(), stop_at=steps, kill=st.booleans())
    def resume_prune(self, data: st.DataObject, stop_at: int | None, kill: bool) -> None:
        p = _choose(data, [p for p in self.pruners if p.run is not None], "pruner")
        assert p.run is not None
        if kill:
            p.run.kill()
        else:
            p.run.resume(stop_at)
        self._prune_went_on(p)

    def _prune_went_on(self, p: PruneMachine) -> None:
        run = p.run
        assert run is not None and p.machine is not None
        if run.stopped:
            return
        p.run = None
        if run.error is not None and not isinstance(
            run.error, PruneRunning | LeaseExpired | Killed
        ):
            raise run.error
        if run.result is not None:
            self.swap_left_open = False  # it condemned whatever an earlier run left unindexed
        elif _in_swap_gap(p.machine):
            self.swap_left_open = True
        event(f"prune: {type(run.error).__name__ if run.error else 'done'}")
        if run.result is not None:
            r = run.result
            event("prune: swept packs" if r.swept_packs else "prune: swept no pack")
            event("prune: kept condemned packs" if r.kept_packs else "prune: kept none")
            event("prune: waited" if r.records_waiting else "prune: waited for none")

    # ---- time ------------------------------------------------------------------------------

    @rule(
        seconds=st.one_of(
            st.integers(1, LEASE_S // 4),
            st.integers(1, LEASE_S // 4),
            st.integers(1, LEASE_S // 4),
            st.sampled_from([LEASE_S - 1, LEASE_S, LEASE_S + SKEW_S, LEASE_S + SKEW_S + 1, HOUR]),
        ),
        renewing=st.sampled_from([True, True, False]),
        trouble=st.one_of(
            st.none(),
            st.none(),
            st.none(),
            st.tuples(st.sampled_from(MACHINES), st.sampled_from(CLOCK_TROUBLE)),
        ),
    )
    def time_passes(
        self, seconds: int, renewing: bool, trouble: tuple[str, tuple[str, int]] | None
    ) -> None:
        """Time passes for every machine; running sessions renew their locks afterwards, as
        their background thread does every quarter lease, unless they were paused. Sometimes
        one machine's clock is set wrong (or right again), or the machine sleeps: its wall clock
        catches up on waking, its monotonic clock does not."""
        self.world.advance(seconds)
        if trouble is not None:
            machine, (what, amount) = trouble
            clocks = {c.name: c for c in [w.clock for w in self.writers]}
            clocks.update({p.clock.name: p.clock for p in self.pruners})
            clock = clocks[machine]
            if what == "jump":
                clock.jump(amount)
            elif what == "set right":
                clock.jump(-clock.offset)
            else:
                clock.suspend(amount)
        if renewing:
            for w in self.writers:
                if w.backing_up:
                    self._renew(w)

    # ---- invariants ------------------------------------------------------------------------

    @invariant()
    def fenced_sessions_are_noted(self) -> None:
        self.steps += 1
        for w in self.writers:
            self._fenced(w)

    @invariant()
    def acknowledged_snapshots_restore(self) -> None:
        self.reader.index = MasterIndex()
        self.reader.load_index()
        for name, model in sorted(self.acked.items(), key=lambda kv: kv[0].hex):
            self._verify(name, model)

    def _verify(self, name: ObjectName, model: SnapModel) -> None:
        reader = self.reader
        snap = reader.read_snapshot(name)
        assert snap.body.tree == model.tree
        refs = {c for r in snap.record.reflists for c in reader.read_reflist(r)}
        assert refs == model.refs
        for chunk_id in sorted(model.refs):
            kind, content = self.blobs[chunk_id]
            if reader.index.get(chunk_id) is None and self._swap_gap():
                # The known gap (test_prune.py, xfail): readable again after the next prune.
                # Meanwhile the chunk must still be on storage.
                assert chunk_id in self._stored_chunks(), "a referenced chunk was deleted"
                event("invariant: a chunk waits in the swap gap")
                continue
            assert reader.fetch_blob(kind, chunk_id) == content
        if reader.index.get(model.tree) is not None:
            nodes = decode_tree(reader.fetch_blob(BlobKind.TREE, model.tree))
            assert {n.name: n.content for n in nodes} == model.files

    def _swap_gap(self) -> bool:
        """A prune stopped, or died, after its index swap and before its deletion record: the
        packs it condemns are in no index and no record until a prune completes."""
        stopped = [p.machine for p in self.pruners if p.run is not None and p.machine]
        return self.swap_left_open or any(_in_swap_gap(m) for m in stopped)

    def _stored_chunks(self) -> set[ChunkId]:
        return {
            e.chunk_id
            for info in self.storage.list(ObjectKind.PACK)
            for e in read_trailer(self.storage, ObjectName.from_hex(info.handle.name), info.size)
        }

    def teardown(self) -> None:
        """Finish or kill every run, let every lock run out, prune to the end, then check."""
        try:
            self._finish()
        finally:
            for run in [w.commit for w in self.writers] + [p.run for p in self.pruners]:
                if run is not None and run.stopped:
                    run.kill()  # after a failure: no thread is left waiting
            self.randomness.restore()

    def _finish(self) -> None:
        event(f"steps: {self.steps // 25 * 25}+")
        event(f"acknowledged snapshots alive: {min(len(self.acked), 5)}")
        for w in self.writers:
            if w.commit is not None:
                w.commit.resume()
                self._commit_went_on(w)
            if w.repo is not None:
                _abandon(w.repo)
                w.repo = None
        for p in self.pruners:
            if p.run is not None:
                p.run.resume()
                self._prune_went_on(p)
        final = self.pruners[0].clock
        final.jump(-final.offset)
        last = max((lock.record.expires_ms for lock in read_locks(self.storage)), default=0)
        self.world.advance(max(0, last + SKEW_MS - now_ms(final)) / 1000 + 1)
        for _ in range(4):
            run_prune(Gated(self.storage), final, PruneOptions(max_unused=0))
            if not list(self.storage.list(ObjectKind.DELETION)):
                break
        assert list(self.storage.list(ObjectKind.DELETION)) == []
        assert list(self.storage.list(ObjectKind.LOCK)) == []
        checker = Repository.open(self.storage, PASS, final)
        report = Checker(checker).run(read_data=True)
        assert report.errors == []
        self.acknowledged_snapshots_restore()


def _in_swap_gap(machine: Gated) -> bool:
    """This prune removed an old index since it last saved a deletion record."""
    done = machine.done
    removals = [i for i, change in enumerate(done) if change == ("remove", ObjectKind.INDEX)]
    return bool(removals) and ("save", ObjectKind.DELETION) not in done[removals[-1] :]


def _choose(data: st.DataObject, items: list[T], label: str) -> T:
    """Draw one of `items` by name, so that a failing example prints just the name."""
    names = [repr(item) for item in items]
    return items[names.index(data.draw(st.sampled_from(names), label=label))]


def _session_now(w: Writer) -> int:
    """The session's time (design 13.1): its wall clock, but never less than its monotonic
    clock says has passed since it saved its lock."""
    created, mono = w.lock_saved
    return max(now_ms(w.clock), created + int((w.clock.monotonic() - mono) * 1000))


def _lease_passed(w: Writer) -> bool:
    return _session_now(w) >= w.lock_saved[0] + LEASE_MS


def _wait_for_uploads(repo: Repository) -> None:
    """Let the upload thread finish the packs handed to it (the next step starts from storage
    as it is, so every run replays exactly)."""
    uploader = repo._uploader
    assert uploader is not None
    for future in list(uploader._futures):
        future.exception()


def _abandon(repo: Repository) -> None:
    """The process is gone: its open pack with it; its lock stays on storage."""
    if repo._uploader is not None:
        repo._uploader.close()
        repo._uploader = None


ConcurrencyModel.TestCase.settings = settings(stateful_step_count=250)
TestConcurrencyModel = ConcurrencyModel.TestCase
