"""What a route handler is given: the request, who made it, the tenant, and the services."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request

from cairn.backends.base import Backend
from cairn.core.clock import SYSTEM_CLOCK, Clock
from cairn.failover.holder import LeaseHolder
from cairn.replication.db import ReplicationDb
from cairn.replication.targets import TargetStore
from cairn.server.adminops import Actor, AdminOps
from cairn.server.alerting import JobAlerts
from cairn.server.arrivals import Arrivals
from cairn.server.audit import AuditLog
from cairn.server.auth import Principal, Throttle, TokenStore
from cairn.server.chunktable import ChunkTable
from cairn.server.db import Database
from cairn.server.janitor import Janitor
from cairn.server.jobresults import JobResults
from cairn.server.lockowners import LockOwners
from cairn.server.metrics import Metrics
from cairn.server.replicating import Replication
from cairn.server.tenants import Tenant, TenantStore
from cairn.server.tenantstore import TenantStorage


@dataclass(frozen=True, slots=True)
class Settings:
    """How the server runs; the CLI fills these from its options."""

    data: Path
    max_object_bytes: int = 64 * 1024 * 1024
    max_uploads: int = 16
    """Uploads held in memory at once; more are answered 503 with Retry-After."""
    gc_every_s: float | None = None
    """Run retention and garbage collection for every tenant this often (None: only on demand)."""
    scrub_every_s: float = 24 * 3600.0
    gc_grace_ms: int = 0
    backup_releases_locks: bool = False
    """Let a backup token remove the locks it saved itself (`--backup-releases-locks`); by
    default a backup token removes nothing at all (design 14.3)."""
    notify: Path | None = None
    """A file of `[[notify]]` channels and `[alerts]`: alert on the job results agents report."""
    storage: str | None = None
    """Where tenants' objects live (`--storage`, a backend location such as an S3 bucket);
    None: in the data folder. Recorded in the data folder at first use, so every later command
    on it finds the same storage."""


@dataclass(slots=True)
class Services:
    """Everything the routes share, built once by the composition root (app.py)."""

    settings: Settings
    db: Database
    tokens: TokenStore
    tenants: TenantStore
    storage: TenantStorage
    """Every tenant's storage stack (design 14.15): the one way a route or the janitor writes."""
    arrivals: Arrivals
    lock_owners: LockOwners
    audit: AuditLog
    janitor: Janitor
    metrics: Metrics
    jobs: JobResults
    chunks: ChunkTable
    admin: AdminOps
    targets: TargetStore
    """The replication targets (design 17.5), in `DATA/replication.db`."""
    clock: Clock = SYSTEM_CLOCK
    """The server's one clock (design 14.15): every part that reads the time was given it."""
    alerts: JobAlerts | None = None
    replication: Replication | None = None
    """The replication scheduler (design 17.7), when the composition root was given a runner;
    `serve` starts it when targets exist."""
    replication_db: ReplicationDb | None = None
    """`DATA/replication.db`: the journal every tenant's storage stack writes, the targets, their
    cursors and runs (design 17.2, 17.8)."""
    server_id: str = ""
    """`DATA/server-id`: this server's folder on every target (design 17.3)."""
    standby: LeaseHolder | None = None
    """The lease holder of a server run as one of a pair (`--peer`, `--witness`, design 19):
    the fence every write path asks first. None: a server on its own, always writable."""
    throttle: Throttle = field(default_factory=Throttle)
    uploads: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(16)
    )


@dataclass(slots=True)
class Call:
    """One request, authenticated and resolved: the handler's whole world."""

    request: Request
    services: Services
    principal: Principal | None
    tenant_or_none: Tenant | None
    address: str
    copy: tuple[str, str] | None = None
    """A copy another server replicates into the tenant, as (server, copy): the request works
    on that repository of the tenant's area instead of the tenant's own (design 17.14)."""

    @property
    def who(self) -> Principal:
        assert self.principal is not None, "only public routes have no principal"
        return self.principal

    @property
    def tenant(self) -> Tenant:
        assert self.tenant_or_none is not None, "a tenant route resolves its tenant first"
        return self.tenant_or_none

    def backend(self) -> Backend:
        """The tenant's storage stack as a client's request uses it (quota checked)."""
        if self.copy is not None:
            return self.services.storage.for_copy(self.tenant, *self.copy)
        token = self.principal.token_id if self.principal is not None else ""
        return self.services.storage.for_client(self.tenant, token)

    @property
    def copy_path(self) -> str:
        """`<server>/<copy>/` for a request on a copy, '' on the tenant's own repository."""
        return f"{self.copy[0]}/{self.copy[1]}/" if self.copy is not None else ""

    @property
    def actor(self) -> Actor:
        """Who does an admin operation through this request: the token's ID and the address."""
        return Actor(self.who.token_id, self.address)

    def audit(self, action: str, target: str, outcome: str = "ok") -> None:
        """Record what this request did; the route table writes it before the answer goes out."""
        actor = self.principal.token_id if self.principal is not None else "-"
        tenant = self.tenant_or_none.name if self.tenant_or_none is not None else None
        where = self.copy_path + target
        self.services.audit.append(actor, tenant, action, where, outcome, self.address)
