"""Replication as a user runs it (issue 14's "done when", design 17.11): a real `cairn server
serve` with two tenants, targets added with `cairn server target add` while it runs (a local
folder, S3 on SeaweedFS, SFTP on OpenSSH's sshd), continuous by default: each client's backup
reaches every target without anyone running anything else; `target status` shows no lag; the
server's data folder deleted, a client restores bit-exact from the S3 copy with only its
passphrase."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.backends.base import ObjectKind
from cairn.backends.errors import BackendError
from cairn.backends.location import open_backend
from cairn.replication.layout import server_id
from tests.integration.test_cli_server import Client, admin, tree
from tests.replication.test_offsite_copies import aws_env as aws_env
from tests.replication.test_offsite_copies import sftp_env as sftp_env
from tests.support.clitools import Cairn, manifest
from tests.support.serverfixture import RunningServer, running_server
from tests.support.storageservers import SeaweedS3, SshServer
from tests.support.storageservers import sshd as sshd  # the session's server

pytestmark = pytest.mark.required("SeaweedFS and OpenSSH's sshd")

DEADLINE_S = 180.0
"""How long a backup may take to reach every target on a slow, shared machine: a bound on a
wait, not a measurement (the scheduler wakes on each journal append)."""

DATA_KINDS = (ObjectKind.KEY, ObjectKind.PACK, ObjectKind.INDEX, ObjectKind.SNAPSHOT)


@pytest.fixture
def primary(tmp_path: Path, aws_env: SeaweedS3, sftp_env: SshServer) -> Iterator[RunningServer]:
    """The server, started after the targets' credentials are in its environment."""
    with running_server(tmp_path / "data") as server:
        yield server


def names(location: str) -> set[str]:
    """The objects at `location`; none while the copy is not made yet."""
    try:
        backend = open_backend(location, retry_for=0)
    except BackendError:
        return set()
    try:
        return {f"{info.handle}" for kind in DATA_KINDS for info in backend.list(kind)}
    except BackendError:
        return set()
    finally:
        backend.close()


def wait_for_copies(server: RunningServer, copies: dict[str, str], source: str) -> None:
    """Until every copy holds every object of the tenant's storage at `source`."""
    deadline = time.monotonic() + DEADLINE_S
    wanted = names(source)
    while True:
        missing = {where: wanted - names(where) for where in copies.values()}
        if not any(missing.values()):
            return
        assert time.monotonic() < deadline, f"not replicated: {missing}; {server.log()[-3000:]}"
        time.sleep(0.5)


def test_serve_replicates_each_backup_to_every_target_continuously(
    primary: RunningServer, aws_env: SeaweedS3, sftp_env: SshServer, tmp_path: Path
) -> None:
    offsite = tmp_path / "offsite folder é"
    offsite.mkdir()
    targets = {
        "folder": str(offsite),
        "s3": aws_env.location(prefix=aws_env.fresh_prefix()),
        "sftp": sftp_env.location(tmp_path / "sftp-offsite"),
    }
    for name, location in targets.items():
        added = admin(primary, "target", "add", name, location)
        assert added["target"]["name"] == name, added
    machines, sources = {}, {}
    for seed, tenant in enumerate(("alpha", "beta"), start=1):
        token = str(admin(primary, "tenant", "add", tenant)["admin_token"])
        machines[tenant] = Client(primary, tenant, tmp_path / f"home-{tenant}", token)
        machines[tenant].run("init")
        sources[tenant] = tree(tmp_path / f"src-{tenant}", seed, size=120_000)
        machines[tenant].run("backup", str(sources[tenant]))

    me = server_id(primary.data)
    tenant_ids = {t: primary.services().tenants.get(t).id for t in sources}
    for tenant_id in tenant_ids.values():
        copies = {name: f"{where.rstrip('/')}/{me}/{tenant_id}" for name, where in targets.items()}
        wait_for_copies(primary, copies, str(primary.data / "tenants" / tenant_id))

    rows = admin(primary, "target", "status")
    assert {row["name"] for row in rows} == set(targets)
    for row in rows:
        assert row["lag_objects"] == 0 and row["last_error"] in (None, ""), row

    # The day the server is gone: only the S3 copy and the passphrase are left.
    primary.process.terminate()
    primary.process.wait(timeout=20)
    shutil.rmtree(primary.data)
    copy = f"{targets['s3']}/{me}/{tenant_ids['alpha']}"
    restored = tmp_path / "restored"
    client = Cairn(copy, cache=tmp_path / "cache-from-s3")
    client.run("restore", "latest", "--target", str(restored))
    original = sources["alpha"]
    assert manifest(restored / original.relative_to("/")) == manifest(original)
    client.run("check", "--read-data")
