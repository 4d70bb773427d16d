"""Who writes the copies in an area, and what replication tokens moved aside (design 17.14).

One replication token per sending server: the first server ID a replication token writes
under in its area becomes that token's, and that server ID the token's alone, so two senders
sharing an area cannot touch each other's copies, and revoking one sender's token stops that
sender only. A server ID whose token was revoked (or expired) passes to the next token that
writes under it: a sender whose token was rotated, or a server restored on new hardware with
the same ID (`restore-from`), goes on with its copies.

Every object a replication token's removal moved aside is recorded with the time it moved,
so `cairn server removed purge` deletes only what has been aside longer than the operator's
delay.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from cairn.core.clock import Clock, epoch_ms
from cairn.server.db import Database
from cairn.server.errors import Forbidden

SCRATCH = "cairn-probe"
"""The server segment of the target check's scratch (design 17.10): shared by every sender,
it holds no copy and is bound to no token."""


class CopySenders:
    """The binding of server IDs to replication tokens, per area."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def claim(self, tenant: str, server: str, token: str) -> None:
        """Let `token` write copies under `server` in `tenant`'s area, binding the two at its
        first request; Forbidden when either is another's (a revoked or expired token's server
        ID is taken over)."""
        if server == SCRATCH:
            return
        read = self._db.read()
        if self._owner(read, tenant, server) == token:
            return
        with self._db.write() as conn:
            owner = self._owner(conn, tenant, server)
            if owner == token:
                return
            if owner is not None and self._active(conn, owner):
                raise Forbidden(
                    f"the copies of server {server} in area {tenant} are written with another "
                    "replication token: each sending server needs a token of its own"
                )
            other = conn.execute(
                "SELECT server FROM copy_senders WHERE tenant = ? AND token = ? AND server != ?",
                (tenant, token, server),
            ).fetchone()
            if other is not None:
                raise Forbidden(
                    f"this replication token writes the copies of server {other[0]} in area "
                    f"{tenant}, not {server}: each sending server needs a token of its own"
                )
            conn.execute(
                "INSERT OR REPLACE INTO copy_senders (tenant, server, token, bound_ms) "
                "VALUES (?, ?, ?, ?)",
                (tenant, server, token, epoch_ms(self._clock)),
            )

    def senders(self, tenant: str) -> dict[str, str]:
        """The server IDs of `tenant`'s area and the token each is bound to."""
        rows = self._db.read().execute(
            "SELECT server, token FROM copy_senders WHERE tenant = ? ORDER BY server", (tenant,)
        )
        return {str(server): str(token) for server, token in rows}

    @staticmethod
    def _owner(conn: sqlite3.Connection, tenant: str, server: str) -> str | None:
        row = conn.execute(
            "SELECT token FROM copy_senders WHERE tenant = ? AND server = ?", (tenant, server)
        ).fetchone()
        return None if row is None else str(row[0])

    def _active(self, conn: sqlite3.Connection, token: str) -> bool:
        row = conn.execute(
            "SELECT revoked_ms, expires_ms FROM tokens WHERE id = ?", (token,)
        ).fetchone()
        if row is None or row[0] is not None:
            return False
        return row[1] is None or int(row[1]) > epoch_ms(self._clock)


@dataclass(frozen=True, slots=True)
class MovedObject:
    """One object a replication token's removal moved aside in a copy."""

    tenant: str
    server: str
    copy: str
    kind: str
    name: str
    size: int
    moved_ms: int


class MovedAside:
    """The record of moved-aside objects, read by the purge."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def record(self, tenant: str, server: str, copy: str, kind: str, name: str, size: int) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO moved_aside "
                "(tenant, server, copy, kind, name, size, moved_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tenant, server, copy, kind, name, size, epoch_ms(self._clock)),
            )

    def older_than(self, before_ms: int, tenant: str | None = None) -> list[MovedObject]:
        """What moved aside before `before_ms`, in one area or all, oldest first."""
        rows = self._db.read().execute(
            "SELECT tenant, server, copy, kind, name, size, moved_ms FROM moved_aside "
            "WHERE moved_ms < ? AND (? IS NULL OR tenant = ?) ORDER BY moved_ms, tenant, name",
            (before_ms, tenant, tenant),
        )
        return [
            MovedObject(str(t), str(server), str(copy), str(kind), str(name), int(size), int(ms))
            for t, server, copy, kind, name, size, ms in rows
        ]

    def forget(self, moved: MovedObject) -> None:
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM moved_aside WHERE tenant = ? AND server = ? AND copy = ? "
                "AND kind = ? AND name = ?",
                (moved.tenant, moved.server, moved.copy, moved.kind, moved.name),
            )
