"""POST /v1/t/{tenant}/chunks: the body's form, its size limit, and the answer's records.
(Who may call it is in the authorization matrix, tests/security/test_authorization.py; that
another tenant learns nothing, in tests/security/test_isolation.py.)"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from cairn.backends.base import ObjectKind
from cairn.core.clock import SystemClock
from cairn.crypto.kdf import TEST_KDF
from cairn.format.pack import BlobKind
from cairn.repository.repository import Repository
from cairn.server.app import create_app, open_services
from cairn.server.auth import Role
from cairn.server.chunktable import ChunkTable
from cairn.server.context import Services, Settings

RECORD = struct.Struct("<32s32sBQI")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Services, TestClient, dict[str, str]]]:
    services = open_services(Settings(data=tmp_path))
    services.tenants.create("acme")
    token = str(services.tokens.issue(Role.BACKUP, "acme"))
    with TestClient(create_app(services)) as client:
        yield services, client, {"authorization": f"Bearer {token}"}


def test_known_chunks_are_answered_with_their_place(
    setup: tuple[Services, TestClient, dict[str, str]],
) -> None:
    services, client, headers = setup
    tenant = services.tenants.get("acme")
    # as the server's own saves reach storage: the table follows
    backend = services.storage.for_maintenance(tenant)
    repo = Repository.init(backend, b"pw", SystemClock(), kdf=TEST_KDF)
    repo.start_writing()
    known = [repo.store_blob(BlobKind.DATA, f"blob {i}".encode() * 50)[0] for i in range(3)]
    repo.flush()
    repo.close()
    unknown = bytes(32)
    answer = client.post("/v1/t/acme/chunks", content=b"".join([*known, unknown]), headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    records = list(RECORD.iter_unpack(answer.content))
    assert sorted(r[0] for r in records) == sorted(known)
    (pack,) = [i.handle.name for i in backend.list(ObjectKind.PACK)]
    for _, where, kind, offset, length in records:
        assert where.hex() == pack and kind == int(BlobKind.DATA)
        blob = backend.load(next(iter(backend.list(ObjectKind.PACK))).handle, offset, length)
        assert len(blob) == length


def test_an_empty_question_gets_an_empty_answer(
    setup: tuple[Services, TestClient, dict[str, str]],
) -> None:
    _, client, headers = setup
    answer = client.post("/v1/t/acme/chunks", content=b"", headers=headers)
    assert (answer.status_code, answer.content) == (200, b"")


@pytest.mark.parametrize("size", [1, 31, 33, 32 * 7 + 5])
def test_a_body_of_partial_ids_is_refused(
    setup: tuple[Services, TestClient, dict[str, str]], size: int
) -> None:
    _, client, headers = setup
    answer = client.post("/v1/t/acme/chunks", content=b"\x01" * size, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "CAIRN-E068"
    assert "32-byte" in answer.json()["error"]["message"]


def test_more_than_4096_ids_are_refused(
    setup: tuple[Services, TestClient, dict[str, str]],
) -> None:
    _, client, headers = setup
    fine = client.post("/v1/t/acme/chunks", content=b"\x02" * 32 * 4096, headers=headers)
    assert fine.status_code == 200
    answer = client.post("/v1/t/acme/chunks", content=b"\x02" * 32 * 4097, headers=headers)
    assert answer.status_code == 413
    assert "4096" in answer.json()["error"]["message"]


def test_a_body_that_lies_about_its_length_is_refused(
    setup: tuple[Services, TestClient, dict[str, str]],
) -> None:
    _, client, headers = setup
    lying = {**headers, "content-length": "64"}
    answer = client.post("/v1/t/acme/chunks", content=b"\x03" * 32, headers=lying)
    assert answer.status_code == 400


class HeldListing:
    """A tenant's storage whose listing waits until released: a table that takes long to build."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.released = threading.Event()

    def list(self, kind: ObjectKind) -> Any:
        self.released.wait()
        return self.inner.list(kind)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_while_the_table_is_first_built_the_answer_is_busy(
    setup: tuple[Services, TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """503 with Retry-After (the client waits, as for any busy server) until the table of a
    tenant never compared since start is built; then the answer."""
    services, client, headers = setup
    tenant = services.tenants.get("acme")
    backend = services.storage.for_maintenance(tenant)
    repo = Repository.init(backend, b"pw", SystemClock(), kdf=TEST_KDF)
    repo.start_writing()
    known, _ = repo.store_blob(BlobKind.DATA, b"held" * 100)
    repo.flush()
    repo.close()
    held = HeldListing(services.tenants.backend(tenant))
    monkeypatch.setattr(services.tenants, "backend", lambda _tenant: held)
    services.chunks = ChunkTable(services.db, wait_s=0.0)  # a server just started
    for _ in range(2):  # the second finds the first's build still running
        busy = client.post("/v1/t/acme/chunks", content=known, headers=headers)
        assert busy.status_code == 503
        assert busy.json()["error"]["code"] == "CAIRN-E066"
        assert int(busy.headers["retry-after"]) >= 1
    held.released.set()
    for _ in range(3000):
        answer = client.post("/v1/t/acme/chunks", content=known, headers=headers)
        if answer.status_code != 503:
            break
        time.sleep(0.01)
    assert answer.status_code == 200
    assert [r[0] for r in RECORD.iter_unpack(answer.content)] == [known]
