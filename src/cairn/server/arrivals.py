"""When each snapshot object arrived, on the server's clock: what server-side retention goes by.

A snapshot's own time is sealed (the server cannot read it) and a client could forge it anyway;
the arrival time is the server's own fact.
"""

from __future__ import annotations

import time

from cairn.server.db import Database


class Arrivals:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, tenant: str, name: str, size: int) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO snapshots (tenant, name, size, received_ms) "
                "VALUES (?, ?, ?, ?)",
                (tenant, name, size, int(time.time() * 1000)),
            )

    def of(self, tenant: str) -> dict[str, int]:
        rows = self._db.read().execute(
            "SELECT name, received_ms FROM snapshots WHERE tenant = ?", (tenant,)
        )
        return dict(rows.fetchall())
