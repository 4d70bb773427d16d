"""The server's seams (design 14.15): one injected clock that every part reads, and one storage
stack per tenant through which clients and the janitor save and remove."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.core.clock import FrozenClock
from cairn.crypto.hashing import object_name
from cairn.server.adminops import Actor
from cairn.server.app import open_services
from cairn.server.context import Services, Settings
from cairn.server.errors import QuotaExceeded
from cairn.server.jobresults import JobResult

START = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def services(tmp_path: Path, clock: FrozenClock) -> Services:
    return open_services(Settings(data=tmp_path), clock=clock)


def test_every_time_the_server_records_comes_from_its_one_clock(
    services: Services, clock: FrozenClock
) -> None:
    services.admin.create_tenant(Actor("cli:alice"), "acme", None)
    clock.advance(60)
    services.arrivals.record("acme", "ab" * 32, 10, "token")
    received = services.jobs.record(
        "acme", JobResult("docs", "laptop", 0, 1000, "success", None, 1, 1, None, ""), "token"
    )
    db = services.db.read()
    assert db.execute("SELECT created_ms FROM tenants").fetchone() == (START_MS,)
    assert {row[0] for row in db.execute("SELECT created_ms FROM tokens")} == {START_MS}
    assert {row[0] for row in db.execute("SELECT at_ms FROM audit")} == {START_MS}
    assert services.arrivals.of("acme")["ab" * 32].received_ms == START_MS + 60_000
    assert received == START_MS + 60_000


def _object(text: bytes) -> tuple[Handle, bytes]:
    return Handle(ObjectKind.SNAPSHOT, object_name(text).hex), text


def test_a_clients_save_is_held_to_the_quota_and_maintenance_is_only_charged(
    services: Services,
) -> None:
    services.tenants.create("acme", quota=100)
    tenant = services.tenants.get("acme")
    handle, data = _object(b"x" * 80)
    services.storage.for_client(tenant).save(handle, data)
    assert services.tenants.get("acme").used == 80
    more, bigger = _object(b"y" * 40)
    with pytest.raises(QuotaExceeded):
        services.storage.for_client(tenant).save(more, bigger)
    assert not services.tenants.backend(tenant).exists(more)
    services.storage.for_maintenance(tenant).save(more, bigger)  # never refused
    assert services.tenants.get("acme").used == 120
    services.storage.for_client(tenant).remove(more)  # refunded
    services.storage.for_maintenance(tenant).remove(handle)
    assert services.tenants.get("acme").used == 0
    services.storage.for_client(tenant).save(handle, data)
    services.storage.for_client(tenant).save(handle, data)  # the same bytes again: counted once
    assert services.tenants.get("acme").used == 80


def test_an_upload_that_cannot_fit_is_refused_before_its_bytes_arrive(services: Services) -> None:
    services.tenants.create("acme", quota=100)
    tenant = services.tenants.get("acme")
    services.storage.admit(tenant, 60, held_elsewhere=40)
    with pytest.raises(QuotaExceeded, match="uses 0 of 100 bytes; this object needs 61 more"):
        services.storage.admit(tenant, 61, held_elsewhere=40)
