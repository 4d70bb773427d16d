"""Server-side retention: by arrival time, per uploading token and snapshot group, the newest of
every group kept, and immune to floods."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import BackendError
from cairn.backends.memory import MemoryBackend
from cairn.backends.wrappers.faulty import FaultyBackend
from cairn.core.ids import GROUP_ID_SIZE, ObjectName
from cairn.crypto.hashing import object_name
from cairn.format.snapshot import SnapshotRecord, encode_snapshot
from cairn.server.errors import BadRequest
from cairn.server.retention import Arrival, ServerPolicy, parse_policy, read_groups, to_forget

HOUR = 3600 * 1000
DAY = 24 * HOUR
T0 = 1_790_000_000_000 - (1_790_000_000_000 % DAY)  # a midnight, UTC


def daily(machine: str, days: int, start: int = T0, hour: int = 2) -> dict[str, Arrival]:
    return {
        f"{machine}{d:03d}": Arrival(f"{machine}{d:03d}", machine, start + d * DAY + hour * HOUR)
        for d in range(days)
    }


def ungrouped(arrivals: dict[str, Arrival]) -> dict[str, str | None]:
    """Snapshots from clients that wrote no group ID: one group per token."""
    return dict.fromkeys(arrivals)


def test_keeps_the_first_of_each_of_the_last_n_days_per_token() -> None:
    arrivals = {**daily("a", 10), **daily("b", 10, hour=5)}
    forgotten = to_forget(ServerPolicy(daily=3), ungrouped(arrivals), arrivals, T0 + 30 * DAY)
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
        forgotten = set(to_forget(policy, ungrouped(everything), everything, attack_start + HOUR))
        before = to_forget(policy, ungrouped(arrivals), arrivals, attack_start)
        assert not (forgotten & (set(arrivals) - set(before))), policy


def test_within_counts_from_the_newest_arrival_so_stopped_backups_are_kept() -> None:
    arrivals = daily("m", 10)
    forgotten = to_forget(
        ServerPolicy(within_hours=72), ungrouped(arrivals), arrivals, T0 + 400 * DAY
    )
    assert set(arrivals) - set(forgotten) == {"m007", "m008", "m009"}


def test_unknown_and_future_snapshots_are_kept() -> None:
    arrivals = daily("m", 5)
    arrivals["future"] = Arrival("future", "m", T0 + 100 * DAY)
    stored = {**ungrouped(arrivals), "copied-in": None}
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


# ---- groups: per token and snapshot group ID, the newest of each always kept --------------------

GOLDEN = ServerPolicy(daily=14, weekly=8, monthly=24)  # the policy


def test_one_token_two_jobs_keep_each_jobs_only_snapshot() -> None:
    """Issue 11, item 2: one token sends /usr/share/doc, then the agent's job `home` sends
    /data the same day. Grouped by token alone, `home`'s snapshot was the second of the day and
    was forgotten; each group ID is a group of its own now."""
    arrivals = {
        "doc": Arrival("doc", "m", T0 + 10 * HOUR),
        "home": Arrival("home", "m", T0 + 11 * HOUR),
    }
    stored: dict[str, str | None] = {"doc": "d0c" * 8, "home": "40e" * 8}
    assert to_forget(GOLDEN, stored, arrivals, T0 + 12 * HOUR) == []
    later = T0 + 40 * DAY  # weeks later, with no backups since: each job keeps its snapshot
    assert to_forget(ServerPolicy(daily=1), stored, arrivals, later) == []


def test_snapshots_without_a_group_id_keep_the_newest_of_their_token() -> None:
    """Old clients write no group ID: one group per token, as before, but its newest stays."""
    arrivals = {
        "doc": Arrival("doc", "m", T0 + 10 * HOUR),
        "home": Arrival("home", "m", T0 + 11 * HOUR),
    }
    assert to_forget(GOLDEN, ungrouped(arrivals), arrivals, T0 + 12 * HOUR) == []
    arrivals["third"] = Arrival("third", "m", T0 + 12 * HOUR)
    assert to_forget(GOLDEN, ungrouped(arrivals), arrivals, T0 + 13 * HOUR) == ["home"]


def test_a_group_is_one_token_and_one_group_id() -> None:
    """The same group ID under another token (or none) is another group: a token reaches only
    the groups of what it uploaded itself."""
    arrivals = {
        n: Arrival(n, token, T0 + h * HOUR)
        for n, token, h in (("a1", "a", 1), ("b1", "b", 2), ("a2", "a", 3), ("a3", "a", 4))
    }
    stored: dict[str, str | None] = {"a1": "g", "b1": "g", "a2": None, "a3": "g"}
    assert to_forget(ServerPolicy(daily=1), stored, arrivals, T0 + 5 * HOUR) == []
    arrivals["a4"] = Arrival("a4", "a", T0 + 6 * HOUR)
    stored["a4"] = "g"
    # a3 was group (a, g)'s newest and is neither the first of its day: it goes; b1, a2 stay
    assert to_forget(ServerPolicy(daily=1), stored, arrivals, T0 + 7 * HOUR) == ["a3"]


arrival_sets = st.lists(
    st.tuples(st.sampled_from("ab"), st.sampled_from([None, "g1", "g2"]), st.integers(0, 60 * DAY)),
    min_size=1,
    max_size=40,
)
policies = st.builds(
    ServerPolicy,
    hourly=st.integers(-1, 3),
    daily=st.integers(-1, 3),
    weekly=st.integers(-1, 2),
    monthly=st.integers(-1, 2),
    yearly=st.integers(0, 1),
    within_hours=st.one_of(st.none(), st.integers(0, 100)),
)


def _arrivals(
    spec: list[tuple[str, str | None, int]],
) -> tuple[dict[str, Arrival], dict[str, str | None]]:
    arrivals = {
        f"s{i:03d}": Arrival(f"s{i:03d}", tok, T0 + ms) for i, (tok, _, ms) in enumerate(spec)
    }
    return arrivals, {f"s{i:03d}": group for i, (_, group, _) in enumerate(spec)}


@settings(max_examples=300, deadline=None)
@given(arrival_sets, policies)
def test_the_newest_of_every_group_is_kept_whatever_the_policy(
    spec: list[tuple[str, str | None, int]], policy: ServerPolicy
) -> None:
    arrivals, stored = _arrivals(spec)
    forgotten = set(to_forget(policy, stored, arrivals, T0 + 61 * DAY))
    newest: dict[tuple[str, str | None], Arrival] = {}
    for name, a in arrivals.items():
        key = (a.token, stored[name])
        if key not in newest or (a.received_ms, a.name) > (
            newest[key].received_ms,
            newest[key].name,
        ):
            newest[key] = a
    assert not forgotten & {a.name for a in newest.values()}


@settings(max_examples=300, deadline=None)
@given(arrival_sets, policies)
def test_grouping_by_group_id_never_forgets_what_grouping_by_token_keeps(
    spec: list[tuple[str, str | None, int]], policy: ServerPolicy
) -> None:
    arrivals, stored = _arrivals(spec)
    by_group = set(to_forget(policy, stored, arrivals, T0 + 61 * DAY))
    by_token = set(to_forget(policy, ungrouped(arrivals), arrivals, T0 + 61 * DAY))
    assert by_group <= by_token


def test_a_flood_in_many_groups_forgets_no_earlier_snapshot() -> None:
    """Two jobs of one machine back up daily for ten days; then ransomware with the token sends
    1,000 snapshots today: copies of both jobs' group IDs, random ones, and none. Whatever the
    policy, every snapshot the policy kept before the flood is kept after it (S7)."""
    arrivals = {**daily("doc", 10), **daily("home", 10, hour=3)}
    for a in list(arrivals.values()):
        arrivals[a.name] = Arrival(a.name, "m", a.received_ms)  # one token for both jobs
    stored: dict[str, str | None] = {n: n[:4] for n in arrivals}
    attack = T0 + 9 * DAY + 12 * HOUR
    labels = ["doc", "home", None, *(f"r{i}" for i in range(20))]
    flood = {f"f{i:04d}": Arrival(f"f{i:04d}", "m", attack + i * 1000) for i in range(1000)}
    flooded = {**stored, **{n: labels[i % len(labels)] for i, n in enumerate(flood)}}
    for policy in (GOLDEN, ServerPolicy(daily=7), ServerPolicy(hourly=24, daily=7, weekly=4)):
        kept_before = set(arrivals) - set(to_forget(policy, stored, arrivals, attack))
        forgotten = set(to_forget(policy, flooded, {**arrivals, **flood}, attack + HOUR))
        assert not forgotten & kept_before, policy


def test_a_flood_in_a_group_takes_the_newest_guarantee_from_its_last_real_snapshot() -> None:
    """The trade-off design 14.5 states: a second real backup the same day is kept only as its
    group's newest; a fake in that group is newer, so it goes (as the next real backup would
    make it go). The first of the day, and the other job's group, stay."""
    arrivals = {
        "first": Arrival("first", "m", T0 + 2 * HOUR),
        "second": Arrival("second", "m", T0 + 8 * HOUR),
        "other": Arrival("other", "m", T0 + 9 * HOUR),
    }
    stored: dict[str, str | None] = {"first": "g", "second": "g", "other": "h"}
    assert to_forget(GOLDEN, stored, arrivals, T0 + 10 * HOUR) == []
    arrivals["fake"] = Arrival("fake", "m", T0 + 11 * HOUR)
    assert to_forget(GOLDEN, {**stored, "fake": "g"}, arrivals, T0 + 12 * HOUR) == ["second"]


