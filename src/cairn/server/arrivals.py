"""When each snapshot object arrived, on the server's clock, and which token sent it: what
server-side retention goes by (server/retention.py).

A snapshot's own time is sealed (the server cannot read it) and a client could forge it anyway;
the arrival time is the server's own fact.
"""

from __future__ import annotations

from cairn.core.clock import SYSTEM_CLOCK, Clock, epoch_ms
from cairn.server.db import Database
from cairn.server.retention import Arrival


class Arrivals:
    def __init__(self, db: Database, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._clock = clock

    def record(self, tenant: str, name: str, size: int, token: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO snapshots (tenant, name, size, received_ms, token) "
                "VALUES (?, ?, ?, ?, ?)",
                (tenant, name, size, epoch_ms(self._clock), token),
            )

    def of(self, tenant: str) -> dict[str, Arrival]:
        rows = self._db.read().execute(
            "SELECT name, token, received_ms FROM snapshots WHERE tenant = ?", (tenant,)
        )
        return {name: Arrival(name, token, ms) for name, token, ms in rows}

    def forget(self, tenant: str, names: list[str]) -> None:
        with self._db.write() as conn:
            conn.executemany(
                "DELETE FROM snapshots WHERE tenant = ? AND name = ?",
                [(tenant, name) for name in names],
            )
