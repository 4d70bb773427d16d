"""Time comes in as a parameter so that leases, retention and retries replay exactly in tests.

This is the one module that reads the machine's clocks: ruff's banned-API rule (TID251,
pyproject.toml) refuses `time.time`, `time.monotonic`, `datetime.now` and the like anywhere else
in `src/cairn`. A composition root (the server's `open_services`, a CLI command) makes one
`SystemClock` and hands it down; tests hand down a `FrozenClock`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where a component reads the time from."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC).astimezone()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = SystemClock()
"""The real clock, for parameters' defaults: a composition root passes its own clock down."""


def epoch_ms(clock: Clock) -> int:
    """`clock`'s wall-clock time in milliseconds since the epoch (what the server stores)."""
    return int(clock.now().timestamp() * 1000)


def epoch_s(clock: Clock) -> float:
    """`clock`'s wall-clock time in seconds since the epoch (what `time.time()` said)."""
    return clock.now().timestamp()


def utc_now(clock: Clock) -> datetime:
    """`clock`'s wall-clock time in UTC."""
    return clock.now().astimezone(UTC)


class FrozenClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
