"""The target registry and its words (design 17.9): a spec survives its JSON round trip, the
cursor is placed at add and moved only by a new location, and the schedule and window parsers
refuse what cannot work."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cairn.backends.base import ObjectKind
from cairn.core.clock import FrozenClock
from cairn.replication.db import ReplicationDb
from cairn.replication.model import Filters, Mode, RunReport, Target
from cairn.replication.status import record_run
from cairn.replication.targets import (
    BadTargetSetting,
    NoSuchTarget,
    TargetError,
    TargetExists,
    TargetStore,
    spec_from_json,
    spec_to_json,
)
from cairn.replication.timing import (
    Continuous,
    Cron,
    Every,
    in_windows,
    interval_s,
    parse_schedule,
    parse_window,
)

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> TargetStore:
    return TargetStore(ReplicationDb(tmp_path / "replication.db"), FrozenClock(NOON))


def full_target() -> Target:
    return Target(
        name="s3-eu-1",
        location="s3:https://s3.example/bucket/Zürich ☃",
        mode=Mode.MIRROR,
        priority=7,
        retries=3,
        backoff_s=45.0,
        limit_bps=5 * 2**20,
        windows=("22:00-06:00", "12:00-13:00"),
        schedule="*/15 * * * *",
        filters=Filters(("acme",), ("tok1",), (ObjectKind.SNAPSHOT, ObjectKind.INDEX)),
        quarantine_s=7 * 86400,
        max_delete_count=10,
        max_delete_bytes=2**30,
    )


def test_a_spec_survives_its_json_round_trip(store: TargetStore) -> None:
    stored = store.add(full_target())
    assert store.get("s3-eu-1") == stored
    assert spec_from_json(stored.name, spec_to_json(stored), stored.created_ms) == stored
    assert "Zürich ☃" in spec_to_json(stored), "kept as text, not escaped"
    with pytest.raises(TargetExists):
        store.add(full_target())


def test_a_spec_from_elsewhere_is_refused_whole(store: TargetStore) -> None:
    stored = store.add(Target(name="nas", location="/mnt/a"))
    newer = spec_to_json(stored).replace('"paused"', '"ransom_lock": true, "paused"')
    other = spec_to_json(stored).replace('"version": 1', '"version": 2')
    for text in (newer, other, "[]"):
        with store.db.write() as conn:
            conn.execute("UPDATE targets SET spec = ? WHERE name = 'nas'", (text,))
        with pytest.raises(TargetError):
            store.get("nas")


def test_a_location_change_resends_and_other_edits_keep_the_cursor(store: TargetStore) -> None:
    store.add(Target(name="nas", location="/mnt/a"))
    with store.db.write() as conn:
        conn.execute("UPDATE cursors SET seq = 40 WHERE target = 'nas'")
    store.edit("nas", priority=3, schedule="every 1h")
    assert store.cursor("nas") == 40
    store.edit("nas", location="/mnt/b")
    assert store.cursor("nas") == 0, "a new place takes the journal from the start"
    with pytest.raises(BadTargetSetting, match="cannot be edited"):
        store.edit("nas", since_seq=5)
    with pytest.raises(BadTargetSetting, match="schedule"):
        store.edit("nas", schedule="hourly")
    assert store.get("nas").schedule == "every 1h", "a refused edit changes nothing"


def test_remove_keeps_the_runs_but_a_new_target_of_that_name_starts_afresh(
    store: TargetStore,
) -> None:
    old = store.add(Target(name="nas", location="/mnt/a"))
    record_run(store.db, RunReport(target="nas", started_ms=old.created_ms, ended_ms=1))
    store.remove("nas")
    with pytest.raises(NoSuchTarget):
        store.get("nas")
    runs = store.db.read().execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert runs == 1 and store.cursor("nas") == 0
    with pytest.raises(NoSuchTarget):
        store.remove("nas")


def test_locks_are_never_a_kind_to_replicate(store: TargetStore) -> None:
    with pytest.raises(BadTargetSetting, match="locks"):
        store.add(Target(name="x", location="/mnt", filters=Filters(kinds=(ObjectKind.LOCK,))))


def test_schedules() -> None:
    assert parse_schedule("continuous") == Continuous()
    assert parse_schedule("every 15m") == Every(900.0)
    assert parse_schedule("0  2 * * *") == Cron("0 2 * * *")
    for bad in ("hourly", "every", "every 0s", "every soon", "0 2 * *", "0 25 * * *"):
        with pytest.raises(ValueError):
            parse_schedule(bad)
    assert interval_s(parse_schedule("0 2 * * *"), NOON) == 86400
    assert interval_s(parse_schedule("*/10 * * * *"), NOON) == 600


def test_windows_wrap_midnight() -> None:
    night = parse_window("22:00-06:00")
    hours = [h for h in range(24) if night.holds(NOON.replace(hour=h))]
    assert hours == [0, 1, 2, 3, 4, 5, 22, 23]
    assert parse_window("08:30-17:00").holds(NOON) and not in_windows(("13:00-14:00",), NOON)
    assert in_windows((), NOON), "no windows: always"
    for bad in ("22-06", "25:00-06:00", "10:00-10:00", "10:60-11:00", "24:30-01:00"):
        with pytest.raises(ValueError):
            parse_window(bad)
