"""The scheduler (design 17.11-17.12) driven tick by tick with a FrozenClock and a fake runner in
place of the engine: which targets are due and in what order, retries with exponential
backoff, pause, the upload limit's windows, the runs recorded, and the alert events."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cairn.backends.base import Backend, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.backends.wrappers.ratelimited import RateLimitedBackend
from cairn.core.clock import FrozenClock, epoch_ms
from cairn.replication.db import ReplicationDb
from cairn.replication.engine import TargetStorage
from cairn.replication.model import Mode, RunReport, Target
from cairn.replication.scheduler import EventKind, Scheduler, TargetEvent, WindowedBucket
from cairn.replication.status import State, target_status
from cairn.replication.targets import TargetStore

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class MemoryLayouts:
    """A target whose every tenant's copy is kept in memory."""

    def __init__(self) -> None:
        self._open: dict[str, Backend] = {}

    def open(self, tenant_id: str) -> Backend:
        return self._open.setdefault(tenant_id, MemoryBackend())


@dataclass
class FakeRunner:
    """Does what the engine's contract says about the cursor (moves it to the head) and
    nothing else; fails its first `failures` runs (by raising when `raises`)."""

    db: ReplicationDb
    failures: int = 0
    raises: bool = False
    calls: list[tuple[str, int, TargetStorage]] = field(default_factory=list)
    ran: threading.Event = field(default_factory=threading.Event)

    def run(self, target: Target, layouts: TargetStorage, *, cursor: int) -> RunReport:
        self.calls.append((target.name, cursor, layouts))
        self.ran.set()
        report = RunReport(target=target.name, started_ms=0)
        if self.failures:
            self.failures -= 1
            if self.raises:
                raise ConnectionError("the target hung up")
            report.error = "CAIRN-E033 the target is unreachable"
            return report
        head = self.db.read().execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0]
        with self.db.write() as conn:
            conn.execute("UPDATE cursors SET seq = ? WHERE target = ?", (head, target.name))
        report.objects_sent, report.bytes_sent, report.cursor = head - cursor, 100, head
        return report


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FrozenClock(NOON)
        self.db = ReplicationDb(tmp_path / "replication.db")
        self.store = TargetStore(self.db, self.clock)
        self.runner = FakeRunner(self.db)
        self.events: list[TargetEvent] = []
        self.reports: list[RunReport] = []
        self.scheduler = Scheduler(
            self.db,
            self.store,
            self.runner,
            lambda target: MemoryLayouts(),
            self.clock,
            on_run=self.reports.append,
            on_event=self.events.append,
        )

    def add(self, name: str, **settings: object) -> Target:
        return self.store.add(Target(name=name, location=f"/offsite/{name}", **settings))  # type: ignore[arg-type]

    def journal(self, count: int = 1, age_s: float = 0.0, size: int = 1000) -> None:
        at_ms = epoch_ms(self.clock) - int(age_s * 1000)
        with self.db.write() as conn:
            for _ in range(count):
                conn.execute(
                    "INSERT INTO journal (tenant_id, kind, name, size, action, at_ms) "
                    "VALUES ('t1', 'packs', 'p', ?, 'add', ?)",
                    (size, at_ms),
                )

    def ran(self) -> list[str]:
        names = [name for name, _, _ in self.runner.calls]
        self.runner.calls.clear()
        return names

    def kinds(self) -> list[EventKind]:
        kinds = [e.kind for e in self.events]
        self.events.clear()
        return kinds


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_due_continuous_targets_run_in_priority_order_and_paused_ones_never(world: World) -> None:
    world.add("low", priority=50)
    world.add("b-high", priority=5)
    world.add("a-high", priority=5)
    world.add("paused", priority=1, paused=True)
    world.scheduler.tick()
    assert world.ran() == [], "nothing in the journal: no run, no request"
    world.journal(3)
    world.scheduler.tick()
    assert world.ran() == ["a-high", "b-high", "low"]
    world.scheduler.tick()
    assert world.ran() == [], "every cursor is at the head"
    world.journal()
    world.store.resume("paused")
    world.scheduler.tick()
    assert world.ran() == ["paused", "a-high", "b-high", "low"]
    assert world.runner.calls == []


def test_the_runner_gets_the_cursor_and_every_run_is_recorded(world: World) -> None:
    world.add("nas")
    world.journal(2)
    (report,) = world.scheduler.tick()
    assert report.cursor == 2 and world.reports == [report]
    world.journal(3)
    world.scheduler.tick()
    status = target_status(world.db, world.store.get("nas"), world.clock.now())
    assert (status.objects_sent, status.bytes_sent, status.cursor) == (5, 200, 5)
    assert status.last_success_ms == epoch_ms(world.clock) and status.state is State.OK


