"""Replication's own SQLite database, `DATA/replication.db` (design 17.2): the change journal,
the targets, each target's cursor, its runs, and the mirror mode's quarantine.

A file of its own, beside the server's `server.db`, so this package owns its schema and never
imports the server. Numbered migrations as everywhere (`cairn.statedb.sqlitedb.migrate`);
one connection per thread, WAL mode.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cairn.core.errors import CairnError
from cairn.statedb.sqlitedb import immediate, migrate


class ReplicationDbError(CairnError):
    """The replication database cannot be used (newer schema, unreadable file)."""


MIGRATIONS: tuple[str, ...] = (
    # 1: the journal, the targets, their cursors, runs and the quarantine (design 17.2)
    """
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        action TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        token TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX journal_by_object ON journal (tenant_id, kind, name);
    CREATE TABLE targets (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE cursors (
        target TEXT PRIMARY KEY REFERENCES targets(name) ON DELETE CASCADE,
        seq INTEGER NOT NULL DEFAULT 0,
        updated_ms INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE runs (
        seq INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL,
        report TEXT NOT NULL
    );
    CREATE INDEX runs_by_target ON runs (target, seq);
    CREATE TABLE quarantine (
        target TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        removed_ms INTEGER NOT NULL,
        due_ms INTEGER NOT NULL,
        PRIMARY KEY (target, tenant_id, kind, name)
    );
    """,
)


class ReplicationDb:
    """The database at `path`, migrated on open. `write()` is one immediate transaction;
    `read()` this thread's connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        _create_private(path)
        migrate(self._connect(), MIGRATIONS, path, ReplicationDbError)

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with immediate(self._connect()) as conn:
            yield conn

    def read(self) -> sqlite3.Connection:
        return self._connect()

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _create_private(path: Path) -> None:
    """Made here, the file is 0600 whatever the umask (as `server.db`: the journal names every
    tenant's objects); SQLite gives its `-wal` and `-shm` the same mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise ReplicationDbError(f"cannot make the replication database {path}: {exc}") from exc
