"""The server's state moves whole: `cairn server export` → `cairn server import` into a new data
folder → a server started there accepts the old tokens and shows the same tenants, quotas,
retention, arrivals and job results, and `cairn server audit` finds the chain intact (issue 12,
item 4; design 14.15)."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path
from typing import Any

import httpx

from cairn.crypto.hashing import object_name
from tests.support.clitools import Cairn, Result
from tests.support.serverfixture import running_server

REPORT = {
    "job": "docs",
    "host": "laptop",
    "started": 1_790_000_000.0,
    "ended": 1_790_000_060.0,
    "outcome": "success",
    "snapshot": None,
    "files": 3,
    "bytes_added": 10,
    "error_code": None,
    "message": "",
}


def server(data: Path, *args: str, check: bool = True) -> Result:
    return Cairn(data).run("server", *args, "--data", str(data), check=check)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fill(data: Path) -> tuple[str, str]:
    """A tenant with a quota, retention, a backup token, one snapshot arrived and one job
    reported, as a server in use has; returns (tenant-admin token, backup token)."""
    server(data, "init")
    admin = server(data, "tenant", "add", "acme", "--quota", "10M", "--json").json()
    backup = server(data, "token", "add", "acme", "--role", "backup", "--json").json()
    server(data, "retention", "acme", "--keep-daily", "7")
    snapshot = b"a sealed snapshot, as far as the server can tell"
    with running_server(data, False) as old:
        put = httpx.put(
            f"{old.url}/v1/t/acme/snapshots/{object_name(snapshot).hex}",
            content=snapshot,
            headers=bearer(admin["admin_token"]),
        )
        assert put.status_code == 201, put.text
        jobs = httpx.post(f"{old.url}/v1/t/acme/jobs", json=REPORT, headers=bearer(backup["token"]))
        assert jobs.status_code == 201, jobs.text
    return admin["admin_token"], backup["token"]


def status(url: str, token: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/v1/t/acme/status", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    shown: dict[str, Any] = answer.json()
    for job in shown["jobs"]:
        job.pop("age_s")  # how long ago, by the clock of the moment asked
    return shown


def test_an_exported_state_imported_into_a_new_folder_is_the_same_server(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    admin, backup = fill(old)
    with running_server(old, False) as before:
        seen = status(before.url, admin)
    exported = tmp_path / "state.json"
    server(old, "export", str(exported))
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600  # token hashes are nobody's business
    document = json.loads(exported.read_text())
    assert document["format"] == "cairn-server-state" and document["version"] == 1
    assert backup not in exported.read_text()  # hashes only: no secret leaves the server

    imported = server(new, "import", str(exported), "--json").json()
    assert imported["imported"]["tenants"] == 1
    # the repositories are not in the state: copied on their own, as the import says
    shutil.copytree(old / "tenants", new / "tenants", dirs_exist_ok=True)
    with running_server(new, False) as after:
        assert status(after.url, admin) == seen  # quota, usage, retention, arrivals, jobs
        answer = httpx.post(f"{after.url}/v1/t/acme/jobs", json=REPORT, headers=bearer(backup))
        assert answer.status_code == 201, answer.text  # the old backup token works
    tenants = server(new, "tenant", "list", "--json").json()
    assert tenants == server(old, "tenant", "list", "--json").json()
    audit = server(new, "audit", "--json").json()
    assert audit["intact"] and audit["behind"] is None
    assert audit["entries"] > server(old, "audit", "--json").json()["entries"]
    assert document["tables"]["audit"][-1][4] == "export-state"  # who took it is on record


def test_export_writes_to_standard_output_and_import_refuses_a_folder_in_use(
    tmp_path: Path,
) -> None:
    old, used = tmp_path / "old", tmp_path / "used"
    server(old, "init")
    server(old, "tenant", "add", "acme")
    text = server(old, "export").out
    assert json.loads(text)["tables"]["tenants"][0][0] == "acme"
    state = tmp_path / "state.json"
    state.write_text(text)
    server(used, "init")
    refused = server(used, "import", str(state), check=False)
    assert refused.code == 71 and "CAIRN-E071" in refused.err
    assert "not empty" in refused.err and "new data folder" in refused.err
    state.write_text('{"format": "something else"}')
    wrong = server(tmp_path / "fresh", "import", str(state), check=False)
    assert wrong.code == 71 and "not a Cairn server state" in wrong.err
    assert not (tmp_path / "fresh").exists()
