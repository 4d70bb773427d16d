"""Two real `cairn server serve` processes and one witness on loopback (design 19.4, 19.7).

No test asserts a duration: each waits for a state with a generous deadline. The lease's TTL is
short (a few seconds) so that the waits are short; the rules do not depend on it.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import blake3
import httpx
import pytest

from cairn.server.app import open_services
from cairn.server.auth import Role
from cairn.server.context import Settings
from tests.support.clitools import Cairn, Result
from tests.support.serverfixture import RunningServer, free_ports, wait_until_up
from tests.support.witnessfixture import (
    RunningWitness,
    role,
    running_witness,
    spawn_pair_member,
    standby_status,
    start_witness,
    stop,
    wait_for,
)

TTL = "4"


def _tokens(data: Path) -> dict[Role, str]:
    """A tenant `t` with a tenant-admin and a backup token, made before the server starts."""
    services = open_services(Settings(data=data))
    services.tenants.create("t", None)
    return {r: str(services.tokens.issue(r, "t")) for r in (Role.TENANT_ADMIN, Role.BACKUP)}


def _cairn(server: RunningServer, token: str, home: Path, *args: str) -> Result:
    tool = Cairn(server.location("t"), cache=home / "cache")
    env = tool.env(CAIRN_TOKEN=token, XDG_CONFIG_HOME=str(home))
    return tool.run(*args, check=False, env=env)


@contextmanager
def _pair(
    tmp_path: Path, witness: RunningWitness, lease: str = "cairn"
) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Both servers started at the same instant (neither waits for the other to answer)."""
    port_a, port_b = free_ports(2)
    extra = ("--lease-ttl", TTL, "--lease", lease)
    a = spawn_pair_member(tmp_path / "a", port_a, port_b, witness, *extra)
    b = spawn_pair_member(tmp_path / "b", port_b, port_a, witness, *extra)
    try:
        wait_until_up(a)
        wait_until_up(b)
        yield a, b
    finally:
        stop(a.process)
        stop(b.process)


def _primary(servers: tuple[RunningServer, ...]) -> RunningServer | None:
    leading = [s for s in servers if role(s) == "primary"]
    return leading[0] if len(leading) == 1 else None


def _put_lock(server: RunningServer, token: str) -> httpx.Response:
    """What a backup sends first: a lock object (named by its bytes' hash)."""
    body = b"a backup's lock"
    name = blake3.blake3(body).hexdigest()
    return httpx.put(
        f"{server.url}/v1/t/t/locks/{name}",
        content=body,
        headers={"authorization": f"Bearer {token}"},
        verify=False,
        timeout=10,
    )


def test_both_started_at_once_give_exactly_one_primary(tmp_path: Path) -> None:
    with running_witness(tmp_path / "w") as witness:
        for round_ in range(10):
            lease = f"round{round_}"
            with _pair(tmp_path / lease, witness, lease) as (a, b):
                wait_for("one of the pair leads", lambda: _primary((a, b)) is not None)
                held = witness.lease(lease)
                statuses = [standby_status(a), standby_status(b)]
                roles = sorted(str(s["role"]) for s in statuses if s is not None)
                assert roles == ["primary", "standby"], statuses
                leader = next(s for s in statuses if s is not None and s["role"] == "primary")
                assert leader["epoch"] == held["epoch"]


def test_kill_9_of_the_primary_makes_the_other_primary_with_the_next_epoch(
    tmp_path: Path,
) -> None:
    with running_witness(tmp_path / "w") as witness, _pair(tmp_path, witness) as (a, b):
        wait_for("one of the pair leads", lambda: _primary((a, b)) is not None)
        first = _primary((a, b))
        assert first is not None
        other = b if first is a else a
        epoch = standby_status(first)["epoch"]  # type: ignore[index]
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        wait_for("the other server leads", lambda: role(other) == "primary")
        assert standby_status(other)["epoch"] == epoch + 1  # type: ignore[index]
        assert witness.lease("cairn")["epoch"] == epoch + 1


