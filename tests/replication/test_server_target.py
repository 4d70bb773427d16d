"""A Cairn server as a replication target (issue 14 item 7, design 17.14): two real `cairn
server serve` processes. The primary's tenant backs up with the real CLI; `cairn server target
add` checks the second server as a target with a replication token of an area there; the engine
replicates into the area; the primary's data folder is deleted and a client restores bit-exact
from the copy on the second server with a restore token of the area and its passphrase. The
replication token reaches nothing but its own area's copies, a removal only moves an object
aside, a large object resumes where a cut left it, and the area's quota holds."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.location import open_backend
from cairn.crypto.hashing import object_name
from cairn.replication.layout import server_id
from cairn.replication.model import Mode, RunReport, Target
from tests.integration.test_cli_server import Client, admin, tree
from tests.replication.support import Engine
from tests.replication.test_serve_replicates import wait_for_copies
from tests.support.clitools import Cairn, manifest
from tests.support.serverfixture import RunningServer, running_server

AREA = "site-a"
AREA_FOLDER = "{area}/{server}"
"""A copy's folder below `copies/` (and `removed/`) in the receiver's data folder."""


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "primary") as server:
        yield server


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "receiver") as server:
        yield server


@pytest.fixture
def sender_env(
    receiver: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The sending server's environment: a replication token of the area, and its own config
    folder, where the receiver's certificate is pinned at the first connection."""
    admin(receiver, "tenant", "add", AREA, "--quota", "200M")
    token = str(admin(receiver, "token", "add", AREA, "--role", "replication")["token"])
    env = {"CAIRN_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path / "sender-home")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def back_up(server: RunningServer, tmp_path: Path, tenant: str = "alpha") -> Path:
    token = str(admin(server, "tenant", "add", tenant)["admin_token"])
    machine = Client(server, tenant, tmp_path / f"home-{tenant}", token)
    machine.run("init")
    source = tree(tmp_path / f"src-{tenant}", 3, size=200_000)
    machine.run("backup", str(source))
    (source / "later.txt").write_text("the second backup\n" * 400)
    machine.run("backup", str(source))
    return source


def test_a_copy_on_a_second_server_restores_bit_exact_after_the_primary_is_gone(
    primary: RunningServer, receiver: RunningServer, sender_env: dict[str, str], tmp_path: Path
) -> None:
    source = back_up(primary, tmp_path)
    location = receiver.location(AREA)
    added = Cairn(primary.data).run(
        "server", "target", "add", "offsite", location, "--data", str(primary.data)
    )
    assert "probe" in added.out and "FAILED" not in added.out, added.out

    engine = Engine(primary.data)
    report = replicate(engine, location)
    assert report.error is None, report
    assert report.objects_sent > 5 and report.damaged_at_source == []
    again = replicate(engine, location)
    assert (again.objects_sent, again.error) == (0, None)
    copy = engine.copy_location(location, "alpha")
    ids = {t["name"]: t["id"] for t in admin(primary, "tenant", "list")}  # what an operator reads
    server_id = (primary.data / "server-id").read_text().strip()
    assert copy == f"{location}/{server_id}/{ids['alpha']}"

    primary.process.terminate()
    primary.process.wait(timeout=20)
    shutil.rmtree(primary.data)
    admin(receiver, "gc", AREA)  # the receiver's own maintenance leaves copies alone
    admin(receiver, "scrub", AREA)

    restore_token = str(admin(receiver, "token", "add", AREA, "--role", "restore")["token"])
    client = Cairn(copy, cache=tmp_path / "restorer-cache")
    env = client.env(CAIRN_TOKEN=restore_token, XDG_CONFIG_HOME=str(tmp_path / "restorer"))
    out = tmp_path / "restored"
    client.run("restore", "latest", "--target", str(out), env=env)
    assert manifest(out / source.relative_to("/")) == manifest(source)
    client.run("check", "--read-data", env=env)
    usage = admin(receiver, "tenant", "list")
    used = next(t for t in usage if t["name"] == AREA)["used"]
    assert used >= report.bytes_sent > 0, usage


def test_serve_replicates_each_backup_to_a_second_server_continuously(
    receiver: RunningServer, sender_env: dict[str, str], tmp_path: Path
) -> None:
    """As a user runs it: `serve` started with the replication token in its environment, the
    target added with the CLI; a backup reaches the copy with nobody running anything else."""
    with running_server(tmp_path / "serving") as primary:
        location = receiver.location(AREA)
        assert admin(primary, "target", "add", "offsite", location)["target"]["name"] == "offsite"
        back_up(primary, tmp_path)
        tenant_id = primary.services().tenants.get("alpha").id
        copy = f"{location}/{server_id(primary.data)}/{tenant_id}"
        wait_for_copies(primary, {"offsite": copy}, str(primary.data / "tenants" / tenant_id))
        (row,) = admin(primary, "target", "status")
        assert row["lag_objects"] == 0 and row["last_error"] in (None, ""), row


def test_a_mirror_removal_is_moved_aside_and_the_copy_still_restores(
    primary: RunningServer, receiver: RunningServer, sender_env: dict[str, str], tmp_path: Path
) -> None:
    """Design 17.14: the receiver keeps what a mirror target removes, beside the copy."""
    token = str(admin(primary, "tenant", "add", "alpha")["admin_token"])
    machine = Client(primary, "alpha", tmp_path / "home", token)
    machine.run("init")
    source = tree(tmp_path / "src", 5, size=80_000)
    machine.run("backup", str(source))
    (source / "later.txt").write_text("the second backup\n" * 400)
    machine.run("backup", str(source))
    location = receiver.location(AREA)
    engine = Engine(primary.data)
    mirror = engine.register(Target("offsite", location, Mode.MIRROR, quarantine_s=0))
    assert replicate_target(engine, mirror).error is None

    machine.run("forget", "--keep-last", "1", "--group-by", "")
    report = replicate_target(engine, mirror)
    assert report.error is None and report.deletions >= 1, report

    area_id = receiver.services().tenants.get(AREA).id
    where = Path(AREA_FOLDER.format(area=area_id, server=engine.server_id))
    copy_folder = receiver.data / "copies" / where / engine.tenant_id("alpha")
    removed_folder = receiver.data / "removed" / where / engine.tenant_id("alpha")
    assert len(list((copy_folder / "snapshots").iterdir())) == 1
    assert len(list((removed_folder / "snapshots").iterdir())) >= 1
    restore_token = str(admin(receiver, "token", "add", AREA, "--role", "restore")["token"])
    client = Cairn(engine.copy_location(location, "alpha"), cache=tmp_path / "cache")
    env = client.env(CAIRN_TOKEN=restore_token, XDG_CONFIG_HOME=str(tmp_path / "restorer"))
    out = tmp_path / "restored"
    client.run("restore", "latest", "--target", str(out), env=env)
    assert manifest(out / source.relative_to("/")) == manifest(source)
    client.run("check", env=env)


def test_the_replication_token_reaches_only_its_own_area(
    receiver: RunningServer, sender_env: dict[str, str], tmp_path: Path
) -> None:
    back_up(receiver, tmp_path, tenant="other")  # another tenant of the receiver, with data
    headers = {"authorization": f"Bearer {sender_env['CAIRN_TOKEN']}"}
    with httpx.Client(base_url=receiver.url, verify=False, headers=headers) as http:
        _only_its_area(receiver, http, tmp_path)


def _only_its_area(receiver: RunningServer, http: httpx.Client, tmp_path: Path) -> None:
    copy = f"/v1/t/{AREA}/c/{'a' * 32}/{'b' * 32}"
    data = b"a pack, as far as the receiver can tell"
    name = object_name(data).hex

    assert http.put(f"{copy}/packs/{name}", content=data).status_code == 201
    assert http.head(f"{copy}/packs/{name}").status_code == 200
    assert http.get(f"{copy}/packs/").status_code == 200
    assert http.get(f"/v1/t/{AREA}/config/").status_code == 200  # the area's root: read only
    assert http.put(f"/v1/t/{AREA}/packs/{name}", content=data).status_code == 403
    assert http.get("/v1/t/other/config").status_code == 404  # another tenant: nothing there
    assert http.get("/v1/t/other/snapshots/").status_code == 404
    assert (
        http.put(f"/v1/t/other/c/{'a' * 32}/{'b' * 32}/packs/{name}", content=data).status_code
        == 404
    )
    assert http.get("/v1/admin/tenants").status_code == 403
    assert http.post(f"/v1/t/{AREA}/chunks", content=b"").status_code == 403
    assert http.get(f"/v1/t/{AREA}/c/..%2F..%2Fx/y/packs/").status_code == 404
    assert http.put(f"{copy}/packs/{name}", content=data + b"!").status_code in (400, 409)

    backup = str(admin(receiver, "token", "add", AREA, "--role", "backup")["token"])
    as_backup = {"authorization": f"Bearer {backup}"}
    assert http.get(f"{copy}/packs/{name}", headers=as_backup).status_code == 403

    # A removal moves the object aside: gone from the copy, kept (and on the quota) beside it
    used = _used(receiver)
    assert http.delete(f"{copy}/packs/{name}").status_code == 204
    assert http.head(f"{copy}/packs/{name}").status_code == 404
    area_id = receiver.services().tenants.get(AREA).id
    kept = receiver.data / "removed" / area_id / ("a" * 32) / ("b" * 32) / "packs" / name[:2]
    assert (kept / name).read_bytes() == data
    assert _used(receiver) == used
    audit = http.get("/v1/admin/audit", headers=as_backup)
    assert audit.status_code == 403


def test_a_large_object_resumes_where_a_cut_left_it(
    receiver: RunningServer, sender_env: dict[str, str]
) -> None:
    copy = f"{receiver.location(AREA)}/{'c' * 32}/{'d' * 32}"
    data = os.urandom(17 * 1024 * 1024)
    handle = Handle(ObjectKind.PACK, object_name(data).hex)
    first_part = data[: 8 * 1024 * 1024]
    upload = f"{receiver.url}/v1/t/{AREA}/c/{'c' * 32}/{'d' * 32}/uploads/packs/{handle.name}"
    headers = {"authorization": f"Bearer {sender_env['CAIRN_TOKEN']}"}
    headers |= {"upload-offset": "0", "upload-length": str(len(data))}
    cut = httpx.patch(upload, content=first_part, headers=headers, verify=False)
    assert cut.status_code == 204, cut.text  # then the connection "broke"
    before = _patches(receiver)

    backend = open_backend(copy)  # the token and the pin from the environment, as a server's
    try:
        backend.save(handle, data)
        assert backend.load(handle) == data
    finally:
        backend.close()
    assert _patches(receiver) - before == 2, "only the two parts after the cut were sent"


def test_the_area_quota_stops_a_run(
    primary: RunningServer, receiver: RunningServer, sender_env: dict[str, str], tmp_path: Path
) -> None:
    back_up(primary, tmp_path)
    admin(receiver, "tenant", "quota", AREA, "100K")
    location = receiver.location(AREA)
    engine = Engine(primary.data)
    report = replicate(engine, location, retry_for=1)
    assert report.error is not None and "QuotaExceeded" in report.error, report
    assert "quota exceeded" in report.error
    assert _used(receiver) <= 100 * 1024


def replicate(engine: Engine, location: str, retry_for: float | None = None) -> RunReport:
    """One run of the engine to `location` (a copy target), its connections closed after it."""
    target = engine.register(Target("offsite", location))
    return replicate_target(engine, target, retry_for)


def replicate_target(engine: Engine, target: Target, retry_for: float | None = None) -> RunReport:
    layouts = engine.layouts(target.location, retry_for=retry_for)
    try:
        return engine.replicator.run(target, layouts)
    finally:
        layouts.close()


def _used(server: RunningServer) -> int:
    return int(next(t for t in admin(server, "tenant", "list") if t["name"] == AREA)["used"])


def _patches(server: RunningServer) -> int:
    count = 0
    for line in server.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        count += isinstance(entry, dict) and entry.get("method") == "PATCH"
    return count
