"""The server's side of replication (design 17.8): what the engine reads (`ServerSource`, the
tenants' raw storage, read only) and the parts `open_services` builds (the journal's database
and the server's ID)."""

from __future__ import annotations

from cairn.backends.base import Backend
from cairn.server.tenants import Tenant, TenantStore


class ServerSource:
    """`replication.engine.SourceStorage` over the server's tenants: their IDs, names and raw
    backends. Raw, not the storage stack: the engine only reads, and a read needs neither
    accounting nor the journal."""

    def __init__(self, tenants: TenantStore) -> None:
        self._tenants = tenants

    def _by_id(self) -> dict[str, Tenant]:
        return {tenant.id: tenant for tenant in self._tenants.all()}

    def tenant_ids(self) -> list[str]:
        return sorted(self._by_id())

    def tenant_name(self, tenant_id: str) -> str | None:
        tenant = self._by_id().get(tenant_id)
        return None if tenant is None else tenant.name

    def open(self, tenant_id: str) -> Backend:
        tenant = self._by_id().get(tenant_id)
        if tenant is None:
            return self._tenants.backend(Tenant(name="", id=tenant_id, quota=None, used=0))
        return self._tenants.backend(tenant)
