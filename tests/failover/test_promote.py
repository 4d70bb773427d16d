"""Without a witness (design 19.5): a server of a pair stays standby until promoted by hand with
`cairn server standby promote --force`, loudly and into the audit log; `standby status` shows it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from cairn.crypto.hashing import object_name
from cairn.server.app import open_services
from cairn.server.auth import Role
from cairn.server.context import Settings
from tests.support.clitools import Cairn
from tests.support.serverfixture import free_ports, running_server
from tests.support.witnessfixture import role, standby_status, wait_for


def test_promote_force_makes_a_witnessless_server_primary_and_is_audited(tmp_path: Path) -> None:
    data = tmp_path / "a"
    port, peer = free_ports(2)
    tool = Cairn(tmp_path)
    with running_server(data, True, "--peer", f"127.0.0.1:{peer}", port=port) as server:
        wait_for("the holder wrote its status", lambda: (data / "standby-status.json").exists())
        assert role(server) == "standby"
        refused = tool.run("server", "standby", "promote", "--data", str(data), check=False)
        assert refused.code == 166 and "CAIRN-E166" in refused.err
        done = tool.run("server", "standby", "promote", "--force", "--data", str(data), "--json")
        assert json.loads(done.out) == {"epoch": 1, "previous": 0, "forced": True}
        assert "WARNING" in done.err
        wait_for("the server took up the forced epoch", lambda: role(server) == "primary")
        status = standby_status(server)
        assert status is not None and (status["epoch"], status["forced"]) == (1, True)
        shown = tool.run("server", "standby", "status", "--data", str(data), "--json")
        assert json.loads(shown.out)["role"] == "primary"
    entries = open_services(Settings(data=data), create=False).audit.entries()
    assert any(e["action"] == "standby promote --force" for e in entries), entries
    after = tool.run("server", "standby", "status", "--data", str(data), "--json")
    assert json.loads(after.out)["running"] is False


def test_pair_options_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    tool = Cairn(tmp_path)
    for args in (
        ["--pin", "standby"],
        ["--peer", "127.0.0.1:1", "--pin", "primary"],
        ["--peer", "127.0.0.1:1", "--witness", "https://127.0.0.1:2", "--witness-token-file", "x"],
    ):
        port = free_ports(1)[0]
        serve = ["server", "serve", "--data", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}"]
        result = tool.run(*serve, *args, check=False)
        assert result.code == 166, (args, result.err)
        assert "CAIRN-E166" in result.err


def test_a_standby_makes_no_copy_folder_for_a_replication_write(tmp_path: Path) -> None:
    """A sending server's first write makes its copy (design 17.14) only once the fence let it
    through: a standby refuses it (E163) and has made nothing, the primary makes it."""
    data = tmp_path / "a"
    port, peer = free_ports(2)
    with running_server(data, True, "--peer", f"127.0.0.1:{peer}", port=port) as server:
        wait_for("the holder wrote its status", lambda: (data / "standby-status.json").exists())
        server.tenant("offsite")
        secret = server.token("offsite", Role.REPLICATION)
        body = b"a key object"
        path = f"/v1/t/offsite/c/sender-one/main-copy/keys/{object_name(body).hex}"

        def put() -> httpx.Response:
            headers = {"authorization": f"Bearer {secret}"}
            return httpx.put(server.url + path, content=body, headers=headers, verify=False)

        refused = put()
        assert refused.status_code == 503 and "CAIRN-E163" in refused.text, refused.text
        assert list(data.rglob("main-copy")) == [], "the standby made the copy's folder"
        assert not server.services().tenants.has_copy(
            server.services().tenants.get("offsite"), "sender-one", "main-copy"
        )
        Cairn(tmp_path).run("server", "standby", "promote", "--force", "--data", str(data))
        wait_for("the server took up the forced epoch", lambda: role(server) == "primary")
        stored = put()
        assert stored.status_code < 300, stored.text
        assert list(data.rglob("main-copy")) != []


def _target_audits(data: Path) -> int:
    entries = open_services(Settings(data=data), create=False).audit.entries()
    return sum(1 for e in entries if e["action"] == "audit-target")


def test_a_standby_replicates_nothing_until_it_leads(tmp_path: Path) -> None:
    """Only the primary replicates offsite (design 19.4): a standby's replication passes start
    nothing (no run, no audit of its target); promoted, it audits the target at its next pass."""
    data, offsite = tmp_path / "a", tmp_path / "offsite"
    offsite.mkdir()
    port, peer = free_ports(2)
    tool = Cairn(tmp_path)
    with running_server(data, True, "--peer", f"127.0.0.1:{peer}", port=port) as server:
        wait_for("the holder wrote its status", lambda: (data / "standby-status.json").exists())
        server.tenant("t")
        tool.run("server", "target", "add", "nas", str(offsite), "--data", str(data))
        rounds: set[int] = set()

        def more_rounds() -> bool:  # each holder round rewrites its status: a few rounds pass
            rounds.add(json.loads((data / "standby-status.json").read_text())["written_ms"])
            return len(rounds) > 4

        wait_for("a few rounds passed", more_rounds)
        assert role(server) == "standby" and _target_audits(data) == 0
        tool.run("server", "standby", "promote", "--force", "--data", str(data))
        wait_for("the server took up the forced epoch", lambda: role(server) == "primary")
        wait_for("the primary audited its target", lambda: _target_audits(data) >= 1)
