"""The chunk table (design 14.11): kept in step with every save and removal of an index object
through the server, by clients and by the server's own garbage collection, and rebuilt from the
index objects when its rows are gone or index objects arrived another way."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import BackendError
from cairn.core.clock import SystemClock
from cairn.core.ids import ChunkId, ObjectName
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import TEST_KDF
from cairn.format.index import IndexRecord, encode_index
from cairn.format.pack import BlobKind, PackEntry
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.repository.repository import Repository
from cairn.server import chunktable
from cairn.server.app import open_services
from cairn.server.chunktable import ChunkTable
from cairn.server.context import Services, Settings
from cairn.server.tenants import Tenant

PASSPHRASE = b"pw"


@pytest.fixture
def services(tmp_path: Path) -> Services:
    services = open_services(Settings(data=tmp_path))
    services.tenants.create("acme")
    services.tenants.create("beta")
    return services


def accounted(services: Services, name: str) -> Backend:
    """The tenant's storage as the server's own saves and removals reach it."""
    tenant = services.tenants.get(name)
    return services.storage.for_maintenance(tenant)


def lookup(services: Services, name: str, ids: list[bytes]) -> dict[bytes, tuple[object, ...]]:
    tenant = services.tenants.get(name)
    found = services.chunks.lookup(name, services.tenants.backend(tenant), ids)
    return {entry[0]: entry[1:] for entry in found}


def rows(services: Services, name: str) -> list[tuple[Any, ...]]:
    return (
        services.db.read()
        .execute(
            "SELECT c.id, c.pack, c.kind, c.start, c.length, i.name FROM chunks c "
            "JOIN chunk_indexes i ON i.no = c.idx WHERE c.tenant = ? ORDER BY c.id, i.name",
            (name,),
        )
        .fetchall()
    )


def back_up(backend: Backend, text: str) -> tuple[ObjectName, set[ChunkId]]:
    """One real snapshot of one file, written as a client would (its index saved through
    `backend`, so the hooks run); returns its name and chunk IDs."""
    repo = Repository.open(backend, PASSPHRASE, SystemClock())
    repo.begin_session("backup")
    repo.start_writing()
    data = text.encode() * 200
    blob, _ = repo.store_blob(BlobKind.DATA, data)
    node = Node(name=b"f", type="file", mode=0o644, content=[blob], sizes=[len(data)], size=1)
    tree, _ = repo.store_blob(BlobKind.TREE, encode_tree([node]))
    body = SnapshotBody("2026-11-29T12:00:00+00:00", "h", "u", ["/"], [], tree)
    name = repo.commit_snapshot(body, {tree, blob})
    repo.close()
    return name, {blob, tree}


def init(services: Services, name: str) -> Backend:
    backend = accounted(services, name)
    Repository.init(backend, PASSPHRASE, SystemClock(), kdf=TEST_KDF).close()
    return backend


def test_a_saved_index_is_answered_and_a_removed_one_no_longer(services: Services) -> None:
    backend = init(services, "acme")
    _, ids = back_up(backend, "first")
    found = lookup(services, "acme", sorted(ids))
    assert set(found) == ids
    index_names = [i.handle for i in backend.list(ObjectKind.INDEX)]
    assert len(index_names) == 1
    for pack, kind, offset, length in found.values():
        assert backend.exists(Handle(ObjectKind.PACK, pack.hex()))  # type: ignore[attr-defined]
        assert kind in (0, 1) and offset >= 8 and length > 0  # type: ignore[operator]
    backend.remove(index_names[0])
    assert lookup(services, "acme", sorted(ids)) == {}
    assert rows(services, "acme") == []


def test_garbage_collection_keeps_the_table_in_step(services: Services) -> None:
    """The server's GC swaps the index (a new one, the old removed) through its storage stack:
    the chunks of the forgotten snapshot are no longer answered, the kept ones are, at their
    place in the new index, and the table equals a rebuild from the index objects."""
    backend = init(services, "acme")
    forgotten, old_ids = back_up(backend, "forgotten")
    _, kept_ids = back_up(backend, "kept")
    unique_old = old_ids - kept_ids
    assert unique_old and lookup(services, "acme", sorted(unique_old))
    backend.remove(Handle(ObjectKind.SNAPSHOT, forgotten.hex))
    report = services.janitor.collect(services.tenants.get("acme"))
    assert report.skipped is None and report.condemned_packs >= 1
    assert lookup(services, "acme", sorted(unique_old)) == {}
    assert set(lookup(services, "acme", sorted(kept_ids))) == kept_ids
    in_step = rows(services, "acme")
    (new_index,) = [i.handle.name for i in backend.list(ObjectKind.INDEX)]
    assert {bytes(r[5]).hex() for r in in_step} == {new_index}
    _drop(services, "acme")
    fresh = ChunkTable(services.db)
    fresh.refresh("acme", services.tenants.backend(services.tenants.get("acme")))
    assert rows(services, "acme") == in_step


def _drop(services: Services, tenant: str) -> None:
    with services.db.write() as conn:
        conn.execute("DELETE FROM chunks WHERE tenant = ?", (tenant,))
        conn.execute("DELETE FROM chunk_indexes WHERE tenant = ?", (tenant,))


def test_the_table_is_rebuilt_when_its_rows_are_gone(services: Services) -> None:
    backend = init(services, "acme")
    _, ids = back_up(backend, "one")
    _, more = back_up(backend, "two")
    before = rows(services, "acme")
    _drop(services, "acme")
    restarted = ChunkTable(services.db)  # a server started after the rows went
    tenant = services.tenants.get("acme")
    found = restarted.lookup("acme", services.tenants.backend(tenant), sorted(ids | more))
    assert {entry[0] for entry in found} == ids | more
    assert rows(services, "acme") == before


def test_index_objects_that_bypassed_the_server_are_found_at_the_first_query(
    services: Services,
) -> None:
    """A repository copied into the data folder: nothing was hooked, the first query after
    start compares the listing and reads what the table lacks."""
    tenant = services.tenants.get("acme")
    raw = services.tenants.backend(tenant)  # not through the server: no hooks
    Repository.init(raw, PASSPHRASE, SystemClock(), kdf=TEST_KDF).close()
    repo = Repository.open(raw, PASSPHRASE, SystemClock())
    repo.start_writing()
    blob, _ = repo.store_blob(BlobKind.DATA, b"copied in" * 100)
    repo.flush()
    repo.close()
    assert rows(services, "acme") == []
    assert set(lookup(services, "acme", [blob])) == {blob}


def test_a_malformed_index_is_skipped(services: Services) -> None:
    backend = init(services, "acme")
    _, ids = back_up(backend, "good")
    garbage = b"not an index at all"
    backend.save(Handle(ObjectKind.INDEX, object_name(garbage).hex), garbage)
    _drop(services, "acme")
    restarted = ChunkTable(services.db)
    tenant = services.tenants.get("acme")
    found = restarted.lookup("acme", services.tenants.backend(tenant), sorted(ids))
    assert {entry[0] for entry in found} == ids
    names = (
        services.db.read()
        .execute("SELECT count(*) FROM chunk_indexes WHERE tenant = 'acme' AND complete = 1")
        .fetchone()
    )
    assert names == (2,)  # both recorded: the malformed one is not read again at every query


def test_chunks_of_a_pack_storage_lost_are_left_out(services: Services) -> None:
    backend = init(services, "acme")
    _, ids = back_up(backend, "lost")
    (pack,) = list(backend.list(ObjectKind.PACK))
    backend.remove(pack.handle)
    assert lookup(services, "acme", sorted(ids)) == {}


def test_a_chunk_in_two_packs_is_answered_from_one_still_stored(services: Services) -> None:
    backend = init(services, "acme")
    _, ids = back_up(backend, "twice")
    chunk = sorted(ids)[0]
    where = lookup(services, "acme", [chunk])[chunk]
    ghost = ObjectName(os.urandom(32))  # an index naming a pack storage does not hold
    record = IndexRecord(packs={ghost: [PackEntry(ChunkId(chunk), BlobKind.DATA, 8, 10)]})
    data = encode_index(record)
    backend.save(Handle(ObjectKind.INDEX, object_name(data).hex), data)
    assert lookup(services, "acme", [chunk]) == {chunk: where}


def test_tenants_have_tables_of_their_own(services: Services) -> None:
    acme = init(services, "acme")
    init(services, "beta")
    _, ids = back_up(acme, "acme's")
    assert lookup(services, "beta", sorted(ids)) == {}
    assert set(lookup(services, "acme", sorted(ids))) == ids


def test_rows_come_after_the_save_and_go_before_the_removal(services: Services) -> None:
    """Order matters for safety: a chunk must never be answered from an index already gone."""
    backend = init(services, "acme")
    _, ids = back_up(backend, "ordered")
    (index,) = [i.handle for i in backend.list(ObjectKind.INDEX)]
    data = backend.load(index)
    tenant: Tenant = services.tenants.get("acme")
    seen: list[int] = []
    with services.chunks.removing("acme", index):
        seen.append(len(rows(services, "acme")))
        services.tenants.backend(tenant).remove(index)
    with services.chunks.saving("acme", index, data):
        seen.append(len(rows(services, "acme")))
        services.tenants.backend(tenant).save(index, data)
    seen.append(len(rows(services, "acme")))
    assert seen == [0, 0, len(ids)]


def test_warming_at_start_rebuilds_every_tenant(services: Services) -> None:
    acme, beta = init(services, "acme"), init(services, "beta")
    _, acme_ids = back_up(acme, "a")
    _, beta_ids = back_up(beta, "b")
    before = rows(services, "acme"), rows(services, "beta")
    _drop(services, "acme")
    _drop(services, "beta")
    tenants = [services.tenants.get(name) for name in ("acme", "beta")]
    ChunkTable(services.db).warm([(t.name, services.tenants.backend(t)) for t in tenants])
    assert (rows(services, "acme"), rows(services, "beta")) == before
    assert len(before[0]) == len(acme_ids) and len(before[1]) == len(beta_ids)


def _big_index(backend: Backend, entries: int) -> tuple[Handle, list[bytes]]:
    """An index object of `entries` made-up chunks in the tenant's one pack."""
    (pack,) = [ObjectName.from_hex(i.handle.name) for i in backend.list(ObjectKind.PACK)]
    ids = [os.urandom(32) for _ in range(entries)]
    record = IndexRecord(packs={pack: [PackEntry(ChunkId(c), BlobKind.DATA, 8, 10) for c in ids]})
    data = encode_index(record)
    handle = Handle(ObjectKind.INDEX, object_name(data).hex)
    backend.save(handle, data)
    return handle, ids


