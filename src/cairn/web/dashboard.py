"""What the dashboard shows (design 18.4), gathered from the server's state for one user: the
latest result of every machine's jobs, each tenant's usage against its quota, and (for the
server's own roles) the replication targets. A tenant admin sees only their tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cairn.core.clock import epoch_ms, utc_now
from cairn.core.units import format_duration, format_size
from cairn.replication.status import target_status
from cairn.server.context import Services
from cairn.server.jobresults import JobState
from cairn.server.tenants import Tenant
from cairn.server.users import ConsoleRole, ConsoleUser
from cairn.web.staleness import staleness


@dataclass(frozen=True, slots=True)
class MachineRow:
    tenant: str
    host: str
    job: str
    last_backup: str
    outcome: str
    """As the agent reported it (jobresults.OUTCOMES); also the row's class: a failure or an
    interrupted run shows red."""
    message: str
    last_success: str
    schedule: str
    staleness: str
    """Against the job's own schedule (web/staleness.py): on-time, late, missed, never,
    unscheduled; also a class: late shows amber, missed and never red."""
    due: str


@dataclass(frozen=True, slots=True)
class TenantRow:
    name: str
    used: str
    quota: str
    percent: int | None


@dataclass(frozen=True, slots=True)
class TargetRow:
    name: str
    state: str
    lag: str
    last_success: str


@dataclass(frozen=True, slots=True)
class Dashboard:
    machines: list[MachineRow]
    tenants: list[TenantRow]
    targets: list[TargetRow] | None
    """None for a tenant admin: targets are the server's, not a tenant's."""


def gather(services: Services, user: ConsoleUser) -> Dashboard:
    tenants = visible_tenants(services, user)
    machines = [row for t in tenants for row in _machines(services, t)]
    rows = [_tenant_row(t) for t in tenants]
    targets = None if user.role is ConsoleRole.TENANT_ADMIN else _targets(services)
    return Dashboard(machines, rows, targets)


def visible_tenants(services: Services, user: ConsoleUser) -> list[Tenant]:
    every = services.tenants.all()
    if user.role is ConsoleRole.TENANT_ADMIN:
        return [t for t in every if t.name == user.tenant]
    return every


def _machines(services: Services, tenant: Tenant) -> list[MachineRow]:
    now = epoch_ms(services.clock)
    return [machine_row(tenant.name, state, now) for state in services.jobs.latest(tenant.name)]


def machine_row(tenant: str, state: JobState, now_ms: int) -> MachineRow:
    due = state.due_ms
    return MachineRow(
        tenant=tenant,
        host=state.latest.host,
        job=state.latest.job,
        last_backup=show_time(state.latest.ended_ms),
        outcome=state.latest.outcome,
        message=state.latest.message,
        last_success=show_time(state.last_success_ms),
        schedule=state.latest.schedule or "—",
        staleness=staleness(state, now_ms).value,
        due="—" if due is None else show_time(due),
    )


def _tenant_row(tenant: Tenant) -> TenantRow:
    quota = tenant.quota
    percent = None if not quota else min(100, tenant.used * 100 // quota)
    shown = "none" if quota is None else format_size(quota)
    return TenantRow(tenant.name, format_size(tenant.used), shown, percent)


def _targets(services: Services) -> list[TargetRow]:
    ids = {t.name: t.id for t in services.tenants.all()}
    now = utc_now(services.clock)
    rows = []
    for target in services.targets.list():
        status = target_status(services.targets.db, target, now, ids)
        rows.append(
            TargetRow(
                target.name,
                status.state.value,
                format_duration(status.lag_s),
                show_time(status.last_success_ms),
            )
        )
    return rows


def show_time(ms: int | None, seconds: bool = False) -> str:
    if ms is None:
        return "never"
    form = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime(form)
