"""Peer mode end to end (design 20), with real `cairn peer` processes on loopback: pairing with
one-time codes, a machine's snapshot complete on two other peers, the refusals of pairing, a
peer over its quota, and a restore from one peer with the owner's passphrase."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.backends.base import ObjectKind
from cairn.peers.invitation import Invitation, decode
from cairn.peers.store import PeerStore
from cairn.server.app import open_services
from cairn.server.context import Settings
from tests.support.clitools import manifest
from tests.support.peerkit import PeerKit

MARKER = b"the plaintext no peer may read"


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[PeerKit]:
    peers = PeerKit(tmp_path)
    try:
        yield peers
    finally:
        peers.close()


def _source(root: Path, size: int = 50_000) -> Path:
    src = root / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "note.txt").write_bytes(MARKER * 10)
    (src / "random.bin").write_bytes(os.urandom(size))
    return src


def _snapshots_held(kit: PeerKit, holder: str, tenant: str | None) -> list[str]:
    """The snapshot objects `holder`'s server stores in `tenant`, read from its data folder."""
    if tenant is None:
        return []
    services = open_services(Settings(data=kit.peers[holder].folder / "server"), create=False)
    backend = services.tenants.backend(services.tenants.get(tenant))
    return [info.handle.name for info in backend.list(ObjectKind.SNAPSHOT)]


def _tenant_for(kit: PeerKit, holder: str, owner: str) -> str | None:
    store = PeerStore(kit.peers[holder].folder)
    try:
        return store.peer(owner).tenant_here
    finally:
        store.close()


def test_three_peers_pair_and_a_snapshot_lands_complete_on_two_others(
    kit: PeerKit, tmp_path: Path
) -> None:
    src = _source(tmp_path)
    for name in ("a", "b"):
        kit.init(name, "--offer", "100M")
    kit.init("c", "--offer", "100M", "--path", str(src))
    for name in ("a", "b", "c"):
        kit.serve(name)
    joined = kit.pair("a", "c").json()
    assert joined["name"] == "a"
    shown = kit.cairn("server", "fingerprint", "--data", str(kit.peers["a"].folder / "server"))
    assert joined["fingerprint"] in shown.out  # what a human compares on the other machine
    kit.pair("b", "c")
    kit.pair("a", "b")

    run = kit.peer("c", "backup", "--json").json()
    assert run["complete"] == 2 and run["wanted"] == 2
    placed = {c["peer"]: c["snapshot_id"] for c in run["copies"] if c["snapshot_id"]}
    assert set(placed) == {"a", "b"}  # never itself

    for holder in ("a", "b"):  # complete on each: its snapshot object is stored there
        held = _snapshots_held(kit, holder, _tenant_for(kit, holder, "c"))
        assert held == [placed[holder]]
        for path in (kit.peers[holder].folder / "server" / "tenants").rglob("*"):
            if path.is_file():
                assert MARKER not in path.read_bytes()  # a peer stores what it cannot read

    status = kit.peer("c", "status", "--json").json()
    mine = status["this_machine"]
    assert mine["complete_copies"] == 2 and mine["protected"]
    assert sorted(mine["complete_on"]) == ["a", "b"]
    rows = {row["name"]: row for row in status["peers"]}
    assert rows["a"]["offered"] == 100 * 2**20 and rows["a"]["used_there"] > 0
    assert rows["a"]["last_seen_ms"] is not None
    seen_from_a = {row["name"]: row for row in kit.peer("a", "status", "--json").json()["peers"]}
    assert seen_from_a["c"]["used_here"] == rows["a"]["used_there"]
    assert seen_from_a["b"]["role"] == "offer"

    listing = {p["name"]: p for p in kit.peer("c", "list", "--json").json()}
    assert set(listing) == {"a", "b"}

    # Restore from one peer with the owner's passphrase; a wrong one opens nothing.
    kit.stop("a")
    target = tmp_path / "restored"
    kit.peer("c", "restore", "--from", "b", "-t", str(target))
    assert manifest(target / src.relative_to("/")) == manifest(src)
    wrong = kit.peer(
        "c", "restore", "--from", "b", "-t", str(tmp_path / "x"), check=False, CAIRN_PASSWORD="no"
    )
    assert wrong.code == 12 and "CAIRN-E012" in wrong.err

    # With a gone, status tells the truth: one copy confirmed, a unreachable.
    after = kit.peer("c", "status", "--json").json()
    assert after["this_machine"]["complete_on"] == ["b"]
    assert not after["this_machine"]["protected"]
    assert {r["name"]: r for r in after["peers"]}["a"]["error"]


