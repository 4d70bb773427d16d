"""The registry of targets (design 17.9): add, get, list, edit, remove, pause, resume, over the
`targets` and `cursors` tables of `ReplicationDb`.

A target is kept as a JSON spec (`spec_to_json`), validated whole before anything is written,
so a bad setting is refused with its own message (CAIRN-E120) and never stored half-checked.
`add` writes the target and its cursor in one transaction: 0 for copy and mirror (the whole
journal), just below `since_seq` for only-new. The check that a location works before it is
saved is `check.py`; the audit record of each change is the server's (`AdminOps`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from typing import Any

from cairn.backends.base import ObjectKind
from cairn.core.clock import Clock, epoch_ms
from cairn.core.errors import CairnError
from cairn.replication.db import ReplicationDb
from cairn.replication.model import Filters, Mode, Target
from cairn.replication.timing import parse_schedule, parse_window

SPEC_VERSION = 1
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_BACKOFF_S = 86400.0


class TargetError(CairnError):
    """A target cannot be added, changed or found as asked."""


class BadTargetSetting(TargetError):
    """A target's name or one of its settings is not valid (CAIRN-E120)."""


class NoSuchTarget(TargetError):
    """No target has that name (CAIRN-E121)."""


class TargetExists(TargetError):
    """A target of that name exists already (CAIRN-E122)."""


def validate(target: Target) -> None:
    """Raise BadTargetSetting for the first setting that cannot work."""
    if not NAME.match(target.name):
        raise BadTargetSetting(
            f"target name {target.name!r}: use 1-40 lowercase letters, digits and '-', "
            "starting with a letter or digit"
        )
    if not target.location or any(c in target.location for c in "\0\n\r"):
        raise BadTargetSetting(f"target {target.name}: the location is empty or has a line break")
    _in_range(target, "priority", target.priority, 0, 1000)
    _in_range(target, "retries", target.retries, 0, 100)
    if not 0 < target.backoff_s <= MAX_BACKOFF_S:
        raise BadTargetSetting(f"target {target.name}: the backoff must be between 1s and 1d")
    if target.limit_bps is not None and target.limit_bps <= 0:
        raise BadTargetSetting(f"target {target.name}: the upload limit must be positive")
    try:
        parse_schedule(target.schedule)
        for window in target.windows:
            parse_window(window)
    except ValueError as exc:
        raise BadTargetSetting(f"target {target.name}: {exc}") from exc
    _check_filters(target)
    if target.credentials is not None and (
        not target.credentials.startswith("/") or any(c in target.credentials for c in "\0\n\r")
    ):
        raise BadTargetSetting(
            f"target {target.name}: the credentials file must be given as an absolute path"
        )
    for label, value in (
        ("quarantine", target.quarantine_s),
        ("max-delete-count", target.max_delete_count),
        ("max-delete-bytes", target.max_delete_bytes),
    ):
        if value < 0:
            raise BadTargetSetting(f"target {target.name}: {label} cannot be negative")


