"""The server's own maintenance of each tenant: retention, garbage collection and scrubbing.

- Retention forgets the snapshot objects the tenant's policy lets go (server/retention.py), on
  the server's clock, per uploading token and snapshot group.
- Garbage collection is the keyless two-phase prune of design 13.3-13.4, run as a session of
  purpose ``prune`` beside the tenant's running backups: nothing waits, and what is condemned now
  is deleted by a later run once every session that could use it has ended. It never repacks
  (copying sealed blobs is safe, but the server keeps its work to deleting).
- A scrub re-hashes every stored object against its name (packs, indexes, reflists, snapshots,
  keys, locks, deletion records) and records what is damaged; a damaged object is never deleted
  by the scrub, only reported, for the tenant's `check --repair`.

Every read, save and removal goes through the tenant's storage stack for maintenance
(server/tenantstore.py), so usage and the chunk table stay right; maintenance may always write
(its small index and record objects are not refused by a full quota, or a tenant at its quota
could never free space).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import BackendError, NotFound
from cairn.core.clock import SYSTEM_CLOCK, Clock, epoch_ms, epoch_s
from cairn.core.errors import CairnError
from cairn.core.ids import ObjectName
from cairn.crypto.hashing import verify_object
from cairn.repository.locks import Session
from cairn.repository.prune import PruneOptions, Pruner, PruneRefused, PruneRunning
from cairn.server.arrivals import Arrivals
from cairn.server.db import Database
from cairn.server.lockowners import LockOwners
from cairn.server.retention import ServerPolicy, read_groups, to_forget
from cairn.server.tenants import Tenant, TenantStore
from cairn.server.tenantstore import TenantStorage

log = logging.getLogger("cairn.server.janitor")
_NO_REPACK = 1.0  # never repack: only wholly unused packs are condemned


@dataclass(slots=True)
class Report:
    tenant: str
    forgotten: int = 0
    swept_packs: int = 0
    swept_bytes: int = 0
    condemned_packs: int = 0
    records_waiting: int = 0
    damaged: list[str] = field(default_factory=list)
    skipped: str | None = None


class Janitor:
    """Runs retention + GC and scrubs for every tenant, on demand or on a schedule."""

    def __init__(
        self,
        db: Database,
        tenants: TenantStore,
        storage: TenantStorage,
        arrivals: Arrivals,
        lock_owners: LockOwners,
        grace_ms: int = 0,
        partial: Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._partial = partial
        self._db = db
        self._tenants = tenants
        self._storage = storage
        self._arrivals = arrivals
        self._lock_owners = lock_owners
        self._grace_ms = grace_ms
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.may_write: Callable[[], bool] = lambda: True
        """Whether scheduled maintenance may write now: a standby's lease holder says no
        while the server is not the primary (design 19.4)."""

    def collect(self, tenant: Tenant) -> Report:
        """Retention, then one prune run (sweep what earlier runs condemned, condemn anew)."""
        report = Report(tenant.name)
        backend = self._storage.for_maintenance(tenant)
        policy = self._tenants.retention(tenant.name)
        if policy is not None:
            try:
                report.forgotten = self._forget(tenant, backend, policy)
            except BackendError as exc:  # not on a partial view: nothing forgotten, no GC
                report.skipped = f"retention refused: cannot read the snapshots: {exc}"
                log.warning("tenant %s: %s", tenant.name, report.skipped)
                return report
        session = Session(backend, self._clock, "prune")
        try:
            session.acquire()
            result = Pruner(backend, self._clock, session, 8 << 20).run(
                PruneOptions(max_unused=_NO_REPACK, grace_ms=self._grace_ms)
            )
        except PruneRunning as exc:
            report.skipped = str(exc)
            return report
        except (PruneRefused, BackendError) as exc:
            report.skipped = f"garbage collection refused: {exc}"
            log.warning("tenant %s: %s", tenant.name, report.skipped)
            return report
        finally:
            session.release()
        report.swept_packs = result.swept_packs
        report.swept_bytes = result.swept_bytes
        report.condemned_packs = result.condemned_packs
        report.records_waiting = result.records_waiting
        self._drop_owners_of_removed_locks(tenant, backend)
        return report

    def _drop_owners_of_removed_locks(self, tenant: Tenant, backend: Backend) -> None:
        """The prune removed ended sessions' locks itself; forget who saved them. The rows are
        read before the listing, so a lock saved meanwhile keeps its row."""
        owned = self._lock_owners.names(tenant.name)
        stored = {info.handle.name for info in backend.list(ObjectKind.LOCK)}
        self._lock_owners.drop(tenant.name, owned - stored)

    def _forget(self, tenant: Tenant, backend: Backend, policy: ServerPolicy) -> int:
        listed = [info.handle.name for info in backend.list(ObjectKind.SNAPSHOT)]
        stored = read_groups(backend, listed)
        now = int(self._clock.now().timestamp() * 1000)
        names = to_forget(policy, stored, self._arrivals.of(tenant.name), now)
        for name in names:
            with contextlib.suppress(NotFound):
                backend.remove(Handle(ObjectKind.SNAPSHOT, name))
        self._arrivals.forget(tenant.name, names)
        return len(names)

    def scrub(self, tenant: Tenant) -> Report:
        """Re-hash every object; record damaged ones (and clear records of ones now whole)."""
        report = Report(tenant.name)
        backend = self._storage.for_maintenance(tenant)
        for kind in ObjectKind:
            if kind is ObjectKind.CONFIG:
                continue
            for info in backend.list(kind):
                detail = _damage(backend, info.handle)
                if detail is not None:
                    report.damaged.append(f"{info.handle}: {detail}")
                    self._record_damage(tenant, info.handle, detail)
        return report

    def _record_damage(self, tenant: Tenant, handle: Handle, detail: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO damage (tenant, kind, name, found_ms, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                (tenant.name, handle.kind.value, handle.name, epoch_ms(self._clock), detail),
            )

    def damage(self, tenant: str) -> list[dict[str, object]]:
        rows = self._db.read().execute(
            "SELECT kind, name, found_ms, detail FROM damage WHERE tenant = ? ORDER BY found_ms",
            (tenant,),
        )
        return [dict(zip(("kind", "name", "found_ms", "detail"), r, strict=True)) for r in rows]

    # ---- the schedule -------------------------------------------------------------------

    def start(self, gc_every_s: float, scrub_every_s: float) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(gc_every_s, scrub_every_s), name="janitor", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, gc_every_s: float, scrub_every_s: float) -> None:
        next_scrub = self._clock.monotonic() + scrub_every_s
        while not self._stop.wait(gc_every_s):
            scrub = self._clock.monotonic() >= next_scrub
            if scrub:
                next_scrub = self._clock.monotonic() + scrub_every_s
            for tenant in self._tenants.all():
                if self._stop.is_set():
                    return
                if self.may_write():
                    self._maintain(tenant, scrub)
            if self._partial is not None:
                remove_stale_parts(self._partial, epoch_s(self._clock))

    def _maintain(self, tenant: Tenant, scrub: bool) -> None:
        try:
            report = self.collect(tenant)
            log.info("gc %s: %s", tenant.name, report)
            if scrub:
                found = self.scrub(tenant)
                if found.damaged:
                    log.warning("scrub %s: %d damaged objects", tenant.name, len(found.damaged))
        except CairnError as exc:
            log.warning("maintenance of %s failed: %s", tenant.name, exc)


def _damage(backend: Backend, handle: Handle) -> str | None:
    try:
        data = backend.load(handle)
    except NotFound:
        return None  # removed since the listing
    except BackendError as exc:
        return f"unreadable: {exc}"
    try:
        verify_object(ObjectName.from_hex(handle.name), data)
    except CairnError as exc:
        return str(exc)
    return None


def remove_stale_parts(partial: Path, now: float, stale_s: float = 24 * 3600) -> int:
    """Remove parts of resumable uploads untouched for a day (server/uploads.py); how many.
    `now` is the server's time in seconds since the epoch (the files' mtimes are)."""
    removed = 0
    for path in partial.glob("*/*"):
        with contextlib.suppress(FileNotFoundError):
            if now - path.stat().st_mtime > stale_s:
                path.unlink()
                removed += 1
    return removed