def test_a_large_index_goes_in_and_out_a_transaction_at_a_time(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chunktable, "ROWS_PER_TRANSACTION", 7)
    transactions: list[int] = []
    real_write = services.db.write

    def counting_write() -> Any:
        transactions.append(1)
        return real_write()

    backend = init(services, "acme")
    back_up(backend, "one pack")
    monkeypatch.setattr(services.db, "write", counting_write)
    handle, ids = _big_index(backend, 100)
    assert len(transactions) >= 100 // 7 + 1
    assert len(lookup(services, "acme", ids)) == 100
    transactions.clear()
    backend.remove(handle)
    assert len(transactions) >= 100 // 7 + 1
    assert lookup(services, "acme", ids) == {}


def test_an_index_whose_rows_failed_midway_is_read_again(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows first, the name last: a failure midway leaves the name unrecorded, and the next
    query compares the listing again and reads the index whole."""
    monkeypatch.setattr(chunktable, "ROWS_PER_TRANSACTION", 10)
    backend = init(services, "acme")
    back_up(backend, "one pack")
    lookup(services, "acme", [])  # compared with the listing now: no refresh is due
    calls: list[int] = []
    real_insert = chunktable._insert

    def failing_insert(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise sqlite3.OperationalError("disk I/O error")
        real_insert(*args)

    monkeypatch.setattr(chunktable, "_insert", failing_insert)
    handle, ids = _big_index(backend, 50)  # the save itself succeeds
    monkeypatch.setattr(chunktable, "_insert", real_insert)
    names = {
        bytes(r[0]).hex()
        for r in services.db.read().execute("SELECT name FROM chunk_indexes WHERE complete = 1")
    }
    assert handle.name not in names
    assert len(lookup(services, "acme", ids)) == 50  # compared again, read again


def test_an_index_the_table_cannot_let_go_of_is_not_removed(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows must go before their index object: if they cannot, the object stays (a backup
    would otherwise deduplicate against chunks of an index that is gone)."""
    backend = init(services, "acme")
    _, ids = back_up(backend, "kept")
    (index,) = [i.handle for i in backend.list(ObjectKind.INDEX)]
    real_write = services.db.write
    writes: list[int] = []

    def failing_write() -> Any:
        writes.append(1)
        if len(writes) == 2:  # the name went; the rows' delete fails
            raise sqlite3.OperationalError("database is locked")
        return real_write()

    monkeypatch.setattr(services.db, "write", failing_write)
    with pytest.raises(BackendError, match="chunk table"):
        backend.remove(index)
    monkeypatch.setattr(services.db, "write", real_write)
    assert backend.exists(index)
    _drop_checked(services)
    assert set(lookup(services, "acme", sorted(ids))) == ids


def _drop_checked(services: Services) -> None:
    """As after a restart: the next query compares the table with the listing."""
    services.chunks = ChunkTable(services.db)
