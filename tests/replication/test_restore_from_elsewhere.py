"""`cairn server restore-from` with the target's own credentials and onto another storage
(design 17.15): a real `serve` replicates to S3 (SeaweedFS) with a credentials file of the
target's; its data folder is deleted; restore-from, in an environment with no S3 keys at all,
reads the target with `--credentials FILE` (a read-only key); with the environment's keys it
puts the tenants' objects in another storage location (`--storage`, another S3 prefix),
recorded in the new data folder so `serve` keeps them there, and a client restores bit-exact.
A second restore onto the same storage finds the objects already there."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.replication.layout import server_id
from tests.integration.test_cli_server import Client, admin, tree
from tests.replication.test_offsite_copies import aws_env as aws_env
from tests.replication.test_restore_from import (
    PASSPHRASE,
    _essentials,
    restore_from,
    wait_for_state,
)
from tests.replication.test_serve_replicates import names, wait_for_copies
from tests.replication.test_target_credentials import credentials_file
from tests.support.clitools import Cairn, Result, manifest
from tests.support.serverfixture import RunningServer, running_server
from tests.support.storageservers import S3_READER_KEY, S3_READER_SECRET, SeaweedS3

pytestmark = pytest.mark.required("SeaweedFS")


@pytest.fixture
def primary(
    tmp_path: Path, aws_env: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningServer]:
    monkeypatch.setenv("CAIRN_SERVER_STATE_PASSWORD", PASSPHRASE)
    with running_server(tmp_path / "data") as server:
        yield server


def restore_without_keys(tmp: Path, *args: str) -> Result:
    """restore-from in an environment that holds no S3 credentials of any kind."""
    tool = Cairn(tmp)
    env = {k: v for k, v in tool.env().items() if not k.startswith("AWS_")}
    env |= {"AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"), "AWS_CONFIG_FILE": str(tmp / "none")}
    return tool.run("server", "restore-from", *args, "--json", check=False, env=env)


def test_restore_from_with_credentials_onto_another_storage(
    primary: RunningServer, aws_env: SeaweedS3, tmp_path: Path
) -> None:
    admin(primary, "state-key", "set")
    keys = aws_env.env()
    creds = credentials_file(
        tmp_path / "s3-creds",
        AWS_ACCESS_KEY_ID=keys["AWS_ACCESS_KEY_ID"],
        AWS_SECRET_ACCESS_KEY=keys["AWS_SECRET_ACCESS_KEY"],
    )
    location = aws_env.location(prefix=aws_env.fresh_prefix())
    admin(primary, "target", "add", "s3", location, "--credentials", str(creds))
    token = str(admin(primary, "tenant", "add", "alpha")["admin_token"])
    machine = Client(primary, "alpha", tmp_path / "home", token)
    machine.run("init")
    source = tree(tmp_path / "src", 1, size=150_000)
    machine.run("backup", str(source))
    me = server_id(primary.data)
    tenant_id = primary.services().tenants.get("alpha").id
    copy = f"{location}/{me}/{tenant_id}"
    wait_for_copies(primary, {"s3": copy}, str(primary.data / "tenants" / tenant_id))
    wait_for_state(primary, [location], _essentials(admin(primary, "export")))
    port = primary.port
    primary.process.terminate()
    primary.process.wait(timeout=20)
    shutil.rmtree(primary.data)

    refused = restore_without_keys(tmp_path, location, "--data", str(tmp_path / "x"))
    assert refused.code != 0 and "Traceback" not in refused.err, refused
    assert "CAIRN-E" in refused.err, refused.err
    # the target's own read-only key, and no S3 key in the environment at all
    reader = credentials_file(
        tmp_path / "reader", AWS_ACCESS_KEY_ID=S3_READER_KEY, AWS_SECRET_ACCESS_KEY=S3_READER_SECRET
    )
    here = tmp_path / "here"
    alone = restore_without_keys(
        tmp_path, location, "--data", str(here), "--credentials", str(reader)
    )
    assert alone.code == 0, alone.err
    assert alone.json()["objects"] > 3 and alone.json()["storage"] is None

    # onto another storage (S3, with the environment's keys: the reader's key of the target
    # file reaches the target only, or the storage could not be written)
    storage = aws_env.location(prefix=aws_env.fresh_prefix())
    rebuilt = tmp_path / "rebuilt"
    args = ("--credentials", str(reader), "--storage", storage)
    done = restore_from(tmp_path, location, "--data", str(rebuilt), *args)
    assert done.code == 0, done.err
    report = done.json()
    assert report["objects"] == alone.json()["objects"] and report["present"] == 0, report
    assert report["storage"] == storage
    assert names(f"{storage}/tenants/{tenant_id}") == names(copy)
    assert not (rebuilt / "tenants" / tenant_id / "snapshots").exists()
    with running_server(rebuilt, port=port) as again:
        assert again.services().tenants.storage_location("tenants") == f"{storage}/tenants"
        out = tmp_path / "restored"
        machine.run("restore", "latest", "--target", str(out))
        assert manifest(out / source.relative_to("/")) == manifest(source)

    # The lost server's storage survived: a restore onto it copies nothing it already holds.
    twice = restore_from(tmp_path, location, "--data", str(tmp_path / "b"), *args)
    assert twice.code == 0, twice.err
    assert twice.json()["objects"] == 0 and twice.json()["present"] == report["objects"]
