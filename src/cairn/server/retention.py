"""Server-side retention: which snapshot objects the server forgets, on its own clock.

The server cannot read a snapshot's time (it is sealed) and would not trust it anyway: it goes by
the arrival time it recorded. It groups snapshots by the token that uploaded them *and* by the
snapshot's group ID (design 3.6): a keyed hash of host and paths that the client writes in the
plaintext part of the snapshot object, so one machine's jobs (one token, several sets of paths)
are separate groups, as `forget` makes them, while the server learns no host or path. A snapshot
without a group ID (an older client) is in its token's group of those without one.

The rules are chosen so that nothing a backup-only credential sends can make the server forget a
snapshot that a periodic rule kept before the attack (design 14.5 says what a flood can cost):

- A group's newest arrival is always kept, whatever the policy: retention never empties a group.
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
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import NotFound
from cairn.core.errors import CairnError
from cairn.format.snapshot import decode_snapshot
from cairn.server.errors import BadRequest
from cairn.snapshot.retention import BUCKETS, PolicyError, parse_retention_span

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
            hours = int(parse_retention_span(within).total_seconds() // 3600)
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
    policy: ServerPolicy,
    stored: Mapping[str, str | None],
    arrivals: dict[str, Arrival],
    now_ms: int,
) -> list[str]:
    """The snapshot names the policy forgets. `stored` maps each snapshot name on storage to its
    group ID (hex), or None for a snapshot without one (read_groups)."""
    groups: dict[tuple[str, str | None], list[Arrival]] = {}
    for name, group in stored.items():
        arrival = arrivals.get(name)
        if arrival is None or arrival.received_ms > now_ms:
            continue  # unknown or from the future: always kept
        groups.setdefault((arrival.token, group), []).append(arrival)
    forgotten: list[str] = []
    for members in groups.values():
        kept = _kept(policy, members)
        forgotten.extend(a.name for a in members if a.name not in kept)
    return sorted(forgotten)


def _kept(policy: ServerPolicy, group: list[Arrival]) -> set[str]:
    ordered = sorted(group, key=lambda a: (a.received_ms, a.name))
    kept = {ordered[-1].name}  # the newest: a job whose backups stopped keeps its last one
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


def read_groups(backend: Backend, names: Iterable[str]) -> dict[str, str | None]:
    """Each named snapshot's group ID (hex), read from the plaintext part of its object: the
    object is the truth, so the server keeps no copy that could disagree with it.

    A snapshot removed since it was listed is left out (there is nothing to forget). A storage
    error is raised: retention must not run on a partial view, where a snapshot read as having
    no group would be judged in the wrong group. A record that does not decode (only a
    tenant-admin token can store one) has no group."""
    groups: dict[str, str | None] = {}
    for name in names:
        try:
            data = backend.load(Handle(ObjectKind.SNAPSHOT, name))
        except NotFound:
            continue
        groups[name] = _group_of(data)
    return groups


def _group_of(data: bytes) -> str | None:
    try:
        group = decode_snapshot(data).group
    except CairnError:
        return None
    return group.hex() if group is not None else None
