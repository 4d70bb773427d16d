"""Retention policies: restic's semantics, checked on hand-made calendars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cairn.snapshot.retention import (
    Candidate,
    Policy,
    PolicyError,
    apply_policy,
    parse_retention_span,
)

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def daily(days: int, per_day: int = 1) -> list[Candidate]:
    return [
        Candidate(f"s{d:03}-{i}", START + timedelta(days=d, hours=i))
        for d in range(days)
        for i in range(per_day)
    ]


def kept(policy: Policy, candidates: list[Candidate]) -> list[str]:
    return sorted(d.candidate.key for d in apply_policy(policy, candidates) if d.keep)


def test_keep_last_keeps_the_newest() -> None:
    assert kept(Policy(last=3), daily(10)) == ["s007-0", "s008-0", "s009-0"]


def test_keep_daily_keeps_the_newest_of_each_day() -> None:
    assert kept(Policy(daily=2), daily(5, per_day=3)) == ["s003-2", "s004-2"]


def test_rules_combine_and_say_why() -> None:
    decisions = apply_policy(Policy(last=1, weekly=2), daily(21))
    reasons = {d.candidate.key: d.reasons for d in decisions if d.keep}
    assert reasons["s020-0"] == ["last", "weekly"]
    assert len(reasons) == 2


def test_monthly_and_yearly_with_unlimited() -> None:
    candidates = [
        Candidate(f"m{m}", datetime(2025 + m // 12, m % 12 + 1, 5, tzinfo=UTC)) for m in range(30)
    ]
    assert len(kept(Policy(monthly=-1), candidates)) == 30
    assert kept(Policy(yearly=-1), candidates) == ["m11", "m23", "m29"]


def test_within_counts_from_the_newest_snapshot_not_from_now() -> None:
    old = daily(10)  # long ago: a client whose backups stopped keeps its last ones
    assert kept(Policy(within=timedelta(days=3)), old) == ["s007-0", "s008-0", "s009-0"]


def test_keep_tag() -> None:
    candidates = daily(4)
    candidates[1] = Candidate(candidates[1].key, candidates[1].time, ("golden",))
    assert kept(Policy(tags=("golden",)), candidates) == ["s001-0"]


def test_an_empty_policy_is_refused() -> None:
    with pytest.raises(PolicyError):
        apply_policy(Policy(), daily(3))


@pytest.mark.parametrize(
    ("text", "hours"), [("7d", 168), ("1y2m", 365 * 24 + 60 * 24), ("36h", 36)]
)
def test_parse_retention_span(text: str, hours: int) -> None:
    assert parse_retention_span(text) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-1d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_retention_span(text)
