"""The chunk table: where each chunk a tenant's index objects list lives (design 14.11).

A backup to the server asks which of its chunks the tenant already holds (`POST
/v1/t/{tenant}/chunks`) instead of loading every index object. The answers come from this table in
the server's database: per tenant, chunk ID → pack, kind, offset, length, and the index object that
lists it, plus the names of the index objects it was built from.

It is kept in step by every save and removal of an index object that passes through the server:
clients' uploads and the server's own garbage collection both reach storage through the tenant's
storage stack (tenantstore.py's AccountedBackend). The rows of a removed index go *before* the
object does, and those of a saved one come *after* it is durable, both under the tenant's lock,
which a rebuild holds too; so the table never lists a chunk of an index that is gone (a backup would
then deduplicate against a pack a prune condemned), and a failure in between only leaves out chunks,
which costs a backup storing them again. Index objects that arrive any other way (a repository
copied into the data folder, a crash between a save and its rows) are found by comparing the index
names the table holds with the listing: at the first query for a tenant after start, and at least
every `max_age_s` after. Index objects are plaintext (design 3.4), so none of this needs a key; a
malformed one is skipped, as a client loading the index skips it.

An answer leaves out chunks whose pack storage no longer holds, as a client loading the index
drops such packs (Repository.forget_missing_packs): a backup then stores them again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import BackendError, NotFound
from cairn.core.clock import SYSTEM_CLOCK, Clock
from cairn.core.errors import CairnError
from cairn.core.ids import ObjectName
from cairn.crypto.hashing import verify_object
from cairn.format.index import decode_index
from cairn.server.db import Database

log = logging.getLogger("cairn.server.chunks")

Entry = tuple[bytes, bytes, int, int, int]
"""(chunk ID, pack name, kind, offset, length): where one chunk lives."""
_PER_STATEMENT = 500
"""IDs per SELECT (SQLite allows at least 999 variables in a statement)."""
ROWS_PER_TRANSACTION = 10_000
"""Rows added or removed per write transaction: the server's other writes (usage, the audit log)
wait for one transaction, never for a whole large index."""


class TableBuilding(CairnError):
    """A tenant's chunk table is being built (after a start or an upgrade): ask again soon."""


