"""The server's side of replication (design 17.7, 17.8): the scheduler thread in `serve`, over
the targets in `DATA/replication.db`, started only when targets exist; each run in the audit
log; alerts through the `--notify` channels.

The runner (the engine's `Replicator`) is given by the composition root (`open_services`); so
is `wake`, the event the journal sets after each append, so a continuous target starts within
a second of a new object.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cairn.backends.base import Backend
from cairn.backends.location import open_backend
from cairn.core.clock import Clock
from cairn.replication.model import Target
from cairn.replication.scheduler import Runner, Scheduler, TargetEvent
from cairn.replication.targets import TargetStore
from cairn.server.adminops import AdminOps
from cairn.server.alerting import JobAlerts
from cairn.server.tenants import TenantStore

log = logging.getLogger("cairn.server")


def open_target(target: Target) -> Backend:
    """A target's backend, with the server's environment for its credentials (as the storage
    probe opens `--storage`)."""
    return open_backend(target.location)


class Replication:
    """Starts and stops the scheduler; see the module docstring."""

    def __init__(
        self,
        targets: TargetStore,
        tenants: TenantStore,
        admin: AdminOps,
        runner: Runner,
        clock: Clock,
        alerts: JobAlerts | None = None,
        opener: Callable[[Target], Backend] = open_target,
        poll_s: float = 5.0,
    ) -> None:
        self.wake = threading.Event()
        self._targets = targets
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
        )
        self._alerts = alerts
        self._running = False

    @property
    def scheduler(self) -> Scheduler:
        return self._scheduler

    def start(self) -> bool:
        """Start the thread if any target exists (a target added later is picked up at the
        next start of `serve`); returns whether it started."""
        if not self._targets.list():
            return False
        self._scheduler.start()
        self._running = True
        log.info("replicating to %d target(s)", len(self._targets.list()))
        return True

    def stop(self) -> None:
        """Stop after the run in progress, before the databases close."""
        if self._running:
            self._scheduler.stop()
            self._running = False

    def _alert(self, event: TargetEvent) -> None:
        log.warning("%s", event.message)
        if self._alerts is not None:
            self._alerts.replication_event(event)
