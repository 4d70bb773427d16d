"""When a target runs and when its upload limit applies (design 17.9, 17.11): its schedule
(`continuous`, `every 15m`, a cron line) and its time-of-day windows (`22:00-06:00`).

Parsed from the strings a `Target` keeps, so a spec stays plain JSON; every parser raises
ValueError with a message fit for the user (the registry turns it into CAIRN-E120). Wall-clock
rules (cron, windows) are read in the time zone of the datetime they are given: the server's
clock gives local time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cronsim import CronSim, CronSimError

from cairn.core.units import parse_interval

CONTINUOUS_INTERVAL_S = 300.0
"""The nominal interval of a continuous target, for its lag alert (design 17.12)."""


@dataclass(frozen=True, slots=True)
class Continuous:
    """Run as soon as the journal holds something past the cursor."""


@dataclass(frozen=True, slots=True)
class Every:
    interval_s: float


@dataclass(frozen=True, slots=True)
class Cron:
    expression: str


Schedule = Continuous | Every | Cron


def parse_schedule(text: str) -> Schedule:
    """`continuous`, `every DURATION` (`every 15m`), or a five-field cron line."""
    words = text.split()
    if words == ["continuous"]:
        return Continuous()
    if len(words) == 2 and words[0] == "every":
        seconds = parse_interval(words[1])
        if seconds < 1:
            raise ValueError(f"schedule {text!r}: the interval must be at least 1s")
        return Every(seconds)
    if len(words) != 5:
        raise ValueError(
            f"schedule {text!r} is not `continuous`, `every 15m` or a five-field cron line "
            "(like `0 2 * * *`)"
        )
    expression = " ".join(words)
    try:
        CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"schedule {text!r} is not a cron line cronsim accepts: {exc}") from exc
    return Cron(expression)


def next_slot(schedule: Every | Cron, after: datetime) -> datetime:
    """The first slot strictly after `after` (an every-N schedule counts from `after`)."""
    if isinstance(schedule, Every):
        return after + timedelta(seconds=schedule.interval_s)
    start = after.replace(second=0, microsecond=0)
    for slot in CronSim(schedule.expression, start):
        if slot > after:
            return slot
    raise AssertionError("unreachable: cronsim iterates without end")  # pragma: no cover


def interval_s(schedule: Schedule, now: datetime) -> float:
    """The schedule's nominal interval: N, the gap between the next two cron slots, or
    CONTINUOUS_INTERVAL_S."""
    if isinstance(schedule, Every):
        return schedule.interval_s
    if isinstance(schedule, Cron):
        first = next_slot(schedule, now)
        return (next_slot(schedule, first) - first).total_seconds()
    return CONTINUOUS_INTERVAL_S


_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


@dataclass(frozen=True, slots=True)
class Window:
    """A daily span of wall time, in minutes after midnight; `end < start` wraps midnight."""

    start: int
    end: int

    def holds(self, when: datetime) -> bool:
        minute = when.hour * 60 + when.minute
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def parse_window(text: str) -> Window:
    """`HH:MM-HH:MM` (24-hour clock; `22:00-06:00` wraps midnight)."""
    match = _WINDOW.match(text.strip())
    if match is None:
        raise ValueError(f"window {text!r} is not HH:MM-HH:MM, like 22:00-06:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"window {text!r} has a time that does not exist")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"window {text!r} is empty; leave out --window for always")
    return Window(start, end)


def in_windows(windows: tuple[str, ...], when: datetime) -> bool:
    """Whether `when` falls in any of `windows`; no windows means always."""
    return not windows or any(parse_window(w).holds(when) for w in windows)
