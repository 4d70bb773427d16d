"""A server with fewer upload slots than clients turns uploads away with 503 + Retry-After; the
clients wait as asked and every upload lands (RELIABILITY.md R9: overload is answered, never a
failed backup)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.remote import KnownServers, RemoteBackend, parse_address
from cairn.backends.wrappers.retrying import RetryingBackend
from cairn.crypto.hashing import object_name
from cairn.server.auth import Role
from tests.support.serverfixture import RunningServer, running_server

CLIENTS, UPLOADS = 6, 4


def turned_away(server: RunningServer) -> int:
    operator = server.token(None, Role.SERVER_ADMIN)
    with httpx.Client(base_url=server.url, verify=False) as http:
        text = http.get("/v1/metrics", headers={"authorization": f"Bearer {operator}"}).text
    lines = text.splitlines()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in lines if _is_503(line)))


def _is_503(line: str) -> bool:
    return line.startswith("cairn_requests_total{") and 'status="503"' in line


def test_clients_wait_out_a_busy_server_and_every_upload_lands(tmp_path: Path) -> None:
    with running_server(tmp_path / "server", True, "--max-uploads", "1") as server:
        token = server.tenant("busy")

        def client(number: int) -> list[Handle]:
            known = KnownServers(tmp_path / f"known-{number}")
            remote = RemoteBackend(parse_address(server.location("busy")), token, known)
            backend = RetryingBackend(remote, retry_for=2.0)
            saved = []
            for _ in range(UPLOADS):
                body = os.urandom(2 << 20)
                handle = Handle(ObjectKind.PACK, object_name(body).hex)
                backend.save(handle, body)
                saved.append(handle)
            backend.close()
            return saved

        with ThreadPoolExecutor(CLIENTS) as pool:
            handles = [h for saved in pool.map(client, range(CLIENTS)) for h in saved]
        services = server.services()
        tenant = services.tenants.backend(services.tenants.get("busy"))
        stored = {info.handle for info in tenant.list(ObjectKind.PACK)}
        assert set(handles) <= stored and len(handles) == CLIENTS * UPLOADS
        assert turned_away(server) > 0, "the test must have made the server busy"
