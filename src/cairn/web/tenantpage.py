"""One tenant's page (design 18.4): its machines with their staleness, its snapshots as the
server knows them (arrival, size, the machine whose job reported it — no file names: the server
has no key), its stored bytes against its quota, and, for the server's own roles, its
replication state on each target that takes it."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cairn.core.clock import epoch_ms, utc_now
from cairn.core.units import format_duration, format_size
from cairn.replication.model import Target
from cairn.replication.status import target_status
from cairn.server.context import Services
from cairn.server.errors import ServerError
from cairn.server.tenants import Tenant
from cairn.server.users import ConsoleRole, ConsoleUser
from cairn.web.dashboard import MachineRow, machine_row, show_time

RECENT = 20
"""Snapshots listed on the page, newest first; the count covers them all."""


class NoSuchTenantPage(ServerError):
    """The tenant does not exist, or the user may not see it: the same answer for both, so a
    tenant admin cannot learn which other tenants exist."""

    status, code = 404, "CAIRN-E155"


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    arrived: str
    size: str
    host: str


@dataclass(frozen=True, slots=True)
class CopyRow:
    target: str
    state: str
    lag: str
    pending: str
    last_success: str


@dataclass(frozen=True, slots=True)
class TenantPage:
    name: str
    used: str
    quota: str
    percent: int | None
    snapshots: int
    recent: list[SnapshotRow]
    machines: list[MachineRow]
    copies: list[CopyRow] | None
    """None for a tenant admin: targets are the server's (18.1)."""


def may_see(user: ConsoleUser, tenant: str) -> bool:
    return user.role is not ConsoleRole.TENANT_ADMIN or user.tenant == tenant


def gather_tenant(services: Services, user: ConsoleUser, name: str) -> TenantPage:
    tenant = next((t for t in services.tenants.all() if t.name == name), None)
    if tenant is None or not may_see(user, name):
        raise NoSuchTenantPage(f"no tenant {name[:100]!r} you may see")
    now = epoch_ms(services.clock)
    count, recent = _snapshots(services, name)
    quota = tenant.quota
    return TenantPage(
        name=name,
        used=format_size(tenant.used),
        quota="none" if quota is None else format_size(quota),
        percent=None if not quota else min(100, tenant.used * 100 // quota),
        snapshots=count,
        recent=recent,
        machines=[machine_row(name, s, now) for s in services.jobs.latest(name)],
        copies=None if user.role is ConsoleRole.TENANT_ADMIN else _copies(services, tenant),
    )


def _snapshots(services: Services, tenant: str) -> tuple[int, list[SnapshotRow]]:
    """The count and the newest RECENT arrivals; the machine is the host whose job result
    named the snapshot, when one did."""
    conn = services.db.read()
    (count,) = conn.execute("SELECT COUNT(*) FROM snapshots WHERE tenant = ?", (tenant,)).fetchone()
    rows = conn.execute(
        "SELECT s.received_ms, s.size, (SELECT j.host FROM job_results j WHERE j.tenant = "
        "s.tenant AND j.snapshot = s.name ORDER BY j.seq DESC LIMIT 1) FROM snapshots s "
        "WHERE s.tenant = ? ORDER BY s.received_ms DESC, s.name LIMIT ?",
        (tenant, RECENT),
    )
    return int(count), [
        SnapshotRow(show_time(ms), format_size(size), host or "—") for ms, size, host in rows
    ]


def _copies(services: Services, tenant: Tenant) -> list[CopyRow]:
    """Each target that takes this tenant, with the lag of this tenant's changes alone (the
    target's own filters narrowed to the tenant)."""
    ids = {t.name: t.id for t in services.tenants.all()}
    now = utc_now(services.clock)
    rows = []
    for target in services.targets.list():
        if target.filters.tenants and tenant.name not in target.filters.tenants:
            continue
        status = target_status(services.targets.db, _narrowed(target, tenant.name), now, ids)
        rows.append(
            CopyRow(
                target.name,
                status.state.value,
                format_duration(status.lag_s),
                f"{status.lag_objects} ({format_size(status.lag_bytes)})",
                show_time(status.last_success_ms),
            )
        )
    return rows


def _narrowed(target: Target, tenant: str) -> Target:
    return replace(target, filters=replace(target.filters, tenants=(tenant,)))
