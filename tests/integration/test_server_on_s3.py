"""`cairn server serve --storage s3:…`: the tenants' objects live in a real SeaweedFS bucket, the
server's database stays in its data folder, and everything a server does keeps working: two
tenants back up and restore through the real CLI, quotas, GC, scrub and the audit log."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_cli_server import Client, admin, tree
from tests.support.clitools import Cairn, manifest
from tests.support.serverfixture import RunningServer, free_port, running_server
from tests.support.storageservers import S3_BUCKET, S3_READER_KEY, S3_READER_SECRET, SeaweedS3


@pytest.fixture(scope="module")
def aws_env(seaweed: SeaweedS3) -> Iterator[SeaweedS3]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in seaweed.env().items():
            patch.setenv(name, value)
        yield seaweed


@pytest.fixture(scope="module")
def storage(aws_env: SeaweedS3) -> str:
    return aws_env.location(prefix=aws_env.fresh_prefix())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, storage: str) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("server")
    with running_server(data, True, "--storage", storage) as running:
        yield running


def keys_of(seaweed: SeaweedS3, storage: str, tenant_id: str) -> list[str]:
    prefix = storage.split(f"/{S3_BUCKET}/", 1)[1]
    return seaweed.keys(S3_BUCKET, f"{prefix}/tenants/{tenant_id}/")


def test_two_tenants_back_up_and_restore_from_the_bucket(
    server: RunningServer, aws_env: SeaweedS3, storage: str, tmp_path: Path
) -> None:
    machines = {}
    for name, seed in (("acme", 1), ("beta", 2)):
        token = str(admin(server, "tenant", "add", name)["admin_token"])
        machine = Client(server, name, tmp_path / name, token)
        machine.run("init")
        source = tree(tmp_path / f"src-{name}", seed)
        machine.run("backup", str(source))
        machines[name] = (machine, source)
    for name, (machine, source) in machines.items():
        machine.run("restore", "latest", "--target", str(tmp_path / f"out-{name}"))
        assert manifest(tmp_path / f"out-{name}" / source.relative_to("/")) == manifest(source)
        machine.run("check", "--read-data")
        tenant_id = server.services().tenants.get(name).id
        stored = keys_of(aws_env, storage, tenant_id)
        assert any("/packs/" in key for key in stored) and any(
            key.endswith("/config") for key in stored
        )
        assert not (server.data / "tenants" / tenant_id).exists(), "nothing in the data folder"
    verified = admin(server, "audit")
    assert verified["intact"] is True and int(str(verified["entries"])) > 0


def test_a_quota_counts_what_the_bucket_holds(server: RunningServer, tmp_path: Path) -> None:
    small = str(admin(server, "tenant", "add", "small", "--quota", "1M")["admin_token"])
    machine = Client(server, "small", tmp_path / "s", small)
    machine.run("init")
    full = machine.run("backup", str(tree(tmp_path / "big", 4, size=3_000_000)), check=False)
    assert full.code == 65 and "CAIRN-E065" in full.err
    machine.run("check")


def test_retention_gc_and_scrub_work_on_the_bucket(
    server: RunningServer, aws_env: SeaweedS3, storage: str, tmp_path: Path
) -> None:
    owner = str(admin(server, "tenant", "add", "kept")["admin_token"])
    machine = Client(server, "kept", tmp_path / "m", owner)
    machine.run("init")
    source = tree(tmp_path / "src", 6)
    first_tree = manifest(source)
    for round_ in range(4):
        machine.run("backup", str(source))
        (source / "data.bin").write_bytes(os.urandom(200_000))
        (source / f"new{round_}.txt").write_text("more\n" * 1000)
    admin(server, "retention", "kept", "--keep-daily", "1")  # the day's first and the newest
    reports = [admin(server, "gc", "kept") for _ in range(2)]
    assert sum(int(r[0]["forgotten"]) for r in reports) == 2
    snapshots = machine.run("snapshots", "--json").json()
    assert len(snapshots) == 2
    oldest = min(snapshots, key=lambda s: s["time"])
    machine.run("restore", oldest["id"], "--target", str(tmp_path / "first"))
    assert manifest(tmp_path / "first" / source.relative_to("/")) == first_tree
    machine.run("check", "--read-data")
    assert admin(server, "scrub", "kept")[0]["damaged"] == []
    tenant_id = server.services().tenants.get("kept").id
    pack = next(k for k in keys_of(aws_env, storage, tenant_id) if "/packs/" in k)
    client = aws_env.client()
    data = bytearray(client.get_object(Bucket=S3_BUCKET, Key=pack)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    client.delete_object(Bucket=S3_BUCKET, Key=pack)
    client.put_object(Bucket=S3_BUCKET, Key=pack, Body=bytes(data))
    found = Cairn(server.data).run(
        "server", "scrub", "kept", "--data", str(server.data), check=False
    )
    assert found.code == 20 and pack.rsplit("/", 1)[1][:16] in found.out


def serve(
    data: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`cairn server serve` that is expected to refuse to start."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cairn.cli.main",
            "server",
            "serve",
            "--data",
            str(data),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--insecure-http",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or dict(os.environ),
        check=False,
    )


def test_the_start_probe_refuses_storage_it_cannot_use(aws_env: SeaweedS3, tmp_path: Path) -> None:
    missing = serve(tmp_path / "a", "--storage", aws_env.location("no-such-bucket", "x"))
    assert missing.returncode == 71 and "CAIRN-E071" in missing.stderr
    assert "no-such-bucket" in missing.stderr and "Traceback" not in missing.stderr
    reader = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": S3_READER_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_READER_SECRET,
    }
    denied = serve(tmp_path / "b", "--storage", aws_env.location(prefix="y"), env=reader)
    assert denied.returncode == 71 and "probe at write" in denied.stderr
    assert "Traceback" not in denied.stderr


def test_a_data_folder_keeps_its_storage(server: RunningServer, storage: str) -> None:
    other = serve(server.data, "--storage", storage + "-elsewhere")
    assert other.returncode == 71 and f"live in {storage}" in other.stderr
