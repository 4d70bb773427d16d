"""What replication must never do (issue 14 items 4 and 5): send a damaged object, restart a
cut upload from the beginning, or delete on a target before the quarantine is due, past its
threshold, or from a server whose storage looks empty. A real server and real clients; the
engine's clock is a FrozenClock, never a sleep."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.local import LocalBackend
from cairn.crypto.hashing import object_name
from cairn.replication.model import Filters, Mode, Target
from cairn.server.app import open_services
from cairn.server.context import Settings
from tests.integration.test_cli_server import Client, admin, tree
from tests.replication.support import Engine
from tests.support.clitools import Cairn, manifest
from tests.support.serverfixture import RunningServer, running_server
from tests.support.storageservers import CuttingRelay, SeaweedS3

MiB = 2**20


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("primary")) as server:
        yield server


def machine(server: RunningServer, name: str, home: Path) -> Client:
    client = Client(server, name, home, str(admin(server, "tenant", "add", name)["admin_token"]))
    client.run("init")
    return client


def copy_of(location: str, engine: Engine, tenant: str) -> LocalBackend:
    return LocalBackend(Path(engine.copy_location(location, tenant)))


def names(backend: LocalBackend, kind: ObjectKind) -> set[str]:
    return {info.handle.name for info in backend.list(kind)}


def test_a_bit_flipped_pack_is_reported_never_sent_and_blocks_nothing(
    primary: RunningServer, tmp_path: Path
) -> None:
    client = machine(primary, "flipped", tmp_path / "home")
    client.run("backup", str(tree(tmp_path / "src", 3, size=100_000)))
    engine = Engine(primary.data)
    folder = primary.data / "tenants" / engine.tenant_id("flipped")
    pack = next(p for p in (folder / "packs").rglob("*") if p.is_file())
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x01
    pack.write_bytes(bytes(data))

    location = str(tmp_path / "offsite")
    target = engine.register(Target("flip", location, filters=_only("flipped")))
    report = engine.replicator.run(target, engine.layouts(location))
    assert report.damaged_at_source == [f"{engine.tenant_id('flipped')}/packs/{pack.name}"]
    assert report.error is None, "damage at the source does not stop the run"
    copy = copy_of(location, engine, "flipped")
    assert pack.name not in names(copy, ObjectKind.PACK)
    assert names(copy, ObjectKind.SNAPSHOT) and names(copy, ObjectKind.INDEX), "the rest went"
    assert report.cursor == engine.replicator.cursor("flip") > 0, "the cursor passes it"


def _only(tenant: str) -> Filters:
    return Filters(tenants=(tenant,))


def test_a_cut_in_the_middle_of_a_large_pack_resends_at_most_one_part(
    primary: RunningServer, seaweed: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    machine(primary, "large", tmp_path / "home")
    services = open_services(Settings(data=primary.data), create=False)
    tenant = services.tenants.get("large")
    big = os.urandom(20 * MiB)  # three parts of 8 MiB, 8 MiB and 4 MiB on S3
    services.storage.for_maintenance(tenant).save(
        Handle(ObjectKind.PACK, object_name(big).hex), big
    )

    engine = Engine(primary.data)
    relay = CuttingRelay(seaweed.port)
    try:
        location = seaweed.location(prefix=seaweed.fresh_prefix(), port=relay.port)
        target = engine.register(Target("cut", location, filters=_only("large")))
        relay.cut_after(12 * MiB)  # in the middle of the second part
        before = relay.sent
        report = engine.replicator.run(target, engine.layouts(location))
        resent = relay.sent - before - report.bytes_sent
        assert report.error is None, report
        assert relay.cuts == 1
        assert report.bytes_sent >= len(big)
        assert resent <= 8 * MiB + MiB, f"{resent} bytes sent again: more than one part"
        quiet = relay.sent
        again = engine.replicator.run(target, engine.layouts(location))
        assert again.objects_sent == 0 and relay.sent == quiet, "no-change run: no request"
    finally:
        relay.close()


def test_a_run_that_gives_up_mid_pack_resumes_in_the_next_run(
    primary: RunningServer, seaweed: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    client = machine(primary, "resumed", tmp_path / "home")
    services = open_services(Settings(data=primary.data), create=False)
    big = os.urandom(20 * MiB)
    handle = Handle(ObjectKind.PACK, object_name(big).hex)
    services.storage.for_maintenance(services.tenants.get("resumed")).save(handle, big)
    source = tree(tmp_path / "src", 5, size=100_000)
    client.run("backup", str(source))  # journalled after the large pack

    engine = Engine(primary.data)
    relay = CuttingRelay(seaweed.port)
    prefix = seaweed.fresh_prefix()
    try:
        location = seaweed.location(prefix=prefix, port=relay.port)
        target = engine.register(Target("resumed", location, filters=_only("resumed")))
        relay.cut_after_sent = relay.sent + 12 * MiB  # down from there on, until healed
        before = relay.sent
        broken = engine.replicator.run(target, engine.layouts(location, retry_for=1.0))
        assert broken.error is not None and broken.cursor == 0 == engine.replicator.cursor(
            "resumed"
        )
        relay.heal()
        done = engine.replicator.run(target, engine.layouts(location))
        assert done.error is None and done.cursor == engine.replicator.cursor("resumed") > 0
        assert relay.sent - before <= 20 * MiB + done.bytes_sent - len(big) + 9 * MiB
    finally:
        relay.close()
    direct = engine.copy_location(seaweed.location(prefix=prefix), "resumed")
    copy = Cairn(direct, cache=tmp_path / "cache")
    copy.run("restore", "latest", "--target", str(tmp_path / "out"), env=copy.env(**seaweed.env()))
    assert manifest(tmp_path / "out" / source.relative_to("/")) == manifest(source)


def test_mirror_keeps_a_forgotten_snapshot_until_due_and_never_empties_a_target(
    primary: RunningServer, tmp_path: Path
) -> None:
    client = machine(primary, "mirrored", tmp_path / "home")
    source = tree(tmp_path / "src", 4, size=100_000)
    client.run("backup", str(source))
    (source / "more.bin").write_bytes(os.urandom(50_000))
    client.run("backup", str(source))
    engine = Engine(primary.data)
    location = str(tmp_path / "offsite")
    day = 86400
    target = engine.register(
        Target("mirror", location, Mode.MIRROR, quarantine_s=day, filters=_only("mirrored"))
    )
    assert engine.replicator.run(target, engine.layouts(location)).error is None
    copy = copy_of(location, engine, "mirrored")
    first = min(client.run("snapshots", "--json").json(), key=lambda s: s["time"])["id"]
    held = names(copy, ObjectKind.SNAPSHOT)
    assert len(held) == 2

    client.run("forget", first, "--prune")
    report = engine.replicator.run(target, engine.layouts(location))
    assert report.error is None and report.quarantined >= 1 and report.deletions == 0
    assert names(copy, ObjectKind.SNAPSHOT) == held, "restorable on the target meanwhile"

    engine.clock.advance(day - 60)
    assert engine.replicator.run(target, engine.layouts(location)).deletions == 0
    engine.clock.advance(120)
    strict = Target("mirror", location, Mode.MIRROR, filters=_only("mirrored"), max_delete_count=0)
    refused = engine.replicator.run(strict, engine.layouts(location))
    assert refused.error is not None and refused.error.startswith("CAIRN-E131")
    assert names(copy, ObjectKind.SNAPSHOT) == held, "over the threshold: nothing deleted"

    folder = primary.data / "tenants" / engine.tenant_id("mirrored")
    aside = tmp_path / "unmounted"
    shutil.move(folder, aside)
    folder.mkdir()
    try:
        empty = engine.replicator.run(target, engine.layouts(location))
        assert empty.error is not None and empty.error.startswith("CAIRN-E133")
        assert empty.deletions == 0 and names(copy, ObjectKind.SNAPSHOT) == held
    finally:
        folder.rmdir()
        shutil.move(aside, folder)

    done = engine.replicator.run(target, engine.layouts(location))
    assert done.error is None and done.deletions >= 1
    remaining = names(copy, ObjectKind.SNAPSHOT)
    assert len(remaining) == 1 and not any(n.startswith(first) for n in remaining)
    audit = engine.replicator.audit(target, engine.layouts(location))
    assert (audit.objects_sent, audit.mismatched_on_target, audit.error) == (0, [], None)
