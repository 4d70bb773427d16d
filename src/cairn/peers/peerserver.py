"""The peer's own small server (design 20.2): a server data folder in `DIR/server`, its
certificate, and the tenants it makes for the peers it pairs with (the offered space is each
one's quota)."""

from __future__ import annotations

from pathlib import Path

from cairn.core.clock import Clock
from cairn.server.adminops import Actor
from cairn.server.app import init_data_folder, open_services
from cairn.server.auth import Role
from cairn.server.context import Services, Settings
from cairn.server.errors import NoSuchObject
from cairn.server.tls import ensure_self_signed, fingerprint

ACTOR = Actor("peer")
"""Who the audit log names for what pairing does to the server (tenants and tokens)."""


def server_folder(folder: Path) -> Path:
    return folder / "server"


def certificate(folder: Path) -> tuple[Path, Path]:
    tls = server_folder(folder) / "tls"
    return tls / "cert.pem", tls / "key.pem"


def init_server(folder: Path, host: str, clock: Clock) -> str:
    """Make the server's data folder and self-signed certificate; return its fingerprint."""
    init_data_folder(server_folder(folder))
    cert, _key, _made = ensure_self_signed(certificate(folder)[0].parent, [host], clock)
    return fingerprint(cert)


def own_fingerprint(folder: Path) -> str:
    return fingerprint(certificate(folder)[0])


def open_server(folder: Path, clock: Clock | None = None) -> Services:
    return open_services(Settings(data=server_folder(folder)), create=False, clock=clock)


def tenant_name(peer_fingerprint: str) -> str:
    """The tenant this peer makes for another: named by its certificate, the peer's identity."""
    return f"p-{peer_fingerprint[:16]}"


def tenant_for(services: Services, peer_fingerprint: str, quota: int | None) -> tuple[str, str]:
    """The tenant for a peer (made with `quota`, or the one made at an earlier attempt) and a new
    tenant-admin token for it: the owner inits, backs up and prunes its own repository."""
    name = tenant_name(peer_fingerprint)
    try:
        services.tenants.get(name)
    except NoSuchObject:
        _tenant, token = services.admin.create_tenant(ACTOR, name, quota)
        return name, str(token)
    return name, str(services.admin.issue_token(ACTOR, Role.TENANT_ADMIN, name, "peer"))


def revoke_tenant_tokens(services: Services, tenant: str) -> int:
    """`peer forget`: the forgotten peer's tokens stop working here; its data stays."""
    revoked = 0
    for token in services.tokens.list(tenant):
        if token.get("revoked_ms") is None:
            services.admin.revoke_token(ACTOR, str(token["id"]))
            revoked += 1
    return revoked


def used_here(services: Services, tenant: str | None) -> int | None:
    if tenant is None:
        return None
    try:
        return services.tenants.get(tenant).used
    except NoSuchObject:
        return None
