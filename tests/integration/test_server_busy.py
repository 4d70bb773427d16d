"""A server with fewer upload slots than clients turns uploads away with 503 + Retry-After; the
clients wait as asked and every upload lands (RELIABILITY.md R9: overload is answered, never a
failed backup)."""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.remote import KnownServers, RemoteBackend, parse_address
from cairn.backends.wrappers.retrying import RetryingBackend
from cairn.crypto.hashing import object_name
from serverfixture import running_server

CLIENTS, UPLOADS = 6, 4


def test_clients_wait_out_a_busy_server_and_every_upload_lands(tmp_path: Path) -> None:
    data = tmp_path / "server"
    with running_server(data, True, "--max-uploads", "1") as server:
        token = server.tenant("busy")

        def client(number: int) -> list[Handle]:
            known = KnownServers(tmp_path / f"known-{number}")
            remote = RemoteBackend(parse_address(server.location("busy")), token, known)
            backend = RetryingBackend(remote, attempts=2)
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
    with sqlite3.connect(data / "server.db") as db:
        (turned_away,) = db.execute(
            "SELECT count(*) FROM audit WHERE outcome = 'CAIRN-E066'"
        ).fetchone()
    assert turned_away > 0, "the test must have made the server busy"
