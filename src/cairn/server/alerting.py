"""The server's alerts on the job results agents report (design 15.5): the same `cairn.notify`
decisions the agent makes (failure, recovery, silence, summary report), over every tenant's
jobs, with the server's clock; and on its replication targets (design 17.12).

Reports are handed to one worker thread, so a slow mail server never holds up a request; the
worker also ticks once a minute for silence and reports. A job is known to the alerter as
`tenant/host/job`.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

from cairn.core.clock import SYSTEM_CLOCK, Clock, epoch_ms, epoch_s
from cairn.notify.alerts import Alerter, channel_for
from cairn.notify.config import load_notify_file
from cairn.notify.message import Outcome, RunSummary
from cairn.replication.scheduler import EventKind, TargetEvent
from cairn.server.jobresults import JobResult, JobResults
from cairn.server.tenants import TenantStore

log = logging.getLogger("cairn.server")

TICK_S = 60.0


class JobAlerts:
    def __init__(
        self,
        alerter: Alerter,
        jobs: JobResults,
        tenants: TenantStore,
        tick_s: float = TICK_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._alerter = alerter
        self._jobs = jobs
        self._tenants = tenants
        self._tick_s = tick_s
        self._queue: queue.Queue[RunSummary | None] = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None

    @classmethod
    def from_file(
        cls,
        path: Path,
        state_file: Path,
        jobs: JobResults,
        tenants: TenantStore,
        clock: Clock = SYSTEM_CLOCK,
    ) -> JobAlerts:
        """Raises ConfigError (CAIRN-E080) or NotifyError (CAIRN-E100) for a file that cannot
        work, so `serve` refuses to start rather than run without the alerts it was asked for."""
        channels, policy = load_notify_file(path)
        alerter = Alerter(
            [channel_for(c) for c in channels], policy, state_file, lambda: epoch_s(clock)
        )
        return cls(alerter, jobs, tenants, clock=clock)

    def reported(self, tenant: str, result: JobResult) -> None:
        """Queue a reported run; dropped (and logged) only if a backlog of 10,000 waits."""
        try:
            self._queue.put_nowait(summary_of(tenant, result, epoch_ms(self._clock)))
        except queue.Full:
            log.warning("alert queue full: the report of %s/%s is not alerted", tenant, result.job)

    def replication_event(self, event: TargetEvent) -> None:
        """A replication target failed, lags or recovered (design 17.12): told as the job
        `replication/<target>`, a failure or lag as a failed run, a recovery as a good one, so
        the alerter's rules (tell once, repeat daily, tell the recovery) apply."""
        now = epoch_s(self._clock)
        outcome = Outcome.SUCCESS if event.kind is EventKind.RECOVERED else Outcome.FAILURE
        run = RunSummary(
            job=f"replication/{event.target}",
            host="replication",
            started=now,
            ended=now,
            outcome=outcome,
            bytes_added=event.status.bytes_sent,
            error_code=None,
            message=event.message,
        )
        try:
            self._queue.put_nowait(run)
        except queue.Full:
            log.warning("alert queue full: replication to %s is not alerted", event.target)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="job-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def _work(self) -> None:
        next_tick = self._clock.monotonic()
        while True:
            try:
                run = self._queue.get(timeout=max(0.0, next_tick - self._clock.monotonic()))
            except queue.Empty:
                run = None
            else:
                if run is None:
                    return  # stop()
            try:
                if run is not None:
                    self._alerter.after_run(run)
                if self._clock.monotonic() >= next_tick:
                    next_tick = self._clock.monotonic() + self._tick_s
                    self.tick()
            except Exception:  # an alert must never stop the server; it says why in the log
                log.exception("job alerts failed")

    def tick(self) -> None:
        """Silence alerts and a due summary report over every tenant's reported jobs."""
        last_success: dict[str, float | None] = {}
        history: list[RunSummary] = []
        for tenant in self._tenants.all():
            for state in self._jobs.latest(tenant.name):
                run = summary_of(tenant.name, state.latest, epoch_ms(self._clock))
                success = state.last_success_ms
                last_success[run.job] = None if success is None else success / 1000
                history.append(run)
        self._alerter.tick(last_success, history)


def summary_of(tenant: str, result: JobResult, now_ms: int) -> RunSummary:
    """A reported result as the alerter reads it; times are the server's arrival time, so a
    client's clock cannot hide a silence."""
    received = (result.received_ms or now_ms) / 1000
    duration = max(0, result.ended_ms - result.started_ms) / 1000
    return RunSummary(
        job=f"{tenant}/{result.host}/{result.job}",
        host=result.host,
        started=received - duration,
        ended=received,
        outcome=_outcome(result.outcome),
        snapshot=result.snapshot,
        files=result.files,
        bytes_added=result.bytes_added,
        error_code=result.error_code,
        message=result.message,
    )


def _outcome(text: str) -> Outcome:
    try:
        return Outcome(text)
    except ValueError:
        return Outcome.FAILURE
