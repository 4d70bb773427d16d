"""What a target's state is (design 17.12), computed from the database alone, so that
`cairn server target status` needs no running server: the lag (the journal entries past its
cursor that its filters take), the runs it made, its quarantine.

Runs are recorded here too (`record_run`): one row of `runs` per run, its `RunReport` as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from cairn.backends.base import ObjectKind
from cairn.replication.db import ReplicationDb
from cairn.replication.model import Mode, RunReport, Target
from cairn.replication.timing import interval_s, parse_schedule

ALWAYS_SENT = (ObjectKind.CONFIG, ObjectKind.KEY)
"""A repository copy needs its config and keys, whatever the kind filter says."""
FAILURES_SCANNED = 1000
"""How far back `failures` counts failed runs in a row."""


class State(Enum):
    OK = "ok"
    LAGGING = "lagging"
    FAILING = "failing"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """One target's health, as `target status --json` prints it (the fields of design 17.12)."""

    name: str
    state: State
    lag_s: float
    lag_bytes: int
    lag_objects: int
    cursor: int
    head: int
    interval_s: float
    last_run_ms: int | None
    last_success_ms: int | None
    objects_sent: int
    bytes_sent: int
    failures: int
    """Failed runs in a row, up to now."""
    retries: int
    """Retries the engine reported, over every recorded run."""
    last_error: str | None
    quarantine_objects: int
    quarantine_bytes: int

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state"] = self.state.value
        return data


def record_run(db: ReplicationDb, report: RunReport) -> None:
    """Append `report` to `runs`."""
    with db.write() as conn:
        conn.execute(
            "INSERT INTO runs (target, started_ms, ended_ms, report) VALUES (?, ?, ?, ?)",
            (report.target, report.started_ms, report.ended_ms, report_to_json(report)),
        )


def report_to_json(report: RunReport) -> str:
    return json.dumps(dataclasses.asdict(report), sort_keys=True, ensure_ascii=False)


def last_start_ms(db: ReplicationDb, target: Target) -> int | None:
    """When the target's latest run started (None: it never ran since it was added)."""
    row = db.read().execute(
        "SELECT MAX(started_ms) FROM runs WHERE target = ? AND started_ms >= ?",
        (target.name, target.created_ms),
    )
    found = row.fetchone()[0]
    return None if found is None else int(found)


def failing_streak(db: ReplicationDb, target: Target) -> tuple[int, int | None]:
    """The failed runs in a row now, and when the latest run ended (None: it never ran): what
    the scheduler derives a failing target's wait from after a restart (design 17.11)."""
    conn = db.read()
    failures, _ = _failures(conn, target)
    return failures, _runs(conn, target)["last_run"]


def target_status(
    db: ReplicationDb,
    target: Target,
    now: datetime,
    tenant_ids: Mapping[str, str] | None = None,
) -> TargetStatus:
    """`target`'s status at `now`; `tenant_ids` maps tenant names to IDs for its tenant filter
    (the journal records IDs; without it the names are matched as they are)."""
    conn = db.read()
    now_ms = int(now.timestamp() * 1000)
    cursor_row = conn.execute("SELECT seq FROM cursors WHERE target = ?", (target.name,))
    found = cursor_row.fetchone()
    cursor = int(found[0]) if found else 0
    head = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0])
    count, size, oldest = _pending(conn, target, cursor, tenant_ids or {})
    runs = _runs(conn, target)
    failures, last_error = _failures(conn, target)
    q_count, q_bytes = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM quarantine WHERE target = ?",
        (target.name,),
    ).fetchone()
    interval = interval_s(parse_schedule(target.schedule), now)
    lag_s = max(0.0, (now_ms - oldest) / 1000) if oldest is not None else 0.0
    return TargetStatus(
        name=target.name,
        state=_state(target, failures, lag_s, interval),
        lag_s=lag_s,
        lag_bytes=size,
        lag_objects=count,
        cursor=cursor,
        head=head,
        interval_s=interval,
        last_run_ms=runs["last_run"],
        last_success_ms=runs["last_success"],
        objects_sent=runs["objects"],
        bytes_sent=runs["bytes"],
        failures=failures,
        retries=runs["retries"],
        last_error=last_error,
        quarantine_objects=int(q_count),
        quarantine_bytes=int(q_bytes),
    )


def _state(target: Target, failures: int, lag_s: float, interval: float) -> State:
    if target.paused:
        return State.PAUSED
    if failures:
        return State.FAILING
    if lag_s > 2 * interval:
        return State.LAGGING
    return State.OK


def _pending(
    conn: sqlite3.Connection, target: Target, cursor: int, tenant_ids: Mapping[str, str]
) -> tuple[int, int, int | None]:
    """Count, bytes (of additions) and oldest time of the entries past `cursor` it takes."""
    where = ["seq > ?", "kind != ?"]
    args: list[Any] = [cursor, ObjectKind.LOCK.value]
    if target.mode is not Mode.MIRROR:
        where.append("action = 'add'")
    filters = target.filters
    if filters.tenants:
        ids = [tenant_ids.get(name, name) for name in filters.tenants]
        where.append(f"tenant_id IN ({_marks(ids)})")
        args += ids
    if filters.tokens:
        where.append(f"token IN ({_marks(filters.tokens)})")
        args += filters.tokens
    if filters.kinds:
        kinds = [k.value for k in (*filters.kinds, *ALWAYS_SENT)]
        where.append(f"kind IN ({_marks(kinds)})")
        args += kinds
    # the clauses are fixed text and placeholders; every value is a parameter
    columns = "COUNT(*), COALESCE(SUM(CASE WHEN action = 'add' THEN size ELSE 0 END), 0)"
    query = f"SELECT {columns}, MIN(at_ms) FROM journal WHERE {' AND '.join(where)}"  # noqa: S608
    row = conn.execute(query, args).fetchone()
    return int(row[0]), int(row[1]), None if row[2] is None else int(row[2])


def _marks(values: Any) -> str:
    return ", ".join("?" for _ in values)


def _runs(conn: sqlite3.Connection, target: Target) -> dict[str, Any]:
    row = conn.execute(
        "SELECT MAX(ended_ms), "
        "MAX(CASE WHEN json_extract(report, '$.error') IS NULL THEN ended_ms END), "
        "COALESCE(SUM(json_extract(report, '$.objects_sent')), 0), "
        "COALESCE(SUM(json_extract(report, '$.bytes_sent')), 0), "
        "COALESCE(SUM(json_extract(report, '$.retries')), 0) "
        "FROM runs WHERE target = ? AND started_ms >= ?",
        (target.name, target.created_ms),
    ).fetchone()
    last_run, last_success, objects, sent, retries = row
    return {
        "last_run": None if last_run is None else int(last_run),
        "last_success": None if last_success is None else int(last_success),
        "objects": int(objects),
        "bytes": int(sent),
        "retries": int(retries),
    }


def _failures(conn: sqlite3.Connection, target: Target) -> tuple[int, str | None]:
    """Failed runs in a row since the last good one, and the latest one's error."""
    rows = conn.execute(
        "SELECT json_extract(report, '$.error') FROM runs WHERE target = ? AND started_ms >= ? "
        "ORDER BY seq DESC LIMIT ?",
        (target.name, target.created_ms, FAILURES_SCANNED),
    ).fetchall()
    failures = 0
    for (error,) in rows:
        if error is None:
            break
        failures += 1
    return failures, rows[0][0] if failures else None
