"""The audit log: every user operation, hash-chained so that an edit or a deletion shows.

Each entry's hash is BLAKE3 over the previous entry's hash and this entry's fields; `verify`
recomputes the chain from the first entry. Entries are buffered and written in one transaction
every few hundred milliseconds (and at shutdown), so auditing costs no fsync per request.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import blake3

from cairn.server.db import Database

GENESIS = bytes(32)


@dataclass(frozen=True, slots=True)
class Entry:
    at_ms: int
    actor: str
    tenant: str | None
    action: str
    target: str
    outcome: str
    address: str

    def digest(self, previous: bytes) -> bytes:
        fields = [
            self.at_ms,
            self.actor,
            self.tenant,
            self.action,
            self.target,
            self.outcome,
            self.address,
        ]
        return blake3.blake3(previous + json.dumps(fields).encode()).digest()


class AuditLog:
    def __init__(self, db: Database, flush_interval: float = 0.25) -> None:
        self._db = db
        self._pending: list[Entry] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = flush_interval
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()

    def append(
        self, actor: str, tenant: str | None, action: str, target: str, outcome: str, address: str
    ) -> None:
        entry = Entry(int(time.time() * 1000), actor, tenant, action, target, outcome, address)
        with self._lock:
            self._pending.append(entry)
        if self._thread is None:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            entries, self._pending = self._pending, []
        if not entries:
            return
        with self._db.write() as conn:
            row = conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            previous = row[0] if row else GENESIS
            for e in entries:
                previous = e.digest(previous)
                conn.execute(
                    "INSERT INTO audit (at_ms, actor, tenant, action, target, outcome, address, "
                    "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        e.at_ms,
                        e.actor,
                        e.tenant,
                        e.action,
                        e.target,
                        e.outcome,
                        e.address,
                        previous,
                    ),
                )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def verify(self) -> tuple[int, int | None]:
        """(entries checked, the sequence number of the first broken entry or None)."""
        previous = GENESIS
        count = 0
        rows = self._db.read().execute(
            "SELECT seq, at_ms, actor, tenant, action, target, outcome, address, hash "
            "FROM audit ORDER BY seq"
        )
        expected_seq = None
        for seq, *fields, stored in rows:
            if expected_seq is not None and seq != expected_seq:
                return count, expected_seq  # an entry was deleted
            previous = Entry(*fields).digest(previous)
            if previous != stored:
                return count, seq
            count += 1
            expected_seq = seq + 1
        return count, None

    def entries(self, limit: int = 100) -> list[dict[str, object]]:
        rows = self._db.read().execute(
            "SELECT seq, at_ms, actor, tenant, action, target, outcome, address FROM audit "
            "ORDER BY seq DESC LIMIT ?",
            (limit,),
        )
        keys = ("seq", "at_ms", "actor", "tenant", "action", "target", "outcome", "address")
        return [dict(zip(keys, row, strict=True)) for row in rows]
