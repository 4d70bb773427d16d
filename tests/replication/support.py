"""What the replication tests share: a real server's data folder seen as the engine sees it
(its journal, its tenants' raw storage, its ID) and targets registered in its database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cairn.backends.base import Backend
from cairn.backends.location import open_backend
from cairn.core.clock import FrozenClock
from cairn.replication.db import ReplicationDb
from cairn.replication.engine import Replicator
from cairn.replication.layout import TargetLayouts, open_target, server_id
from cairn.replication.model import Target
from cairn.server.app import open_services
from cairn.server.context import Settings
from cairn.server.replication import ServerSource


@dataclass
class Engine:
    """The engine over one server's data folder, with a clock the test moves."""

    data: Path
    clock: FrozenClock = field(
        default_factory=lambda: FrozenClock(datetime(2026, 12, 7, tzinfo=UTC))
    )

    def __post_init__(self) -> None:
        services = open_services(Settings(data=self.data), create=False)
        self.db = ReplicationDb(self.data / "replication.db")
        self.server_id = server_id(self.data)
        self.tenants = services.tenants
        self.replicator = Replicator(
            self.db, ServerSource(services.tenants), self.server_id, self.clock
        )

    def register(self, target: Target) -> Target:
        """What the target registry does before a target's first run: its row."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO targets (name, spec, created_ms) VALUES (?, '{}', 0)",
                (target.name,),
            )
        return target

    def tenant_id(self, name: str) -> str:
        return self.tenants.get(name).id

    def layouts(
        self, location: str, opened: list[str] | None = None, retry_for: float | None = None
    ) -> TargetLayouts:
        """The target's layouts; `opened` collects every location opened (a run that opens
        none makes no request to the target); `retry_for` shortens the retries' budget."""

        def opener(where: str) -> Backend:
            if opened is not None:
                opened.append(where)
            if retry_for is not None:
                return open_backend(where, create=True, retry_for=retry_for)
            return open_target(where)

        return TargetLayouts(location, self.server_id, opener)

    def copy_location(self, location: str, tenant: str) -> str:
        return f"{location.rstrip('/')}/{self.server_id}/{self.tenant_id(tenant)}"
