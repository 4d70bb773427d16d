"""Driving repositories in-process: small parameters, backups of made-up files, prune runs,
machines with their own clocks, and backends that stop a run at its k-th storage change.

Shared by tests/unit/repository and tests/properties (imported as tests.support.repohelpers).
"""

from __future__ import annotations

import os
import random
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from cairn.backends.base import Backend, Capabilities, Handle, ObjectInfo, ObjectKind
from cairn.backends.errors import BackendError, ListingIncomplete
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import Clock, FrozenClock
from cairn.core.ids import ObjectName
from cairn.core.progress import SilentProgress
from cairn.crypto.kdf import TEST_KDF
from cairn.format.config import RepoParams
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.repository.check import Checker
from cairn.repository.locks import Session
from cairn.repository.prune import PruneOptions, Pruner, PruneResult
from cairn.repository.repository import Repository
from cairn.restore.restorer import RestoreOptions, Restorer

SMALL = RepoParams(
    chunk_min=1024, chunk_avg=2048, chunk_max=8192, pack_size=16 * 1024, compression=0
)
PASS = b"pw"
EPOCH = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def new_clock() -> FrozenClock:
    return FrozenClock(EPOCH)


def open_repo(backend: Backend, clock: Clock, session: str | None = None) -> Repository:
    """Open, save a lock for `session` if given (renewed only by hand), then load the index."""
    repo = Repository.open(backend, PASS, clock)
    if session is not None:
        repo.session = Session(backend, clock, session, seal=repo._seal_lock)
        repo.session.acquire(renew_in_background=False)
    repo.load_index()
    return repo


def backup(repo: Repository, files: dict[bytes, list[bytes]], host: str = "host") -> ObjectName:
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
    body = SnapshotBody(repo.clock.now().isoformat(), host, "user", ["/d"], [], tree_id)
    return repo.commit_snapshot(body, {*refs, tree_id})


def prune(backend: Backend, clock: Clock, options: PruneOptions | None = None) -> PruneResult:
    """One prune run with its own session, as `cairn prune` does it."""
    repo = Repository.open(backend, PASS, clock)
    session = Session(backend, clock, "prune", seal=repo._seal_lock)
    session.acquire(renew_in_background=False)
    try:
        pruner = Pruner(backend, clock, session, SMALL.pack_size, opener=repo.open_lock)
        return pruner.run(options or PruneOptions())
    finally:
        session.release()


def assert_consistent(backend: Backend, clock: Clock, tmp: Path) -> None:
    """check --read-data passes and every snapshot restores with the bytes it was given."""
    repo = open_repo(backend, clock)
    report = Checker(repo).run(read_data=True)
    assert report.errors == []
    for name in repo.snapshot_names():
        snap = repo.read_snapshot(name)
        target = tmp / f"r{os.urandom(4).hex()}"
        result = Restorer(repo, SilentProgress()).run(snap.body.tree, RestoreOptions(target=target))
        assert result.damaged == [], "every snapshot restores whole"
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


def two_snapshots(backend: Backend, clock: Clock) -> tuple[ObjectName, ObjectName]:
    """A new repository with two snapshots that share some chunks; the first alone holds the
    file `old` (chunks(3, 20)), so forgetting it leaves data for prune."""
    Repository.init(backend, PASS, clock, kdf=TEST_KDF, params=SMALL)
    repo = open_repo(backend, clock, "backup")
    shared = chunks(1, 6)
    first = backup(repo, files(a1=shared + chunks(2, 20), old=chunks(3, 20)))
    repo.close()
    repo = open_repo(backend, clock, "backup")
    second = backup(repo, files(a2=shared + chunks(2, 20)[:5], b=chunks(4, 8)))
    repo.close()
    return first, second


def stored(backend: Backend) -> int:
    return sum(i.size for i in backend.list(ObjectKind.PACK))


class Killed(BackendError):
    """Stands in for kill -9: the process does nothing more, not even remove its lock."""


class CrashAt(MemoryBackend):
    """Counts mutating operations; from the `at`-th on, every one fails, as if the process had
    been killed there (nothing after it happens, not even removing its lock)."""

    def __init__(self) -> None:
        super().__init__()
        self.at = 0
        self.count = 0

    def _tick(self) -> None:
        self.count += 1
        if self.at and self.count >= self.at:
            raise Killed("killed here")

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        self._tick()
        super().save(handle, data)

    def remove(self, handle: Handle) -> None:
        self._tick()
        super().remove(handle)


# ---- machines: clocks that disagree, and runs that stop halfway --------------------------------


