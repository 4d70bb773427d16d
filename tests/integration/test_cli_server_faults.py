"""A client and a real server when something goes wrong between them: a token revoked in the
middle of a backup stops the client at once and throttles nobody else at its address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clitools import Cairn

from serverfixture import RunningServer, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("server"), False) as running:
        yield running


def admin(server: RunningServer, *args: str) -> dict[str, object]:
    result = Cairn(server.data).run("server", *args, "--data", str(server.data), "--json")
    parsed: dict[str, object] = result.json()
    return parsed


def machine_env(tool: Cairn, home: Path, token: str) -> dict[str, str]:
    return tool.env(CAIRN_TOKEN=token, XDG_CONFIG_HOME=str(home))


def requests_since(server: RunningServer, line: int) -> list[dict[str, object]]:
    lines = server.log().splitlines()[line:]
    return [json.loads(x) for x in lines if x.startswith("{") and '"request"' in x]


def wait_for_pack_upload(
    server: RunningServer, tenant: str, process: subprocess.Popen[str]
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if any(
            str(r["path"]).startswith(f"/v1/t/{tenant}/packs/") and r["method"] == "PUT"
            for r in requests_since(server, 0)
        ):
            return
        time.sleep(0.05)
    raise AssertionError("the backup stored no pack")


def test_a_token_revoked_mid_backup_stops_the_client_and_throttles_no_one(
    server: RunningServer, tmp_path: Path
) -> None:
    owner = str(admin(server, "tenant", "add", "office")["admin_token"])
    tool = Cairn(server.location("office"), cache=tmp_path / "cache")
    tool.run("init", "--pack-size", "64KiB", env=machine_env(tool, tmp_path / "a", owner))
    backup = admin(server, "token", "add", "office", "--role", "backup")
    src = tmp_path / "src"
    src.mkdir()
    for n in range(8):
        (src / f"f{n}.bin").write_bytes(os.urandom(512 * 1024))
    env = machine_env(tool, tmp_path / "a", str(backup["token"]))
    process = subprocess.Popen(
        [sys.executable, "-m", "cairn.cli.main", "backup", str(src), "--limit-upload", "256KiB/s"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_pack_upload(server, "office", process)
    admin(server, "token", "revoke", str(backup["id"]))
    revoked_at = len(server.log().splitlines())
    _out, err = process.communicate(timeout=120)

    assert process.returncode == 61, err
    assert "CAIRN-E061" in err and "revoked" in err and "Traceback" not in err
    after = requests_since(server, revoked_at)
    print(f"{len(after)} requests after the revocation: {after}")
    assert len(after) <= 4, after  # those under way when the first refusal came back
    assert (
        tool.run("snapshots", "--json", env=machine_env(tool, tmp_path / "b", owner)).json() == []
    )


def test_known_tokens_in_the_wrong_state_are_no_guesses_for_the_throttle(
    server: RunningServer, tmp_path: Path
) -> None:
    """An old client that keeps retrying with its revoked or expired token (or several such
    machines behind one address) does not lock the office's other machines out."""
    owner = str(admin(server, "tenant", "add", "nat")["admin_token"])
    tool = Cairn(server.location("nat"), cache=tmp_path / "cache")
    tool.run("init", env=machine_env(tool, tmp_path / "a", owner))
    revoked = admin(server, "token", "add", "nat", "--role", "backup")
    admin(server, "token", "revoke", str(revoked["id"]))
    expiring = admin(server, "token", "add", "nat", "--role", "restore", "--expires", "1s")
    time.sleep(1.5)  # past its expiry on the server's clock (this machine's)
    for token, code in ((revoked["token"], "CAIRN-E061"), (expiring["token"], "CAIRN-E075")):
        for _ in range(15):
            answer = httpx.get(
                f"{server.url}/v1/t/nat/snapshots/", headers={"authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 401 and answer.json()["error"]["code"] == code
    listed = tool.run("snapshots", "--json", env=machine_env(tool, tmp_path / "b", owner))
    assert listed.json() == []  # not throttled (429, CAIRN-E064) after 30 refusals
