"""Which token saved each lock object: a backup token may remove a lock it saved itself, and
nothing else (design 14.3).

A row is written only when a save *creates* the lock (a token that re-sends bytes already stored
does not become their owner), replaced when a lock of that name is created again after it was
removed, and dropped when the lock is removed through the server; garbage collection drops the
rows of locks that are no longer stored (it removes ended sessions' locks itself).
"""

from __future__ import annotations

from collections.abc import Iterable

from cairn.server.db import Database


class LockOwners:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, tenant: str, name: str, token: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO lock_owners (tenant, name, token) VALUES (?, ?, ?)",
                (tenant, name, token),
            )

    def owner(self, tenant: str, name: str) -> str | None:
        row = (
            self._db.read()
            .execute("SELECT token FROM lock_owners WHERE tenant = ? AND name = ?", (tenant, name))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def names(self, tenant: str) -> set[str]:
        rows = self._db.read().execute("SELECT name FROM lock_owners WHERE tenant = ?", (tenant,))
        return {name for (name,) in rows}

    def drop(self, tenant: str, names: Iterable[str]) -> None:
        with self._db.write() as conn:
            conn.executemany(
                "DELETE FROM lock_owners WHERE tenant = ? AND name = ?",
                [(tenant, name) for name in names],
            )
