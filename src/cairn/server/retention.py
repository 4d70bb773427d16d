"""Server-side retention: which snapshot objects the server forgets, on its own clock.

The server cannot read a snapshot's time (it is sealed) and would not trust it anyway: it goes by
the arrival time it recorded, and groups snapshots by the token that uploaded them (one token per
machine is the intended use), since host and paths are sealed too.

The rules are chosen so that nothing a backup-only credential sends can make the server forget a
snapshot that arrived before the attack:

- `keep-last` is not offered: a flood of new snapshots would push the real ones out of it.
- A periodic rule (`hourly` … `yearly`) keeps the *first* snapshot to arrive in each of the N most
  recent periods that hold one, not the last, so later arrivals can never displace it; and since
  arrival times cannot be forged, a flood lands only in the periods it is sent in.
- `within` keeps everything that arrived less than D before the group's newest arrival.
- Snapshot objects with no recorded arrival (copied in, or recorded by an older server) and
  arrivals in the future (the server's clock went back) are always kept.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cairn.server.errors import BadRequest
from cairn.snapshot.retention import BUCKETS, PolicyError, parse_duration

PERIODS = tuple(BUCKETS)


@dataclass(frozen=True, slots=True)
class ServerPolicy:
    """Per period, how many periods to keep (-1: all); `within` in hours."""

    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within_hours: int | None = None

    def is_empty(self) -> bool:
        counts = (self.hourly, self.daily, self.weekly, self.monthly, self.yearly)
        return not any(counts) and self.within_hours is None

    def to_json(self) -> str:
        return json.dumps({p: getattr(self, p) for p in (*PERIODS, "within_hours")})

    @classmethod
    def from_json(cls, text: str) -> ServerPolicy:
        return cls(**json.loads(text))

    def describe(self) -> str:
        parts = [f"{p} {getattr(self, p)}" for p in PERIODS if getattr(self, p)]
        if self.within_hours is not None:
            parts.append(f"within {self.within_hours}h")
        return ", ".join(parts) or "keep everything"


def parse_policy(within: str | None = None, **periods: int | None) -> ServerPolicy:
    """A policy from CLI or API values; refuses negative counts below -1 and empty policies."""
    counts: dict[str, int] = {}
    for period in PERIODS:
        value = periods.get(period) or 0
        if value < -1:
            raise BadRequest(f"keep-{period} must be a count, or -1 for all")
        counts[period] = value
    hours = None
    if within is not None:
        try:
            hours = int(parse_duration(within).total_seconds() // 3600)
        except PolicyError as exc:
            raise BadRequest(str(exc)) from exc
    policy = ServerPolicy(within_hours=hours, **counts)
    if policy.is_empty():
        raise BadRequest("give at least one rule: within, hourly, daily, weekly, monthly, yearly")
    return policy


@dataclass(frozen=True, slots=True)
class Arrival:
    name: str
    token: str
    received_ms: int


def to_forget(
    policy: ServerPolicy, stored: set[str], arrivals: dict[str, Arrival], now_ms: int
) -> list[str]:
    """The snapshot names the policy forgets, among `stored` (the names on storage)."""
    groups: dict[str, list[Arrival]] = {}
    for name in stored:
        arrival = arrivals.get(name)
        if arrival is None or arrival.received_ms > now_ms:
            continue  # unknown or from the future: always kept
        groups.setdefault(arrival.token, []).append(arrival)
    forgotten: list[str] = []
    for group in groups.values():
        kept = _kept(policy, group)
        forgotten.extend(a.name for a in group if a.name not in kept)
    return sorted(forgotten)


def _kept(policy: ServerPolicy, group: list[Arrival]) -> set[str]:
    ordered = sorted(group, key=lambda a: (a.received_ms, a.name))
    kept: set[str] = set()
    if policy.within_hours is not None:
        newest = ordered[-1].received_ms
        horizon = newest - policy.within_hours * 3600 * 1000
        kept.update(a.name for a in ordered if a.received_ms > horizon)
    for period in PERIODS:
        count = getattr(policy, period)
        if count:
            kept.update(_first_of_recent_periods(ordered, period, count))
    return kept


def _first_of_recent_periods(ordered: list[Arrival], period: str, count: int) -> list[str]:
    bucket = BUCKETS[period]
    first: dict[Hashable, str] = {}
    for arrival in ordered:  # oldest first: the first to arrive in a period claims it
        first.setdefault(bucket(_utc(arrival.received_ms)), arrival.name)
    periods = list(first.values())  # in order of their first arrival, oldest period first
    return periods if count < 0 else periods[-count:]


def _utc(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
