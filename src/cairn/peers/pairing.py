"""Pairing two machines with a one-time invitation code (design 20.3).

The offering side is a route on the peer's server, `POST /v1/peer/join`; the joining side is
`join`, which reaches that route only through the certificate the code names, so the secret
never goes to anyone else.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cairn.backends.errors import CertificateMismatch, ServerUnreachable
from cairn.backends.remote import ServerAddress, pinned_context
from cairn.core.clock import Clock, epoch_ms
from cairn.peers.discovery import HELLO_PATH, free_space
from cairn.peers.errors import (
    WIRE_ERRORS,
    AlreadyPaired,
    InvitationExpired,
    InvitationUnknown,
    InvitationUsed,
    PeerCertificateChanged,
    PeerError,
    PeerUnreachable,
)
from cairn.peers.invitation import Invitation, decode, secret_hash
from cairn.peers.peerserver import (
    open_server,
    own_fingerprint,
    server_folder,
    tenant_for,
    tenant_name,
)
from cairn.peers.store import ROLES, Peer, PeerStore
from cairn.server.context import Services
from cairn.server.errors import Throttled

JOIN_PATH = "/v1/peer/join"
_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Joined:
    """What `peer join` shows: the peer now paired, and both fingerprints for a human check."""

    peer: Peer
    own_fingerprint: str


def join_route(folder: Path, services: Services, clock: Clock) -> Route:
    """The route `peer serve` adds to its server's app."""

    async def endpoint(request: Request) -> Response:
        address = request.client.host if request.client else "-"
        try:
            services.throttle.check(address)
            document = await request.json()
            answer = _redeem(folder, services, clock, _offer_of(document))
        except Throttled as exc:
            return _refusal(429, "CAIRN-E064", str(exc))
        except InvitationUnknown as exc:
            services.throttle.failed(address)
            return _refusal(403, "CAIRN-E181", str(exc))
        except (InvitationUsed, InvitationExpired, AlreadyPaired) as exc:
            code = {InvitationUsed: "E182", InvitationExpired: "E183", AlreadyPaired: "E189"}
            return _refusal(403, f"CAIRN-{code[type(exc)]}", str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            return _refusal(400, "CAIRN-E181", f"not a join request: {exc}")
        return JSONResponse(answer)

    return Route(JOIN_PATH, endpoint, methods=["POST"])


def hello_route(folder: Path) -> Route:
    """`GET /v1/peer/hello`: what the mDNS record says (name, role, offer, free space), for a peer
    found at a static address; no token, nothing that is not announced on the LAN anyway."""

    async def endpoint(request: Request) -> Response:
        store = PeerStore(folder)
        try:
            me = store.settings()
        finally:
            store.close()
        free = free_space(server_folder(folder))
        return JSONResponse({"name": me.name, "role": me.role, "offer": me.offer, "free": free})

    return Route(HELLO_PATH, endpoint, methods=["GET"])


def _refusal(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _offer_of(document: Any) -> dict[str, Any]:
    """The joiner's request, checked for shape: every value is used as data, never as a path."""
    fields = ("secret", "name", "address", "fingerprint", "role")
    offer: dict[str, Any] = {key: str(document[key]) for key in fields}
    if offer["role"] not in ROLES or len(offer["fingerprint"]) != 64:
        raise ValueError("bad role or fingerprint")
    bytes.fromhex(offer["secret"])
    bytes.fromhex(offer["fingerprint"])
    offer["offer"] = None if document.get("offer") is None else int(document["offer"])
    offer["token"] = None if document.get("token") is None else str(document["token"])
    return offer


def _redeem(
    folder: Path, services: Services, clock: Clock, offer: dict[str, Any]
) -> dict[str, Any]:
    """Check and spend the invitation, record the joiner and make its tenant, in one
    transaction of the peer database (a second join with the same code waits, then sees it used)."""
    store = PeerStore(folder)
    try:
        me = store.settings()
        now = epoch_ms(clock)
        with store.redeeming() as conn:
            row = conn.execute(
                "SELECT expires_ms, used_ms FROM invitations WHERE secret_hash = ?",
                (secret_hash(bytes.fromhex(offer["secret"])),),
            ).fetchone()
            if row is None:
                raise InvitationUnknown("this peer issued no such invitation code")
            if row[1] is not None:
                raise InvitationUsed("this invitation code was used already: ask for a new one")
            if row[0] <= now:
                raise InvitationExpired("this invitation code expired: ask for a new one")
            tenant, token = (None, None)
            if me.offers:
                tenant, token = tenant_for(services, offer["fingerprint"], me.offer)
            joiner = Peer(
                name=offer["name"],
                fingerprint=offer["fingerprint"],
                address=offer["address"],
                role=offer["role"],
                offer=offer["offer"],
                tenant_here=tenant,
                tenant_there=None
                if offer["token"] is None
                else tenant_name(own_fingerprint(folder)),
                token_there=offer["token"],
                repo_ready=False,
                paired_ms=now,
                last_seen_ms=now,
            )
            store.add_peer(joiner, conn)
            conn.execute(
                "UPDATE invitations SET used_ms = ?, used_by = ? WHERE secret_hash = ?",
                (now, offer["name"], secret_hash(bytes.fromhex(offer["secret"]))),
            )
        return {
            "name": me.name,
            "role": me.role,
            "offer": me.offer,
            "fingerprint": own_fingerprint(folder),
            "tenant": tenant,
            "token": token,
        }
    finally:
        store.close()


def join(folder: Path, code: str, clock: Clock) -> Joined:
    """The joining side (design 20.3, steps 1-5)."""
    invitation = decode(code)
    store = PeerStore(folder)
    try:
        me = store.settings()
        mine = own_fingerprint(folder)
        if invitation.fingerprint == mine:
            raise AlreadyPaired("this is this machine's own invitation code")
        context = pinned_tls(invitation.address, invitation.fingerprint)
        tenant_here, token_for_them = (None, None)
        if me.offers:
            services = open_server(folder, clock)
            tenant_here, token_for_them = tenant_for(services, invitation.fingerprint, me.offer)
        answer = _post_join(
            invitation, context, me.name, me.listen, mine, me.role, me.offer, token_for_them
        )
        peer = Peer(
            name=str(answer["name"]),
            fingerprint=invitation.fingerprint,
            address=invitation.address,
            role=str(answer["role"]),
            offer=answer.get("offer"),
            tenant_here=tenant_here,
            tenant_there=answer.get("tenant"),
            token_there=answer.get("token"),
            repo_ready=False,
            paired_ms=epoch_ms(clock),
            last_seen_ms=epoch_ms(clock),
        )
        store.add_peer(peer)
        return Joined(peer, mine)
    finally:
        store.close()


def pinned_tls(address: str, fingerprint: str) -> ssl.SSLContext:
    """A TLS context for `address` that accepts only the certificate `fingerprint` names."""
    host, _, port = address.rpartition(":")
    server = ServerAddress("cairns", host.strip("[]"), int(port), "-")
    try:
        return pinned_context(server, None, fingerprint, record=False, timeout=_TIMEOUT_S)
    except CertificateMismatch as exc:
        raise PeerCertificateChanged(
            f"the peer at {address} shows another certificate than the one pinned for it "
            f"({fingerprint}): it was replaced, or someone is in between; nothing was sent"
        ) from exc
    except ServerUnreachable as exc:
        raise PeerUnreachable(f"the peer at {address} does not answer: {exc}") from exc


def _post_join(
    invitation: Invitation,
    context: ssl.SSLContext,
    name: str,
    listen: str,
    fingerprint: str,
    role: str,
    offer: int | None,
    token: str | None,
) -> dict[str, Any]:
    body = {
        "secret": invitation.secret.hex(),
        "name": name,
        "address": listen,
        "fingerprint": fingerprint,
        "role": role,
        "offer": offer,
        "token": token,
    }
    url = f"https://{invitation.address}{JOIN_PATH}"
    try:
        response = httpx.post(url, json=body, verify=context, timeout=_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise PeerUnreachable(f"the peer at {invitation.address} does not answer: {exc}") from exc
    try:
        document = response.json()
    except json.JSONDecodeError as exc:
        raise PeerUnreachable(
            f"the peer at {invitation.address} answered {response.status_code}, not a join "
            "answer: is it a Cairn peer, serving (`cairn peer serve`)?"
        ) from exc
    if response.status_code != 200:
        error = document.get("error", {}) if isinstance(document, dict) else {}
        kind: type[PeerError] = WIRE_ERRORS.get(str(error.get("code")), InvitationUnknown)
        raise kind(str(error.get("message", f"the peer refused: {response.status_code}")))
    return dict(document)
