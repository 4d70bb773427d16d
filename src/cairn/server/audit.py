"""The audit log: every user operation, hash-chained so that an edit or a deletion shows.

Each entry's hash is BLAKE3 over the previous entry's hash and this entry's fields; `verify`
recomputes the chain from the first entry, and `behind` compares the newest entry with the newest
change the database holds (a record lost, or removed from the end).

No operation is answered as done without its record (RELIABILITY.md S9). An admin operation
writes its record in the transaction that makes the change (`record`, server/adminops.py), so
the two commit together or not at all. A request's record is appended, then written before the
request is answered (`write_through`): whichever request thread writes first writes every entry
pending in one transaction (a group commit), so a busy server pays one commit per batch, not
per request. An entry that cannot be written (a full disk) stays pending and goes with the next
batch; until a write succeeds, `failure` says why, and the routes refuse operations, which could
not be recorded either. There is no background thread to die and no buffer a kill -9 could lose
with an answer already given.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import blake3

from cairn.core.clock import SYSTEM_CLOCK, Clock, epoch_ms
from cairn.server.db import Database

GENESIS = bytes(32)
_CHANGES_SINCE = (
    "SELECT what, at, action, key FROM ("
    " SELECT 'tenant ' || name || ' created' AS what, created_ms AS at,"
    "  'create-tenant' AS action, name AS key FROM tenants"
    " UNION ALL SELECT 'token ' || id || ' issued', created_ms, 'create-token', id FROM tokens"
    " UNION ALL SELECT 'token ' || id || ' revoked', revoked_ms, 'revoke-token', id FROM tokens"
    "  WHERE revoked_ms IS NOT NULL"
    " UNION ALL SELECT 'snapshot ' || name || ' of ' || tenant || ' stored', received_ms, 'write',"
    "  'snapshots/' || name FROM snapshots"
    ") WHERE at >= ? ORDER BY at DESC"
)
"""Every change the audit log must record, with the action and the word its record holds."""
BEHIND_WINDOW_MS = 60_000
"""How far before the newest entry `behind` judges changes (longer than any one transaction)."""
log = logging.getLogger("cairn.server")


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
    def __init__(self, db: Database, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._clock = clock
        self._pending: list[Entry] = []
        self._appended = 0
        """Entries appended since start; the first `_written` of them are in the database."""
        self._written = 0
        self._lock = threading.Lock()
        """Guards the pending list and the counters."""
        self._writing = threading.Lock()
        """One group commit at a time; the others wait and usually find their entry written."""
        self.failure: str | None = None
        """Why the last write failed, until a write succeeds."""

    def append(
        self, actor: str, tenant: str | None, action: str, target: str, outcome: str, address: str
    ) -> int:
        """Queue an entry; returns the mark to pass to `write_through` before answering."""
        entry = Entry(epoch_ms(self._clock), actor, tenant, action, target, outcome, address)
        with self._lock:
            self._pending.append(entry)
            self._appended += 1
            return self._appended

    def write_through(self, mark: int | None = None) -> None:
        """Return once every entry up to `mark` (default: all appended) is in the database;
        raise why not (DataFolderFull for a full disk). Entries not written stay pending."""
        with self._writing:
            with self._lock:
                if self._written >= (self._appended if mark is None else mark):
                    return
                entries = list(self._pending)
            try:
                with self._db.write() as conn:
                    for entry in entries:
                        _insert(conn, entry)
            except Exception as exc:
                if self.failure is None:
                    code = getattr(exc, "code", "CAIRN-E069")
                    log.error(
                        "%s the audit log cannot be written: requests are refused until it can: %s",
                        code,
                        exc,
                    )
                self.failure = str(exc) or type(exc).__name__
                raise
            with self._lock:
                del self._pending[: len(entries)]
                self._written += len(entries)
            if self.failure is not None:
                log.warning("the audit log is written again; requests are served")
            self.failure = None

    def written(self) -> bool:
        """Whether every entry appended so far is in the database."""
        with self._lock:
            return self._written == self._appended

    def record(
        self,
        conn: sqlite3.Connection,
        actor: str,
        tenant: str | None,
        action: str,
        target: str,
        address: str = "-",
    ) -> None:
        """Write one entry in the caller's write transaction `conn`: it commits with the change
        it records, or neither does."""
        _insert(conn, Entry(epoch_ms(self._clock), actor, tenant, action, target, "ok", address))

    def stop(self) -> None:
        """Write what is pending (at shutdown); a failure is logged, the entries are lost."""
        try:
            self.write_through()
        except Exception as exc:  # stopping: say it, do not hide the shutdown
            log.error("audit entries could not be written at shutdown: %s", exc)

    def behind(self) -> str | None:
        """A change in the database (a tenant, a token issued or revoked, a snapshot stored) in
        the minute up to the newest audit entry's time, or after it, that has no record,
        described; None when there is none. So a record lost (a server killed between a change
        and its record) or removed from the end shows; older changes are not judged (earlier
        Cairn did not record the admin CLI's changes)."""
        conn = self._db.read()
        (newest,) = conn.execute("SELECT COALESCE(MAX(at_ms), 0) FROM audit").fetchone()
        # A change's row is written before its record, in one transaction, by separate readings
        # of the clock: a change may be some milliseconds older than the entry just before the
        # lost one. Judge the changes of the last minute before the newest entry, against every
        # record of that minute, so the verdict does not depend on how fast the machine is.
        since = max(newest - BEHIND_WINDOW_MS, 0) if newest else 0
        recorded = {
            (action, word)
            for action, target in conn.execute(
                "SELECT action, target FROM audit WHERE at_ms >= ?", (since,)
            )
            for word in target.split()
        }
        for what, at_ms, action, key in conn.execute(_CHANGES_SINCE, (since,)):
            if (action, key) not in recorded:
                return f"{what} at {_show_ms(at_ms)} has no audit record"
        return None

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

    def page(
        self, tenant: str | None, action: str | None, before: int | None, limit: int
    ) -> list[tuple[int, Entry]]:
        """Up to `limit` entries older than sequence number `before` (None: the newest),
        newest first, of one tenant and one action when given (the console's audit page)."""
        where = ["seq < ?"]
        args: list[int | str] = [before if before is not None else 2**63 - 1]
        if tenant is not None:
            where.append("tenant = ?")
            args.append(tenant)
        if action is not None:
            where.append("action = ?")
            args.append(action)
        # the clauses are fixed text; every value is a parameter
        rows = self._db.read().execute(
            "SELECT seq, at_ms, actor, tenant, action, target, outcome, address FROM audit "  # noqa: S608
            f"WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
            (*args, limit),
        )
        return [(row[0], Entry(*row[1:])) for row in rows]

    def actions(self) -> list[str]:
        """Every action the log holds, for the audit page's filter."""
        rows = self._db.read().execute("SELECT DISTINCT action FROM audit ORDER BY action")
        return [row[0] for row in rows]

    def entries(self, limit: int = 100) -> list[dict[str, object]]:
        rows = self._db.read().execute(
            "SELECT seq, at_ms, actor, tenant, action, target, outcome, address FROM audit "
            "ORDER BY seq DESC LIMIT ?",
            (limit,),
        )
        keys = ("seq", "at_ms", "actor", "tenant", "action", "target", "outcome", "address")
        return [dict(zip(keys, row, strict=True)) for row in rows]


def _insert(conn: sqlite3.Connection, entry: Entry) -> None:
    """Append `entry` after the newest row, chained to its hash (read in this transaction, so
    writers in other processes, like the admin CLI, keep one chain)."""
    row = conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    digest = entry.digest(row[0] if row else GENESIS)
    conn.execute(
        "INSERT INTO audit (at_ms, actor, tenant, action, target, outcome, address, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.at_ms,
            entry.actor,
            entry.tenant,
            entry.action,
            entry.target,
            entry.outcome,
            entry.address,
            digest,
        ),
    )


def _show_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