def test_every_n_runs_at_once_then_every_n(world: World) -> None:
    world.add("nightly", schedule="every 15m")
    world.scheduler.tick()
    assert world.ran() == ["nightly"], "a new every-N target runs at once, journal or not"
    world.clock.advance(14 * 60)
    world.scheduler.tick()
    assert world.ran() == []
    world.clock.advance(60)
    world.scheduler.tick()
    assert world.ran() == ["nightly"]


def test_cron_waits_for_its_first_slot(world: World) -> None:
    world.add("night", schedule="0 2 * * *")
    world.scheduler.tick()
    assert world.ran() == []
    world.clock.advance(14 * 3600)  # 02:00 the next day
    world.scheduler.tick()
    assert world.ran() == ["night"]
    world.clock.advance(3600)
    world.scheduler.tick()
    assert world.ran() == []
    world.clock.advance(23 * 3600)
    world.scheduler.tick()
    assert world.ran() == ["night"]


@pytest.mark.parametrize("raises", [False, True])
def test_retries_back_off_exponentially_then_alert_once_and_recover(
    world: World, raises: bool
) -> None:
    world.add("flaky", retries=2, backoff_s=30.0)
    world.runner.failures, world.runner.raises = 4, raises
    world.journal()
    waits = []
    for _ in range(3):
        world.scheduler.tick()
        assert world.ran() == ["flaky"]
        waited = 0
        while not world.scheduler.due():
            world.clock.advance(1)
            waited += 1
        waits.append(waited)
    assert waits == [30, 60, 3600], "30s, 60s, then retries spent: hourly"
    assert world.kinds() == [EventKind.FAILED], "told once, when the retries are spent"
    status = target_status(world.db, world.store.get("flaky"), world.clock.now())
    assert status.state is State.FAILING and status.failures == 3
    assert status.last_error is not None
    assert ("hung up" in status.last_error) if raises else ("E033" in status.last_error)
    world.scheduler.tick()  # the fourth failure: no new alert
    assert world.ran() == ["flaky"] and world.kinds() == []
    world.clock.advance(3600)
    world.scheduler.tick()
    assert world.ran() == ["flaky"] and world.kinds() == [EventKind.RECOVERED]
    status = target_status(world.db, world.store.get("flaky"), world.clock.now())
    assert status.state is State.OK and status.failures == 0 and status.last_error is None


def test_an_edit_of_a_failing_target_ends_its_wait(world: World) -> None:
    """The operator fixed the target (an edit, or a pause and resume): it is tried at once,
    not after the hour a failing continuous target otherwise waits, and the recovery is told."""
    world.add("fixed", retries=0, backoff_s=30.0)
    world.runner.failures = 1
    world.journal()
    world.scheduler.tick()
    assert world.ran() == ["fixed"] and world.kinds() == [EventKind.FAILED]
    assert world.scheduler.due() == []
    world.store.edit("fixed", backoff_s=10.0)
    assert [t.name for t in world.scheduler.due()] == ["fixed"]
    world.scheduler.tick()
    assert world.ran() == ["fixed"] and world.kinds() == [EventKind.RECOVERED]

    world.runner.failures = 1
    world.journal()
    world.scheduler.tick()
    assert world.ran() == ["fixed"] and world.scheduler.due() == []
    world.store.pause("fixed")
    assert world.scheduler.due() == []
    world.store.resume("fixed")
    assert [t.name for t in world.scheduler.due()] == ["fixed"]


def test_a_failed_every_n_target_retries_before_its_next_slot(world: World) -> None:
    world.add("hourly", schedule="every 1h", retries=1, backoff_s=60.0)
    world.runner.failures = 2
    world.scheduler.tick()
    world.clock.advance(60)
    world.scheduler.tick()
    assert world.ran() == ["hourly", "hourly"]
    world.clock.advance(60)
    world.scheduler.tick()
    assert world.ran() == [], "retries spent: the schedule's next slot tries again"
    world.clock.advance(3600)
    world.scheduler.tick()
    assert world.ran() == ["hourly"]


def test_lag_over_twice_the_interval_alerts_and_recovers(world: World) -> None:
    world.add("slow", schedule="every 15m")
    world.scheduler.tick()  # its first run: nothing pending yet
    world.clock.advance(15 * 60)
    world.journal(2, age_s=31 * 60, size=4096)
    paused = world.add("resting", paused=True)
    world.store.pause(paused.name)
    world.scheduler.watch()
    assert world.kinds() == [EventKind.LAGGING], "a paused target never alerts"
    status = target_status(world.db, world.store.get("slow"), world.clock.now())
    assert status.state is State.LAGGING and status.lag_bytes == 8192
    assert status.lag_objects == 2 and status.lag_s == 31 * 60
    world.scheduler.tick()
    assert world.kinds() == [EventKind.RECOVERED]


