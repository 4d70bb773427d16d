"""The janitor's retention reads each snapshot's group from its stored object (design 14.7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import BackendError
from cairn.backends.wrappers.faulty import FaultyBackend
from cairn.core.ids import GROUP_ID_SIZE
from cairn.crypto.hashing import object_name
from cairn.format.reflist import SALT_SIZE, encode_reflist
from cairn.format.snapshot import SnapshotRecord, encode_snapshot
from cairn.server.app import open_services
from cairn.server.context import Services, Settings
from cairn.server.retention import ServerPolicy

JOBS = (b"\x01" * GROUP_ID_SIZE, b"\x02" * GROUP_ID_SIZE)


def _arrive(services: Services, group: bytes, salt: bytes) -> str:
    """A snapshot of one job, uploaded by the machine's one token."""
    backend = services.tenants.backend(services.tenants.get("t"))
    reflist = encode_reflist(set(), salt.ljust(SALT_SIZE, b"."))
    backend.save(Handle(ObjectKind.REFLIST, object_name(reflist).hex), reflist)
    data = encode_snapshot(SnapshotRecord(bytes(16), [object_name(reflist)], salt, group))
    name = object_name(data).hex
    backend.save(Handle(ObjectKind.SNAPSHOT, name), data)
    services.arrivals.record("t", name, len(data), "machine-token")
    return name


@pytest.fixture
def services(tmp_path: Path) -> Services:
    services = open_services(Settings(data=tmp_path))
    services.tenants.create("t")
    services.tenants.set_retention("t", ServerPolicy(daily=14, weekly=8, monthly=24))
    return services


def _stored(services: Services) -> set[str]:
    backend = services.tenants.backend(services.tenants.get("t"))
    return {info.handle.name for info in backend.list(ObjectKind.SNAPSHOT)}


def test_each_job_of_one_token_keeps_its_snapshot(services: Services) -> None:
    names = {_arrive(services, group, b"a") for group in JOBS}
    report = services.janitor.collect(services.tenants.get("t"))
    assert report.forgotten == 0 and report.skipped is None
    assert _stored(services) == names


def test_retention_refuses_when_a_snapshot_cannot_be_read(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read as having no group, a snapshot would be judged in the wrong group: nothing goes."""
    names = {_arrive(services, group, salt) for group in JOBS for salt in (b"a", b"b", b"c")}
    plain = services.tenants.backend
    faulty = FaultyBackend(plain(services.tenants.get("t")))
    faulty.fail("load", BackendError("an I/O error"), times=1000)
    monkeypatch.setattr(services.tenants, "backend", lambda tenant: faulty)
    report = services.janitor.collect(services.tenants.get("t"))
    assert report.forgotten == 0 and "retention refused" in str(report.skipped)
    assert _stored(services) == names
