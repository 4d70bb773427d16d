"""The loop in `serve` that runs each due target (design 17.11): continuous (woken by the journal
within a second, or by a poll), every N, or cron; each target in a worker thread of its own, at
most `WORKERS` at once, started in priority order; retries with exponential backoff; the upload
limit inside the target's windows; every run recorded; alerts when a target fails, lags, or
recovers (17.12).

`tick()` is one pass and reads the time only from the clock it was given; with `workers=0` it
runs every job inline and returns the reports, so tests drive it with a FrozenClock and a fake
runner, no sleeps; `start()` runs ticks in a thread until `stop()`.
The runner is the engine (`Replicator.run`); this module only decides when, and records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

from cairn.backends.base import Backend
from cairn.backends.wrappers.ratelimited import RateLimitedBackend, TokenBucket
from cairn.core.clock import Clock, epoch_ms
from cairn.replication.db import ReplicationDb
from cairn.replication.engine import TargetStorage
from cairn.replication.model import AuditReport, Mode, RunReport, Target
from cairn.replication.status import (
    State,
    TargetStatus,
    failing_streak,
    last_start_ms,
    record_run,
    target_status,
)
from cairn.replication.targets import TargetStore
from cairn.replication.timing import Continuous, Every, in_windows, next_slot, parse_schedule

log = logging.getLogger("cairn.replication")

POLL_S = 5.0
AUDIT_EVERY_S = 86400.0
"""How often each target's copy is audited (design 17.7): the first pass after `serve` starts,
then daily."""
WORKERS = 4
"""How many targets `serve` replicates to at once (design 17.11)."""
MAX_BACKOFF_S = 3600.0
"""The longest wait between two attempts; a failing continuous target is tried this often."""


class Runner(Protocol):
    """One run for one target: the engine's `Replicator`. It persists the new cursor itself."""

    def run(self, target: Target, layouts: TargetStorage, *, cursor: int) -> RunReport: ...


class Auditor(Protocol):
    """The audit of one target's copies (the engine's `Replicator.audit`, design 17.7)."""

    def audit(self, target: Target, layouts: TargetStorage) -> AuditReport: ...


class _LimitedLayouts:
    """A target's per-tenant backends, all drawing on one upload limit."""

    def __init__(self, inner: TargetStorage, bucket: TokenBucket) -> None:
        self._inner = inner
        self._bucket = bucket

    def open(self, tenant_id: str) -> Backend:
        return RateLimitedBackend(self._inner.open(tenant_id), self._bucket)


class EventKind(Enum):
    FAILED = "failed"
    """The target's retries are spent: it failed `retries + 1` runs in a row."""
    LAGGING = "lagging"
    """Its lag exceeds twice its interval."""
    RECOVERED = "recovered"
    """After a failed or lagging event: a good run, with the lag back under the limit."""


@dataclass(frozen=True, slots=True)
class TargetEvent:
    kind: EventKind
    target: str
    message: str
    status: TargetStatus


