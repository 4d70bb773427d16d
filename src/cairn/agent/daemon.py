"""The agent's loop (design 15.3 to 15.5): when is each job due, run due jobs one at a time, record
their history, tell the alerts and the server, obey signals.

Jobs run one at a time, from a queue ordered by start time: a job that falls due while another
runs waits for it (a machine is backed up by one child at a time, which keeps the load of the
agent predictable). Between runs the loop sleeps until the earliest start time, at most
`POLL_S`, so a `cairn agent suspend|resume` written to the history database is obeyed within
seconds; SIGHUP, SIGTERM and the event triggers wake it at once.

- SIGHUP re-reads the configuration; a configuration with an error is refused and the old one
  kept (logged). A running job finishes first.
- SIGTERM stops starting runs; a running child gets SIGTERM, is killed after 30 s, and the run is
  recorded as `interrupted`, which makes the job due at the next start.

Log lines are JSON objects on stderr, one per line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from cairn.agent.history import History
from cairn.agent.report import report_run
from cairn.agent.runner import Retrying, Runner
from cairn.agent.schedule import Due, Jitter, next_due
from cairn.agent.spec import AgentSpec, Continuous, JobSpec, WhenReachable
from cairn.agent.triggers import ChangeTrigger, ReachableTrigger, Trigger, probe_repository
from cairn.config.tomltable import ConfigError
from cairn.core.clock import SYSTEM_CLOCK, epoch_s
from cairn.core.errors import CairnError
from cairn.notify.alerts import Alerter, channel_for
from cairn.notify.message import RunSummary

POLL_S = 2.0
TICK_S = 60.0
HISTORY_FOR_REPORTS_S = 8 * 86400.0
AGENT_FILE = "agent.json"


class JsonLog:
    """Structured log lines on a stream (stderr): {"ts", "event", ...fields}."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def __call__(self, event: str, **fields: Any) -> None:
        line = {"ts": round(epoch_s(SYSTEM_CLOCK), 3), "event": event, **fields}
        stream = self.stream or sys.stderr
        with contextlib.suppress(OSError, ValueError):
            stream.write(json.dumps(line, default=str) + "\n")
            stream.flush()


@dataclass(frozen=True, slots=True)
class Planned:
    job: JobSpec
    start: float
    catch_up: bool


def suspended_jobs(spec: AgentSpec, history: History) -> set[str]:
    """The configuration's `suspended`, overridden by `cairn agent suspend|resume`."""
    switches = history.suspended()
    return {j.name for j in spec.jobs if switches.get(j.name, j.suspended)}


def host_name(spec: AgentSpec) -> str:
    return spec.host or socket.gethostname()


