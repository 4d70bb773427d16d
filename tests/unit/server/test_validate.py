"""A backup token's uploads must be objects a real client writes, in the order it writes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cairn.backends.base import ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import SystemClock
from cairn.core.ids import ChunkId
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import TEST_KDF
from cairn.format.config import decode_config
from cairn.format.pack import BlobKind, build_pack
from cairn.format.snapshot import SnapshotRecord, encode_snapshot
from cairn.repository.repository import Repository
from cairn.server.app import create_app, open_services
from cairn.server.auth import Role
from cairn.server.context import Settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    services = open_services(Settings(data=tmp_path))
    services.tenants.create("t")
    owner = {"authorization": f"Bearer {services.tokens.issue(Role.TENANT_ADMIN, 't')}"}
    backup = {"authorization": f"Bearer {services.tokens.issue(Role.BACKUP, 't')}"}
    with TestClient(create_app(services)) as http:
        memory = MemoryBackend()  # a real repository's config, uploaded by the owner
        Repository.init(memory, b"pw", SystemClock(), kdf=TEST_KDF)
        for kind in (ObjectKind.CONFIG, ObjectKind.KEY):
            for info in memory.list(kind):
                url = f"/v1/t/t/{kind.value}/{info.handle.name}"
                assert http.put(url, content=memory.load(info.handle), headers=owner).is_success
        yield http, owner, backup


def put(http: TestClient, kind: ObjectKind, data: bytes, headers: dict[str, str]) -> int:
    name = object_name(data).hex
    return http.put(f"/v1/t/t/{kind.value}/{name}", content=data, headers=headers).status_code


def test_garbage_is_refused_from_a_backup_token(
    client: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    http, owner, backup = client
    for kind in (
        ObjectKind.PACK,
        ObjectKind.INDEX,
        ObjectKind.REFLIST,
        ObjectKind.SNAPSHOT,
        ObjectKind.LOCK,
    ):
        assert put(http, kind, b"hash-valid garbage " + kind.value.encode(), backup) == 400
        assert put(http, kind, b"", backup) == 400
    assert put(http, ObjectKind.PACK, b"an owner may store anything", owner) == 201


def test_a_snapshot_must_name_stored_reflists_of_this_repository(
    client: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    http, _owner, backup = client
    pack, _ = build_pack([(ChunkId(b"\x01" * 32), BlobKind.DATA, b"sealed bytes")])
    assert put(http, ObjectKind.PACK, pack, backup) == 201
    config = http.get("/v1/t/t/config/config", headers=backup).content
    repo_id = decode_config(config).repo_id
    dangling = encode_snapshot(SnapshotRecord(repo_id, [object_name(b"no such reflist")], b"x"))
    assert put(http, ObjectKind.SNAPSHOT, dangling, backup) == 400
    foreign = encode_snapshot(SnapshotRecord(b"\x00" * len(repo_id), [], b"x"))
    assert put(http, ObjectKind.SNAPSHOT, foreign, backup) == 400
    whole = encode_snapshot(SnapshotRecord(repo_id, [], b"sealed body"))
    assert put(http, ObjectKind.SNAPSHOT, whole, backup) == 201
