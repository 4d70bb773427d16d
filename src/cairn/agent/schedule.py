"""When each job is next due (design 15.3): every, cron, at/days, and the fallbacks of the
event-driven schedules; catch-up after downtime; jitter.

Times are seconds since the epoch. Wall-clock schedules (cron, at) are evaluated in local time
as the C library knows it (TZ, /etc/localtime): a slot is a local date and time, turned into an
instant with `mktime`, so a daylight-saving change neither repeats nor drops a slot. A slot in the
hour that does not exist (spring forward) runs at the same minute after the jump; a slot in the
hour that happens twice (fall back) runs once, because the next slot is sought after the last
run's local wall time.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from cronsim import CronSim

from cairn.agent.spec import (
    At,
    Continuous,
    Cron,
    Every,
    Schedule,
    WhenReachable,
)
from cairn.notify.message import Outcome

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class LastRun:
    """What the schedule needs from a job's history."""

    started: float
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Due:
    """When a job should start next, and why."""

    at: float
    """The slot itself (before jitter)."""
    catch_up: bool
    """A slot passed while the agent was down (or the last run was interrupted): run at once,
    without jitter."""

    def start_time(self, jitter: float) -> float:
        return self.at if self.catch_up else self.at + jitter


def _local(t: float) -> datetime:
    """The naive local wall time of instant `t`."""
    return datetime.fromtimestamp(t).replace(tzinfo=None)


def _instant(wall: datetime) -> float:
    """The instant of a naive local wall time (a time in a DST gap moves past the gap)."""
    return time.mktime((*wall.timetuple()[:8], -1))


def next_slot(schedule: Schedule, after: float) -> float:
    """The first slot strictly after instant `after`.

    `every`-style schedules (Every, WhenReachable) are relative to the last start: `after` plus
    the interval. Continuous jobs have no slots: infinity.
    """
    if isinstance(schedule, Every):
        return after + schedule.interval_s
    if isinstance(schedule, WhenReachable):
        return after + schedule.interval_s
    if isinstance(schedule, Cron):
        return _next_cron(schedule.expression, after)
    if isinstance(schedule, At):
        return _next_at(schedule, after)
    if isinstance(schedule, Continuous):
        return float("inf")
    raise AssertionError(f"unknown schedule {schedule!r}")


def _next_cron(expression: str, after: float) -> float:
    # cronsim iterates naive wall times; walk on until the instant is really after `after`
    # (in a fall-back hour the wall time can map to an earlier instant than `after`).
    wall = _local(after).replace(second=0, microsecond=0)
    for candidate in CronSim(expression, wall):
        instant = _instant(candidate)
        if instant > after:
            return instant
    raise AssertionError("unreachable: cronsim iterates without end")  # pragma: no cover


def _next_at(schedule: At, after: float) -> float:
    start = _local(after).date()
    days = set(schedule.days) or set(DAYS)
    for offset in range(9):
        day = start + timedelta(days=offset)
        if DAYS[day.weekday()] not in days:
            continue
        for clock in schedule.times:
            hour, minute = (int(x) for x in clock.split(":"))
            instant = _instant(datetime(day.year, day.month, day.day, hour, minute))
            if instant > after:
                return instant
    raise AssertionError("unreachable: some weekday within 8 days matches")  # pragma: no cover


def next_due(
    schedule: Schedule, last: LastRun | None, agent_started: float, now: float
) -> Due | None:
    """When the job is next due by time, or None when only a trigger can start it.

    - never run: Every/WhenReachable are due at the agent's start; Cron/At at their first slot
      after it; Continuous only once a change is seen (None);
    - last run interrupted: due at once (catch-up);
    - otherwise the first slot after the last start; if that slot passed before the agent
      started, it was missed while the agent was down: one catch-up run at once (never one per
      missed slot, since only the first slot after the last start is ever looked at).
    """
    if last is None:
        if isinstance(schedule, Every | WhenReachable):
            return Due(agent_started, catch_up=False)  # at start (a fixed slot: stable jitter)
        if isinstance(schedule, Continuous):
            return None
        return Due(next_slot(schedule, agent_started), catch_up=False)
    if last.outcome is Outcome.INTERRUPTED:
        return Due(min(now, agent_started), catch_up=True)
    slot = next_slot(schedule, last.started)
    if slot == float("inf"):
        return None
    return Due(slot, catch_up=slot < agent_started)


class Jitter:
    """A random delay in [0, jitter_s) per job and slot, drawn once and remembered, so that many
    agents do not start in the same second. Seeded for tests; from the OS otherwise."""

    def __init__(self, jitter_s: float, seed: int | None = None) -> None:
        self.jitter_s = jitter_s
        self._rng = random.Random(seed)  # noqa: S311 — spreading load, not secrecy
        self._drawn: dict[tuple[str, float], float] = {}

    def for_slot(self, job: str, slot: float) -> float:
        if self.jitter_s <= 0:
            return 0.0
        key = (job, slot)
        if key not in self._drawn:
            if len(self._drawn) > 1024:
                self._drawn.clear()
            self._drawn[key] = self._rng.random() * self.jitter_s
        return self._drawn[key]


def describe(schedule: Schedule) -> str:
    """The schedule in words, for `agent status`."""
    if isinstance(schedule, Every):
        return f"every {_span(schedule.interval_s)}"
    if isinstance(schedule, Cron):
        return f"cron {schedule.expression}"
    if isinstance(schedule, At):
        days = ",".join(schedule.days) if schedule.days else "daily"
        return f"at {','.join(schedule.times)} {days}"
    if isinstance(schedule, Continuous):
        return f"continuous (min {_span(schedule.min_interval_s)})"
    return f"when reachable, every {_span(schedule.interval_s)}"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
