"""The composition root of the server: settings → database → stores → route table → ASGI app."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cairn.backends.errors import BackendError
from cairn.backends.location import open_backend
from cairn.backends.probe import probe
from cairn.core.clock import Clock, SystemClock
from cairn.replication.db import ReplicationDb
from cairn.replication.engine import Replicator
from cairn.replication.journal import Journal
from cairn.replication.layout import server_id
from cairn.replication.scheduler import Runner
from cairn.replication.targets import TargetStore
from cairn.server.adminops import AdminOps
from cairn.server.alerting import JobAlerts
from cairn.server.arrivals import Arrivals
from cairn.server.audit import AuditLog
from cairn.server.auth import Throttle, TokenStore
from cairn.server.chunktable import ChunkTable
from cairn.server.context import Services, Settings
from cairn.server.db import Database
from cairn.server.errors import NoDataFolder, NoSuchObject, ServerError, ServerSetupError
from cairn.server.janitor import Janitor
from cairn.server.jobresults import JobResults
from cairn.server.layouts import raw_backends
from cairn.server.lockowners import LockOwners
from cairn.server.metrics import Metrics
from cairn.server.openapi import openapi_document
from cairn.server.replicating import Replication, TargetOpener
from cairn.server.replication import ServerSource
from cairn.server.routes import ROUTES, error_response, guard
from cairn.server.state import ServerState
from cairn.server.statecarry import StateCarrier
from cairn.server.tenants import TenantStore
from cairn.server.tenantstore import TenantStorage
from cairn.server.users import UserStore

log = logging.getLogger("cairn.server")
DATABASE = "server.db"
REPLICATION_DATABASE = "replication.db"


def open_services(
    settings: Settings,
    *,
    create: bool = True,
    clock: Clock | None = None,
    runner: Runner | None = None,
    replicate: bool = False,
) -> Services:
    """Open the data folder and everything that lives in it. With `create` (serve, init, tests)
    a missing data folder is made; without it (every other admin command) a folder that is not
    a data folder is refused, so a mistyped --data does not make a new, empty server. `clock`
    is the one clock every part is given (the machine's unless a test passes its own); with a
    replication `runner`, or with `replicate` (serve: the engine, `Replicator`), the services carry
    the replication scheduler, woken by the journal after each append."""
    clock = SystemClock() if clock is None else clock
    if create:
        init_data_folder(settings.data)
    elif not (settings.data / DATABASE).is_file():
        raise NoDataFolder(
            f"{settings.data} is not a Cairn server's data folder (it has no {DATABASE}): check "
            f"--data, or make one with `cairn server init --data {settings.data}`"
        )
    db = Database(settings.data / DATABASE)
    chunks = ChunkTable(db, clock=clock)
    raw = raw_backends(settings, tenant_storage(settings))
    tenants = TenantStore(db, settings.data / "tenants", clock, raw)
    replication_db = ReplicationDb(settings.data / REPLICATION_DATABASE)
    journal = Journal(replication_db, clock)
    storage = TenantStorage(tenants, chunks, journal)
    arrivals = Arrivals(db, clock)
    lock_owners = LockOwners(db)
    jobs = JobResults(db, clock)
    tokens = TokenStore(db, clock)
    audit = AuditLog(db, clock)
    targets = TargetStore(replication_db, clock)
    services = Services(
        settings=settings,
        db=db,
        tokens=tokens,
        tenants=tenants,
        storage=storage,
        arrivals=arrivals,
        lock_owners=lock_owners,
        audit=audit,
        janitor=Janitor(
            db,
            tenants,
            storage,
            arrivals,
            lock_owners,
            grace_ms=settings.gc_grace_ms,
            partial=settings.data / "partial",
            clock=clock,
        ),
        metrics=Metrics(tenants, targets, clock),
        jobs=jobs,
        alerts=None
        if settings.notify is None
        else JobAlerts.from_file(
            settings.notify, settings.data / "alerts.json", jobs, tenants, clock
        ),
        chunks=chunks,
        admin=AdminOps(
            db,
            tenants,
            tokens,
            audit,
            ServerState(db, settings.data, raw, audit, clock),
            targets,
            UserStore(db, clock),
        ),
        targets=targets,
        uploads=threading.BoundedSemaphore(settings.max_uploads),
        throttle=Throttle(clock=clock.monotonic),
        clock=clock,
        replication_db=replication_db,
        server_id=server_id(settings.data),
    )
    if replicate and runner is None:
        runner = Replicator(replication_db, ServerSource(tenants), services.server_id, clock)
    if runner is not None:
        services.replication = Replication(
            targets,
            tenants,
            services.admin,
            runner,
            clock,
            TargetOpener(services.server_id),
            services.alerts,
            carrier=StateCarrier(
                ServerState(db, settings.data, raw, audit, clock),
                db,
                settings.data,
                services.server_id,
                clock,
            ),
        )
        journal.wake = services.replication.wake
    return services


def init_data_folder(data: Path) -> bool:
    """Make `data` a server data folder: the folder (0700), `tenants/`, and the database (0600).
    Returns False when it already was one (nothing is changed then)."""
    existed = (data / DATABASE).is_file()
    try:
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        (data / "tenants").mkdir(exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ServerSetupError(f"cannot use {data} as the data folder: {exc}") from exc
    if not existed:
        Database(data / DATABASE).close()
    return not existed


def tenant_storage(settings: Settings) -> str | None:
    """Where tenants' objects live: `settings.storage`, written down in the data folder the
    first time, so every later command (tenant add, gc, scrub) finds the same place; a server
    whose tenants live in one place is never pointed at another."""
    recorded_file = settings.data / "storage"
    try:
        recorded = recorded_file.read_text().strip() if recorded_file.exists() else None
        if settings.storage is None or settings.storage == recorded:
            return recorded
        if recorded is not None:
            raise ServerSetupError(
                f"the tenants of {settings.data} live in {recorded}, not {settings.storage}: "
                "give that --storage, or none"
            )
        if any((settings.data / "tenants").iterdir()):
            raise ServerSetupError(
                f"the tenants of {settings.data} live in its tenants folder; --storage applies "
                "to a new data folder only"
            )
        recorded_file.write_text(settings.storage + "\n")
    except OSError as exc:
        raise ServerSetupError(f"cannot use {recorded_file}: {exc}") from exc
    return settings.storage


def probe_storage(services: Services) -> None:
    """Before serving tenants from a storage other than the data folder, prove it can write,
    read, list, refuse an overwrite and delete (backends/probe.py); else refuse to start."""
    location = services.tenants.storage_location("probe")
    if location is None:
        return
    try:
        backend = open_backend(location)
        try:
            probe(backend)
        finally:
            backend.close()
    except BackendError as exc:
        raise ServerSetupError(f"the tenants' storage is not usable: {exc}") from exc


def create_app(services: Services) -> Starlette:
    routes = [Route(spec.path, guard(spec, services), methods=[spec.method]) for spec in ROUTES]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tenants = services.tenants
        threading.Thread(
            target=services.chunks.warm,
            args=([(t.name, tenants.backend(t)) for t in tenants.all()],),
            name="chunk-tables",
            daemon=True,
        ).start()
        settings = services.settings
        standby = services.standby
        if standby is not None:  # GC, scrubs and replication run only while this server leads
            services.janitor.may_write = standby.is_writable
            if services.replication is not None:
                services.replication.scheduler.may_run = standby.is_writable
        if settings.gc_every_s is not None:
            services.janitor.start(settings.gc_every_s, settings.scrub_every_s)
        if services.alerts is not None:
            services.alerts.start()
        if services.replication is not None:
            services.replication.start()
        if standby is not None:
            standby.start()
        try:
            yield
        finally:
            if standby is not None:
                standby.stop()
            if services.replication is not None:
                services.replication.stop()
            if services.alerts is not None:
                services.alerts.stop()
            services.janitor.stop()
            services.audit.stop()
            log.info("stopped: %s", services.settings.data)

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # a path is a route or a 404, never a redirect
    app.state.openapi = openapi_document()
    app.state.services = services
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route, wrong method) answer like a missing object."""
    return error_response(NoSuchObject("no such object"), head=request.method == "HEAD")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return error_response(ServerError("the server failed unexpectedly; see its log"))
