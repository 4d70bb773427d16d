"""Discovery (design 20.7): peers in network namespaces joined by a bridge find each other by
mDNS and pair across it; where multicast does not pass, a static address is asked directly."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.peerkit import PeerKit


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[PeerKit]:
    peers = PeerKit(tmp_path)
    try:
        yield peers
    finally:
        peers.close()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def lan() -> Iterator[list[tuple[str, str]]]:
    """Two namespaces on one bridge (multicast snooping off, a multicast route in each), and an
    address on the bridge so this test reaches them: [(namespace, address), ...]. Skipped where
    namespaces cannot be made (not root, no iproute2)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = f"{os.getpid() % 100000}"
    net = f"10.79.{os.getpid() % 250}"
    bridge = f"cpb{tag}"
    made: list[tuple[str, str]] = []
    try:
        _ip("link", "add", bridge, "type", "bridge", "mcast_snooping", "0")
        _ip("addr", "add", f"{net}.254/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i in (1, 2):
            ns, inside, outside = f"cpn{tag}-{i}", f"cpv{tag}-{i}", f"cpo{tag}-{i}"
            _ip("netns", "add", ns)
            made.append((ns, f"{net}.{i}"))
            _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            _ip("link", "set", inside, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{net}.{i}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", inside)
    except subprocess.CalledProcessError as exc:
        _teardown(bridge, made)
        pytest.skip(f"cannot make network namespaces here: {exc.stderr!r}")
    try:
        yield made
    finally:
        _teardown(bridge, made)


def _teardown(bridge: str, made: list[tuple[str, str]]) -> None:
    for ns, _address in made:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
    subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)


def _sighting(kit: PeerKit, viewer: str, fingerprint: str, until: float) -> dict[str, Any]:
    """What `viewer` sees of the peer with `fingerprint` (matched by fingerprint: other tests'
    peers on this machine may announce the same names)."""
    while time.monotonic() < until:
        seen = kit.peer(viewer, "discover", "--wait", "1s", "--json").json()
        found = [s for s in seen if s["fingerprint"] == fingerprint]
        if found:
            return dict(found[0])
    raise AssertionError(f"{viewer} never saw {fingerprint} by mDNS")


def test_peers_in_namespaces_find_each_other_by_mdns_and_pair(
    kit: PeerKit, lan: list[tuple[str, str]]
) -> None:
    (ns_a, ip_a), (ns_b, ip_b) = lan
    a = kit.init("a", "--offer", "1G", host=ip_a, port=8443, netns=ns_a)
    kit.init("b", "--offer", "2G", host=ip_b, port=8443, netns=ns_b)
    shown = kit.cairn("server", "fingerprint", "--data", str(a.folder / "server"), "--json")
    fingerprint = shown.json()["fingerprint"]
    started = time.monotonic()
    kit.serve("a")
    seen_a = _sighting(kit, "b", fingerprint, started + 60)
    print(f"time to discover (serve started → seen): {time.monotonic() - started:.1f} s")
    assert seen_a["address"] == a.address and seen_a["how"] == "mdns"
    assert seen_a["name"] == "a" and seen_a["role"] == "offer" and seen_a["offer"] == 2**30
    assert seen_a["paired_as"] is None

    kit.pair("a", "b")  # the code, not the announcement, is what pairs
    deadline = time.monotonic() + 60
    while _sighting(kit, "b", fingerprint, deadline)["paired_as"] != "a":
        assert time.monotonic() < deadline


def test_a_static_address_is_asked_directly_where_multicast_does_not_pass(kit: PeerKit) -> None:
    a = kit.init("a", "--offer", "1G")
    kit.init("b", "--client-only")
    kit.serve("a", "--no-announce")
    seen = kit.peer("b", "discover", "--wait", "0s", "--peer", a.address, "--json").json()
    assert len(seen) == 1
    shown = kit.cairn("server", "fingerprint", "--data", str(a.folder / "server")).out
    assert seen[0]["name"] == "a" and seen[0]["how"] == "static"
    assert seen[0]["role"] == "offer" and seen[0]["fingerprint"] in shown
    kit.stop("a")
    gone = kit.peer("b", "discover", "--wait", "0s", "--peer", a.address, check=False)
    assert gone.code == 185 and "CAIRN-E185" in gone.err