def test_a_wrong_a_used_and_an_expired_code_are_refused(kit: PeerKit) -> None:
    kit.init("a", "--offer", "10M")
    kit.init("b", "--offer", "10M")
    kit.init("c", "--client-only")
    kit.serve("a")
    code = kit.peer("a", "invite", "--json").json()["code"]
    real = decode(code)
    forged = Invitation(real.address, real.fingerprint, bytes(16)).code()

    wrong = kit.peer("b", "join", forged, check=False)
    assert wrong.code == 181 and "CAIRN-E181" in wrong.err
    garbage = kit.peer("b", "join", "cairnpeer1-zz", check=False)
    assert garbage.code == 188 and "CAIRN-E188" in garbage.err

    kit.peer("b", "join", code)
    used = kit.peer("c", "join", code, check=False)
    assert used.code == 182 and "CAIRN-E182" in used.err

    short = kit.peer("a", "invite", "--valid", "1s", "--json").json()
    while time.time() * 1000 <= short["expires_ms"]:  # past its expiry on this machine's clock
        time.sleep(0.1)
    expired = kit.peer("c", "join", short["code"], check=False)
    assert expired.code == 183 and "CAIRN-E183" in expired.err

    # A laptop pairs, offers nothing, and is never a place for a copy.
    kit.pair("a", "c")
    from_a = {p["name"]: p for p in kit.peer("a", "list", "--json").json()}
    assert from_a["c"]["role"] == "client-only" and from_a["c"]["offer"] is None
    assert set(from_a) == {"b", "c"}

    # Forget: the record goes, the tokens of b's tenant here stop working, its data stays.
    tenant = PeerStore(kit.peers["a"].folder).peer("b").tenant_here
    kit.peer("a", "forget", "b")
    assert {p["name"] for p in kit.peer("a", "list", "--json").json()} == {"c"}
    tokens = kit.cairn(
        "server", "token", "list", "--data", str(kit.peers["a"].folder / "server"), "--json"
    ).json()
    of_b = [t for t in tokens if t["tenant"] == tenant]
    assert of_b and all(t["revoked_ms"] for t in of_b)
    missing = kit.peer("a", "forget", "b", check=False)
    assert missing.code == 187 and "CAIRN-E187" in missing.err


def test_a_changed_certificate_is_refused_and_nothing_is_sent(kit: PeerKit) -> None:
    a = kit.init("a", "--offer", "10M")
    kit.init("b", "--offer", "10M")
    kit.serve("a")
    code = kit.peer("a", "invite", "--json").json()["code"]
    kit.stop("a")
    kit.init("impostor", "--offer", "10M", port=a.port)  # another certificate, same address
    kit.serve("impostor")
    refused = kit.peer("b", "join", code, check=False)
    assert refused.code == 184 and "CAIRN-E184" in refused.err
    assert "/v1/peer/join" not in kit.log("impostor")
    assert kit.peer("b", "list", "--json").json() == []
    assert kit.peer("impostor", "list", "--json").json() == []


def test_a_peer_over_its_quota_refuses_and_the_copy_goes_to_another(
    kit: PeerKit, tmp_path: Path
) -> None:
    src = _source(tmp_path, size=600_000)
    kit.init("small", "--offer", "200K")
    kit.init("big", "--offer", "100M")
    kit.init("m", "--offer", "10M", "--path", str(src))
    for name in ("small", "big", "m"):
        kit.serve(name)
    kit.pair("small", "m")
    kit.pair("big", "m")

    one = kit.peer("m", "backup", "--copies", "1", "--json").json()
    assert [c["peer"] for c in one["copies"] if c["snapshot_id"]] == ["big"]

    two = kit.peer("m", "backup", "--json", check=False)
    assert two.code == 186 and "CAIRN-E186" in two.err
    assert "only 1 of 2 copies" in two.err
    assert "small: CAIRN-E065" in two.err  # the quota refusal, named
    status = kit.peer("m", "status", "--json").json()["this_machine"]
    assert status["complete_on"] == ["big"] and not status["protected"]
    assert "CAIRN-E065" in status["failed"]["small"]


def test_serve_runs_the_machines_own_backup_job(kit: PeerKit, tmp_path: Path) -> None:
    src = _source(tmp_path)
    kit.init("a", "--offer", "100M")
    kit.init("b", "--offer", "100M")
    kit.init("c", "--client-only", "--path", str(src))
    kit.serve("a")
    kit.serve("b")
    kit.pair("a", "c")
    kit.pair("b", "c")
    kit.serve("c", "--backup-every", "1h")  # a run at start, then hourly
    deadline = time.monotonic() + 240
    mine: dict[str, object] = {}
    while time.monotonic() < deadline:
        mine = kit.peer("c", "status", "--json").json()["this_machine"]
        if mine["protected"]:
            break
        time.sleep(0.5)
    assert mine["protected"], kit.log("c")
    assert sorted(mine["complete_on"]) == ["a", "b"]  # type: ignore[call-overload]
