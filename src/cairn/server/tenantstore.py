"""Each tenant's storage stack, built in one place and used by every route and the janitor
(design 14.15).

    raw backend (server/layouts.py: the one factory; today the local layout in the data folder)
      → AccountedBackend: usage and the chunk table follow every save and removal; a client's
        save is checked against the quota, the server's own maintenance is charged but never
        refused (a tenant at its quota must be able to free space)
      → JournalBackend: every save and removal appended to the replication journal (design
        17.2), with the public ID of the token whose request made it
      → [the epoch fence, to come: `TenantStorage._wrap`]

No other module opens a tenant's backend for writing, so a change to how every write is
accounted, fenced or journalled is a change here.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from cairn.backends.base import Backend, Handle
from cairn.backends.wrappers.forwarding import ForwardingBackend
from cairn.replication.journal import Journal, JournalBackend
from cairn.server.chunktable import ChunkTable
from cairn.server.errors import QuotaExceeded
from cairn.server.tenants import Tenant, TenantStore


class AccountedBackend(ForwardingBackend):
    """A tenant's backend whose saves and removals update its usage and its chunk table.

    With `enforce_quota` (a client's request) a save of a new object reserves its size against
    the quota while it runs and is refused past it (QuotaExceeded); without (the janitor) it is
    only charged. Without `chunks` (a copy another server replicates in, design 17.14) no chunk
    table follows it."""

    def __init__(
        self,
        inner: Backend,
        tenants: TenantStore,
        tenant: Tenant,
        chunks: ChunkTable | None,
        *,
        enforce_quota: bool,
    ) -> None:
        super().__init__(inner)
        self._tenants = tenants
        self._tenant = tenant
        self._chunks = chunks
        self._enforce_quota = enforce_quota

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        if self._inner.exists(handle):  # same bytes, or the backend's conflict: no new usage
            self._inner.save(handle, data)
        elif self._enforce_quota:
            with self._tenants.charging(self._tenant, len(data)), self._saving(handle, data):
                self._inner.save(handle, data)
        else:
            with self._saving(handle, data):
                self._inner.save(handle, data)
            self._tenants.charged(self._tenant, len(data))

    def remove(self, handle: Handle) -> None:
        size = self._inner.stat(handle).size
        with self._removing(handle):
            self._inner.remove(handle)
        self._tenants.refunded(self._tenant, size)

    def _saving(self, handle: Handle, data: bytes | memoryview) -> AbstractContextManager[None]:
        if self._chunks is None:
            return nullcontext()
        return self._chunks.saving(self._tenant.name, handle, data)

    def _removing(self, handle: Handle) -> AbstractContextManager[None]:
        if self._chunks is None:
            return nullcontext()
        return self._chunks.removing(self._tenant.name, handle)


class TenantStorage:
    """Builds the storage stack of any tenant (see the module docstring)."""

    def __init__(
        self, tenants: TenantStore, chunks: ChunkTable, journal: Journal | None = None
    ) -> None:
        self._tenants = tenants
        self._chunks = chunks
        self._journal = journal

    def for_client(self, tenant: Tenant, token: str = "") -> Backend:
        """The stack a request works on: saves are checked against the tenant's quota and
        journalled with `token`, the public ID of the request's token."""
        return self._wrap(tenant, self._accounted(tenant, enforce_quota=True), token)

    def for_maintenance(self, tenant: Tenant) -> Backend:
        """The stack the janitor works on: its saves are charged, never refused."""
        return self._wrap(tenant, self._accounted(tenant, enforce_quota=False), "")

    def for_copy(self, tenant: Tenant, server: str, copy: str) -> Backend:
        """The stack of a copy another server replicates into `tenant`, its area (design
        17.14): charged to the area and checked against its quota; no chunk table (a copy's
        indexes are not the area's) and no journal (a received copy is not replicated onward)."""
        raw = self._tenants.copy_backend(tenant, server, copy)
        return AccountedBackend(raw, self._tenants, tenant, None, enforce_quota=True)

    def admit(self, tenant: Tenant, size: int, held_elsewhere: int = 0) -> None:
        """Refuse, before any byte of it is received, an object of `size` bytes that cannot
        fit in the quota beside what the tenant stores and `held_elsewhere` (parts of its other
        resumable uploads, which are on the server's disk too)."""
        current = self._tenants.get(tenant.name)
        if current.quota is not None and current.used + held_elsewhere + size > current.quota:
            raise QuotaExceeded(
                f"quota exceeded: tenant {current.name} uses {current.used} of "
                f"{current.quota} bytes; this object needs {size} more",
                used=current.used,
                quota=current.quota,
                needed=size,
            )

    def _accounted(self, tenant: Tenant, *, enforce_quota: bool) -> AccountedBackend:
        raw = self._tenants.backend(tenant)
        return AccountedBackend(
            raw, self._tenants, tenant, self._chunks, enforce_quota=enforce_quota
        )

    def _wrap(self, tenant: Tenant, accounted: Backend, token: str) -> Backend:
        """The layers above accounting: the replication journal (records each save and removal
        for the targets, design 17.2), and to come above it the epoch fence (refuses the writes
        of a demoted primary, so a fenced write is neither charged nor journalled)."""
        if self._journal is None:
            return accounted
        return JournalBackend(accounted, self._journal, tenant.id, token)
