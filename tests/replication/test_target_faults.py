"""Targets that break (issue 14's proof, RELIABILITY.md R4, R6 and R12): a connection cut in the
middle of a large pack on SFTP (OpenSSH's sshd behind the shared `CuttingRelay`) and on FTP
(pure-ftpd behind the FTP-aware relay of the FTP backend's fault tests, since FTP's data
connections go to the ports its PASV answers name); S3 is in test_safety.py. The run finishes
in the same run (the backend's retries resume at the offset the server reached) and sends again
at most one part (8 MiB, S3's part size) per cut.

Then a target that damages what it stores: a pack truncated and another with a flipped byte in
a local-folder target, after a run. The audit finds the truncated one by its size; a flip keeps
the size, so only `audit(..., read_data=True)` finds it, by hashing the target's copy. Both are
reported (`mismatched_on_target`, CAIRN-E132); a run does not repair them (the journal names
nothing new, so it makes no request); once the damaged copy is removed, the next audit sends it
again. On S3, no stat before a save: other bytes already under a name are refused (CAIRN-E132),
the same bytes accepted.

WebDAV has no partial PUT (the capability table's "retry whole"): a cut mid-pack costs at most
that one object sent again. A target restarted mid-pack (the SFTP target's sshd stopped, its
sessions with it, and started again on the same port) costs no more than a cut."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.local import LocalBackend
from cairn.backends.location import open_backend
from cairn.crypto.hashing import object_name
from cairn.replication.model import Filters, Target
from cairn.server.app import open_services
from cairn.server.context import Settings
from tests.integration.test_backend_ftp_faults import FtpRelay
from tests.integration.test_cli_server import Client, admin, tree
from tests.replication.support import Engine
from tests.support.clitools import Cairn
from tests.support.serverfixture import RunningServer, running_server
from tests.support.storageservers import (
    CuttingRelay,
    PureFtpd,
    SeaweedS3,
    SshServer,
    ftp_server,
    webdav_server,
)
from tests.support.storageservers import sshd as sshd  # the session's server

__all__ = ["ftp_server"]

MiB = 2**20
PART = 8 * MiB
"""One part: what a cut may cost in bytes sent again (S3's part size; SFTP and FTP resume at
the byte offset the server holds, so they lose only what was in flight)."""


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("primary")) as server:
        yield server


def large_pack(server: RunningServer, tenant: str) -> bytes:
    """A tenant holding one 20 MiB pack (journalled like any save on the server)."""
    admin(server, "tenant", "add", tenant)
    services = open_services(Settings(data=server.data), create=False)
    big = os.urandom(20 * MiB)
    storage = services.storage.for_maintenance(services.tenants.get(tenant))
    storage.save(Handle(ObjectKind.PACK, object_name(big).hex), big)
    return big


def only(tenant: str) -> Filters:
    return Filters(tenants=(tenant,))


def test_a_cut_mid_pack_on_sftp_resends_less_than_a_part(
    primary: RunningServer, sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in sshd.env().items():
        monkeypatch.setenv(name, value)
    big = large_pack(primary, "sftp-cut")
    engine = Engine(primary.data)
    relay = CuttingRelay(sshd.port)
    sshd.write_known_hosts([sshd.port, relay.port])
    try:
        location = sshd.location(tmp_path / "sftp-offsite", port=relay.port)
        target = engine.register(Target("sftp-cut", location, filters=only("sftp-cut")))
        relay.cut_after(12 * MiB)
        before = relay.sent
        layouts = engine.layouts(location)
        report = engine.replicator.run(target, layouts)
        layouts.close()
        assert report.error is None, report
        assert relay.cuts == 1 and report.bytes_sent >= len(big)
        resent = relay.sent - before - report.bytes_sent  # SSH's framing and requests included
        print(f"sftp: {resent} bytes sent beyond the objects' for one cut")
        assert resent <= PART, f"{resent} bytes sent again: more than one part"
        copy = Path(engine.copy_location(str(tmp_path / "sftp-offsite"), "sftp-cut"))
        stored = LocalBackend(copy).load(Handle(ObjectKind.PACK, object_name(big).hex))
        assert stored == big
    finally:
        relay.close()


def test_a_cut_mid_pack_on_ftp_resends_less_than_a_part(
    primary: RunningServer,
    ftp_server: PureFtpd,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ftp_server.environ().items():
        monkeypatch.setenv(name, value)
    big = large_pack(primary, "ftp-cut")
    engine = Engine(primary.data)
    relay = FtpRelay(ftp_server.port)
    try:
        folder = ftp_server.folder()
        location = ftp_server.location(folder, tls=False, port=relay.port)
        target = engine.register(Target("ftp-cut", location, filters=only("ftp-cut")))
        relay.cut_upload_after = 12 * MiB
        layouts = engine.layouts(location)
        report = engine.replicator.run(target, layouts)
        layouts.close()
        assert report.error is None, report
        assert relay.cuts == 1 and report.bytes_sent >= len(big)
        resent = relay.uploaded - report.bytes_sent  # data connections only
        print(f"ftp: {resent} bytes sent beyond the objects' for one cut")
        assert resent <= PART, f"{resent} bytes sent again: more than one part"
        copy = ftp_server.data / engine.copy_location(folder, "ftp-cut").strip("/")
        stored = LocalBackend(copy).load(Handle(ObjectKind.PACK, object_name(big).hex))
        assert stored == big
    finally:
        relay.close()


def test_a_cut_mid_pack_on_webdav_resends_at_most_that_object(
    primary: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wsgidav over plain HTTP on loopback behind the relay: the PUT of the 20 MiB pack breaks
    after 12 MiB; the backend's retry PUTs it again whole, in the same run."""
    big = large_pack(primary, "dav-cut")
    engine = Engine(primary.data)
    with webdav_server(tmp_path / "dav", tls=False) as dav:
        for name, value in dav.environ().items():
            monkeypatch.setenv(name, value)
        relay = CuttingRelay(dav.port)
        try:
            folder = dav.fresh_folder()
            location = dav.location(folder, port=relay.port)
            target = engine.register(Target("dav-cut", location, filters=only("dav-cut")))
            relay.cut_after(12 * MiB)
            before = relay.sent
            layouts = engine.layouts(location)
            report = engine.replicator.run(target, layouts)
            layouts.close()
            assert report.error is None, report
            assert relay.cuts == 1 and report.bytes_sent >= len(big)
            resent = relay.sent - before - report.bytes_sent  # HTTP requests and headers too
            print(f"webdav: {resent} bytes sent beyond the objects' for one cut")
            assert resent <= len(big), f"{resent} bytes sent again: more than the cut object"
            copy = dav.root / engine.copy_location(folder, "dav-cut")
            stored = LocalBackend(copy).load(Handle(ObjectKind.PACK, object_name(big).hex))
            assert stored == big
        finally:
            relay.close()


