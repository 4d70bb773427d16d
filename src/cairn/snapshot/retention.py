"""Retention policies: which snapshots `forget` keeps, and the rule that keeps each (design 13.2).

Restic's semantics, so that policies carry over: snapshots are taken newest first; a `keep-daily N`
rule keeps the newest snapshot of each of the last N days that hold one (in each snapshot's own
time zone); `keep-last N` keeps the N newest; `keep-within D` keeps everything less than D older
than the newest snapshot of the group (not than now: a client whose backups stopped keeps them);
`keep-tag T` keeps every snapshot tagged T. A snapshot kept by no rule is forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cairn.core.errors import CairnError

BUCKETS: dict[str, Callable[[datetime], Hashable]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: t.isocalendar()[:2],
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: t.year,
}


class PolicyError(CairnError):
    """The retention policy is empty or malformed."""


@dataclass(frozen=True, slots=True)
class Policy:
    """How many snapshots to keep per period; -1 means every period (unlimited)."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: timedelta | None = None
    tags: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        counts = (self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly)
        return not any(counts) and self.within is None and not self.tags


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a policy looks at: an identity, a time and tags."""

    key: str
    time: datetime
    tags: tuple[str, ...] = ()


@dataclass(slots=True)
class Decision:
    candidate: Candidate
    reasons: list[str] = field(default_factory=list)

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


def apply_policy(policy: Policy, candidates: list[Candidate]) -> list[Decision]:
    """Decide every candidate of one group; newest first in the result."""
    if policy.is_empty():
        raise PolicyError("no retention rule given: forget keeps nothing without one")
    ordered = sorted(candidates, key=lambda c: (c.time, c.key), reverse=True)
    decisions = [Decision(c) for c in ordered]
    if not ordered:
        return decisions
    newest = ordered[0].time
    for number, decision in enumerate(decisions):
        candidate = decision.candidate
        if policy.last < 0 or number < policy.last:
            decision.reasons.append("last")
        if policy.within is not None and candidate.time > newest - policy.within:
            decision.reasons.append("within")
        decision.reasons.extend(f"tag {t}" for t in policy.tags if t in candidate.tags)
    for period, bucket in BUCKETS.items():
        _keep_per_period(decisions, period, bucket, getattr(policy, period))
    return decisions


def _keep_per_period(
    decisions: list[Decision], period: str, bucket: Callable[[datetime], Hashable], count: int
) -> None:
    last: Hashable = None
    for decision in decisions:
        if count == 0:
            return
        value = bucket(decision.candidate.time)
        if value != last:
            decision.reasons.append(period)
            last = value
            count -= 1


def parse_retention_span(text: str) -> timedelta:
    """`1y2m3d4h` (years of 365 days, months of 30), as restic's --keep-within takes.

    A retention span is long: ``m`` is months. A short interval, where ``m`` is minutes, is
    `cairn.core.units.parse_interval`."""
    units = {"y": 365 * 24, "m": 30 * 24, "w": 7 * 24, "d": 24, "h": 1}
    hours = 0
    number = ""
    for char in text.strip():
        if char.isdigit():
            number += char
        elif char in units and number:
            hours += int(number) * units[char]
            number = ""
        else:
            raise PolicyError(f"bad duration {text!r}: use numbers with y, m, w, d, h (e.g. 7d)")
    if number or not hours:
        raise PolicyError(f"bad duration {text!r}: use numbers with y, m, w, d, h (e.g. 7d)")
    return timedelta(hours=hours)
