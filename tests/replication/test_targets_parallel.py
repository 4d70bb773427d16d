"""Targets run in parallel (design 17.11): a target whose storage hangs does not hold another
target's run; at most `workers` jobs at once, started in priority order; never two runs of one
target at once. The engine is the real one over journalled in-process storage; the targets are
local folders, one of them behind a gate that blocks its saves until the test opens it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.local import LocalBackend
from cairn.backends.wrappers.retrying import RetryingBackend
from cairn.core.clock import FrozenClock
from cairn.replication.db import ReplicationDb
from cairn.replication.engine import Replicator
from cairn.replication.journal import Journal
from cairn.replication.layout import TargetLayouts, server_id
from cairn.replication.model import RunReport, Target
from cairn.replication.scheduler import Scheduler
from cairn.replication.targets import TargetStore
from tests.replication.test_journal_rules import Tenants, put

WAIT_S = 120.0
"""A bound on waits for a worker on a slow shared machine, never a measurement."""


class Gated(RetryingBackend):
    """A local folder whose saves wait for `gate` (a target that hangs mid-transfer)."""

    def __init__(self, inner: Backend, gate: threading.Event, entered: threading.Event) -> None:
        super().__init__(inner, 0.0)
        self._gate = gate
        self._entered = entered

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        self._entered.set()
        assert self._gate.wait(WAIT_S), "the test never opened the gate"
        super().save(handle, data)


class World:
    def __init__(self, tmp_path: Path, workers: int) -> None:
        self.tmp = tmp_path
        self.clock = FrozenClock(datetime(2026, 12, 7, 12, tzinfo=UTC))
        self.db = ReplicationDb(tmp_path / "replication.db")
        self.store = TargetStore(self.db, self.clock)
        self.tenants = Tenants(Journal(self.db, self.clock))
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gated: set[str] = set()
        self.opens: list[str] = []
        self.reports: list[RunReport] = []
        self.ran: dict[str, threading.Event] = {}
        self.ids = server_id(tmp_path)
        self.scheduler = Scheduler(
            self.db,
            self.store,
            Replicator(self.db, self.tenants, self.ids, self.clock),
            self.open,
            self.clock,
            on_run=self.on_run,
            workers=workers,
            poll_s=0.2,
        )

    def add(self, name: str, priority: int = 100, gated: bool = False) -> None:
        folder = self.tmp / name
        folder.mkdir()
        self.store.add(Target(name, str(folder), priority=priority))
        self.ran[name] = threading.Event()
        if gated:
            self.gated.add(name)

    def open(self, target: Target) -> TargetLayouts:
        self.opens.append(target.name)

        def opener(where: str) -> Backend:
            local = LocalBackend.create(Path(where))
            if target.name in self.gated:
                return Gated(local, self.gate, self.entered)
            return local

        return TargetLayouts(target.location, self.ids, opener)

    def on_run(self, report: RunReport) -> None:
        self.reports.append(report)
        self.ran[report.target].set()

    def wait_ran(self, name: str) -> RunReport:
        assert self.ran[name].wait(WAIT_S), f"{name} never ran; busy: {self.scheduler.busy}"
        return next(r for r in self.reports if r.target == name)


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[[int], World]]:
    """A world with `workers`, its tenant holding one object to send; stopped at the end."""
    made: list[World] = []

    def build(workers: int) -> World:
        world = World(tmp_path, workers)
        made.append(world)
        put(world.tenants.stack("t1"), ObjectKind.CONFIG, b"config")
        return world

    yield build
    for world in made:
        world.gate.set()
        world.scheduler.stop()


def test_a_hanging_target_does_not_hold_another_targets_run(make: Callable[[int], World]) -> None:
    world = make(4)
    world.add("slow", priority=1, gated=True)
    world.add("fast", priority=2)
    world.scheduler.start()
    assert world.entered.wait(WAIT_S), "the slow target's run never started"
    report = world.wait_ran("fast")
    assert report.error is None and report.objects_sent == 1
    assert not world.ran["slow"].is_set() and world.scheduler.busy == ["slow"]
    world.gate.set()
    assert world.wait_ran("slow").error is None


def test_workers_are_bounded_priority_first_and_one_run_per_target(
    make: Callable[[int], World],
) -> None:
    world = make(1)
    world.add("first", priority=1, gated=True)
    world.add("second", priority=2)
    world.scheduler.tick()
    assert world.entered.wait(WAIT_S)
    for _ in range(3):  # more passes while the only worker is busy start nothing
        world.scheduler.tick()
    assert world.scheduler.busy == ["first"] and world.opens == ["first"]
    world.gate.set()
    world.wait_ran("first")
    world.scheduler.start()
    world.wait_ran("second")
    assert [r.target for r in world.reports] == ["first", "second"]
    assert world.opens == ["first", "second"], "never two runs of a target at once"