class RestartingRelay(CuttingRelay):
    """The shared relay, which instead of cutting restarts the server behind it once `after`
    more bytes have gone up: from inside the relay's pump, so the restart lands mid-object
    however fast the upload runs (no polling, no sleep)."""

    def __init__(self, target_port: int, restart: Callable[[], None]) -> None:
        super().__init__(target_port)
        self.restart = restart
        self.restarts = 0
        self._restart_at: int | None = None

    def restart_after(self, count: int) -> None:
        self._restart_at = self.sent + count

    def _count(self, upstream_bound: bool, size: int) -> int | None:
        allowed = super()._count(upstream_bound, size)
        if upstream_bound and self._restart_at is not None and self.sent >= self._restart_at:
            self._restart_at = None
            self.restart()  # the server's end of this connection is gone with its session
            self.restarts += 1
        return allowed


def test_an_sftp_target_restarted_mid_pack_completes_with_the_copy_intact(
    primary: RunningServer, sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in sshd.env().items():
        monkeypatch.setenv(name, value)
    big = large_pack(primary, "sftp-restart")
    engine = Engine(primary.data)

    def restart() -> None:
        sshd.stop()
        sshd.start()

    relay = RestartingRelay(sshd.port, restart)
    sshd.write_known_hosts([sshd.port, relay.port])
    try:
        location = sshd.location(tmp_path / "sftp-restarted", port=relay.port)
        target = engine.register(Target("sftp-restart", location, filters=only("sftp-restart")))
        relay.restart_after(12 * MiB)
        before = relay.sent
        reports = []
        for _ in range(2):  # the run itself, or else the next one
            layouts = engine.layouts(location)
            reports.append(engine.replicator.run(target, layouts))
            layouts.close()
            if reports[-1].error is None:
                break
        assert reports[-1].error is None, reports
        assert relay.restarts == 1
        sent = sum(report.bytes_sent for report in reports)
        assert sent >= len(big)
        resent = relay.sent - before - sent  # SSH's framing, handshakes and requests included
        print(f"sftp restart: {len(reports)} run(s), {resent} bytes sent beyond the objects'")
        assert resent <= PART, f"{resent} bytes sent again: more than one part"
        copy = Path(engine.copy_location(str(tmp_path / "sftp-restarted"), "sftp-restart"))
        stored = LocalBackend(copy).load(Handle(ObjectKind.PACK, object_name(big).hex))
        assert stored == big
    finally:
        relay.close()


def test_a_target_that_damages_its_copy_is_found_by_the_audit(
    primary: RunningServer, tmp_path: Path
) -> None:
    token = str(admin(primary, "tenant", "add", "damaged")["admin_token"])
    client = Client(primary, "damaged", tmp_path / "home", token)
    client.run("init")
    source = tree(tmp_path / "src", 9, size=200_000)
    client.run("backup", str(source))
    (source / "more.bin").write_bytes(os.urandom(200_000))
    client.run("backup", str(source))
    engine = Engine(primary.data)
    location = str(tmp_path / "offsite")
    target = engine.register(Target("damaging", location, filters=only("damaged")))
    assert engine.replicator.run(target, engine.layouts(location)).error is None
    copy = Path(engine.copy_location(location, "damaged"))
    truncated, flipped = sorted(p for p in (copy / "packs").rglob("*") if p.is_file())[:2]
    truncated.write_bytes(truncated.read_bytes()[:-100])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    tenant = engine.tenant_id("damaged")

    listed = engine.replicator.audit(target, engine.layouts(location))
    assert listed.mismatched_on_target == [f"{tenant}/packs/{truncated.name}"], listed
    read = engine.replicator.audit(target, engine.layouts(location), read_data=True)
    assert sorted(read.mismatched_on_target) == sorted(
        f"{tenant}/packs/{p.name}" for p in (truncated, flipped)
    ), read
    assert read.error is None and read.objects_sent == 0

    opened: list[str] = []
    quiet = engine.replicator.run(target, engine.layouts(location, opened))
    assert (quiet.objects_sent, opened) == (0, []), "a run with nothing journalled asks nothing"
    damaged = Cairn(str(copy), cache=tmp_path / "cache").run("check", "--read-data", check=False)
    assert damaged.code != 0, "the copy's own check sees the damage too"

    truncated.unlink()
    flipped.unlink()
    repaired = engine.replicator.audit(target, engine.layouts(location), read_data=True)
    assert (repaired.objects_sent, repaired.mismatched_on_target) == (2, []), repaired
    Cairn(str(copy), cache=tmp_path / "cache2").run("check", "--read-data")


def test_an_s3_target_holding_other_bytes_under_a_name_is_e132_the_same_bytes_pass(
    primary: RunningServer, seaweed: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No stat before a PUT to S3 (create-only, `If-None-Match: *`): the save itself finds an
    object already there, accepts it when its bytes are the server's (a run cut after the PUT,
    sent again) and refuses it otherwise."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    token = str(admin(primary, "tenant", "add", "planted")["admin_token"])
    client = Client(primary, "planted", tmp_path / "home", token)
    client.run("init")
    client.run("backup", str(tree(tmp_path / "src", 11, size=150_000)))
    engine = Engine(primary.data)
    services = open_services(Settings(data=primary.data), create=False)
    server_side = services.storage.for_maintenance(services.tenants.get("planted"))
    pack = next(iter(server_side.list(ObjectKind.PACK))).handle
    location = seaweed.location(prefix=seaweed.fresh_prefix())
    copy = open_backend(engine.copy_location(location, "planted"))
    copy.save(pack, b"not the pack")
    target = engine.register(Target("planted", location, filters=only("planted")))
    refused = engine.replicator.run(target, engine.layouts(location))
    assert refused.error is not None and refused.error.startswith("CAIRN-E132"), refused
    assert copy.load(pack) == b"not the pack", "never overwritten"

    copy.remove(pack)
    copy.save(pack, server_side.load(pack))  # what a cut run left: the right bytes
    done = engine.replicator.run(target, engine.layouts(location))
    assert done.error is None and done.cursor == engine.replicator.cursor("planted"), done
    copy.close()
    checked = Cairn(engine.copy_location(location, "planted"), cache=tmp_path / "cache")
    checked.run("check", "--read-data", env=checked.env(**seaweed.env()))
