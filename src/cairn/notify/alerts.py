"""When to tell (design 15.6): failure, recovery, repeat while failing, silence, summary report.

Interface agreed between the agent (caller) and this module (owner: notify). The agent calls
`after_run` after every run, `tick` about once a minute; the Alerter keeps what it has told in
`state_file` (JSON) so a restart neither repeats nor forgets an alert.

An event counts as told when at least one channel that wants its kind delivered it (or when no
channel wants it). One that no channel could deliver is logged with its error code and tried
again at the next chance (the next run, or the next tick); it never fails the job.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from cairn.notify import wording
from cairn.notify.email import EmailChannel
from cairn.notify.errors import NotifyError
from cairn.notify.message import (
    AlertPolicy,
    Channel,
    EmailSpec,
    Event,
    EventKind,
    Outcome,
    RunSummary,
    WebhookSpec,
)
from cairn.notify.report import summary_report
from cairn.notify.state import JobState, load_state, save_state

log = logging.getLogger("cairn.notify")

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SAVED = (Outcome.SUCCESS, Outcome.WARNING)


class Alerter:
    """Decides what to tell and sends it to `channels`; `now` gives seconds since the epoch (a
    fake clock in tests); `host` names this machine in silence alerts and reports (default: its
    host name). Thread-safe: the agent may call it from its runner and its loop."""

    def __init__(
        self,
        channels: Sequence[Channel],
        policy: AlertPolicy,
        state_file: Path,
        now: Callable[[], float],
        host: str | None = None,
    ) -> None:
        check_policy(policy)
        self._channels = list(channels)
        self._policy = policy
        self._state_file = state_file
        self._now = now
        self._host = host or socket.gethostname()
        self._lock = threading.Lock()
        self._state = load_state(state_file)

    def after_run(self, run: RunSummary) -> list[Event]:
        """Send what this run calls for (failure, recovery); returns the events sent."""
        with self._lock:
            job = self._state.job(run.job, run.started)
            job.host = run.host
            if run.outcome is Outcome.FAILURE:
                sent = self._failed(job, run)
            elif run.outcome in SAVED:
                sent = self._succeeded(job, run)
            else:
                sent = []  # interrupted or skipped: says nothing about the job's health
            save_state(self._state_file, self._state)
            return sent

    def tick(
        self, last_success: dict[str, float | None], history: Sequence[RunSummary]
    ) -> list[Event]:
        """Silence alerts (job → time of its last success, None: never) and a due summary report
        (over `history`, the runs since the last report; runs that ended before the report's
        period are left out, so passing more history is harmless)."""
        with self._lock:
            now = self._now()
            sent: list[Event] = []
            for name, last in sorted(last_success.items()):
                sent += self._check_silence(name, self._state.job(name, now), last, now)
            sent += self._check_report(sorted(set(last_success) | set(self._state.jobs)), history)
            save_state(self._state_file, self._state)
            return sent

    def _failed(self, job: JobState, run: RunSummary) -> list[Event]:
        job.failing = True
        job.failures += 1
        if job.failing_since is None:
            job.failing_since = run.ended
        now = self._now()
        repeat_due = (
            job.told_failure_at is None or now - job.told_failure_at >= self._policy.repeat_s
        )
        if job.told_failing and not repeat_due:
            return []
        event = wording.failure(run, job.failures, job.failing_since, job.last_success)
        told, sent = self._send(event)
        if told:
            job.told_failing, job.told_failure_at = True, now
        return sent

    def _succeeded(self, job: JobState, run: RunSummary) -> list[Event]:
        job.failing = False
        job.last_success = max(job.last_success or 0.0, run.ended)
        sent: list[Event] = []
        if job.told_failing:
            told, sent = self._send(wording.recovery(run, job.failures, job.failing_since))
            if told:
                job.told_failing, job.told_failure_at = False, None
        if not job.told_failing:
            job.failures, job.failing_since = 0, None
        return sent

    def _check_silence(
        self, name: str, job: JobState, last: float | None, now: float
    ) -> list[Event]:
        if last is not None and (job.last_success is None or last > job.last_success):
            job.last_success = last
        limit = self._policy.silence_after_s
        since = job.last_success if job.last_success is not None else job.first_seen
        if limit is None or now - since < limit or job.silence_told_for == since:
            return []
        event = wording.silence(job.host or self._host, name, job.last_success, since, now)
        told, sent = self._send(event)
        if told:
            job.silence_told_for = since
        return sent

    def _check_report(self, jobs: list[str], history: Sequence[RunSummary]) -> list[Event]:
        policy, state, now = self._policy, self._state, self._now()
        if policy.report_every is None:
            return []
        if state.last_report is None:
            state.last_report = now  # the first period starts now; nothing to report yet
            return []
        if state.last_report >= last_slot(now, policy):
            return []
        event = summary_report(
            self._host, policy.report_every, state.last_report, now, jobs, history
        )
        told, sent = self._send(event)
        if told:
            state.last_report = now
        return sent

    def _send(self, event: Event) -> tuple[bool, list[Event]]:
        """Send `event` to every channel that wants it: (told, [event] if any channel took it)."""
        wanting = [c for c in self._channels if _wants(c, event.kind)]
        delivered = 0
        for channel in wanting:
            try:
                channel.send(event)
                delivered += 1
            except NotifyError as exc:
                log.warning(
                    "%s: could not send the %s alert of job %r by %s: %s",
                    exc.code,
                    event.kind.value,
                    event.job,
                    _name(channel),
                    exc,
                )
            except Exception:
                log.exception("CAIRN-E100: sending by %s failed unexpectedly", _name(channel))
        return (delivered > 0 or not wanting), ([event] if delivered else [])


def check_policy(policy: AlertPolicy) -> None:
    """Raise NotifyError for a report schedule that cannot work (so the agent refuses its
    config at start rather than failing at report time)."""
    if policy.report_every not in (None, "daily", "weekly"):
        raise NotifyError(f'report every {policy.report_every!r}: use "daily" or "weekly"')
    hour, _, minute = policy.report_at.partition(":")
    if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
        raise NotifyError(f"report at {policy.report_at!r}: use a local time such as 07:00")
    if policy.report_day.lower()[:3] not in DAYS:
        raise NotifyError(f"report day {policy.report_day!r}: one of {', '.join(DAYS)}")
    if policy.repeat_s <= 0:
        raise NotifyError("repeat must be a positive duration")


def last_slot(now: float, policy: AlertPolicy) -> float:
    """The latest scheduled report time at or before `now` (local time)."""
    hour, minute = (int(part) for part in policy.report_at.split(":"))
    moment = datetime.fromtimestamp(now)
    slot = moment.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if slot > moment:
        slot -= timedelta(days=1)
    if policy.report_every == "weekly":
        day = DAYS.index(policy.report_day.lower()[:3])
        slot -= timedelta(days=(slot.weekday() - day) % 7)
    return slot.timestamp()


def channel_for(spec: object) -> Channel:
    """The Channel that carries events for an EmailSpec or a WebhookSpec. Raises NotifyError for
    settings that can never work (an unknown security, plain HTTP to another machine)."""
    if isinstance(spec, EmailSpec):
        return EmailChannel(spec)
    if isinstance(spec, WebhookSpec):
        from cairn.notify.webhook import WebhookChannel  # httpx: only for a webhook

        return WebhookChannel(spec)
    raise TypeError(f"not a channel spec: {spec!r}")


def _wants(channel: Channel, kind: EventKind) -> bool:
    """Channels with an `on` set get only those kinds; others get every kind."""
    on = getattr(channel, "on", None)
    return on is None or kind in on


def _name(channel: Channel) -> str:
    return str(getattr(channel, "name", type(channel).__name__))
