"""Administering a server as its administrator does: make the data folder, start it, look after
tenants and tokens, read the audit log; and the mistakes and faults they meet (issue 11: items
6, 8, 9, 18 and the server's friction)."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from cairn.server.app import open_services
from cairn.server.context import Settings
from tests.support.clitools import Cairn, Result
from tests.support.serverfixture import SRC, running_server
from tests.support.smalldisk import fill, small_disk

USER = pwd.getpwuid(os.getuid()).pw_name
SERVE = ("server", "serve")
LISTEN_ANY = ("--listen", "127.0.0.1:0")  # a free port, chosen by the kernel


def server_cmd(data: Path, *args: str, check: bool = True) -> Result:
    return Cairn(data).run("server", *args, "--data", str(data), check=check)


def server_json(data: Path, *args: str) -> Any:
    parsed: Any = server_cmd(data, *args, "--json").json()
    return parsed


def make_data_folder(data: Path) -> None:
    """As `cairn server init` does (done in-process, so these tests also ran before it existed)."""
    open_services(Settings(data=data))


def audit_actions(data: Path) -> list[tuple[str, str]]:
    entries = open_services(Settings(data=data)).audit.entries(1000)
    return [(str(e["actor"]), str(e["action"])) for e in reversed(entries)]


def test_a_mistyped_data_folder_is_refused_and_never_made(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (wrong, empty):
        for action in (
            ["tenant", "list"],
            ["tenant", "add", "acme"],
            ["token", "list"],
            ["audit"],
            ["jobs"],
            ["gc"],
            ["fingerprint"],
        ):
            refused = server_cmd(folder, *action, check=False)
            assert refused.code == 74, (action, refused.err)
            assert "CAIRN-E074" in refused.err and str(folder) in refused.err
            assert "cairn server init" in refused.err
    assert not wrong.exists() and list(empty.iterdir()) == []


def test_init_makes_a_private_data_folder_and_shows_the_fingerprint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = server_json(data, "init", "--name", "backup.example")
    assert made["created"] is True
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "server.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "tls" / "key.pem").stat().st_mode) == 0o600
    shown = server_cmd(data, "fingerprint").out.strip()
    assert shown == made["fingerprint"] and len(shown) == 64
    again = server_json(data, "init")
    assert again["created"] is False and again["fingerprint"] == shown
    assert server_json(data, "tenant", "list") == []


def test_serve_on_a_port_in_use_fails_before_making_or_saying_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = server_cmd(data, "serve", "--listen", f"127.0.0.1:{port}", check=False)
    assert refused.code == 76 and "CAIRN-E076" in refused.err, refused.err
    assert f"127.0.0.1:{port}" in refused.err and "uses that port" in refused.err
    assert "serving" not in refused.out and "Errno" not in refused.err
    assert not data.exists()  # no data folder, no certificate


def test_admin_commands_are_audited_with_the_unix_user(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_data_folder(data)
    server_cmd(data, "tenant", "add", "acme")
    first = server_json(data, "token", "add", "acme", "--role", "backup")
    server_json(data, "token", "add", "acme", "--role", "restore")
    server_cmd(data, "tenant", "quota", "acme", "50G")
    server_cmd(data, "retention", "acme", "--keep-daily", "7")
    server_cmd(data, "token", "revoke", str(first["id"]))
    verified = server_json(data, "audit")
    assert verified["entries"] == 7 and verified["intact"] is True and verified["behind"] is None
    actor = f"cli:{USER}"
    assert audit_actions(data) == [
        (actor, "create-tenant"),
        (actor, "create-token"),
        (actor, "create-token"),
        (actor, "create-token"),
        (actor, "set-quota"),
        (actor, "set-retention"),
        (actor, "revoke-token"),
    ]


def test_audit_tells_when_the_log_is_behind_the_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_data_folder(data)
    server_cmd(data, "tenant", "add", "acme")
    services = open_services(Settings(data=data))
    with services.db.write() as conn:  # the newest record lost
        conn.execute("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")
    behind = server_cmd(data, "audit", check=False)
    assert behind.code == 77 and "CAIRN-E077" in behind.err, behind.err
    assert "has no audit record" in behind.err and "intact" not in behind.out


def test_every_answered_admin_request_survives_kill_9(tmp_path: Path) -> None:
    with running_server(tmp_path / "server") as server:
        operator = server_json(server.data, "token", "add", "--role", "server-admin")["token"]
        headers = {"authorization": f"Bearer {operator}"}
        with httpx.Client(base_url=server.url, verify=False, headers=headers) as http:
            for name in ("t1", "t2", "t3"):
                assert http.post("/v1/admin/tenants", json={"name": name}).status_code == 201
                made = http.post(f"/v1/admin/tenants/{name}/tokens", json={"role": "backup"})
                assert made.status_code == 201
        server.process.send_signal(signal.SIGKILL)  # nothing buffered may be lost now
        server.process.wait()
    by_api = [action for actor, action in audit_actions(server.data) if actor != f"cli:{USER}"]
    assert by_api == ["create-tenant", "create-token", "create-token"] * 3
    verified = server_json(server.data, "audit")
    assert verified["intact"] is True and verified["behind"] is None


@pytest.mark.required("root: a small tmpfs")
def test_admin_commands_on_a_full_disk_exit_30_naming_the_folder(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        data = disk / "data"
        make_data_folder(data)
        server_cmd(data, "tenant", "add", "acme")
        fill(disk / "filler")
        for action in (["tenant", "add", "beta"], ["token", "add", "acme", "--role", "backup"]):
            full = server_cmd(data, *action, check=False)  # asserts no traceback
            assert full.code == 30 and "CAIRN-E030" in full.err, full.err
            assert str(data) in full.err
        (disk / "filler").unlink()
        assert [t["name"] for t in server_cmd(data, "tenant", "list", "--json").json()] == ["acme"]
        assert server_json(data, "audit")["entries"] == 2  # nothing half done


def test_serve_logs_no_request_lines_by_default_and_says_it_stopped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve = subprocess.Popen(
        [sys.executable, "-m", "cairn.cli.main", *SERVE, "--data", str(data), *LISTEN_ANY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1"},
    )
    try:
        address = _serving_address(serve)
        assert httpx.get(f"https://{address}/v1/health", verify=False).status_code == 200
    finally:
        serve.terminate()
        out, err = serve.communicate(timeout=60)
    assert "stopped" in err and '"event": "request"' not in err + out, err
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "server.db").stat().st_mode) == 0o600


def _serving_address(serve: subprocess.Popen[str]) -> str:
    assert serve.stdout is not None
    for line in serve.stdout:
        if line.startswith("serving "):
            return line.split("cairns://")[1].split("/")[0]
    raise AssertionError(f"the server did not start: {serve.communicate(timeout=30)}")


def test_server_help_shows_only_what_applies_to_a_server(tmp_path: Path) -> None:
    for command in (["server", "--help"], ["server", "tenant", "add", "--help"]):
        shown = Cairn(tmp_path).run(*command).out
        assert "--data" in shown and "--json" in shown
        for client_only in ("--repo", "--password-file", "--cache-dir", "--token-file"):
            assert client_only not in shown, (command, client_only)


def test_init_against_a_server_prints_the_fingerprint_it_pinned(tmp_path: Path) -> None:
    with running_server(tmp_path / "server") as server:
        shown = server_cmd(server.data, "fingerprint").out.strip()
        for tenant, home in (("acme", "a"), ("beta", "b")):
            owner = server_json(server.data, "tenant", "add", tenant)["admin_token"]
            client = Cairn(server.location(tenant))
            env = client.env(CAIRN_TOKEN=str(owner), XDG_CONFIG_HOME=str(tmp_path / home))
            if tenant == "acme":
                assert client.run("init", "--json", env=env).json()["server_fingerprint"] == shown
            else:
                said = client.run("init", env=env).out
                assert f"certificate (SHA-256 {shown}) is pinned" in said
                assert "cairn server fingerprint" in said


@pytest.mark.required("root: a small tmpfs")
def test_a_running_server_on_a_full_disk_refuses_until_it_can_record(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "8m") as disk, running_server(disk / "data") as server:
        owner = server_json(server.data, "tenant", "add", "acme")["admin_token"]
        headers = {"authorization": f"Bearer {owner}"}
        with httpx.Client(base_url=server.url, verify=False, headers=headers) as http:
            assert http.get("/v1/t/acme/keys/").status_code == 200
            fill(disk / "filler")
            for _ in range(3):  # the old audit thread died at the first failure, for good
                refused = http.get("/v1/t/acme/keys/")
                assert refused.status_code == 507, refused.text
            seen = server_cmd(server.data, "audit", "--json")
            assert seen.json()["disk_full"] is True
            assert "cannot write its audit log" in server_cmd(server.data, "audit").out
            (disk / "filler").unlink()
            assert http.get("/v1/t/acme/keys/").status_code == 200
        verified = server_json(server.data, "audit")
        assert verified["intact"] is True and verified["behind"] is None
        assert verified["disk_full"] is False
        lists = [a for a in audit_actions(server.data) if a[1] == "list"]
        assert len(lists) == 3  # before, the first refused one (it was done), after
        assert "the audit log cannot be written" in server.log()
