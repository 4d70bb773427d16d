"""A client and a real server when something goes wrong between them: a token revoked in the
middle of a backup stops the client at once and throttles nobody else at its address; a server
killed mid-backup is waited for (CAIRN_RETRY_FOR), and what reached it is not sent again, whether
it came back in time or only for the next run."""

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

from tests.support.clitools import Cairn
from tests.support.serverfixture import RunningServer, running_server


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


def start_backup(tool: Cairn, env: dict[str, str], src: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cairn.cli.main", "backup", str(src), "--limit-upload", "256KiB/s"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stored_packs(requests: list[dict[str, object]], tenant: str) -> set[str]:
    """The packs the server answered 201 (stored) for, by name."""
    prefix = f"/v1/t/{tenant}/packs/"
    return {
        str(r["path"]).removeprefix(prefix)
        for r in requests
        if str(r["path"]).startswith(prefix) and r["method"] == "PUT" and r["status"] == 201
    }


def wait_for_packs(server: RunningServer, tenant: str, count: int) -> set[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stored = stored_packs(requests_since(server, 0), tenant)
        if len(stored) >= count:
            return stored
        time.sleep(0.05)
    raise AssertionError(f"the backup stored fewer than {count} packs")


def kill(server: RunningServer) -> None:
    server.process.kill()  # SIGKILL: no clean shutdown
    server.process.wait()


def source_tree(root: Path) -> Path:
    root.mkdir()
    for n in range(8):
        (root / f"f{n}.bin").write_bytes(os.urandom(512 * 1024))
    return root


def test_a_server_killed_and_back_within_the_budget_costs_the_backup_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "server"
    with running_server(data, False) as first:
        owner = first.tenant("office")
        tool = Cairn(first.location("office"), cache=tmp_path / "cache")
        env = machine_env(tool, tmp_path / "a", owner)
        tool.run("init", "--pack-size", "64KiB", env=env)
        src = source_tree(tmp_path / "src")
        backup = start_backup(tool, {**env, "CAIRN_RETRY_FOR": "5m"}, src)
        wait_for_packs(first, "office", 4)
        kill(first)
        before = stored_packs(requests_since(first, 0), "office")
        with running_server(data, False, port=first.port) as second:
            _out, err = backup.communicate(timeout=300)
            assert backup.returncode == 0, err
            again = stored_packs(requests_since(second, 0), "office")
            assert again and not again & before, "what reached the server is not sent again"
            restored = tmp_path / "restored"
            tool.run("restore", "latest", "--target", str(restored), env=env)
            for file in src.iterdir():
                assert (restored / file.relative_to("/")).read_bytes() == file.read_bytes()


def test_a_rerun_indexes_the_packs_that_reached_a_server_that_went_away(tmp_path: Path) -> None:
    data = tmp_path / "server"
    with running_server(data, False) as first:
        owner = first.tenant("office")
        tool = Cairn(first.location("office"), cache=tmp_path / "cache")
        env = machine_env(tool, tmp_path / "a", owner)
        tool.run("init", "--pack-size", "64KiB", env=env)
        src = source_tree(tmp_path / "src")
        backup = start_backup(tool, {**env, "CAIRN_RETRY_FOR": "1s"}, src)
        wait_for_packs(first, "office", 4)
        kill(first)
        before = stored_packs(requests_since(first, 0), "office")
        _out, err = backup.communicate(timeout=300)
    assert backup.returncode == 60, err
    assert "CAIRN-E060" in err and "retried for 1 s" in err and "Traceback" not in err
    with running_server(data, False, port=first.port) as second:
        rerun = tool.run("backup", str(src), env=env)
        assert "indexed" in rerun.out and "interrupted run had stored" in rerun.out
        again = stored_packs(requests_since(second, 0), "office")
        assert again and not again & before, "what reached the server is not sent again"
        restored = tmp_path / "restored"
        tool.run("restore", "latest", "--target", str(restored), env=env)
        for file in src.iterdir():
            assert (restored / file.relative_to("/")).read_bytes() == file.read_bytes()
        assert tool.run("check", env=env).code == 0


def test_how_long_a_missing_server_is_retried_is_the_users_to_set(tmp_path: Path) -> None:
    with running_server(tmp_path / "gone", False) as gone:
        location = gone.location("any")
    tool = Cairn(location, cache=tmp_path / "cache")
    env = machine_env(tool, tmp_path, "cairn_000000000000_" + "0" * 64)
    given_up = tool.run("snapshots", "--retry-for", "2s", check=False, env=env)
    assert given_up.code == 60 and "CAIRN-E060" in given_up.err
    assert "retried for 2 s" in given_up.err and "CAIRN_RETRY_FOR" in given_up.err
    bad = tool.run("snapshots", check=False, env={**env, "CAIRN_RETRY_FOR": "soon"})
    assert bad.code == 2 and "CAIRN-E002" in bad.err and "not a duration" in bad.err