# ---- reading the group IDs from the stored snapshot objects -------------------------------------


def _snapshot(group: bytes | None, salt: bytes) -> bytes:
    reflist = ObjectName(bytes(32))
    return encode_snapshot(SnapshotRecord(bytes(16), [reflist], b"sealed" + salt, group))


def _stored(backend: Backend, data: bytes) -> str:
    name = object_name(data).hex
    backend.save(Handle(ObjectKind.SNAPSHOT, name), data)
    return name


def test_groups_are_read_from_the_plaintext_record() -> None:
    backend = MemoryBackend()
    grouped = _stored(backend, _snapshot(b"\x07" * GROUP_ID_SIZE, b"1"))
    old = _stored(backend, _snapshot(None, b"2"))
    garbage = _stored(backend, b"not a snapshot")
    removed = "ab" * 32
    groups = read_groups(backend, [grouped, old, garbage, removed])
    assert groups == {grouped: "07" * GROUP_ID_SIZE, old: None, garbage: None}


def test_a_storage_error_stops_retention_rather_than_regroup() -> None:
    """A snapshot read as having no group would be judged in the wrong group: refuse instead."""
    backend = FaultyBackend(MemoryBackend())
    grouped = _stored(backend, _snapshot(b"\x07" * GROUP_ID_SIZE, b""))
    backend.fail("load", BackendError("disk on fire"))
    with pytest.raises(BackendError):
        read_groups(backend, [grouped])