class WindowedBucket(TokenBucket):
    """A token bucket that charges only inside `windows` (always, when there are none): outside
    them a target's uploads run at line speed."""

    def __init__(
        self,
        rate: int,
        windows: tuple[str, ...],
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(rate, monotonic=clock.monotonic, sleep=sleep)
        self._windows = windows
        self._clock = clock

    def take(self, n: int) -> float:
        if not in_windows(self._windows, self._clock.now()):
            return 0.0
        return super().take(n)


@dataclass(slots=True)
class _Memory:
    """What the scheduler remembers of a target between ticks; the retry time is derived from
    the `runs` table when a target is first seen (`Scheduler._remember`), so it survives a
    restart."""

    retry_at: float | None = None
    """Monotonic time before which a failed target is not tried again."""
    failed_as: Target | None = None
    """The target's settings when it failed: an edit (or a pause) ends the wait."""
    told_failed: bool = False
    told_lagging: bool = False
    audited_at: float | None = None
    """Monotonic time of the last audit (None: not since `serve` started)."""


def _ignore(_: object) -> None:
    return None


class Scheduler:
    """Runs `store`'s due targets through `runner` (see the module docstring).

    `open_target` opens a target's backend (the server's `open_backend` with its environment);
    `on_run` gets every report (the server's audit log), `on_event` every alert; `tenant_ids`
    gives the tenant name → ID map for filters; `after_tick` is called at the end of each pass
    (the server carries its sealed state to the targets there, 17.15). `wake` is the event the
    journal sets after an append (made here unless the caller made it first, to hand to it).
    """

    def __init__(
        self,
        db: ReplicationDb,
        store: TargetStore,
        runner: Runner,
        open_target: Callable[[Target], TargetStorage],
        clock: Clock,
        *,
        on_run: Callable[[RunReport], None] = _ignore,
        on_event: Callable[[TargetEvent], None] = _ignore,
        tenant_ids: Callable[[], Mapping[str, str]] = dict,
        poll_s: float = POLL_S,
        bucket_sleep: Callable[[float], None] = time.sleep,
        wake: threading.Event | None = None,
        after_tick: Callable[[], object] = lambda: None,
        auditor: Auditor | None = None,
        on_audit: Callable[[AuditReport], None] = _ignore,
        audit_every_s: float = AUDIT_EVERY_S,
        workers: int = 0,
    ) -> None:
        self._db = db
        self._workers = workers
        self._lock = threading.Lock()
        """Guards `_memory` and `_busy`: workers end runs while the scheduler's thread decides."""
        self._busy: dict[str, threading.Thread] = {}
        """The targets with a job (a run or an audit) in a worker now."""
        self._after_tick = after_tick
        self._store = store
        self._runner = runner
        self._open = open_target
        self._clock = clock
        self._on_run = on_run
        self._on_event = on_event
        self._tenant_ids = tenant_ids
        self._poll_s = poll_s
        self._bucket_sleep = bucket_sleep
        self._memory: dict[str, _Memory] = {}
        self._auditor = auditor
        self._on_audit = on_audit
        self._audit_every_s = audit_every_s
        self.wake = wake if wake is not None else threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.may_run: Callable[[], bool] = lambda: True
        """Whether a pass may start runs now: a server of a pair sets its fence's answer here,
        so only the primary replicates offsite; a standby's passes do nothing (design 19.4)."""

    def due(self) -> list[Target]:
        """The targets to run now, in the order to run them (priority, then name)."""
        now = self._clock.now()
        head = self._store.head()
        return [t for t in self._store.list() if self._is_due(t, now, head)]

    def tick(self) -> list[RunReport]:
        """Run every due target once (inline with `workers=0`, returning the reports; else a
        worker started for each due target not running already, while workers are free), then
        look at every target's health for alerts. A pass while `may_run` says no (a standby, or
        a primary that demoted itself) does nothing; runs in progress end as they would."""
        reports: list[RunReport] = []
        if not self.may_run():
            return reports
        if self._workers <= 0:
            for target in self.due():
                if self._stopping.is_set():
                    break
                reports.append(self.run_one(target))
            self.audit_due()
        else:
            self._dispatch()
        self.watch()
        try:
            self._after_tick()
        except Exception:  # what follows a pass must never stop replication; the log says why
            log.exception("the step after a replication pass failed")
        return reports

    def run_one(self, target: Target) -> RunReport:
        """One run of `target` now, recorded whatever happens; a runner that raises makes a
        failed report."""
        started = epoch_ms(self._clock)
        try:
            layouts = self._limited(target, self._open(target))
            report = self._runner.run(target, layouts, cursor=self._store.cursor(target.name))
        except Exception as exc:
            log.warning("replication to %s failed: %s", target.name, exc)
            report = RunReport(target=target.name, started_ms=started, error=_describe(exc))
            report.cursor = self._store.cursor(target.name)
        report.started_ms = report.started_ms or started
        report.ended_ms = report.ended_ms or epoch_ms(self._clock)
        record_run(self._db, report)
        self._after(target, report)
        self._on_run(report)
        return report

    def audit_due(self) -> list[AuditReport]:
        """Audit (inline) each target whose audit is due and that is neither paused nor
        failing: its copies listed against the server's storage, the missing sent, the rest
        reported."""
        return [self.audit_one(target) for target in self._audits_due()]

    def _audits_due(self) -> list[Target]:
        if self._auditor is None or self._stopping.is_set():
            return []
        now, due = self._clock.monotonic(), []
        with self._lock:
            for target in self._store.list():
                memory = self._remember(target)
                stale = memory.audited_at is None or now - memory.audited_at >= self._audit_every_s
                if stale and not target.paused and memory.retry_at is None:
                    due.append(target)
        return due

    def audit_one(self, target: Target) -> AuditReport:
        """One audit of `target` now, reported whatever happens."""
        with self._lock:
            self._remember(target).audited_at = self._clock.monotonic()
        try:
            if self._auditor is None:
                raise RuntimeError("this scheduler has no auditor")
            layouts = self._limited(target, self._open(target))
            report = self._auditor.audit(target, layouts)
        except Exception as exc:
            log.warning("the audit of %s failed: %s", target.name, exc)
            report = AuditReport(target.name, epoch_ms(self._clock), error=_describe(exc))
        if report.objects_sent or report.mismatched_on_target or report.source_empty:
            log.warning("audit of %s: %s", target.name, describe_audit(report))
        self._on_audit(report)
        return report

    def statuses(self) -> list[TargetStatus]:
        now, ids = self._clock.now(), self._tenant_ids()
        return [target_status(self._db, t, now, ids) for t in self._store.list()]

    def watch(self) -> list[TargetEvent]:
        """Alerts for every target from its current status (failed, lagging, recovered)."""
        now, ids = self._clock.now(), self._tenant_ids()
        events = []
        for target in self._store.list():
            if target.name in self.busy:
                continue  # judged when its job ends (the worker wakes the next pass)
            status = target_status(self._db, target, now, ids)
            with self._lock:
                memory = self._remember(target)
                events += self._events(target, status, memory)
        for event in events:
            try:
                self._on_event(event)
            except Exception:  # an alert must never stop replication; the log says why
                log.exception("replication alert for %s failed", event.target)
        return events

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="replication", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the runs in progress (waits up to `timeout` for them)."""
        self._stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            workers = list(self._busy.values())
        for worker in workers:
            worker.join(timeout)

    @property
    def busy(self) -> list[str]:
        """The targets with a run or an audit in a worker now."""
        with self._lock:
            return sorted(self._busy)

    def _dispatch(self) -> None:
        """Start a worker for each due target (priority order), then for each due audit,
        while workers are free; a target with a job in progress is skipped."""
        jobs: list[tuple[Target, Callable[[Target], object]]] = [
            (target, self.run_one) for target in self.due()
        ]
        jobs += [(target, self.audit_one) for target in self._audits_due()]
        for target, job in jobs:
            if not self._start(target, job):
                return

    def _start(self, target: Target, job: Callable[[Target], object]) -> bool:
        """False when no worker is free (or stopping): nothing more starts this pass."""
        with self._lock:
            if self._stopping.is_set() or len(self._busy) >= self._workers:
                return False
            if target.name in self._busy:
                return True
            worker = threading.Thread(
                target=self._work,
                args=(target, job),
                name=f"replication-{target.name}",
                daemon=True,
            )
            self._busy[target.name] = worker
        worker.start()
        return True

    def _work(self, target: Target, job: Callable[[Target], object]) -> None:
        try:
            job(target)
        except Exception:  # run_one and audit_one report failures; this is a bug's last stop
            log.exception("replication job for %s failed", target.name)
        finally:
            with self._lock:
                self._busy.pop(target.name, None)
            self.wake.set()  # the next pass starts what waited for a worker, and alerts

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self.wake.clear()
            try:
                self.tick()
            except Exception:  # a broken pass must not end replication; the next poll retries
                log.exception("replication scheduler pass failed")
            self.wake.wait(self._poll_s)

    def _is_due(self, target: Target, now: datetime, head: int) -> bool:
        with self._lock:
            memory = self._remember(target)
            if target.paused:
                memory.retry_at = None  # resumed, it is tried at once
                return False
            if memory.retry_at is not None and memory.failed_as != target:
                memory.retry_at = None  # edited since it failed (fixed?): tried at once
            retry_at = memory.retry_at
        if retry_at is not None:
            return self._clock.monotonic() >= retry_at  # a retry, whatever the schedule
        schedule = parse_schedule(target.schedule)
        if isinstance(schedule, Continuous):
            return head > self._store.cursor(target.name) or self._deletions_due(target)
        started = last_start_ms(self._db, target)
        if started is None and isinstance(schedule, Every):
            return True  # a new every-N target runs at once; a cron one waits for its slot
        reference = started if started is not None else target.created_ms
        last = datetime.fromtimestamp(reference / 1000, now.tzinfo)
        return now >= next_slot(schedule, last)

    def _deletions_due(self, target: Target) -> bool:
        """A mirror target's quarantined deletions have come due (a run does them even when
        the journal has nothing new)."""
        if target.mode is not Mode.MIRROR:
            return False
        row = self._db.read().execute(
            "SELECT 1 FROM quarantine WHERE target = ? AND due_ms <= ? LIMIT 1",
            (target.name, epoch_ms(self._clock)),
        )
        return row.fetchone() is not None

    def _limited(self, target: Target, layouts: TargetStorage) -> TargetStorage:
        if target.limit_bps is None:
            return layouts
        bucket = WindowedBucket(target.limit_bps, target.windows, self._clock, self._bucket_sleep)
        return _LimitedLayouts(layouts, bucket)

    def _after(self, target: Target, report: RunReport) -> None:
        """Set the wait before the next attempt from the failures in a row."""
        failures = 0
        if report.error is not None:
            failures = target_status(self._db, target, self._clock.now()).failures
        with self._lock:
            memory = self._remember(target)
            memory.failed_as = target
            memory.retry_at = self._retry_at(target, failures)

    def _remember(self, target: Target) -> _Memory:
        """The memory of `target` (call with the lock held); made on first sight with the
        wait its failures in a row call for, from the end of its latest run (17.11)."""
        memory = self._memory.get(target.name)
        if memory is None:
            failures, ended_ms = failing_streak(self._db, target)
            retry_at = self._retry_at(target, failures)
            if retry_at is not None and ended_ms is not None:
                since_s = max(0.0, (epoch_ms(self._clock) - ended_ms) / 1000)
                retry_at = max(self._clock.monotonic(), retry_at - since_s)
            memory = self._memory[target.name] = _Memory(retry_at=retry_at, failed_as=target)
        return memory

    def _retry_at(self, target: Target, failures: int) -> float | None:
        """The monotonic time before which a target that failed `failures` runs in a row is
        not tried again; None: at its schedule."""
        if failures == 0:
            return None
        if failures <= target.retries:
            wait = min(target.backoff_s * 2.0 ** (failures - 1), MAX_BACKOFF_S)
        elif isinstance(parse_schedule(target.schedule), Continuous):
            wait = MAX_BACKOFF_S  # retries spent: a continuous target is tried hourly
        else:
            return None  # retries spent: the schedule's next slot tries again
        return self._clock.monotonic() + wait

    def _events(self, target: Target, status: TargetStatus, memory: _Memory) -> list[TargetEvent]:
        if status.state is State.PAUSED:
            return []
        events = []
        lagging = status.lag_s > 2 * status.interval_s
        if status.failures > target.retries and not memory.told_failed:
            memory.told_failed = True
            message = (
                f"replication to {target.name} failed {status.failures} times in a row: "
                f"{status.last_error}"
            )
            events.append(TargetEvent(EventKind.FAILED, target.name, message, status))
        if lagging and not memory.told_lagging and not status.failures:  # else: it fails
            memory.told_lagging = True
            message = (
                f"replication to {target.name} lags {status.lag_s:.0f}s behind "
                f"({status.lag_objects} objects, {status.lag_bytes} bytes pending), over "
                f"twice its interval of {status.interval_s:.0f}s"
            )
            events.append(TargetEvent(EventKind.LAGGING, target.name, message, status))
        told = memory.told_failed or memory.told_lagging
        if told and status.failures == 0 and not lagging:
            memory.told_failed = memory.told_lagging = False
            message = f"replication to {target.name} has recovered"
            events.append(TargetEvent(EventKind.RECOVERED, target.name, message, status))
        return events


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def describe_audit(report: AuditReport) -> str:
    """One line for a log or the audit log: what the audit found and did."""
    parts = [f"sent={report.objects_sent} bytes={report.bytes_sent}"]
    for label, found in (
        ("mismatched", report.mismatched_on_target),
        ("extra", report.extra_on_target),
        ("damaged-at-source", report.damaged_at_source),
        ("source-empty", report.source_empty),
    ):
        if found:
            parts.append(f"{label}={len(found)}")
    if report.error:
        parts.append(f"error={report.error}")
    return " ".join(parts)
