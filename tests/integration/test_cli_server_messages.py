"""What a client of a Cairn server is told when a token's role or a certificate pin is wrong
(issue 11, item 10): the message says what is wrong and where it came from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.server.auth import Role
from tests.support.clitools import Cairn
from tests.support.serverfixture import RunningServer, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


def _client(server: RunningServer, tmp_path: Path, role: Role) -> tuple[Cairn, dict[str, str]]:
    """A repository on a new tenant (made with a tenant-admin token), and the environment of
    a machine that holds a token of `role` for it."""
    tenant = f"t{abs(hash(tmp_path.name)) % 10**8}"
    server.tenant(tenant)
    tool = Cairn(server.location(tenant), cache=tmp_path / "cache")
    home = str(tmp_path / "home")
    admin = tool.env(CAIRN_TOKEN=server.token(tenant, Role.TENANT_ADMIN), XDG_CONFIG_HOME=home)
    tool.run("init", env=admin)
    return tool, tool.env(CAIRN_TOKEN=server.token(tenant, role), XDG_CONFIG_HOME=home)


def test_a_restore_token_backing_up_is_told_its_role_forbids_it(
    server: RunningServer, tmp_path: Path
) -> None:
    tool, env = _client(server, tmp_path, Role.RESTORE)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("a\n")
    result = tool.run("backup", str(tmp_path / "src"), check=False, env=env)
    assert result.code == 62 and "CAIRN-E062" in result.err
    assert "the token's role (restore) does not allow writing" in result.err
    assert "backup or tenant-admin token" in result.err
    assert "must hash to its name" not in result.err


def test_a_mismatch_says_where_the_pin_came_from(server: RunningServer, tmp_path: Path) -> None:
    tool, env = _client(server, tmp_path, Role.RESTORE)
    required = tool.run(
        "snapshots", check=False, env={**env, "CAIRN_SERVER_FINGERPRINT": "ab" * 32}
    )
    assert required.code == 63
    assert "required by CAIRN_SERVER_FINGERPRINT" in required.err
    assert "known_servers" not in required.err and "pinned in" not in required.err
    known = Path(env["XDG_CONFIG_HOME"]) / "cairn" / "known_servers"
    host = known.read_text().split()[0]
    known.write_text(f"{host} {'cd' * 32}\n")
    pinned = tool.run("snapshots", check=False, env=env)
    assert pinned.code == 63 and f"pinned in {known}" in pinned.err


def test_a_malformed_fingerprint_is_refused_before_connecting(
    server: RunningServer, tmp_path: Path
) -> None:
    tool, env = _client(server, tmp_path, Role.RESTORE)
    result = tool.run("snapshots", check=False, env={**env, "CAIRN_SERVER_FINGERPRINT": "00aa"})
    assert result.code == 2 and "CAIRN-E002" in result.err
    assert "'00aa' is not a certificate fingerprint" in result.err
    assert "pinned" not in result.err