def test_filters_narrow_the_lag(world: World) -> None:
    world.add("packs-only", filters=_kinds(ObjectKind.SNAPSHOT))
    world.journal(3)
    status = target_status(world.db, world.store.get("packs-only"), world.clock.now())
    assert status.lag_objects == 0, "only snapshots (and config, keys) are taken"
    world.add("mirror", mode=Mode.MIRROR)
    with world.db.write() as conn:
        conn.execute(
            "INSERT INTO journal (tenant_id, kind, name, size, action, at_ms) "
            "VALUES ('t1', 'packs', 'p', 500, 'remove', 0)"
        )
    mirror = target_status(world.db, world.store.get("mirror"), world.clock.now())
    copy = target_status(world.db, world.store.get("packs-only"), world.clock.now())
    assert (mirror.lag_objects, mirror.lag_bytes) == (4, 3000)
    assert copy.lag_objects == 0


def test_the_limit_applies_inside_its_windows_only(world: World) -> None:
    slept: list[float] = []
    bucket = WindowedBucket(2**20, ("22:00-06:00",), world.clock, slept.append)
    assert bucket.take(8 * 2**20) == 0.0 and slept == [], "noon: outside the window"
    world.clock.advance(11 * 3600)  # 23:00
    bucket.take(2**20)
    bucket.take(3 * 2**20)
    assert slept == [3.0], "inside: the bytes wait their time at the rate"
    world.add("limited", limit_bps=2**20, windows=("22:00-06:00",))
    world.journal()
    world.scheduler.tick()
    (_, _, layouts) = world.runner.calls[-1]
    assert isinstance(layouts.open("t1"), RateLimitedBackend)


def test_start_wakes_on_the_journal_event_and_stop_waits(world: World) -> None:
    scheduler = Scheduler(
        world.db, world.store, world.runner, lambda t: MemoryLayouts(), world.clock, poll_s=3600
    )
    world.add("live")
    scheduler.start()
    try:
        world.journal()
        scheduler.wake.set()  # what the journal does after an append
        assert world.runner.ran.wait(60), "the run started on the event, not the hourly poll"
    finally:
        scheduler.stop()
    assert world.store.cursor("live") == 1


def _kinds(*kinds: ObjectKind) -> object:
    from cairn.replication.model import Filters

    return Filters(kinds=kinds)


def test_a_restart_keeps_a_failing_targets_wait(world: World) -> None:
    world.add("flaky", retries=5, backoff_s=30.0)
    world.runner.failures = 10
    world.journal()
    world.scheduler.tick()  # the first failure: 30 s
    world.clock.advance(30)
    world.scheduler.tick()  # the second: 60 s
    assert world.ran() == ["flaky", "flaky"]
    world.clock.advance(20)
    restarted = Scheduler(
        world.db, world.store, world.runner, lambda target: MemoryLayouts(), world.clock
    )
    assert restarted.due() == [], "a restart does not try a failing target at once"
    world.clock.advance(39)
    assert restarted.due() == []
    world.clock.advance(1)
    assert [t.name for t in restarted.due()] == ["flaky"], "60 s after the last run ended"


def test_a_restart_after_the_wait_tries_at_once_and_a_good_target_is_not_held(
    world: World,
) -> None:
    world.add("flaky", retries=5, backoff_s=30.0)
    world.add("good")
    world.runner.failures = 1
    world.journal()
    world.scheduler.tick()
    assert sorted(world.ran()) == ["flaky", "good"]
    world.journal()
    world.clock.advance(31)
    restarted = Scheduler(
        world.db, world.store, world.runner, lambda target: MemoryLayouts(), world.clock
    )
    assert [t.name for t in restarted.due()] == ["flaky", "good"]


def test_a_pass_while_the_fence_says_no_starts_nothing(world: World) -> None:
    """A standby (or a primary that demoted itself) never replicates offsite (design 19.4)."""
    leads = [False]
    world.scheduler.may_run = lambda: leads[0]
    world.add("nas")
    world.journal(2)
    assert world.scheduler.tick() == [] and world.ran() == []
    leads[0] = True
    world.scheduler.tick()
    assert world.ran() == ["nas"]
    world.journal()
    leads[0] = False
    world.scheduler.tick()
    assert world.ran() == [], "demoted: no new run"
    assert world.store.cursor("nas") == 2
