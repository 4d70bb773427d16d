"""`cairn server restore-from` (issue 14 item 3, design 17.15): a real `cairn server serve` with
two tenants, a backup token, a quota and a retention policy carries its sealed state to a local
folder target and to S3 (SeaweedFS) as it replicates; its data folder deleted, the server is
rebuilt from each target with the operator's passphrase, and served again: the old backup token
works, the client's `snapshots` and `restore latest` are bit-exact, the quota and retention are
the same and the audit log's chain verifies. A wrong passphrase is CAIRN-E145, a location with no
state CAIRN-E146, never a traceback."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cairn.backends.location import open_backend
from cairn.replication.errors import StateSealError
from cairn.replication.layout import server_id
from cairn.replication.sealedstate import open_sealed
from cairn.replication.stateshelf import newest, state_location
from tests.integration.test_cli_server import Client, admin, tree
from tests.replication.test_offsite_copies import aws_env as aws_env
from tests.replication.test_serve_replicates import DEADLINE_S, wait_for_copies
from tests.support.clitools import Cairn, Result, manifest
from tests.support.serverfixture import RunningServer, running_server
from tests.support.storageservers import SeaweedS3

pytestmark = pytest.mark.required("SeaweedFS")

PASSPHRASE = "the operator's own passphrase"


@pytest.fixture
def primary(
    tmp_path: Path, aws_env: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningServer]:
    monkeypatch.setenv("CAIRN_SERVER_STATE_PASSWORD", PASSPHRASE)
    with running_server(tmp_path / "data") as server:
        yield server


def sealed_state(location: str, server: str) -> dict[str, Any] | None:
    """The newest state on a target, opened; None while there is none."""
    where = state_location(location, server)
    backend = open_backend(where)
    try:
        payload, _ = open_sealed(newest(backend, where), PASSPHRASE.encode())
    except StateSealError:
        return None
    finally:
        backend.close()
    state: dict[str, Any] = payload["state"]
    return state


def wait_for_state(server: RunningServer, locations: list[str], wanted: dict[str, Any]) -> None:
    """Until each target's newest state holds the tenants and tokens the server holds now."""
    me = server_id(server.data)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        states = [sealed_state(where, me) for where in locations]
        if all(s is not None and _essentials(s) == wanted for s in states):
            return
        assert time.monotonic() < deadline, f"no state: {states}; {server.log()[-3000:]}"
        time.sleep(0.5)


def _essentials(state: dict[str, Any]) -> dict[str, Any]:
    """Tenants (name, id, quota, retention) and tokens (id, tenant, role, hash) of a state."""
    tables = state["tables"]
    return {
        "tenants": sorted((r[0], r[1], r[2], r[5]) for r in tables["tenants"]),
        "tokens": sorted(tuple(r[:4]) for r in tables["tokens"]),
    }


def restore_from(tmp: Path, *args: str, password: str = PASSPHRASE) -> Result:
    tool = Cairn(tmp)  # the repository option is unused by `cairn server`
    env = tool.env(CAIRN_SERVER_STATE_PASSWORD=password)
    return tool.run("server", "restore-from", *args, "--json", check=False, env=env)


def test_restore_from_rebuilds_the_whole_server(
    primary: RunningServer, aws_env: SeaweedS3, tmp_path: Path
) -> None:
    admin(primary, "state-key", "set")
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    targets = {"folder": str(offsite), "s3": aws_env.location(prefix=aws_env.fresh_prefix())}
    for name, location in targets.items():
        admin(primary, "target", "add", name, location)

    machines, sources = {}, {}
    for seed, tenant in enumerate(("alpha", "beta"), start=1):
        token = str(admin(primary, "tenant", "add", tenant)["admin_token"])
        machines[tenant] = Client(primary, tenant, tmp_path / f"home-{tenant}", token)
        machines[tenant].run("init")
        sources[tenant] = tree(tmp_path / f"src-{tenant}", seed, size=120_000)
        machines[tenant].run("backup", str(sources[tenant]))
    alpha = machines["alpha"]
    alpha.token = str(admin(primary, "token", "add", "alpha", "--role", "backup")["token"])
    (sources["alpha"] / "later.txt").write_text("made after the first backup\n" * 400)
    alpha.run("backup", str(sources["alpha"]))
    admin(primary, "tenant", "quota", "alpha", "2G")
    admin(primary, "retention", "beta", "--keep-daily", "7", "--keep-within", "30d")

    me = server_id(primary.data)
    services = primary.services()
    tenant_ids = {t: services.tenants.get(t).id for t in sources}
    for tenant_id in tenant_ids.values():
        copies = {n: f"{w.rstrip('/')}/{me}/{tenant_id}" for n, w in targets.items()}
        wait_for_copies(primary, copies, str(primary.data / "tenants" / tenant_id))
    before = _essentials(admin(primary, "export"))
    wait_for_state(primary, list(targets.values()), before)
    snapshots_before = alpha.run("snapshots", "--json").json()
    tenants_before = admin(primary, "tenant", "list")

    port = primary.port
    primary.process.terminate()
    primary.process.wait(timeout=20)
    shutil.rmtree(primary.data)

    # Refusals first: nothing is made, no traceback.
    wrong = restore_from(tmp_path, targets["folder"], "--data", str(tmp_path / "x"), password="no")
    assert wrong.code == 145 and "CAIRN-E145" in wrong.err, wrong
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
    empty = tmp_path / "empty-offsite"
    empty.mkdir()
    none = restore_from(tmp_path, str(empty), "--data", str(tmp_path / "y"))
    assert none.code == 146 and "CAIRN-E146" in none.err, none

    # From S3: the only server under the prefix is found by a listing.
    from_s3 = tmp_path / "from-s3"
    done = restore_from(tmp_path, targets["s3"], "--data", str(from_s3))
    assert done.code == 0, done.err
    assert done.json()["server_id"] == me and sorted(done.json()["tenants"]) == ["alpha", "beta"]
    assert admin_at(from_s3, "audit")["intact"] is True
    assert quotas(admin_at(from_s3, "tenant", "list")) == quotas(tenants_before)

    # From the folder (the only server there is found), then served where clients knew it.
    rebuilt = tmp_path / "rebuilt"
    done = restore_from(tmp_path, targets["folder"], "--data", str(rebuilt))
    assert done.code == 0, done.err
    assert (rebuilt / "server-id").read_text().strip() == me
    assert os.stat(rebuilt / "state-key").st_mode & 0o777 == 0o600
    with running_server(rebuilt, port=port) as again:
        assert _essentials(admin(again, "export")) == before
        assert quotas(admin(again, "tenant", "list")) == quotas(tenants_before)
        audit = admin(again, "audit")
        assert audit["intact"] is True and audit["behind"] is None, audit
        assert alpha.run("snapshots", "--json").json() == snapshots_before
        restored = tmp_path / "restored"
        alpha.run("restore", "latest", "--target", str(restored))
        original = sources["alpha"]
        assert manifest(restored / original.relative_to("/")) == manifest(original)
        beta_out = tmp_path / "restored-beta"
        machines["beta"].run("restore", "latest", "--target", str(beta_out))
        assert manifest(beta_out / sources["beta"].relative_to("/")) == manifest(sources["beta"])


def quotas(rows: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    """Each tenant's quota (its usage is recounted from the objects copied: locks stay behind)."""
    return [(row["name"], row["quota"]) for row in rows]


def admin_at(data: Path, *args: str) -> Any:
    result = Cairn(data).run("server", *args, "--data", str(data), "--json")
    return result.json()
