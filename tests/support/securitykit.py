"""What the security tests share: an in-process server with two tenants and a token of every role,
raw HTTP over TLS (for requests a client library would tidy up), and a picture of a folder that
proves nothing outside a tenant's root was touched."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import blake3
from starlette.testclient import TestClient

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import SystemClock
from cairn.crypto.kdf import TEST_KDF
from cairn.format.lock import SESSION_SIZE, LockRecord, encode_lock
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.repository.repository import Repository
from cairn.server.app import create_app, open_services
from cairn.server.auth import Role, Throttle
from cairn.server.context import Services, Settings

TENANT_ROLES = (Role.BACKUP, Role.RESTORE, Role.TENANT_ADMIN, Role.REPLICATION)
COPY = ("a" * 32, "b" * 32)
"""The copy another server replicated into each tenant of the site (design 17.14)."""
KINDS = tuple(kind.value for kind in ObjectKind)


def hex_name(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def real_repository(seed: str) -> dict[str, list[tuple[str, bytes]]]:
    """The objects, by kind, of a small real repository with one snapshot and a live lock: what a
    server must accept from a backup token (design 14.6 checks form and write order)."""
    memory = MemoryBackend()
    repo = Repository.init(memory, b"pw", SystemClock(), kdf=TEST_KDF)
    data = f"the file of {seed}\n".encode() * 50
    repo.start_writing()
    blob, _ = repo.store_blob(BlobKind.DATA, data)
    node = Node(
        name=b"f", type="file", mode=0o644, content=[blob], sizes=[len(data)], size=len(data)
    )
    tree, _ = repo.store_blob(BlobKind.TREE, encode_tree([node]))
    repo.commit_snapshot(
        SnapshotBody("2026-11-24T12:00:00+00:00", seed, "u", ["/"], [], tree), {tree, blob}
    )
    repo.close()
    now = int(time.time() * 1000)
    lock = encode_lock(LockRecord(os.urandom(SESSION_SIZE), "backup", now, now + 600_000, b""))
    memory.save(Handle(ObjectKind.LOCK, hex_name(lock)), lock)
    deletion = f"a deletion record of {seed}".encode()  # only an owner may write one, unchecked
    memory.save(Handle(ObjectKind.DELETION, hex_name(deletion)), deletion)
    objects: dict[str, list[tuple[str, bytes]]] = {}
    for kind in ObjectKind:
        for info in sorted(memory.list(kind), key=lambda i: i.handle.name):
            objects.setdefault(kind.value, []).append((info.handle.name, memory.load(info.handle)))
    assert set(objects) == set(KINDS), objects.keys()
    return objects


@dataclass
class Site:
    """A server in this process (Starlette's test client) with tenants `acme` and `beta`, one
    object of every kind in each, a token of every role for each tenant, a server-admin token and
    a revoked acme token."""

    services: Services
    client: TestClient
    tokens: dict[tuple[str | None, Role], str]
    revoked: str
    objects: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)

    def token(self, tenant: str | None, role: Role) -> str:
        return self.tokens[(tenant, role)]

    def restore_objects(self) -> None:
        """Put back any object the site started with (a permitted DELETE removes one)."""
        for (tenant, kind), (name, data) in self.objects.items():
            backend = self.services.tenants.backend(self.services.tenants.get(tenant))
            handle = Handle(ObjectKind(kind), name)
            if not backend.exists(handle):
                backend.save(handle, data)
            copy = self.services.tenants.copy_backend(self.services.tenants.get(tenant), *COPY)
            if not copy.exists(handle):  # a copy holds the tenant's objects too
                copy.save(handle, data)
        for tenant in ("acme", "beta"):  # usage as the server counts it at start
            self.services.tenants.recount(self.services.tenants.get(tenant))


def make_site(data: Path, address: str = "testclient", releases_locks: bool = False) -> Site:
    services = open_services(Settings(data=data, backup_releases_locks=releases_locks))
    services.throttle = Throttle(limit=1_000_000)  # the matrix sends many refused tokens
    tokens: dict[tuple[str | None, Role], str] = {}
    for tenant in ("acme", "beta"):
        services.tenants.create(tenant)
        for role in TENANT_ROLES:
            tokens[(tenant, role)] = str(services.tokens.issue(role, tenant))
    tokens[(None, Role.SERVER_ADMIN)] = str(services.tokens.issue(Role.SERVER_ADMIN, None))
    gone = services.tokens.issue(Role.TENANT_ADMIN, "acme")
    services.tokens.revoke(gone.id)
    client = TestClient(create_app(services), client=(address, 50000))
    site = Site(services, client, tokens, str(gone))
    for tenant in ("acme", "beta"):
        services.tenants.make_copy(services.tenants.get(tenant), *COPY)
        backend = services.tenants.backend(services.tenants.get(tenant))
        for kind, objects in real_repository(tenant).items():
            for name, blob in objects:
                backend.save(Handle(ObjectKind(kind), name), blob)
            site.objects[(tenant, kind)] = objects[0]
    site.restore_objects()
    return site


@dataclass
class RawAnswer:
    status: int | None
    """None when the server closed the connection without an answer."""
    head: str
    body: bytes
    timed_out: bool = False
    """The server neither answered nor closed within the timeout: it let the client hold it."""


def raw_exchange(
    port: int,
    request: bytes,
    *,
    tls: bool = True,
    source: str = "127.0.0.1",
    timeout: float = 60.0,
) -> RawAnswer:
    """Send `request` exactly as given on a new connection and read until the server closes it.

    Send ``Connection: close`` in `request` unless the point is a request that cannot say so;
    the server then closes after its answer (or when its client timeout cuts the request off).
    """
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    )
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the fixture's self-signed certificate
        sock = context.wrap_socket(sock)
    received = b""
    timed_out = False
    with sock:
        # the server may refuse and close before the whole request is sent
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            sock.sendall(request)
        while True:
            try:
                part = sock.recv(65536)
            except TimeoutError:
                timed_out = True
                break
            except (ConnectionResetError, ssl.SSLError):
                break
            if not part:
                break
            received += part
    head, _, body = received.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100 "):  # an interim answer (Expect: 100-continue)
        head, _, body = body.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    status = int(match[1]) if match else None
    return RawAnswer(status, head.decode("latin-1"), body, timed_out)


def picture(root: Path, skip: set[Path]) -> dict[str, tuple[int, int, int]]:
    """Every file and folder under `root` (but those in `skip`) with its mode, size and mtime."""
    seen: dict[str, tuple[int, int, int]] = {}
    for folder, folders, files in os.walk(root):
        folders[:] = [f for f in folders if Path(folder, f) not in skip]
        for name in ["", *files]:
            path = Path(folder, name) if name else Path(folder)
            if path in skip:
                continue
            st = path.lstat()
            seen[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return seen


LAYOUT = re.compile(
    r"config|(keys|index|reflists|snapshots|locks|deletions)(/[0-9a-f]{64})?"
    r"|packs(/([0-9a-f]{2})(/\4[0-9a-f]{62})?)?"
)


def strays(tenant_root: Path) -> list[str]:
    """Paths in a tenant's folder that are not part of the repository layout (design 2)."""
    return [
        str(path.relative_to(tenant_root))
        for path in tenant_root.rglob("*")
        if not LAYOUT.fullmatch(str(path.relative_to(tenant_root)))
    ]
