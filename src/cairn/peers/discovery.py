"""Finding peers on the LAN (design 20.6): DNS-SD over mDNS (`_cairn._tcp`, python-zeroconf), and
static addresses where multicast does not pass.

What is found is a hint: a name, an address, a role and free space anyone on the LAN could
announce. It is shown, never acted on: pairing still takes a code (which carries the
fingerprint), and a paired peer is reached only through the certificate pinned at pairing.
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from cairn.backends.errors import ServerUnreachable
from cairn.backends.remote import ServerAddress, fetch_certificate, pem_fingerprint
from cairn.peers.errors import PeerUnreachable

log = logging.getLogger("cairn.peers")

SERVICE = "_cairn._tcp.local."
HELLO_PATH = "/v1/peer/hello"
_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Sighting:
    """A peer seen on the network (by mDNS or at a static address): unverified."""

    name: str
    address: str
    fingerprint: str
    role: str
    offer: int | None
    free: int | None
    how: str


def free_space(folder: Path) -> int:
    """The bytes free on the disk that holds the peer's tenants."""
    return shutil.disk_usage(folder).free


def _number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


@contextmanager
def announced(
    name: str, host: str, port: int, fingerprint: str, role: str, offer: int | None, free: int
) -> Iterator[None]:
    """Announce this peer as `<name>._cairn._tcp.local.` while the block runs. Registration
    (mDNS probing, about a second) runs on a thread of its own, so serving does not wait for it,
    and a LAN where multicast fails costs the announcement (logged), never the server."""
    from zeroconf import ServiceInfo, Zeroconf  # only a serving peer or a search loads it

    properties = {
        "v": "1",
        "name": name,  # the instance name may be renamed (`a-2`) if another peer took it first
        "fp": fingerprint,
        "role": role,
        "offer": "" if offer is None else str(offer),
        "free": str(free),
    }
    info = ServiceInfo(
        SERVICE,
        f"{name}.{SERVICE}",
        addresses=[socket.inet_pton(_family(host), host)],
        port=port,
        properties=properties,
        # The host name is the certificate's, not the peer's name: two peers of one name (on
        # one machine, or a machine made again) must not merge their addresses in a cache.
        server=f"cairn-{fingerprint[:16]}.local.",
    )
    zc = Zeroconf()

    def register() -> None:
        try:
            zc.register_service(info, allow_name_change=True)
        except Exception as exc:
            log.warning("cannot announce this peer on the LAN (mDNS): %s", exc)

    registering = threading.Thread(target=register, name="mdns-announce", daemon=True)
    registering.start()
    try:
        yield
    finally:
        registering.join(timeout=10)
        zc.close()  # unregisters what it registered


def browse(wait_s: float) -> list[Sighting]:
    """The peers that answer on the LAN within `wait_s` seconds."""
    from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

    names: set[str] = set()
    guard = threading.Lock()

    class _Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            with guard:
                names.add(name)

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            self.add_service(zc, type_, name)

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            return None

    zc = Zeroconf()
    try:
        browser = ServiceBrowser(zc, SERVICE, _Listener())
        time.sleep(wait_s)
        browser.cancel()
        with guard:
            found = sorted(names)
        sightings = []
        for name in found:
            info = zc.get_service_info(SERVICE, name, timeout=3000)
            if info is None or not info.parsed_addresses() or info.port is None:
                continue
            props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
            host = info.parsed_addresses()[0]
            shown = f"[{host}]" if ":" in host else host
            sightings.append(
                Sighting(
                    name=props.get("name") or name.removesuffix(f".{SERVICE}"),
                    address=f"{shown}:{info.port}",
                    fingerprint=props.get("fp", ""),
                    role=props.get("role", "?"),
                    offer=_number(props.get("offer")),
                    free=_number(props.get("free")),
                    how="mdns",
                )
            )
        return sightings
    finally:
        zc.close()


def probe(addresses: Sequence[str]) -> list[Sighting]:
    """The fallback: ask each static `HOST:PORT` itself (its certificate, then its hello)."""
    return [_probe(address) for address in addresses]


def _probe(address: str) -> Sighting:
    host, _, port = address.rpartition(":")
    server = ServerAddress("cairns", host.strip("[]"), int(port), "-")
    try:
        pem = fetch_certificate(server, _TIMEOUT_S)
    except ServerUnreachable as exc:
        raise PeerUnreachable(f"no peer answers at {address}: {exc}") from exc
    try:  # unverified by design: what it says is shown as a hint, beside its fingerprint
        response = httpx.get(f"https://{address}{HELLO_PATH}", verify=False, timeout=_TIMEOUT_S)  # noqa: S501
        hello = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        hello = {}
    return Sighting(
        name=str(hello.get("name", "?")),
        address=address,
        fingerprint=pem_fingerprint(pem),
        role=str(hello.get("role", "?")),
        offer=hello.get("offer"),
        free=hello.get("free"),
        how="static",
    )


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