class Daemon:
    """One agent. `load` re-reads the configuration (SIGHUP); `now` is the clock."""

    def __init__(
        self,
        spec: AgentSpec,
        load: Callable[[], AgentSpec],
        *,
        now: Callable[[], float] = lambda: epoch_s(SYSTEM_CLOCK),
        runner: Runner | None = None,
        log: Callable[..., None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.spec = spec
        self._load = load
        self.now = now
        self.log = log or JsonLog()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self._reload = False
        self.started = now()
        self.history = History(spec.state / "history.db")
        self.host = host_name(spec)
        # The agent's own runner tells it about retries (for `agent status`); a runner given
        # (`run-once`) keeps its own: it must not write the running agent's file.
        self.runner = runner or Runner(
            spec, self.host, self.stop, now=now, log=self.log, on_retry=self._on_retry
        )
        self._retrying: Retrying | None = None
        self._waiting: list[Planned] = []
        self.jitter = Jitter(spec.jitter_s, seed)
        self.pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self.triggers: dict[str, Trigger] = {}
        self.reachable: dict[str, ReachableTrigger] = {}
        self.alerter = self._alerter(spec)
        self._last_tick = 0.0
        self._last_plan: dict[str, Any] | None = None

    # ---- planning -----------------------------------------------------------------------

    def plan(self, now: float) -> list[Planned]:
        """Every job that will start by itself, with when, earliest first."""
        suspended = suspended_jobs(self.spec, self.history)
        with self._pending_lock:
            pending = set(self.pending)
        planned = []
        for job in self.spec.jobs:
            if job.name in suspended:
                continue
            item = self._plan_job(job, now, job.name in pending)
            if item is not None:
                planned.append(item)
        return sorted(planned, key=lambda p: p.start)

    def _plan_job(self, job: JobSpec, now: float, woken: bool) -> Planned | None:
        last = self.history.last_run(job.name)
        due = next_due(job.schedule, last, self.started, now)
        schedule = job.schedule
        if isinstance(schedule, Continuous) and woken:
            earliest = last.started + schedule.min_interval_s if last else now
            if due is None or earliest < due.at:
                due = Due(max(earliest, now), catch_up=True)
        if isinstance(schedule, WhenReachable):
            trigger = self.reachable.get(job.name)
            if trigger is not None and not trigger.reachable:
                return None  # the trigger wakes the loop when it turns reachable
            if due is not None and woken and due.at <= now:
                due = Due(due.at, catch_up=True)  # became reachable: quick, no jitter
        if due is None:
            return None
        return Planned(job, due.start_time(self.jitter.for_slot(job.name, due.at)), due.catch_up)

    # ---- one step of the loop -----------------------------------------------------------

    def step(self) -> float:
        """Reload if asked, run the first job that is due (if any); returns the seconds until
        the next planned start (0 after a run, infinity when nothing is planned)."""
        if self._reload:
            self._reload = False
            self.reload()
        now = self.now()
        self._tick(now)
        planned = self.plan(now)
        self._write_agent_file(planned, running=None)
        if self.stop.is_set():
            return 0.0
        if planned and planned[0].start <= now:
            self._write_agent_file(planned[1:], running=planned[0].job.name)
            self.run_job(planned[0].job, catch_up=planned[0].catch_up)
            self._write_agent_file(self.plan(self.now()), running=None)
            return 0.0
        return planned[0].start - now if planned else float("inf")

    def run_job(self, job: JobSpec, catch_up: bool = False) -> RunSummary:
        with self._pending_lock:
            self.pending.discard(job.name)
        self.log("run_started", job=job.name, catch_up=catch_up)
        try:
            summary = self.runner.run(job)
        finally:
            self._retrying = None
        self.history.record(summary)
        self.log(
            "run_ended",
            job=job.name,
            outcome=summary.outcome.value,
            attempt=summary.attempt,
            error_code=summary.error_code,
            snapshot=summary.snapshot,
            seconds=round(summary.ended - summary.started, 3),
            message=summary.message,
        )
        self._tell(job, summary)
        return summary

    def _tell(self, job: JobSpec, summary: RunSummary) -> None:
        if self.alerter is not None:
            try:
                self.alerter.after_run(summary)
            except Exception as exc:
                self.log("alert_failed", job=job.name, error=str(exc))
        try:
            report_run(
                job, summary
            )  # only to a server; it never raises, but a bug must not stop us
        except Exception as exc:
            self.log("report_failed", job=job.name, error=str(exc))

    def _tick(self, now: float) -> None:
        if self.alerter is None or now - self._last_tick < TICK_S:
            return
        self._last_tick = now
        try:
            last_success = self.history.last_success([j.name for j in self.spec.jobs])
            recent = self.history.runs(since=now - HISTORY_FOR_REPORTS_S, limit=100_000)
            self.alerter.tick(last_success, recent)
        except Exception as exc:
            self.log("alert_failed", error=str(exc))

    def _alerter(self, spec: AgentSpec) -> Alerter | None:
        if not spec.channels:
            return None
        channels = [channel_for(c) for c in spec.channels]
        return Alerter(channels, spec.alerts, spec.state / "alerts.json", self.now)

    # ---- configuration, triggers, signals -----------------------------------------------

    def reload(self) -> bool:
        """Re-read the configuration; a bad one is refused and the running one kept."""
        try:
            spec = self._load()
        except (ConfigError, OSError) as exc:
            self.log("reload_refused", error=str(exc))
            return False
        if spec.state != self.spec.state:
            self.log("reload_refused", error="the state folder cannot change while running")
            return False
        self._stop_triggers()
        self.spec = spec
        self.host = host_name(spec)
        self.runner = Runner(
            spec, self.host, self.stop, now=self.now, log=self.log, on_retry=self._on_retry
        )
        self.jitter = Jitter(spec.jitter_s)
        try:
            self.alerter = self._alerter(spec)
        except CairnError as exc:
            self.log("alerts_unavailable", error=str(exc))
            self.alerter = None
        self._start_triggers()
        self.log("reloaded", jobs=[j.name for j in spec.jobs])
        return True

    def _start_triggers(self) -> None:
        for job in self.spec.jobs:
            trigger: Trigger
            if isinstance(job.schedule, Continuous):
                trigger = ChangeTrigger(job.paths, job.schedule.debounce_s)
            elif isinstance(job.schedule, WhenReachable):
                repository = job.repository
                reachable = ReachableTrigger(
                    lambda r=repository: probe_repository(r),  # type: ignore[misc]
                    job.schedule.probe_s,
                )
                self.reachable[job.name] = reachable
                trigger = reachable
            else:
                continue
            trigger.start(self._waker(job.name))
            self.triggers[job.name] = trigger

    def _waker(self, name: str) -> Callable[[str], None]:
        def wake(reason: str) -> None:
            with self._pending_lock:
                self.pending.add(name)
            self.log("woken", job=name, reason=reason)
            self.wake.set()

        return wake

    def _stop_triggers(self) -> None:
        for trigger in self.triggers.values():
            with contextlib.suppress(Exception):
                trigger.stop()
        self.triggers.clear()
        self.reachable.clear()

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()
        self.wake.set()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True
        self.wake.set()

    def serve(self) -> None:
        """Run until SIGTERM (or SIGINT)."""
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        self.log("started", pid=os.getpid(), jobs=[j.name for j in self.spec.jobs])
        self._start_triggers()
        try:
            while not self.stop.is_set():
                delay = min(self.step(), POLL_S)
                if delay > 0 and not self.stop.is_set():
                    self.wake.wait(delay)
                self.wake.clear()
        finally:
            self._stop_triggers()
            self._remove_agent_file()
            self.history.close()
            self.log("stopped")

    # ---- what `agent status` reads ------------------------------------------------------

    def _on_retry(self, retrying: Retrying) -> None:
        """An attempt of the running job failed and the next waits: `agent status` shows both
        (during an outage a run can wait an hour between attempts)."""
        self._retrying = retrying
        self._write_agent_file(self._waiting, running=retrying.job)

    def _write_agent_file(self, planned: list[Planned], running: str | None) -> None:
        """The running agent's plan (pid, start, next start of each job, the running job and
        its failed attempt, if any), replaced atomically, so `cairn agent status` shows what
        this agent will really do."""
        self._waiting = planned
        retrying = self._retrying if running is not None else None
        document = {
            "pid": os.getpid(),
            "started": self.started,
            "running": running,
            "retrying": None if retrying is None else retrying.as_json(),
            "next": {p.job.name: p.start for p in planned},
        }
        if document == self._last_plan:
            return  # unchanged: no write every poll
        self._last_plan = document
        path = self.spec.state / AGENT_FILE
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(document))
            tmp.replace(path)
        except OSError as exc:
            self.log("state_unwritable", error=str(exc))

    def _remove_agent_file(self) -> None:
        with contextlib.suppress(OSError):
            (self.spec.state / AGENT_FILE).unlink()


def read_agent_file(state: Path) -> dict[str, Any] | None:
    """The running agent's plan, or None when no agent runs on this state folder."""
    try:
        document = json.loads((state / AGENT_FILE).read_text())
        pid = int(document["pid"])
        os.kill(pid, 0)
    except PermissionError:
        pass  # it runs, as another user
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _is_cairn(pid):
        return None  # a killed agent's file, and its process ID reused since
    return document if isinstance(document, dict) else None


def _is_cairn(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc to ask: trust the signal check
    return b"cairn" in command
