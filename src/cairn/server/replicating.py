"""The server's side of replication (design 17.11, 17.12): the scheduler thread in `serve`, over
the targets in `DATA/replication.db`, started only when targets exist; each run in the audit
log; alerts through the `--notify` channels; after each pass, the server's sealed state to the
targets (`StateCarrier`, 17.15).

The runner (the engine's `Replicator`) is given by the composition root (`open_services`); so
is `wake`, the event the journal sets after each append, so a continuous target starts within
a second of a new object.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping

from cairn.core.clock import Clock
from cairn.replication.credentials import target_environ
from cairn.replication.engine import Replicator, TargetStorage
from cairn.replication.layout import TargetLayouts, open_target
from cairn.replication.model import Target
from cairn.replication.scheduler import WORKERS, Runner, Scheduler, TargetEvent
from cairn.replication.targets import TargetStore
from cairn.server.adminops import AdminOps
from cairn.server.alerting import JobAlerts
from cairn.server.statecarry import StateCarrier
from cairn.server.tenants import TenantStore

log = logging.getLogger("cairn.server")


class TargetOpener:
    """Each target's per-tenant backends (`TargetLayouts`: `LOCATION/<server-id>/<tenant-id>`),
    opened with the server's environment (`environ`, the process's by default) and the
    target's credentials file laid over it (17.9), and kept open from run to run (an S3 client
    costs a quarter of a second to set up). The credentials file is read at every call: a
    target whose location or credentials changed gets new backends, so a rotated secret is
    taken at the next run."""

    def __init__(self, server_id: str, environ: Mapping[str, str] | None = None) -> None:
        self._server_id = server_id
        self._environ = environ
        self._open: dict[str, tuple[Mapping[str, str], TargetLayouts]] = {}
        self._guard = threading.Lock()

    def __call__(self, target: Target) -> TargetStorage:
        environ = target_environ(target, self._environ)  # raises E127/E120: the run fails
        with self._guard:
            found = self._open.get(target.name)
            if found is not None:
                opened_with, layouts = found
                if layouts.location == target.location and opened_with == environ:
                    return layouts
                layouts.close()
            opener = functools.partial(open_target, environ=environ)
            layouts = TargetLayouts(target.location, self._server_id, opener)
            self._open[target.name] = (environ, layouts)
            return layouts

    def close(self) -> None:
        with self._guard:
            opened, self._open = [layouts for _, layouts in self._open.values()], {}
        for layouts in opened:
            layouts.close()


class Replication:
    """Starts and stops the scheduler; see the module docstring."""

    def __init__(
        self,
        targets: TargetStore,
        tenants: TenantStore,
        admin: AdminOps,
        runner: Runner,
        clock: Clock,
        opener: Callable[[Target], TargetStorage],
        alerts: JobAlerts | None = None,
        poll_s: float = 5.0,
        carrier: StateCarrier | None = None,
    ) -> None:
        self.wake = threading.Event()
        self._opener = opener
        self._targets = targets
        self._carrier = carrier
        self._scheduler = Scheduler(
            targets.db,
            targets,
            runner,
            opener,
            clock,
            on_run=admin.record_replication_run,
            on_event=self._alert,
            tenant_ids=lambda: {t.name: t.id for t in tenants.all()},
            poll_s=poll_s,
            wake=self.wake,
            after_tick=self._carry,
            auditor=runner if isinstance(runner, Replicator) else None,
            on_audit=admin.record_replication_audit,
            workers=WORKERS,
        )
        self._alerts = alerts
        self._running = False

    @property
    def scheduler(self) -> Scheduler:
        return self._scheduler

    def start(self) -> None:
        """Start the thread. It reads the registry on every pass, so a target added while
        `serve` runs is taken up within a poll (5 s)."""
        self._scheduler.start()
        self._running = True
        log.info("replicating to %d target(s)", len(self._targets.list()))

    def stop(self) -> None:
        """Stop after the run in progress, before the databases close."""
        if self._running:
            self._scheduler.stop()
            if isinstance(self._opener, TargetOpener):
                self._opener.close()
            if self._carrier is not None:
                self._carrier.close()
            self._running = False

    def _carry(self) -> None:
        """After each pass: the sealed server state to the targets that are due (17.15)."""
        if self._carrier is not None:
            self._carrier.carry(self._targets.list())

    def _alert(self, event: TargetEvent) -> None:
        log.warning("%s", event.message)
        if self._alerts is not None:
            self._alerts.replication_event(event)
