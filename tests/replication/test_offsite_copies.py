"""Replication end to end (issue 14, design 17): a real `cairn server serve` with two tenants,
real `cairn backup` clients, then the engine to a local folder, to S3 on SeaweedFS and to SFTP
on OpenSSH's sshd; the server's data folder deleted, each copy restores bit-exact with only the
passphrase and passes `check --read-data`. A no-change run opens no target at all."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.replication.model import Target
from tests.integration.test_cli_server import Client, admin, tree
from tests.replication.support import Engine
from tests.support.clitools import Cairn, manifest
from tests.support.serverfixture import RunningServer, running_server
from tests.support.storageservers import SeaweedS3, SshServer
from tests.support.storageservers import sshd as sshd  # the session's server

pytestmark = pytest.mark.required("SeaweedFS and OpenSSH's sshd")

TENANTS = ("alpha", "beta")


@pytest.fixture
def aws_env(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    return seaweed


@pytest.fixture
def sftp_env(sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> SshServer:
    for name, value in sshd.env().items():
        monkeypatch.setenv(name, value)
    return sshd


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "data") as server:
        yield server


def back_up_two_tenants(server: RunningServer, tmp_path: Path) -> dict[str, Path]:
    sources = {}
    for seed, name in enumerate(TENANTS, start=1):
        token = str(admin(server, "tenant", "add", name)["admin_token"])
        machine = Client(server, name, tmp_path / f"home-{name}", token)
        machine.run("init")
        sources[name] = tree(tmp_path / f"src-{name}", seed, size=150_000)
        machine.run("backup", str(sources[name]))
        (sources[name] / "later.txt").write_text(f"the second backup of {name}\n" * 300)
        machine.run("backup", str(sources[name]))
    return sources


def test_three_targets_restore_bit_exact_after_the_server_is_gone(
    primary: RunningServer,
    aws_env: SeaweedS3,
    sftp_env: SshServer,
    tmp_path: Path,
) -> None:
    sources = back_up_two_tenants(primary, tmp_path)
    engine = Engine(primary.data)
    locations = {
        "folder": str(tmp_path / "offsite"),
        "s3": aws_env.location(prefix=aws_env.fresh_prefix()),
        "sftp": sftp_env.location(tmp_path / "sftp-offsite"),
    }
    for name, location in locations.items():
        report = engine.replicator.run(
            engine.register(Target(name, location)), engine.layouts(location)
        )
        assert report.error is None, report
        assert report.objects_sent > 10 and report.damaged_at_source == []
        assert report.cursor == engine.replicator.cursor(name) > 0

        opened: list[str] = []
        again = engine.replicator.run(Target(name, location), engine.layouts(location, opened))
        assert (again.objects_sent, again.objects_skipped, again.error) == (0, 0, None)
        assert opened == [], "a run with nothing to do opens no target"
    copies = {
        (kind, tenant): engine.copy_location(location, tenant)
        for kind, location in locations.items()
        for tenant in TENANTS
    }
    primary.process.terminate()
    primary.process.wait(timeout=20)
    shutil.rmtree(primary.data)

    for (kind, tenant), location in copies.items():
        copy = Cairn(location, cache=tmp_path / f"cache-{kind}-{tenant}")
        out = tmp_path / f"restored-{kind}-{tenant}"
        copy.run("restore", "latest", "--target", str(out))
        source = sources[tenant]
        assert manifest(out / source.relative_to("/")) == manifest(source), (kind, tenant)
        copy.run("check", "--read-data")


def test_two_servers_replicate_into_one_target_without_collisions(tmp_path: Path) -> None:
    shared = str(tmp_path / "one-offsite")
    copies, sources = [], []
    for site in ("east", "west"):
        with running_server(tmp_path / f"{site}-data") as server:
            token = str(admin(server, "tenant", "add", "alpha")["admin_token"])
            machine = Client(server, "alpha", tmp_path / f"{site}-home", token)
            machine.run("init")
            sources.append(tree(tmp_path / f"{site}-src", len(site), size=60_000))
            machine.run("backup", str(sources[-1]))
            engine = Engine(server.data)
            target = engine.register(Target("offsite", shared))
            assert engine.replicator.run(target, engine.layouts(shared)).error is None
            copies.append(engine.copy_location(shared, "alpha"))
    assert len({Path(c).parent.name for c in copies}) == 2, "one folder per server ID"
    for index, (copy, source) in enumerate(zip(copies, sources, strict=True)):
        out = tmp_path / f"out{index}"
        Cairn(copy, cache=tmp_path / f"cache{index}").run("restore", "latest", "--target", str(out))
        assert manifest(out / source.relative_to("/")) == manifest(source)
