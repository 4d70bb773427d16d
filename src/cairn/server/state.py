"""The server's state, with one owner that exports and imports it whole (design 14.15).

The state is what the database holds besides caches that can be rebuilt: tenants (with quota,
usage and retention), tokens (their hashes: a secret never leaves the client), the snapshots'
arrivals and the locks' owners, job results, damage found by scrubs, the audit log with its hash
chain, and the alert state file. The chunk tables are left out (rebuilt from the tenants' index
objects), and so are the tenants' repositories themselves: they are copied on their own
(``tenants/<tenant id>/`` keeps its ID across an export and an import).

The document is JSON, ``{"format": "cairn-server-state", "version": 1, "schema": N, ...}``; byte
strings are hex. Rows are copied as they are, so the audit chain verifies after an import and
the old tokens work. The standby and replication will carry the same records to their peers.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from cairn.core.clock import Clock, epoch_ms
from cairn.server.audit import AuditLog
from cairn.server.db import MIGRATIONS, Database
from cairn.server.errors import ServerSetupError
from cairn.server.layouts import RawBackends

FORMAT = "cairn-server-state"
VERSION = 1
ALERTS_FILE = "alerts.json"
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tenants", ("name", "id", "quota", "used", "created_ms", "retention")),
    ("tokens", ("id", "tenant", "role", "hash", "label", "created_ms", "revoked_ms", "expires_ms")),
    ("snapshots", ("tenant", "name", "size", "received_ms", "token")),
    ("lock_owners", ("tenant", "name", "token")),
    (
        "job_results",
        (
            "seq",
            "tenant",
            "host",
            "job",
            "started_ms",
            "ended_ms",
            "outcome",
            "snapshot",
            "files",
            "bytes_added",
            "error_code",
            "message",
            "received_ms",
            "token",
        ),
    ),
    ("damage", ("tenant", "kind", "name", "found_ms", "detail")),
    (
        "audit",
        ("seq", "at_ms", "actor", "tenant", "action", "target", "outcome", "address", "hash"),
    ),
    ("copies", ("tenant", "server", "copy", "created_ms")),
    ("copy_senders", ("tenant", "server", "token", "bound_ms")),
)
ADDED_IN_VERSION_1 = frozenset({"copies", "copy_senders"})
"""Tables added since version 1 was first written: a document without one holds none of its
rows (the copies other servers replicate into an area, design 17.14)."""
"""Every table of the state with its columns, parents before children (foreign keys)."""
BYTES = frozenset({("tokens", "hash"), ("audit", "hash")})
"""The columns that hold byte strings (hex in the document)."""


class ServerState:
    """Exports the state of the data folder `data` (whose database is `db`) and imports one.
    Admin operations (server/adminops.py) call it, so each export and import is audited."""

    def __init__(
        self, db: Database, data: Path, raw: RawBackends, audit: AuditLog, clock: Clock
    ) -> None:
        self._db = db
        self._data = data
        self._raw = raw
        self._audit = audit
        self._clock = clock

    def export(self) -> dict[str, Any]:
        """The whole state as one document, read in one transaction (a consistent moment)."""
        conn = self._db.read()
        conn.execute("BEGIN")
        try:
            tables = {name: _rows(conn, name, columns) for name, columns in TABLES}
        finally:
            conn.execute("COMMIT")
        return {
            "format": FORMAT,
            "version": VERSION,
            "schema": len(MIGRATIONS),
            "exported_ms": epoch_ms(self._clock),
            "tables": tables,
            "alerts": self._alerts(),
        }

    def _alerts(self) -> Any:
        path = self._data / ALERTS_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ServerSetupError(f"cannot read the alert state {path}: {exc}") from exc

    def load(self, document: Any, actor: str, address: str) -> dict[str, int]:
        """Load `document` into this new data folder in one transaction with its audit record
        (the chain goes on from the imported one), and make an empty repository layout for each
        tenant. Returns how many rows of each table were imported."""
        tables = check_document(document)
        with self._db.write() as conn:
            if conn.execute("SELECT COUNT(*) FROM tenants").fetchone()[0]:
                raise ServerSetupError(f"{self._data} holds tenants: import into a new folder")
            for name, columns in TABLES:
                _insert(conn, name, columns, tables[name])
            shown = f"version {VERSION} exported_ms={document.get('exported_ms')}"
            self._audit.record(conn, actor, None, "import-state", shown, address)
        if document.get("alerts") is not None:
            (self._data / ALERTS_FILE).write_text(json.dumps(document["alerts"]))
        for row in tables["tenants"]:
            self._raw.create(str(row[1]))
        return {name: len(tables[name]) for name, _ in TABLES}


def check_document(document: Any) -> dict[str, list[list[Any]]]:
    """The tables of a state document, or ServerSetupError saying what is wrong with it."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ServerSetupError("this is not a Cairn server state (cairn server export) file")
    if document.get("version") != VERSION:
        raise ServerSetupError(
            f"server state version {document.get('version')!r}: this Cairn reads version "
            f"{VERSION}; import it with the Cairn that exported it or a newer one"
        )
    tables = document.get("tables")
    if isinstance(tables, dict):
        for name in ADDED_IN_VERSION_1:
            tables.setdefault(name, [])
    if not isinstance(tables, dict) or any(
        not isinstance(tables.get(name), list) for name, _ in TABLES
    ):
        raise ServerSetupError(f"the server state lacks a table: it must hold {_names()}")
    return tables


def require_empty(data: Path) -> None:
    """An import goes only into a new or empty folder: state is never merged."""
    if data.exists() and (not data.is_dir() or any(data.iterdir())):
        raise ServerSetupError(
            f"{data} is not empty: import the server state into a new data folder"
        )


def _rows(conn: sqlite3.Connection, table: str, columns: tuple[str, ...]) -> list[list[Any]]:
    order = "seq" if "seq" in columns else "rowid"
    query = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"  # noqa: S608 (fixed names)
    hexed = [(table, column) in BYTES for column in columns]
    return [
        [value.hex() if is_bytes and value is not None else value
         for value, is_bytes in zip(row, hexed, strict=True)]
        for row in conn.execute(query)
    ]  # fmt: skip


def _insert(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: list[list[Any]]
) -> None:
    hexed = [(table, column) in BYTES for column in columns]
    marks = ", ".join("?" * len(columns))
    query = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
    try:
        conn.executemany(query, [_unhex(row, hexed) for row in rows])
    except (sqlite3.Error, ValueError, TypeError) as exc:
        raise ServerSetupError(f"the server state's {table} cannot be imported: {exc}") from exc


def _unhex(row: list[Any], hexed: list[bool]) -> list[Any]:
    if len(row) != len(hexed):
        raise ValueError(f"a row has {len(row)} values, not {len(hexed)}")
    return [
        bytes.fromhex(value) if is_bytes and value is not None else value
        for value, is_bytes in zip(row, hexed, strict=True)
    ]


def _names() -> str:
    return ", ".join(name for name, _ in TABLES)
