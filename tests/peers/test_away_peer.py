"""A peer that is away (design 20.4, 20.5), with real `cairn peer` processes on loopback: its copy
is marked degraded and nothing is deleted; within the grace period no other peer is given its
share, past it the next backup places a copy elsewhere; when it returns it catches up. And the
alert of `peer status` when the machine is short of `r` complete copies past the threshold,
mailed (`--notify`) to the test SMTP server once, and its end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.test_pairing_and_placement import _snapshots_held, _source, _tenant_for
from tests.support.notifyfixtures import (
    email_notify_file,
    make_certificates,
    smtp_server,
)
from tests.support.peerkit import PeerKit


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[PeerKit]:
    peers = PeerKit(tmp_path)
    try:
        yield peers
    finally:
        peers.close()


def test_an_away_peer_is_degraded_replaced_after_grace_and_catches_up(
    kit: PeerKit, tmp_path: Path
) -> None:
    src = _source(tmp_path)
    for name in ("a", "b", "d"):
        kit.init(name, "--offer", "100M")
    kit.init("m", "--offer", "100M", "--path", str(src))
    for name in ("a", "b", "d", "m"):
        kit.serve(name)
    for name in ("a", "b", "d"):
        kit.pair(name, "m")

    first = kit.peer("m", "backup", "--copies", "2", "--json").json()
    holders = sorted(c["peer"] for c in first["copies"] if c["snapshot_id"])
    assert len(holders) == 2
    away, staying = holders
    (spare,) = {"a", "b", "d"} - set(holders)
    old_snapshot = next(c["snapshot_id"] for c in first["copies"] if c["peer"] == away)
    calm = kit.peer("m", "status", "--alert-after", "0s", "--json").json()["this_machine"]
    assert calm["protected"] and not calm["alert"] and calm["degraded"] == {}

    kit.stop(away)
    (src / "new.txt").write_text("written while a peer was away")

    within = kit.peer("m", "backup", "--grace", "1h", "--json", check=False)
    assert within.code == 186 and "CAIRN-E186" in within.err
    assert f"{away} keeps its share" in within.err
    assert _snapshots_held(kit, spare, _tenant_for(kit, spare, "m")) == []  # not placed there

    short = kit.peer("m", "status", "--alert-after", "0s", check=False)
    assert short.code == 190
    assert f"{away}: degraded" in short.out and "ALERT (CAIRN-E190)" in short.out
    state = kit.peer("m", "status", "--alert-after", "0s", "--json", check=False).json()
    mine = state["this_machine"]
    assert mine["alert"] and not mine["protected"] and away in mine["degraded"]
    assert mine["unprotected_since_ms"] is not None
    patient = kit.peer("m", "status", "--json", check=False)  # default threshold: 1 day
    assert patient.code == 0 and not patient.json()["this_machine"]["alert"]

    past = kit.peer("m", "backup", "--grace", "0s", "--json").json()
    placed = sorted(c["peer"] for c in past["copies"] if c["snapshot_id"])
    assert placed == sorted([staying, spare])  # its share went to the spare peer
    healed = kit.peer("m", "status", "--alert-after", "0s", "--json").json()["this_machine"]
    assert healed["protected"] and not healed["alert"] and away in healed["degraded"]

    kit.serve(away)  # it returns, its data as it left it: nothing was deleted
    tenant = _tenant_for(kit, away, "m")
    assert _snapshots_held(kit, away, tenant) == [old_snapshot]
    back = kit.peer("m", "backup", "--json").json()
    caught_up = {c["peer"]: c["snapshot_id"] for c in back["copies"] if c["snapshot_id"]}
    assert set(caught_up) == {"a", "b", "d"}  # every holder is brought up to date
    assert caught_up[away] in _snapshots_held(kit, away, tenant)
    final = kit.peer("m", "status", "--json").json()["this_machine"]
    assert final["degraded"] == {} and final["protected"]


def test_the_alert_is_mailed_once_and_its_end_too(kit: PeerKit, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    with smtp_server(certs, "starttls") as mail:
        notify = email_notify_file(tmp_path, mail, certs)
        src = _source(tmp_path)
        for name in ("a", "b"):
            kit.init(name, "--offer", "100M")
        kit.init("m", "--offer", "100M", "--path", str(src))
        for name in ("a", "b", "m"):
            kit.serve(name)
        kit.pair("a", "m")
        assert kit.peer("m", "backup", check=False).code == 186  # 1 of 2: short of copies

        status = ("status", "--alert-after", "0s", "--notify", str(notify), "--json")
        alerted = kit.peer("m", *status, check=False)
        assert alerted.code == 190 and len(alerted.json()["told"]) == 1
        assert len(mail.inbox.messages) == 1  # sent before the status ended
        sent = mail.inbox.messages[0].message
        assert "FAILED" in sent["Subject"] and "peer-copies" in sent["Subject"]
        assert "CAIRN-E190" in sent.get_content()
        again = kit.peer("m", *status, check=False)
        assert again.code == 190 and again.json()["told"] == []  # told once, not each check
        assert len(mail.inbox.messages) == 1

        kit.pair("b", "m")
        kit.peer("m", "backup")
        healed = kit.peer("m", *status)
        assert len(healed.json()["told"]) == 1 and len(mail.inbox.messages) == 2
        assert "RECOVERED" in mail.inbox.messages[1].message["Subject"]
