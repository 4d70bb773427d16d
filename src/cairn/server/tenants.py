"""Tenants: a name, a storage root, a quota and the bytes in use (design 14.2, 14.4).

Each tenant's objects live in their own repository, made and opened by the one factory of raw
backends (server/layouts.py: a local-backend layout under ``tenants/<id>/``, or, when the
server runs with ``--storage LOCATION`` (an S3 bucket, say), ``LOCATION/tenants/<id>``; the
database stays in the data folder); the ID is
random and made here, so no request text ever becomes part of a path. What is stacked on the raw
backend (accounting, quota) is built by server/tenantstore.py. Usage is counted in the
bytes of stored objects and changed under the tenant's lock together with the save or removal
it accounts for, so concurrent uploads cannot together pass the quota.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cairn.backends.base import Backend, ObjectKind
from cairn.core.clock import SYSTEM_CLOCK, Clock, epoch_ms
from cairn.core.units import format_size
from cairn.server.copysenders import CopySenders, MovedAside
from cairn.server.db import Database
from cairn.server.errors import BadRequest, Conflict, NoSuchObject, QuotaExceeded
from cairn.server.layouts import CopyPlace, LocalLayouts, RawBackends
from cairn.server.retention import ServerPolicy

TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
MAX_QUOTA = 2**63 - 1
"""SQLite's largest integer: 8 EiB."""


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    id: str
    quota: int | None
    used: int


