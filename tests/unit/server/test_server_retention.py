"""Server-side retention: by arrival time, per uploading token, and immune to floods."""

from __future__ import annotations

import pytest

from cairn.server.errors import BadRequest
from cairn.server.retention import Arrival, ServerPolicy, parse_policy, to_forget

HOUR = 3600 * 1000
DAY = 24 * HOUR
T0 = 1_790_000_000_000 - (1_790_000_000_000 % DAY)  # a midnight, UTC


def daily(machine: str, days: int, start: int = T0, hour: int = 2) -> dict[str, Arrival]:
    return {
        f"{machine}{d:03d}": Arrival(f"{machine}{d:03d}", machine, start + d * DAY + hour * HOUR)
        for d in range(days)
    }


def test_keeps_the_first_of_each_of_the_last_n_days_per_token() -> None:
    arrivals = {**daily("a", 10), **daily("b", 10, hour=5)}
    forgotten = to_forget(ServerPolicy(daily=3), set(arrivals), arrivals, T0 + 30 * DAY)
    kept = set(arrivals) - set(forgotten)
    assert kept == {"a007", "a008", "a009", "b007", "b008", "b009"}


def test_a_flood_of_snapshots_never_displaces_earlier_ones() -> None:
    """Ransomware with a backup token sends 500 snapshots today: yesterday's and today's first
    real snapshot stay, whatever the policy's counts."""
    arrivals = daily("m", 10)
    attack_start = T0 + 9 * DAY + 12 * HOUR  # today, after today's real backup at 02:00
    flood = {f"f{i:03d}": Arrival(f"f{i:03d}", "m", attack_start + i * 1000) for i in range(500)}
    everything = {**arrivals, **flood}
    for policy in (ServerPolicy(daily=7), ServerPolicy(hourly=24, daily=7, weekly=4)):
        forgotten = set(to_forget(policy, set(everything), everything, attack_start + HOUR))
        before = to_forget(policy, set(arrivals), arrivals, attack_start)
        assert not (forgotten & (set(arrivals) - set(before))), policy


def test_within_counts_from_the_newest_arrival_so_stopped_backups_are_kept() -> None:
    arrivals = daily("m", 10)
    forgotten = to_forget(ServerPolicy(within_hours=72), set(arrivals), arrivals, T0 + 400 * DAY)
    assert set(arrivals) - set(forgotten) == {"m007", "m008", "m009"}


def test_unknown_and_future_snapshots_are_kept() -> None:
    arrivals = daily("m", 5)
    arrivals["future"] = Arrival("future", "m", T0 + 100 * DAY)
    stored = {*arrivals, "copied-in"}
    forgotten = to_forget(ServerPolicy(daily=1), stored, arrivals, T0 + 10 * DAY)
    assert "copied-in" not in forgotten and "future" not in forgotten
    assert set(forgotten) == {"m000", "m001", "m002", "m003"}


def test_a_policy_needs_a_rule_and_sane_counts() -> None:
    with pytest.raises(BadRequest):
        parse_policy()
    with pytest.raises(BadRequest):
        parse_policy(daily=-5)
    with pytest.raises(BadRequest):
        parse_policy(within="soon")
    assert parse_policy(within="30d", monthly=12).describe() == "monthly 12, within 720h"
