"""The change journal (design 17.2): one row per save and removal the server makes in a
tenant's storage, in the order it made them, and the backend wrapper that writes it.

The journal is what makes "only changes" cheap: a run reads the rows after its target's cursor
instead of listing storage. It is append-only; nothing here deletes a row.
"""

from __future__ import annotations

import threading

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.wrappers.forwarding import ForwardingBackend
from cairn.core.clock import Clock, epoch_ms
from cairn.replication.db import ReplicationDb
from cairn.replication.model import Action, JournalEntry

UNJOURNALLED = frozenset({ObjectKind.LOCK})
"""Kinds never journalled: a lock is a running session's, not data (17.5)."""


class Journal:
    """Appends entries and reads them back by sequence."""

    def __init__(self, db: ReplicationDb, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self.wake: threading.Event | None = None
        """Set after every append: the scheduler's event, so a continuous target starts at
        once (the server hands it over when it runs replication)."""

    def record(
        self, tenant_id: str, handle: Handle, size: int, action: Action, token: str = ""
    ) -> int | None:
        """Append one change; its sequence, or None for a kind that is never journalled."""
        if handle.kind in UNJOURNALLED:
            return None
        with self._db.write() as conn:
            cursor = conn.execute(
                "INSERT INTO journal (tenant_id, kind, name, size, action, at_ms, token) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant_id,
                    handle.kind.value,
                    handle.name,
                    size,
                    action.value,
                    epoch_ms(self._clock),
                    token,
                ),
            )
            seq = cursor.lastrowid
        assert seq is not None
        if self.wake is not None:
            self.wake.set()
        return seq

    def head(self) -> int:
        """The highest sequence written (0 for an empty journal): one indexed read."""
        row = self._db.read().execute("SELECT MAX(seq) FROM journal").fetchone()
        return int(row[0] or 0)

    def entries_after(self, seq: int, limit: int = 1000) -> list[JournalEntry]:
        """Up to `limit` entries with a sequence above `seq`, oldest first."""
        rows = self._db.read().execute(
            "SELECT seq, tenant_id, kind, name, size, action, at_ms, token FROM journal "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [
            JournalEntry(
                seq=row[0],
                tenant_id=row[1],
                kind=ObjectKind(row[2]),
                name=row[3],
                size=row[4],
                action=Action(row[5]),
                at_ms=row[6],
                token=row[7],
            )
            for row in rows
        ]


class JournalBackend(ForwardingBackend):
    """A tenant's backend whose every save and removal is journalled after it returned.

    After, not before: an entry names only an object that was stored (or is gone). A crash
    between the two leaves an object the journal does not name; the audit finds it (17.7).
    """

    def __init__(self, inner: Backend, journal: Journal, tenant_id: str, token: str = "") -> None:
        super().__init__(inner)
        self._journal = journal
        self._tenant_id = tenant_id
        self._token = token

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        self._inner.save(handle, data)
        self._journal.record(self._tenant_id, handle, len(data), Action.ADD, self._token)

    def remove(self, handle: Handle) -> None:
        size = -1
        if handle.kind not in UNJOURNALLED:
            size = self._inner.stat(handle).size
        self._inner.remove(handle)
        self._journal.record(self._tenant_id, handle, size, Action.REMOVE, self._token)
