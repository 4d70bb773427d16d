"""Replication end to end (issue 14, design 17): a real `cairn server serve` with two tenants,
real `cairn backup` clients, then the engine to a local folder, to S3 on SeaweedFS and to SFTP
on OpenSSH's sshd; the server's data folder deleted, each copy restores bit-exact with only the
passphrase and passes `check --read-data`. A no-change run opens no target at all. Many-to-one
(two servers into one target) and cross-site (two servers each replicating to the other's
site)."""

from __future__ import annotations

import contextlib
import shutil
import time
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


def test_two_sites_each_replicate_to_the_other_and_survive_the_loss_of_one(
    tmp_path: Path,
) -> None:
    """Cross-site: server A (site A) replicates continuously to storage at site B, server B to
    storage at site A, both running at once with a tenant of the same name; each copy restores
    bit-exact. Then site A burns (its server's data and the storage there, which held B's copy):
    A's machine restores from site B with only its passphrase."""
    sites = {name: tmp_path / f"site-{name}" for name in ("a", "b")}
    for folder in sites.values():
        (folder / "offsite").mkdir(parents=True)
    other = {"a": "b", "b": "a"}
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(running_server(folder / "data"))
            for name, folder in sites.items()
        }
        sources, copies = {}, {}
        for name, server in servers.items():
            offsite = str(sites[other[name]] / "offsite")
            admin(server, "target", "add", f"site-{other[name]}", offsite)
            token = str(admin(server, "tenant", "add", "alpha")["admin_token"])
            machine = Client(server, "alpha", sites[name] / "home", token)
            machine.run("init")
            sources[name] = tree(tmp_path / f"src-{name}", ord(name), size=80_000)
            machine.run("backup", str(sources[name]))
            copies[name] = Engine(server.data).copy_location(offsite, "alpha")
        deadline = time.monotonic() + 180  # a bound on a wait, not a measurement
        for server in servers.values():
            while [row["lag_objects"] for row in admin(server, "target", "status")] != [0]:
                assert time.monotonic() < deadline, server.log()[-3000:]
                time.sleep(0.3)
    assert Path(copies["a"]).parents[2] == sites["b"] and Path(copies["b"]).parents[2] == sites["a"]
    for name, copy in copies.items():
        out = tmp_path / f"out-{name}"
        Cairn(copy, cache=tmp_path / f"cache-{name}").run("restore", "latest", "--target", str(out))
        assert manifest(out / sources[name].relative_to("/")) == manifest(sources[name])
    shutil.rmtree(sites["a"])
    out = tmp_path / "after-the-fire"
    survivor = Cairn(copies["a"], cache=tmp_path / "cache-fire")
    survivor.run("restore", "latest", "--target", str(out))
    assert manifest(out / sources["a"].relative_to("/")) == manifest(sources["a"])
    survivor.run("check", "--read-data")