class World:
    """True time, in seconds since EPOCH; every machine's clock reads it its own way."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


@dataclass(repr=False)
class MachineClock:
    """One machine's clock: wall time is true time plus `offset` (skew; jumps change it);
    monotonic time is true time minus `asleep` (Linux's monotonic clock stops while suspended)."""

    world: World
    name: str = ""
    offset: float = 0.0
    asleep: float = 0.0

    def __repr__(self) -> str:
        return f"clock({self.name})"

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.world.seconds + self.offset)

    def monotonic(self) -> float:
        return self.world.seconds - self.asleep

    def jump(self, seconds: float) -> None:
        """The wall clock is set forward (or back, if negative); monotonic time goes on."""
        self.offset += seconds

    def suspend(self, seconds: float) -> None:
        """This machine sleeps while the world goes on: its wall clock catches up on waking,
        its monotonic clock does not."""
        self.world.advance(seconds)
        self.asleep += seconds


T = TypeVar("T")


class Gated:
    """A machine's view of shared storage: every save and remove is a step; a `Stoppable` run
    may hold the machine still before one of them, and a killed machine changes nothing more."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.steps = 0
        self.dead = False
        self.hook: Callable[[], None] | None = None
        self.pending: tuple[str, ObjectKind] | None = None
        """The storage change a stopped run waits before: ("save" or "remove", kind)."""
        self.done: list[tuple[str, ObjectKind]] = []
        """The storage changes made, in order."""

    def _step(self, op: str, kind: ObjectKind) -> None:
        if self.dead:
            raise Killed("this machine was killed")
        self.steps += 1
        self.pending = (op, kind)
        if self.hook is not None:
            self.hook()

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def location(self) -> str:
        return self.inner.location()

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        self._step("save", handle.kind)
        self.inner.save(handle, data)
        self.done.append(("save", handle.kind))

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        return self.inner.load(handle, offset, length)

    def stat(self, handle: Handle) -> ObjectInfo:
        return self.inner.stat(handle)

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        return self.inner.list(kind)

    def remove(self, handle: Handle) -> None:
        self._step("remove", handle.kind)
        self.inner.remove(handle)
        self.done.append(("remove", handle.kind))

    def exists(self, handle: Handle) -> bool:
        return self.inner.exists(handle)

    def close(self) -> None:
        """The storage is shared: closing one machine's view leaves it open."""


class Stoppable(Generic[T]):
    """Runs `work` in a thread that stops before its machine's `stop_at`-th storage change from
    now, or before its first change `before` (e.g. ("save", ObjectKind.SNAPSHOT)); the caller
    then does other things (other machines' work, time passing) and resumes or kills it. Only
    one thread runs at any moment, so every run replays exactly.
    """

    def __init__(
        self,
        machine: Gated,
        work: Callable[[], T],
        stop_at: int | None = None,
        before: tuple[str, ObjectKind] | None = None,
    ) -> None:
        self._machine = machine
        self._stop_at = None if stop_at is None else machine.steps + stop_at
        self._before = before
        self._kill = False
        self._to_caller = threading.Semaphore(0)
        self._to_worker = threading.Semaphore(0)
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None
        machine.hook = self._on_step
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()
        self._to_caller.acquire()
        self._finish_if_done()

    @property
    def stopped(self) -> bool:
        return not self.done

    def resume(
        self, stop_at: int | None = None, before: tuple[str, ObjectKind] | None = None
    ) -> None:
        """Go on: to the end, or stop again before the `stop_at`-th storage change after the one
        it stopped at."""
        assert not self.done
        self._stop_at = None if stop_at is None else self._machine.steps + stop_at
        self._before = before
        self._to_worker.release()
        self._to_caller.acquire()
        self._finish_if_done()

    def kill(self) -> None:
        """The process dies before the storage change it stopped at."""
        self._kill = True
        self.resume()

    def _on_step(self) -> None:
        machine = self._machine
        at = self._stop_at is not None and machine.steps >= self._stop_at
        if at or (self._before is not None and machine.pending == self._before):
            self._stop_at = self._before = None
            self._to_caller.release()
            self._to_worker.acquire()
            if self._kill:
                self._machine.dead = True
                raise Killed("killed here")

    def _run(self, work: Callable[[], T]) -> None:
        try:
            self.result = work()
        except BaseException as exc:  # handed to the caller, who decides what it means
            self.error = exc
        finally:
            self.done = True
            self._to_caller.release()

    def _finish_if_done(self) -> None:
        if self.done:
            self._thread.join()
            self._machine.hook = None


class ReplayableRandomness:
    """While it lasts, os.urandom and secrets.SystemRandom draw from one seeded generator:
    session IDs, nonces, object names and pack order come out the same in every run, so a
    failure replays exactly (and hypothesis can shrink it). For tests only: nothing is secret."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self._patch = pytest.MonkeyPatch()
        self._patch.setattr(os, "urandom", rng.randbytes)
        self._patch.setattr(secrets, "SystemRandom", lambda: rng)

    def restore(self) -> None:
        self._patch.undo()


class IncompleteLister(MemoryBackend):
    """A backend whose listing of one kind cannot finish."""

    broken: ObjectKind | None = None

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        if kind is self.broken:
            raise ListingIncomplete(f"{kind.value}: the storage stopped answering")
        yield from super().list(kind)