def _in_range(target: Target, label: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise BadTargetSetting(f"target {target.name}: {label} must be {low}-{high}, not {value}")


def _check_filters(target: Target) -> None:
    filters = target.filters
    if any(not t.strip() for t in filters.tenants + filters.tokens):
        raise BadTargetSetting(f"target {target.name}: an empty tenant or token filter")
    if ObjectKind.LOCK in filters.kinds:
        raise BadTargetSetting(
            f"target {target.name}: locks are never replicated (they belong to a running "
            "session); choose among packs, index, snapshots, reflists, deletions"
        )


def spec_to_json(target: Target) -> str:
    """The spec as stored: every field but the name and the creation time (the row's own)."""
    spec: dict[str, Any] = {
        "version": SPEC_VERSION,
        "location": target.location,
        "mode": target.mode.value,
        "priority": target.priority,
        "retries": target.retries,
        "backoff_s": target.backoff_s,
        "limit_bps": target.limit_bps,
        "windows": list(target.windows),
        "schedule": target.schedule,
        "filters": {
            "tenants": list(target.filters.tenants),
            "tokens": list(target.filters.tokens),
            "kinds": [k.value for k in target.filters.kinds],
        },
        "paused": target.paused,
        "since_seq": target.since_seq,
        "quarantine_s": target.quarantine_s,
        "max_delete_count": target.max_delete_count,
        "max_delete_bytes": target.max_delete_bytes,
    }
    if target.credentials is not None:  # only when set: an older Cairn reads the rest
        spec["credentials"] = target.credentials
    return json.dumps(spec, sort_keys=True, ensure_ascii=False)


def spec_from_json(name: str, text: str, created_ms: int) -> Target:
    """The target a stored spec describes; a spec of another version, or with a key this
    version does not know, is refused whole (CAIRN-E126), never half-read."""
    try:
        return _from_spec(name, json.loads(text), created_ms)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TargetError(
            f"target {name}: its stored settings cannot be read ({exc}); a newer Cairn wrote "
            "them, or the database was changed by hand"
        ) from exc


def _from_spec(name: str, spec: dict[str, Any], created_ms: int) -> Target:
    if spec.pop("version", None) != SPEC_VERSION:
        raise TargetError(f"target {name}: its stored spec is of another version; upgrade Cairn")
    filters = spec.pop("filters")
    return Target(
        name=name,
        mode=Mode(spec.pop("mode")),
        windows=tuple(spec.pop("windows")),
        filters=Filters(
            tenants=tuple(filters["tenants"]),
            tokens=tuple(filters["tokens"]),
            kinds=tuple(ObjectKind(k) for k in filters["kinds"]),
        ),
        created_ms=created_ms,
        **spec,
    )


class TargetStore:
    """The targets of one server, in its `replication.db`."""

    def __init__(self, db: ReplicationDb, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    @property
    def db(self) -> ReplicationDb:
        """The database the targets live in (their status and runs are read from it)."""
        return self._db

    def add(self, target: Target, since_ms: int | None = None) -> Target:
        """Save a new target with its cursor; returns it as stored (since_seq, created_ms).
        `since_ms` (only-new) starts it at the first journal entry at or after that time."""
        validate(target)
        if since_ms is not None and target.mode is not Mode.ONLY_NEW:
            raise BadTargetSetting(f"target {target.name}: --since applies to --mode only-new")
        now = epoch_ms(self._clock)
        with self._db.write() as conn:
            if _row(conn, target.name) is not None:
                raise TargetExists(f"a target named {target.name} exists: edit it, or remove it")
            since = _first_seq(conn, since_ms) if target.mode is Mode.ONLY_NEW else 0
            stored = dataclasses.replace(target, since_seq=since, created_ms=now)
            conn.execute(
                "INSERT INTO targets (name, spec, created_ms) VALUES (?, ?, ?)",
                (stored.name, spec_to_json(stored), now),
            )
            conn.execute(
                "INSERT INTO cursors (target, seq, updated_ms) VALUES (?, ?, ?)",
                (stored.name, max(0, since - 1), now),
            )
        return stored

    def get(self, name: str) -> Target:
        row = _row(self._db.read(), name)
        if row is None:
            raise NoSuchTarget(f"no target named {name!r}: `cairn server target list` shows them")
        return spec_from_json(name, row[0], row[1])

    def list(self) -> list[Target]:
        """Every target, by priority then name (the order the scheduler runs them in)."""
        rows = self._db.read().execute("SELECT name, spec, created_ms FROM targets").fetchall()
        targets = [spec_from_json(n, s, c) for n, s, c in rows]
        return sorted(targets, key=lambda t: (t.priority, t.name))

    def edit(self, name: str, **changes: Any) -> Target:
        """Change settings of `name` (fields of `Target`). The cursor stays, unless the location
        changes: a new place takes the journal again from the start (or `since_seq`)."""
        for fixed in ("name", "created_ms", "since_seq"):
            if fixed in changes:
                raise BadTargetSetting(f"target {name}: {fixed} cannot be edited")
        with self._db.write() as conn:
            old = self._get_in(conn, name)
            new = dataclasses.replace(old, **changes)
            validate(new)
            self._store(conn, new)
            if new.location != old.location:
                conn.execute(
                    "UPDATE cursors SET seq = ?, updated_ms = ? WHERE target = ?",
                    (max(0, new.since_seq - 1), epoch_ms(self._clock), name),
                )
        return new

    def pause(self, name: str) -> Target:
        return self.edit(name, paused=True)

    def resume(self, name: str) -> Target:
        return self.edit(name, paused=False)

    def remove(self, name: str) -> None:
        """The target, its cursor and its quarantine go; its runs stay (history)."""
        with self._db.write() as conn:
            self._get_in(conn, name)
            conn.execute("DELETE FROM quarantine WHERE target = ?", (name,))
            conn.execute("DELETE FROM targets WHERE name = ?", (name,))

    def cursor(self, name: str) -> int:
        row = self._db.read().execute("SELECT seq FROM cursors WHERE target = ?", (name,))
        found = row.fetchone()
        return int(found[0]) if found else 0

    def head(self) -> int:
        """The journal's newest sequence (0 when empty)."""
        row = self._db.read().execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()
        return int(row[0])

    def _get_in(self, conn: sqlite3.Connection, name: str) -> Target:
        row = _row(conn, name)
        if row is None:
            raise NoSuchTarget(f"no target named {name!r}: `cairn server target list` shows them")
        return spec_from_json(name, row[0], row[1])

    def _store(self, conn: sqlite3.Connection, target: Target) -> None:
        conn.execute(
            "UPDATE targets SET spec = ? WHERE name = ?", (spec_to_json(target), target.name)
        )


def _row(conn: sqlite3.Connection, name: str) -> tuple[str, int] | None:
    found = conn.execute("SELECT spec, created_ms FROM targets WHERE name = ?", (name,)).fetchone()
    return None if found is None else (str(found[0]), int(found[1]))


def _first_seq(conn: sqlite3.Connection, since_ms: int | None) -> int:
    """The first sequence an only-new target takes: the first entry at or after `since_ms`,
    else the one after the head."""
    head = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0])
    if since_ms is None:
        return head + 1
    found = conn.execute("SELECT MIN(seq) FROM journal WHERE at_ms >= ?", (since_ms,)).fetchone()
    return int(found[0]) if found[0] is not None else head + 1