def test_a_primary_paused_past_its_lease_has_demoted_itself_when_it_continues(
    tmp_path: Path,
) -> None:
    tokens = {name: _tokens(tmp_path / name) for name in ("a", "b")}
    source = tmp_path / "source"
    source.mkdir()
    (source / "file").write_bytes(b"what the machine backs up")
    with running_witness(tmp_path / "w") as witness, _pair(tmp_path, witness) as (a, b):
        wait_for("one of the pair leads", lambda: _primary((a, b)) is not None)
        first = _primary((a, b))
        assert first is not None
        other = b if first is a else a
        token = tokens[first.data.name][Role.TENANT_ADMIN]
        backup = tokens[first.data.name][Role.BACKUP]
        home = tmp_path / "home"
        assert _cairn(first, token, home, "init").code == 0
        done = _cairn(first, backup, home, "backup", str(source))
        assert done.code == 0, done.err
        epoch = standby_status(first)["epoch"]  # type: ignore[index]
        first.process.send_signal(signal.SIGSTOP)
        try:
            wait_for("the other server leads", lambda: role(other) == "primary")
        finally:
            first.process.send_signal(signal.SIGCONT)
        refused = _put_lock(first, token)  # at once: its holder's thread may not have run yet
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "CAIRN-E163"
        assert int(refused.headers["retry-after"]) >= 1
        status = standby_status(first)
        assert status is not None and status["role"] == "standby"
        assert status["refused_not_primary"] >= 1
        # a client that still follows the former primary's epoch, at the new primary
        stale = _put_lock_with_epoch(other, tokens[other.data.name][Role.TENANT_ADMIN], epoch)
        assert stale.status_code == 409
        assert stale.json()["error"]["code"] == "CAIRN-E164"
        assert standby_status(other)["refused_stale_epoch"] == 1  # type: ignore[index]
        refused_backup = _cairn(first, backup, home, "backup", str(source), "--retry-for", "2s")
        assert refused_backup.code == 163, refused_backup.err
        assert "CAIRN-E163" in refused_backup.err


def _put_lock_with_epoch(server: RunningServer, token: str, epoch: int) -> httpx.Response:
    body = b"a lock of a client that follows an old primary"
    return httpx.put(
        f"{server.url}/v1/t/t/locks/{blake3.blake3(body).hexdigest()}",
        content=body,
        headers={"authorization": f"Bearer {token}", "cairn-epoch": str(epoch)},
        verify=False,
        timeout=10,
    )


def test_without_the_witness_no_one_leads_until_it_returns(tmp_path: Path) -> None:
    witness = start_witness(tmp_path / "w")
    try:
        with _pair(tmp_path, witness) as (a, b):
            wait_for("one of the pair leads", lambda: _primary((a, b)) is not None)
            stop(witness.process)
            wait_for(
                "the primary demoted itself at its deadline",
                lambda: role(a) == "standby" and role(b) == "standby",
            )
            for server in (a, b):
                status = standby_status(server)
                assert status is not None and status["witness_reachable"] is False
            witness = start_witness(tmp_path / "w", witness.port)
            wait_for("one of the pair leads again", lambda: _primary((a, b)) is not None)
    finally:
        stop(witness.process)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only: a proxy in the environment must not carry the tests' requests."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _rounds(server: RunningServer, count: int) -> None:
    """Wait until `server`'s holder has written its status `count` more times (one per round)."""
    seen: set[int] = set()

    def written() -> bool:
        try:
            status = json.loads((server.data / "standby-status.json").read_text())
        except (OSError, ValueError):
            return False
        seen.add(int(status["written_ms"]))
        return len(seen) > count

    wait_for(f"{count} rounds of {server.data.name}", written)


def test_a_pinned_standby_leads_only_while_its_peer_is_down(tmp_path: Path) -> None:
    """`--pin standby` (design 19.4): it never campaigns while its peer answers and leads; it
    takes over when the peer is killed; the peer, back, finds the lease held and stays standby
    (the pinned standby stepping back is not built yet)."""
    port_a, port_b = free_ports(2)
    extra = ("--lease-ttl", TTL)
    with running_witness(tmp_path / "w") as witness:
        a = spawn_pair_member(tmp_path / "a", port_a, port_b, witness, *extra, "--pin", "primary")
        b = a  # until it is started: after its peer leads (not built: waiting at a joint start)
        try:
            wait_until_up(a)
            wait_for("the pinned primary leads", lambda: role(a) == "primary")
            b = spawn_pair_member(
                tmp_path / "b", port_b, port_a, witness, *extra, "--pin", "standby"
            )
            wait_until_up(b)
            _rounds(b, 4)
            held = witness.lease("cairn")
            assert held["holder"] == (a.data / "server-id").read_text().strip()
            status = standby_status(b)
            assert status is not None and status["role"] == "standby"
            assert status["witness_reachable"] is None, "it asked the witness for the lease"
            assert role(a) == "primary" and witness.lease("cairn")["epoch"] == held["epoch"]

            a.process.send_signal(signal.SIGKILL)
            a.process.wait()
            wait_for("the pinned standby takes over", lambda: role(b) == "primary")
            assert standby_status(b)["epoch"] == held["epoch"] + 1  # type: ignore[index]

            a = spawn_pair_member(
                tmp_path / "a", port_a, port_b, witness, *extra, "--pin", "primary"
            )
            wait_until_up(a)
            wait_for(
                "the returned peer asked the witness",
                lambda: (standby_status(a) or {}).get("witness_reachable") is True,
            )
            _rounds(a, 2)
            assert role(a) == "standby" and role(b) == "primary"
            assert witness.lease("cairn")["epoch"] == held["epoch"] + 1
        finally:
            stop(a.process)
            stop(b.process)
