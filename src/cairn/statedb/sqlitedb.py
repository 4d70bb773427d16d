"""What the server's database and the agent's history share: a write transaction, and numbered
migrations recorded in `PRAGMA user_version` (a database newer than the code is refused)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from cairn.core.errors import CairnError


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (BEGIN IMMEDIATE), rolled back on any exception,
    a failed COMMIT included."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # A COMMIT that fails (a full disk) may leave the transaction open; left so, every later
        # BEGIN on this connection would fail ("within a transaction") until a restart.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def migrate(
    conn: sqlite3.Connection,
    migrations: Sequence[str],
    path: Path,
    newer: type[CairnError],
) -> None:
    """Apply the migrations the database at `path` lacks, each in its own transaction; raises
    `newer` for a database written by a newer Cairn."""
    while True:
        with immediate(conn):  # read again inside: another process may have migrated meanwhile
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > len(migrations):
                raise newer(
                    f"{path} was written by a newer Cairn (schema {version}, this one knows "
                    f"{len(migrations)}): upgrade Cairn"
                )
            if version == len(migrations):
                return
            for statement in migrations[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
