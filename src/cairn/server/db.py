"""The server's own state in SQLite: tenants, tokens, usage, received snapshots, lock owners,
the audit log, job results, the chunk table, the console's users and sessions.

Migrations are numbered SQL scripts, applied in order, each in one transaction, and recorded in
``PRAGMA user_version``. A database written by a newer Cairn is refused rather than guessed at.
One connection per thread (sqlite3 objects must not cross threads); WAL mode lets readers run
while a writer commits.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cairn.server.errors import DataFolderFull, ServerSetupError
from cairn.statedb.sqlitedb import immediate, migrate

MIGRATIONS: tuple[str, ...] = (
    # 1: tenants, tokens, usage, received snapshots, audit log
    """
    CREATE TABLE tenants (
        name TEXT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        quota INTEGER,
        used INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        tenant TEXT REFERENCES tenants(name),
        role TEXT NOT NULL,
        hash BLOB NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );
    CREATE TABLE snapshots (
        tenant TEXT NOT NULL REFERENCES tenants(name),
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        tenant TEXT,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL,
        address TEXT NOT NULL,
        hash BLOB NOT NULL
    );
    """,
    # 2: retention per tenant, the uploading token per snapshot, damage found by scrubs
    """
    ALTER TABLE tenants ADD COLUMN retention TEXT;
    ALTER TABLE snapshots ADD COLUMN token TEXT NOT NULL DEFAULT '';
    CREATE TABLE damage (
        tenant TEXT NOT NULL REFERENCES tenants(name),
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        found_ms INTEGER NOT NULL,
        detail TEXT NOT NULL,
        PRIMARY KEY (tenant, kind, name)
    );
    """,
    # 3: the token that saved each lock, so a backup token may remove its own; token expiry
    # (design 14.3)
    """
    ALTER TABLE tokens ADD COLUMN expires_ms INTEGER;
    CREATE TABLE lock_owners (
        tenant TEXT NOT NULL REFERENCES tenants(name),
        name TEXT NOT NULL,
        token TEXT NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    """,
    # 4: job results that agents report (design 15.5)
    """
    CREATE TABLE job_results (
        seq INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants(name),
        host TEXT NOT NULL,
        job TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        snapshot TEXT,
        files INTEGER NOT NULL,
        bytes_added INTEGER NOT NULL,
        error_code TEXT,
        message TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        token TEXT NOT NULL
    );
    CREATE INDEX job_results_by_job ON job_results (tenant, host, job, seq);
    """,
    # 5: the chunk table of each tenant (design 14.11): what its index objects list, and which
    # index objects it was built from (to see that it is stale); an index object's rows name it
    # by a small number, not its 32-byte name (a third smaller on disk, faster to fill)
    """
    CREATE TABLE chunk_indexes (
        no INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants(name),
        name BLOB NOT NULL,
        complete INTEGER NOT NULL DEFAULT 0,
        UNIQUE (tenant, name)
    );
    CREATE TABLE chunks (
        tenant TEXT NOT NULL,
        id BLOB NOT NULL,
        idx INTEGER NOT NULL,
        pack BLOB NOT NULL,
        kind INTEGER NOT NULL,
        start INTEGER NOT NULL,
        length INTEGER NOT NULL,
        PRIMARY KEY (tenant, id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX chunks_by_index ON chunks (idx);
    """,
    # 6: the copies other servers replicate into a tenant (its area, design 17.14), recorded at
    # their first write so the usage recount finds them on every kind of storage
    """
    CREATE TABLE copies (
        tenant TEXT NOT NULL REFERENCES tenants(name),
        server TEXT NOT NULL,
        copy TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, server, copy)
    );
    """,
    # 7: the console's users (argon2id password hashes) and its server-side sessions (design 18)
    """
    CREATE TABLE console_users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        tenant TEXT REFERENCES tenants(name),
        hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE console_sessions (
        id_hash BLOB PRIMARY KEY,
        user TEXT REFERENCES console_users(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    """,
    # the sending server each replication token writes copies for, one token per server ID, and
    # what replication tokens moved aside, with when, so a purge can take what is old enough
    # (design 17.14)
    """
    CREATE TABLE copy_senders (
        tenant TEXT NOT NULL REFERENCES tenants(name),
        server TEXT NOT NULL,
        token TEXT NOT NULL,
        bound_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, server)
    );
    CREATE TABLE moved_aside (
        tenant TEXT NOT NULL REFERENCES tenants(name),
        server TEXT NOT NULL,
        copy TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        moved_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, server, copy, kind, name)
    );
    """,
    # the job's schedule as the agent reports it with each result, so the console judges a
    # machine's staleness against its own schedule (design 18.4)
    """
    ALTER TABLE job_results ADD COLUMN schedule TEXT NOT NULL DEFAULT '';
    ALTER TABLE job_results ADD COLUMN next_due_ms INTEGER;
    ALTER TABLE job_results ADD COLUMN period_ms INTEGER;
    """,
)


class Database:
    """The server's SQLite database at `path`, migrated to the newest schema on open.

    A new database file is made 0600 (SQLite gives its -wal and -shm files the same mode): it
    holds token hashes and tenant names, which are no one else's business on the machine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        _create_private(path)
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as exc:
                if self._disk_full(exc):
                    raise DataFolderFull(self.path.parent, exc) from exc
                raise ServerSetupError(f"cannot open the database {self.path}: {exc}") from exc
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (serialised in this process; SQLite serialises the rest).

        Nested in another `write` of the same thread, it joins that transaction, so an admin
        operation and its audit record commit together or not at all (server/adminops.py). A full
        disk is raised as DataFolderFull."""
        conn = self._connect()
        if getattr(self._local, "writing", False):
            yield conn
            return
        with self._full_disk_typed(), self._write_lock, immediate(conn):
            self._local.writing = True
            try:
                yield conn
            finally:
                self._local.writing = False

    def read(self) -> sqlite3.Connection:
        return self._connect()

    def _migrate(self) -> None:
        with self._full_disk_typed(), self._write_lock:
            migrate(self._connect(), MIGRATIONS, self.path, ServerSetupError)

    @contextmanager
    def _full_disk_typed(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if self._disk_full(exc) and not isinstance(exc, DataFolderFull):
                raise DataFolderFull(self.path.parent, exc) from exc
            raise

    def _disk_full(self, exc: sqlite3.Error) -> bool:
        """SQLITE_FULL, or an I/O error on a disk with no byte left: SQLite says "disk I/O
        error" when it cannot make its -shm file, which it does when a database is opened."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code == sqlite3.SQLITE_FULL:
            return True
        try:
            return code == sqlite3.SQLITE_IOERR and os.statvfs(self.path.parent).f_bavail == 0
        except OSError:
            return False

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _create_private(path: Path) -> None:
    """An empty file is an empty SQLite database; made here, it is 0600 whatever the umask."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise ServerSetupError(f"cannot make the database {path}: {exc}") from exc