class ChunkTable:
    """Every tenant's chunk table in the server's database; thread-safe."""

    def __init__(
        self,
        db: Database,
        max_age_s: float = 60.0,
        wait_s: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._db = db
        self._clock = clock
        self._max_age_s = max_age_s
        self._wait_s = wait_s
        self._building: set[str] = set()
        """Tenants whose table a thread is comparing with the listing now."""
        self._locks: dict[str, threading.Lock] = {}
        self._checked: dict[str, float] = {}
        """Tenant → when (monotonic) the table was last compared with the listing."""
        self._guard = threading.Lock()

    # ---- keeping in step ----------------------------------------------------------------

    @contextmanager
    def saving(self, tenant: str, handle: Handle, data: bytes | memoryview) -> Iterator[None]:
        """Wrap the save of `handle`: an index object's chunks are added once it is stored."""
        if handle.kind is not ObjectKind.INDEX:
            yield
            return
        rows = _entries(bytes(data))
        with self._lock_of(tenant):
            yield
            self._record(tenant, _raw(handle), rows)

    @contextmanager
    def removing(self, tenant: str, handle: Handle) -> Iterator[None]:
        """Wrap the removal of `handle`: an index object's chunks go before it does; if they
        cannot, it is not removed (BackendError)."""
        if handle.kind is not ObjectKind.INDEX:
            yield
            return
        with self._lock_of(tenant):
            try:
                self._forget(tenant, _raw(handle))
            except sqlite3.Error as exc:
                raise BackendError(f"the chunk table could not be updated: {exc}") from exc
            yield

    def _record(self, tenant: str, name: bytes, rows: list[Entry]) -> None:
        """Under the tenant's lock: the index's name (incomplete), its rows,
        ROWS_PER_TRANSACTION at a time (other writers of the database go on between them), then
        the name marked complete. A failure or a crash midway leaves it incomplete, so the next
        comparison with the listing reads it again."""
        try:
            with self._db.write() as conn:
                number = _number(conn, tenant, name)
            for start in range(0, len(rows), ROWS_PER_TRANSACTION):
                with self._db.write() as conn:
                    _insert(conn, tenant, number, rows[start : start + ROWS_PER_TRANSACTION])
            with self._db.write() as conn:
                conn.execute("UPDATE chunk_indexes SET complete = 1 WHERE no = ?", (number,))
        except sqlite3.Error as exc:  # chunks left out: stored again by a backup, never wrong
            log.warning("chunk table of %s not updated (%s); it is compared again", tenant, exc)
            with self._guard:
                self._checked.pop(tenant, None)

    def _forget(self, tenant: str, name: bytes) -> None:
        """Under the tenant's lock: the index's name marked incomplete first (a crash midway
        leaves it to be read again while its object is stored), then its rows,
        ROWS_PER_TRANSACTION at a time, then the name."""
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT no FROM chunk_indexes WHERE tenant = ? AND name = ?", (tenant, name)
            ).fetchone()
            if row is None:
                return
            conn.execute("UPDATE chunk_indexes SET complete = 0 WHERE no = ?", (row[0],))
        while True:
            with self._db.write() as conn:
                deleted = conn.execute(
                    "DELETE FROM chunks WHERE idx = ? AND id IN "
                    "(SELECT id FROM chunks WHERE idx = ? LIMIT ?)",
                    (row[0], row[0], ROWS_PER_TRANSACTION),
                ).rowcount
            if deleted < ROWS_PER_TRANSACTION:
                break
        with self._db.write() as conn:
            conn.execute("DELETE FROM chunk_indexes WHERE no = ?", (row[0],))

    # ---- rebuilding ---------------------------------------------------------------------

    def refresh(self, tenant: str, backend: Backend) -> int:
        """Compare the index names the table holds with the listing; read the index objects
        it lacks and drop those gone. Returns how many index objects were read.

        The tenant's lock is taken per index object, not for the whole run, so clients' saves
        go on while a large table is built; an index object read is recorded only if it is
        still stored once the lock is held (a removal holds the lock until the object is gone).
        """
        listed = {_raw(i.handle) for i in backend.list(ObjectKind.INDEX)}
        known = {
            bytes(row[0]): bool(row[1])
            for row in self._db.read().execute(
                "SELECT name, complete FROM chunk_indexes WHERE tenant = ?", (tenant,)
            )
        }
        recorded = {name for name, complete in known.items() if complete}
        for name in set(known) - listed:
            with self._lock_of(tenant):
                if not backend.exists(Handle(ObjectKind.INDEX, name.hex())):
                    self._forget(tenant, name)
        read = 0
        for name in listed - recorded:
            rows = _read_entries(backend, name)
            if rows is None:
                continue
            with self._lock_of(tenant):
                if backend.exists(Handle(ObjectKind.INDEX, name.hex())):
                    self._record(tenant, name, rows)
                    read += 1
        with self._guard:
            self._checked[tenant] = self._clock.monotonic()
        return read

    def warm(self, tenants: Iterable[tuple[str, Backend]]) -> None:
        """Refresh every tenant's table (at start, on a thread of its own: a table missing its
        rows after an upgrade is then rebuilt before the first backup asks). Failures are
        logged; the first query tries again."""
        try:
            for tenant, backend in tenants:
                if not self._claim(tenant):
                    continue
                try:
                    read = self.refresh(tenant, backend)
                except (CairnError, sqlite3.Error) as exc:
                    log.warning("chunk table of %s not rebuilt: %s", tenant, exc)
                    continue
                finally:
                    self._release(tenant)
                if read:
                    log.info("chunk table of %s: %d index objects read", tenant, read)
        finally:
            self._db.close()  # this thread's connection

    def _claim(self, tenant: str) -> bool:
        """Become the one refreshing `tenant`'s table; False if another thread is."""
        with self._guard:
            if tenant in self._building:
                return False
            self._building.add(tenant)
            return True

    def _wait_for_other(self, tenant: str) -> bool:
        """Wait up to `wait_s` for the thread building `tenant`'s table (the warm-up at start);
        True when it finished with the table compared."""
        deadline = self._clock.monotonic() + self._wait_s
        while self._clock.monotonic() < deadline:
            with self._guard:
                if tenant not in self._building:
                    return tenant in self._checked
            time.sleep(0.02)
        return False

    def _release(self, tenant: str) -> None:
        with self._guard:
            self._building.discard(tenant)

    def _refresh_if_due(self, tenant: str, backend: Backend) -> None:
        """Refresh when due. A table never compared since start must be before it answers: if
        that takes longer than `wait_s` (a large tenant after an upgrade), TableBuilding, and
        the refresh goes on in the background. A table compared before answers as it stands
        while a later comparison runs (it names no index object that is gone: rows go before
        their object does)."""
        with self._guard:
            checked = self._checked.get(tenant)
            if checked is not None and self._clock.monotonic() - checked < self._max_age_s:
                return
        if not self._claim(tenant):
            if checked is None and not self._wait_for_other(tenant):
                raise TableBuilding(f"the chunk table of tenant {tenant} is being built")
            return
        done = threading.Event()
        failed: list[Exception] = []
        threading.Thread(
            target=self._refresh_in_background,
            args=(tenant, backend, done, failed),
            name="chunk-table",
            daemon=True,
        ).start()
        if not done.wait(self._wait_s):
            if checked is None:
                raise TableBuilding(f"the chunk table of tenant {tenant} is being built")
            return
        if failed:
            raise failed[0]

    def _refresh_in_background(
        self, tenant: str, backend: Backend, done: threading.Event, failed: list[Exception]
    ) -> None:
        try:
            self.refresh(tenant, backend)
        except Exception as exc:  # handed to the request that waits, or logged
            failed.append(exc)
            log.warning("chunk table of %s not refreshed: %s", tenant, exc)
        finally:
            self._release(tenant)
            self._db.close()  # this thread's connection
            done.set()

    # ---- answering ----------------------------------------------------------------------

    def lookup(self, tenant: str, backend: Backend, ids: list[bytes]) -> list[Entry]:
        """Where each of `ids` lives, for those the tenant's indexes list in a stored pack."""
        self._refresh_if_due(tenant, backend)
        candidates: dict[bytes, list[Entry]] = {}
        conn = self._db.read()
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _PER_STATEMENT):
            part = unique[start : start + _PER_STATEMENT]
            marks = ",".join("?" * len(part))  # only placeholders go into the text
            query = f"SELECT id, pack, kind, start, length FROM chunks WHERE tenant = ? AND id IN ({marks})"  # noqa: S608, E501
            rows = conn.execute(query, (tenant, *part))
            for row in rows:
                candidates.setdefault(bytes(row[0]), []).append(
                    (bytes(row[0]), bytes(row[1]), row[2], row[3], row[4])
                )
        stored: dict[bytes, bool] = {}
        found = []
        for entries in candidates.values():
            for entry in entries:
                if entry[1] not in stored:
                    stored[entry[1]] = backend.exists(Handle(ObjectKind.PACK, entry[1].hex()))
                if stored[entry[1]]:
                    found.append(entry)
                    break
        return found

    def _lock_of(self, tenant: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(tenant, threading.Lock())


def _raw(handle: Handle) -> bytes:
    return bytes.fromhex(handle.name)


def _entries(data: bytes) -> list[tuple[bytes, bytes, int, int, int]]:
    """The rows of an index object; none for a malformed one (skipped, as clients skip it)."""
    try:
        record = decode_index(data)
    except CairnError:
        return []
    return [
        (e.chunk_id, pack.raw, int(e.kind), e.offset, e.length)
        for pack, entries in record.packs.items()
        for e in entries
    ]


def _read_entries(backend: Backend, name: bytes) -> list[Entry] | None:
    """The rows of a stored index object; None when it is gone or cannot be read now."""
    handle = Handle(ObjectKind.INDEX, name.hex())
    try:
        data = backend.load(handle)
    except NotFound:
        return None
    except BackendError as exc:
        log.warning("index %s unreadable for the chunk table: %s", handle.name[:8], exc)
        return None
    try:
        verify_object(ObjectName(name), data)
    except CairnError:
        return []  # damaged: skipped, and not read again until it changes name
    return _entries(data)


def _number(conn: sqlite3.Connection, tenant: str, name: bytes) -> int:
    """The number by which an index object's rows name it (made on first use)."""
    conn.execute("INSERT OR IGNORE INTO chunk_indexes (tenant, name) VALUES (?, ?)", (tenant, name))
    row = conn.execute(
        "SELECT no FROM chunk_indexes WHERE tenant = ? AND name = ?", (tenant, name)
    ).fetchone()
    return int(row[0])


def _insert(conn: sqlite3.Connection, tenant: str, number: int, rows: list[Entry]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO chunks (tenant, id, pack, kind, start, length, idx) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(tenant, *row, number) for row in rows],
    )