class TenantStore:
    """Tenants in the database, and each one's raw backend from `raw` (by default a local
    layout under `root`)."""

    def __init__(
        self,
        db: Database,
        root: Path,
        clock: Clock = SYSTEM_CLOCK,
        raw: RawBackends | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._raw = LocalLayouts(root) if raw is None else raw
        self._locks: dict[str, threading.Lock] = {}
        self._reserved: dict[str, int] = {}
        self._guard = threading.Lock()
        self.senders = CopySenders(db, clock)
        """Which replication token writes each sending server's copies (design 17.14)."""
        self.moved = MovedAside(db, clock)
        """What replication tokens moved aside in copies, and when (design 17.14)."""

    def create(self, name: str, quota: int | None = None) -> Tenant:
        if not TENANT_NAME.fullmatch(name):  # match() would let a trailing newline through
            raise BadRequest(f"tenant name {name!r}: use 1-63 lowercase letters, digits and dashes")
        _check_quota(quota)
        tenant_id = secrets.token_hex(16)
        with self._db.write() as conn:
            if conn.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"tenant {name!r} exists")
            self._raw.create(tenant_id)
            conn.execute(
                "INSERT INTO tenants (name, id, quota, used, created_ms) VALUES (?, ?, ?, 0, ?)",
                (name, tenant_id, quota, epoch_ms(self._clock)),
            )
        return Tenant(name, tenant_id, quota, 0)

    def get(self, name: str) -> Tenant:
        row = (
            self._db.read()
            .execute("SELECT name, id, quota, used FROM tenants WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None:
            raise NoSuchObject("no such object")
        return Tenant(*row)

    def all(self) -> list[Tenant]:
        rows = self._db.read().execute("SELECT name, id, quota, used FROM tenants ORDER BY name")
        return [Tenant(*row) for row in rows]

    def set_quota(self, name: str, quota: int | None) -> None:
        _check_quota(quota)
        with self._db.write() as conn:
            if conn.execute("UPDATE tenants SET quota = ? WHERE name = ?", (quota, name)).rowcount:
                return
        raise NoSuchObject(f"no tenant {name!r}")

    def retention(self, name: str) -> ServerPolicy | None:
        row = (
            self._db.read()
            .execute("SELECT retention FROM tenants WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None:
            raise NoSuchObject(f"no tenant {name!r}")
        return ServerPolicy.from_json(row[0]) if row[0] else None

    def set_retention(self, name: str, policy: ServerPolicy | None) -> None:
        text = policy.to_json() if policy is not None else None
        with self._db.write() as conn:
            if conn.execute(
                "UPDATE tenants SET retention = ? WHERE name = ?", (text, name)
            ).rowcount:
                return
        raise NoSuchObject(f"no tenant {name!r}")

    def backend(self, tenant: Tenant) -> Backend:
        """The tenant's raw backend: for reads and the recount. Writes go through the stack
        server/tenantstore.py builds on it, which keeps usage and the chunk table right."""
        return self._raw.open(tenant.id)

    def storage_location(self, folder: str) -> str | None:
        """The location of `folder` in the tenants' storage (None: the data folder)."""
        return self._raw.storage_location(folder)

    def copy_backend(
        self, tenant: Tenant, server: str, copy: str, folder: str = "copies"
    ) -> Backend:
        """The raw backend of a copy another server replicates into `tenant` (its area, design
        17.14); NoSuchObject until the copy's first write made it (`make_copy`)."""
        place = CopyPlace(folder, tenant.id, server, copy)
        if not self.has_copy(tenant, server, copy):
            raise NoSuchObject("no such object")
        return self._raw.open_copy(place, create=True)  # recorded: its layout is due

    def make_copy(self, tenant: Tenant, server: str, copy: str) -> None:
        """Record the copy (so the recount finds it) and make its layout, once."""
        if self.has_copy(tenant, server, copy):
            return
        self._raw.open_copy(CopyPlace("copies", tenant.id, server, copy), create=True)
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO copies (tenant, server, copy, created_ms) "
                "VALUES (?, ?, ?, ?)",
                (tenant.name, server, copy, epoch_ms(self._clock)),
            )

    def has_copy(self, tenant: Tenant, server: str, copy: str) -> bool:
        row = (
            self._db.read()
            .execute(
                "SELECT 1 FROM copies WHERE tenant = ? AND server = ? AND copy = ?",
                (tenant.name, server, copy),
            )
            .fetchone()
        )
        return row is not None

    def copies(self, tenant: Tenant) -> list[tuple[str, str]]:
        """The copies in `tenant`'s area, as (server, copy)."""
        rows = self._db.read().execute(
            "SELECT server, copy FROM copies WHERE tenant = ? ORDER BY server, copy", (tenant.name,)
        )
        return [(str(server), str(copy)) for server, copy in rows]

    def _stored_backends(self, tenant: Tenant) -> list[Backend]:
        """Every backend whose bytes are on `tenant`'s quota: its own, its copies', and what
        was moved aside from them (design 17.14)."""
        backends = [self.backend(tenant)]
        for server, copy in self.copies(tenant):
            for folder in ("copies", "removed"):
                place = CopyPlace(folder, tenant.id, server, copy)
                backends.append(self._raw.open_copy(place, create=True))
        return backends

    @contextmanager
    def charging(self, tenant: Tenant, size: int) -> Iterator[None]:
        """Reserve `size` bytes against the quota for the body of the `with` (the save), then
        record them as used if it succeeds. Reservations of uploads in flight count against the
        quota too, so parallel uploads cannot pass it together; the save itself runs unlocked."""
        with self._lock_of(tenant):
            current = self.get(tenant.name)
            pending = self._reserved.get(tenant.id, 0)
            if current.quota is not None and current.used + pending + size > current.quota:
                raise QuotaExceeded(
                    f"quota exceeded: tenant {tenant.name} uses {format_size(current.used)} "
                    f"({current.used} bytes) of its {format_size(current.quota)} "
                    f"({current.quota} bytes); this object needs {format_size(size)} more",
                    used=current.used,
                    quota=current.quota,
                    needed=size,
                )
            self._reserved[tenant.id] = pending + size
        try:
            yield
        except BaseException:
            self._unreserve(tenant, size)
            raise
        with self._lock_of(tenant):
            self._add_usage(tenant.name, size)
            self._reserved[tenant.id] -= size

    def _unreserve(self, tenant: Tenant, size: int) -> None:
        with self._lock_of(tenant):
            self._reserved[tenant.id] -= size

    def charged(self, tenant: Tenant, size: int) -> None:
        """Record `size` bytes the server's own maintenance wrote (never refused)."""
        with self._lock_of(tenant):
            self._add_usage(tenant.name, size)

    def refunded(self, tenant: Tenant, size: int) -> None:
        """Record that `size` bytes were removed."""
        with self._lock_of(tenant):
            self._add_usage(tenant.name, -size)

    def recount(self, tenant: Tenant) -> int:
        """Count the bytes on storage again (at start: a crash may have left usage stale)."""
        backends = self._stored_backends(tenant)
        with self._lock_of(tenant):
            used = sum(
                info.size
                for backend in backends
                for kind in ObjectKind
                for info in backend.list(kind)
            )
            with self._db.write() as conn:
                conn.execute("UPDATE tenants SET used = ? WHERE name = ?", (used, tenant.name))
        return used

    def _add_usage(self, name: str, delta: int) -> None:
        with self._db.write() as conn:
            conn.execute("UPDATE tenants SET used = MAX(0, used + ?) WHERE name = ?", (delta, name))

    def _lock_of(self, tenant: Tenant) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(tenant.id, threading.Lock())


def _check_quota(quota: int | None) -> None:
    if quota is not None and (isinstance(quota, bool) or not 0 <= quota <= MAX_QUOTA):
        raise BadRequest(f"a quota is a number of bytes, from 0 to {MAX_QUOTA}")
