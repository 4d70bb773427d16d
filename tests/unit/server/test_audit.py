"""The audit log and the admin operations: no operation is answered as done without its record
(RELIABILITY.md S9), on a real full disk too, and `behind` tells when records are missing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cairn.core.clock import FrozenClock
from cairn.server.adminops import Actor
from cairn.server.app import create_app, open_services
from cairn.server.auth import Role
from cairn.server.context import Services, Settings
from cairn.server.errors import DataFolderFull
from tests.support.smalldisk import fill, small_disk


@pytest.fixture
def full_disk_site(tmp_path: Path) -> Iterator[tuple[Services, Path]]:
    """Services whose data folder is on a 4 MiB tmpfs; the test fills it with `filler`."""
    with small_disk(tmp_path / "disk") as disk:
        yield open_services(Settings(data=disk / "data")), disk / "filler"


def actions(services: Services) -> list[tuple[str, str, str]]:
    entries = reversed(services.audit.entries(1000))
    return [(str(e["actor"]), str(e["action"]), str(e["target"])) for e in entries]


def test_each_admin_operation_commits_with_its_record(tmp_path: Path) -> None:
    services = open_services(Settings(data=tmp_path))
    alice = Actor("cli:alice")
    _tenant, first = services.admin.create_tenant(alice, "acme", 10**9)
    backup = services.admin.issue_token(Actor("0123456789ab", "10.0.0.9"), Role.BACKUP, "acme")
    services.admin.set_quota(alice, "acme", None)
    services.admin.revoke_token(alice, backup.id)
    assert actions(services) == [
        ("cli:alice", "create-tenant", "acme quota=1000000000"),
        ("cli:alice", "create-token", f"tenant-admin {first.id}"),
        ("0123456789ab", "create-token", f"acme backup {backup.id}"),
        ("cli:alice", "set-quota", "acme None"),
        ("cli:alice", "revoke-token", backup.id),
    ]
    assert services.audit.verify() == (5, None) and services.audit.behind() is None


def test_a_refused_operation_leaves_no_record(tmp_path: Path) -> None:
    services = open_services(Settings(data=tmp_path))
    with pytest.raises(Exception, match="no tenant"):
        services.admin.set_quota(Actor("cli:alice"), "nosuch", 5)
    assert actions(services) == []


def test_behind_names_a_change_made_without_its_record(tmp_path: Path) -> None:
    services = open_services(Settings(data=tmp_path))
    services.admin.create_tenant(Actor("cli:alice"), "acme", None)
    assert services.audit.behind() is None
    token = services.tokens.issue(Role.BACKUP, "acme")  # as the admin CLI before this fix did
    behind = services.audit.behind()
    assert behind is not None and f"token {token.id} issued" in behind
    assert services.audit.verify() == (2, None)  # the chain alone cannot see it


def test_behind_sees_entries_removed_from_the_end(tmp_path: Path) -> None:
    # one frozen clock: the change and its records share a millisecond whatever the machine's load
    clock = FrozenClock(datetime(2026, 12, 7, tzinfo=UTC))
    services = open_services(Settings(data=tmp_path), clock=clock)
    services.admin.create_tenant(Actor("cli:alice"), "acme", None)
    with services.db.write() as conn:
        conn.execute("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")
    assert services.audit.verify() == (1, None)
    assert "has no audit record" in str(services.audit.behind())


def test_request_records_are_written_before_the_answer(tmp_path: Path) -> None:
    services = open_services(Settings(data=tmp_path))
    _tenant, token = services.admin.create_tenant(Actor("cli:alice"), "acme", None)
    with TestClient(create_app(services)) as http:
        answer = http.get("/v1/t/acme/keys/", headers={"authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        assert services.audit.written()  # in the database when the answer left, not later
        assert actions(services)[-1] == (token.id, "list", "keys")


@pytest.mark.required("root: a small tmpfs")
def test_a_full_disk_refuses_admin_operations_and_changes_nothing(
    full_disk_site: tuple[Services, Path],
) -> None:
    services, filler = full_disk_site
    services.admin.create_tenant(Actor("cli:alice"), "acme", None)
    fill(filler)
    with pytest.raises(DataFolderFull, match=r"data folder .* is on a full disk"):
        services.admin.create_tenant(Actor("cli:alice"), "beta", None)
    with pytest.raises(DataFolderFull):
        services.admin.issue_token(Actor("cli:alice"), Role.BACKUP, "acme")
    assert [t.name for t in services.tenants.all()] == ["acme"]
    assert len(services.tokens.list()) == 1
    filler.unlink()
    services.admin.create_tenant(Actor("cli:alice"), "beta", None)  # the connection is usable
    assert services.audit.verify() == (4, None) and services.audit.behind() is None


@pytest.mark.required("root: a small tmpfs")
def test_a_full_disk_stops_requests_until_their_records_can_be_written(
    full_disk_site: tuple[Services, Path],
) -> None:
    services, filler = full_disk_site
    _tenant, token = services.admin.create_tenant(Actor("cli:alice"), "acme", None)
    owner = {"authorization": f"Bearer {token}"}
    with TestClient(create_app(services)) as http:
        assert http.get("/v1/t/acme/keys/", headers=owner).status_code == 200
        fill(filler)
        for _ in range(3):  # the old audit thread died at the first failure, for good
            refused = http.get("/v1/t/acme/keys/", headers=owner)
            assert refused.status_code == 507
            assert refused.json()["error"]["code"] == "CAIRN-E030"
            assert str(filler.parent) not in refused.text  # the server's paths are its own
        health = http.get("/v1/health")
        assert health.status_code == 503 and health.json()["audit"] == "cannot be written"
        filler.unlink()
        assert http.get("/v1/t/acme/keys/", headers=owner).status_code == 200
        assert http.get("/v1/health").status_code == 200
    lists = [a for a in actions(services) if a[1] == "list"]
    assert len(lists) == 3  # before; the first refused (done, then not answered); after
    assert services.audit.verify() == (len(actions(services)), None)
    assert services.audit.behind() is None
