"""What needs an administrator now (design 18.4): derived from the server's state when the page
is opened, not from what the alerter has sent — replication targets failing, lagging or paused
(with their last error), and machines whose last run failed or that are late, have missed a
slot or never backed up. A tenant admin sees their tenant's machines only."""

from __future__ import annotations

from dataclasses import dataclass

from cairn.core.clock import epoch_ms, utc_now
from cairn.core.units import format_duration
from cairn.replication.status import State, target_status
from cairn.server.context import Services
from cairn.server.users import ConsoleRole, ConsoleUser
from cairn.web.dashboard import MachineRow, machine_row, show_time, visible_tenants
from cairn.web.staleness import Staleness

FAILED = frozenset({"failure", "interrupted"})
OVERDUE = frozenset({Staleness.LATE.value, Staleness.MISSED.value, Staleness.NEVER.value})


@dataclass(frozen=True, slots=True)
class TargetAlert:
    name: str
    state: str
    lag: str
    failures: int
    last_error: str
    last_success: str


@dataclass(frozen=True, slots=True)
class Alerts:
    machines: list[MachineRow]
    targets: list[TargetAlert] | None
    """None for a tenant admin."""

    @property
    def count(self) -> int:
        return len(self.machines) + len(self.targets or ())


def gather_alerts(services: Services, user: ConsoleUser) -> Alerts:
    now = epoch_ms(services.clock)
    machines = [
        row
        for tenant in visible_tenants(services, user)
        for row in (machine_row(tenant.name, s, now) for s in services.jobs.latest(tenant.name))
        if row.outcome in FAILED or row.staleness in OVERDUE
    ]
    targets = None if user.role is ConsoleRole.TENANT_ADMIN else _targets(services)
    return Alerts(machines, targets)


def _targets(services: Services) -> list[TargetAlert]:
    ids = {t.name: t.id for t in services.tenants.all()}
    now = utc_now(services.clock)
    alerts = []
    for target in services.targets.list():
        status = target_status(services.targets.db, target, now, ids)
        if status.state is State.OK:
            continue
        alerts.append(
            TargetAlert(
                target.name,
                status.state.value,
                format_duration(status.lag_s),
                status.failures,
                status.last_error or "—",
                show_time(status.last_success_ms),
            )
        )
    return alerts
