"""The repository over a memory backend: store, deduplicate, commit, and refuse forgeries."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import SystemClock
from cairn.core.errors import IntegrityError
from cairn.core.ids import GROUP_ID_SIZE, ChunkId, ObjectName
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import TEST_KDF
from cairn.format.config import RepoParams
from cairn.format.deletion import DeletionRecord, encode_deletion
from cairn.format.index import IndexRecord, decode_index, encode_index
from cairn.format.pack import BlobKind
from cairn.format.reflist import encode_reflist
from cairn.format.snapshot import (
    SnapshotBody,
    SnapshotRecord,
    decode_snapshot,
    encode_body,
    encode_snapshot,
)
from cairn.format.tree import Node, encode_tree
from cairn.repository.check import Checker
from cairn.repository.errors import (
    KeyManagementError,
    ObjectMissing,
    RepositoryExists,
    RepositoryNotFound,
    WrongPassword,
)
from cairn.repository.keyring import list_keys, make_key, remove_key, save_key
from cairn.repository.repository import Repository

CLOCK = SystemClock()
SMALL = RepoParams(
    chunk_min=1024, chunk_avg=2048, chunk_max=8192, pack_size=64 * 1024, compression=3
)


def new_repo(backend: MemoryBackend | None = None) -> Repository:
    return Repository.init(backend or MemoryBackend(), b"pw", CLOCK, kdf=TEST_KDF, params=SMALL)


def reopen(repo: Repository) -> Repository:
    again = Repository.open(repo.backend, b"pw", CLOCK)
    again.load_index()
    return again


def commit(repo: Repository, blobs: list[bytes]) -> tuple[list[ChunkId], ChunkId]:
    repo.start_writing()
    ids = [repo.store_blob(BlobKind.DATA, b)[0] for b in blobs]
    sizes = [len(b) for b in blobs]
    tree = encode_tree([Node(name=b"f", type="file", content=ids, sizes=sizes, size=sum(sizes))])
    tree_id, _ = repo.store_blob(BlobKind.TREE, tree)
    body = SnapshotBody("2026-11-24T12:00:00+00:00", "host", "user", ["/f"], [], tree_id)
    repo.commit_snapshot(body, {*ids, tree_id})
    return ids, tree_id


def test_round_trip_and_dedup() -> None:
    repo = new_repo()
    blobs = [os.urandom(5000) for _ in range(40)] + [b"text " * 2000]
    ids, _ = commit(repo, blobs)
    assert repo.store_blob(BlobKind.DATA, blobs[0])[1] == 0, "a known chunk is not stored again"
    again = reopen(repo)
    assert [again.fetch_blob(BlobKind.DATA, i) for i in ids] == blobs
    assert len(list(repo.backend.list(ObjectKind.PACK))) > 1, "small packs: several of them"


def test_chunk_ids_are_keyed_per_repository() -> None:
    a, b = new_repo(), new_repo()
    assert a.blob_id(BlobKind.DATA, b"same") != b.blob_id(BlobKind.DATA, b"same")
    assert a.blob_id(BlobKind.DATA, b"same") != a.blob_id(BlobKind.TREE, b"same")


def test_compression_is_skipped_for_random_data() -> None:
    repo = new_repo()
    repo.start_writing()
    _, added_random = repo.store_blob(BlobKind.DATA, os.urandom(50_000))
    _, added_text = repo.store_blob(BlobKind.DATA, b"compressible " * 4000)
    assert added_random < 50_100
    assert added_text < 5_000


def test_open_errors() -> None:
    with pytest.raises(RepositoryNotFound):
        Repository.open(MemoryBackend(), b"pw", CLOCK)
    repo = new_repo()
    with pytest.raises(WrongPassword):
        Repository.open(repo.backend, b"nope", CLOCK)
    with pytest.raises(RepositoryExists):
        Repository.init(repo.backend, b"pw", CLOCK, kdf=TEST_KDF)


def test_keys_add_remove_and_the_key_in_use_stays() -> None:
    repo = new_repo()
    second = save_key(repo.backend, make_key(repo.master, repo.repo_id, b"second", TEST_KDF, CLOCK))
    assert len(list_keys(repo.backend)) == 2
    assert Repository.open(repo.backend, b"second", CLOCK).key_name == second
    with pytest.raises(KeyManagementError):
        remove_key(repo.backend, repo.key_name, repo.key_name)
    remove_key(repo.backend, repo.key_name, second)
    with pytest.raises(WrongPassword):
        Repository.open(repo.backend, b"pw", CLOCK)
    assert Repository.open(repo.backend, b"second", CLOCK).repo_id == repo.repo_id


def _swap_blob_bytes(repo: Repository, a: ChunkId, b: ChunkId) -> None:
    """Malicious storage: put blob b's ciphertext where blob a should be (same length pack)."""
    loc_a, loc_b = repo.index.get(a), repo.index.get(b)
    assert loc_a is not None and loc_b is not None
    pack_b = repo.backend.load(Handle(ObjectKind.PACK, loc_b.pack.hex))
    forged = pack_b[loc_b.offset : loc_b.offset + loc_b.length]
    pack_a = bytearray(repo.backend.load(Handle(ObjectKind.PACK, loc_a.pack.hex)))
    assert loc_a.length == loc_b.length
    pack_a[loc_a.offset : loc_a.offset + loc_a.length] = forged
    repo.backend._objects[Handle(ObjectKind.PACK, loc_a.pack.hex)] = bytes(pack_a)  # type: ignore[attr-defined]


def test_swapped_blobs_are_refused() -> None:
    repo = new_repo()
    blobs = [os.urandom(3000) for _ in range(4)]
    ids, _ = commit(repo, blobs)
    again = reopen(repo)
    _swap_blob_bytes(again, ids[0], ids[1])
    with pytest.raises(IntegrityError):
        again.fetch_blob(BlobKind.DATA, ids[0])
    report = Checker(Repository.open(repo.backend, b"pw", CLOCK)).run(read_data=True)
    assert report.errors


def test_a_data_blob_cannot_be_read_as_a_tree() -> None:
    repo = new_repo()
    ids, _ = commit(repo, [b"looks like data"])
    again = reopen(repo)
    loc = again.index.get(ids[0])
    assert loc is not None
    envelope = again.backend.load(Handle(ObjectKind.PACK, loc.pack.hex), loc.offset, loc.length)
    with pytest.raises(IntegrityError):
        again.open_blob(BlobKind.TREE, ids[0], envelope)


def test_a_snapshot_from_another_repository_is_refused() -> None:
    victim, other = new_repo(), new_repo()
    commit(other, [b"other"])
    for info in other.backend.list(ObjectKind.SNAPSHOT):
        victim.backend.save(info.handle, other.backend.load(info.handle))
    name = next(iter(victim.snapshot_names()))
    with pytest.raises(IntegrityError):
        victim.read_snapshot(name)


def test_an_object_renamed_to_a_wrong_name_is_refused() -> None:
    repo = new_repo()
    commit(repo, [b"x"])
    info = next(iter(repo.backend.list(ObjectKind.SNAPSHOT)))
    data = repo.backend.load(info.handle) + b"\0"
    repo.backend.save(Handle(ObjectKind.SNAPSHOT, "ab" * 32), data)
    with pytest.raises(IntegrityError):
        repo.load_verified(Handle(ObjectKind.SNAPSHOT, "ab" * 32))
    assert object_name(data).hex != "ab" * 32


def test_missing_pack_is_reported_not_empty() -> None:
    repo = new_repo()
    ids, _ = commit(repo, [os.urandom(2000)])
    again = reopen(repo)
    loc = again.index.get(ids[0])
    assert loc is not None
    again.backend.remove(Handle(ObjectKind.PACK, loc.pack.hex))
    with pytest.raises(ObjectMissing):
        again.fetch_blob(BlobKind.DATA, ids[0])
    report = Checker(Repository.open(repo.backend, b"pw", CLOCK)).run()
    assert any("missing" in e for e in report.errors)


def test_check_finds_nothing_on_a_healthy_repository() -> None:
    repo = new_repo()
    commit(repo, [os.urandom(4000) for _ in range(30)])
    report = Checker(Repository.open(repo.backend, b"pw", CLOCK)).run(read_data=True)
    assert report.errors == []
    assert report.packs_read == report.packs > 1


class _SwapOnFirstRead(MemoryBackend):
    """Does what a prune's swap and sweep do between a reader's listing and its first read of
    a `trigger` object: a new index of every entry replaces the indexes, the deletion records
    are swept."""

    trigger: ObjectKind | None = None

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        if handle.kind is self.trigger:
            self.trigger = None
            merged = IndexRecord()
            old = [i.handle for i in self.list(ObjectKind.INDEX)]
            for index in old:
                record = decode_index(super().load(index))
                merged.packs.update(record.packs)
                merged.supersedes.append(ObjectName.from_hex(index.name))
            data = encode_index(merged)
            self.save(Handle(ObjectKind.INDEX, object_name(data).hex), data)
            for gone in [*old, *(i.handle for i in self.list(ObjectKind.DELETION))]:
                self.remove(gone)
        return super().load(handle, offset, length)


@pytest.mark.parametrize("trigger", [ObjectKind.INDEX, ObjectKind.DELETION])
def test_indexes_replaced_while_they_are_loaded_are_read_from_their_successor(
    trigger: ObjectKind,
) -> None:
    # Found by the kill harness (tests/robustness): a backup listed the indexes, a concurrent
    # prune swapped them, and the backup failed on an index it had listed (CAIRN-E021).
    backend = _SwapOnFirstRead()
    repo = new_repo(backend)
    ids, tree_id = commit(repo, [os.urandom(3000) for _ in range(30)])
    repo.close()
    data = encode_deletion(DeletionRecord(created_ms=0, sessions=[], packs={}, reflists=[]))
    backend.save(Handle(ObjectKind.DELETION, object_name(data).hex), data)
    backend.trigger = trigger
    again = Repository.open(backend, b"pw", CLOCK)
    again.load_index()
    assert backend.trigger is None, "the swap happened while the index was loaded"
    assert all(c in again.index for c in [*ids, tree_id])


def _snapshot(repo: Repository) -> tuple[Handle, SnapshotRecord]:
    info = next(iter(repo.backend.list(ObjectKind.SNAPSHOT)))
    return info.handle, decode_snapshot(repo.backend.load(info.handle))


def test_a_snapshot_carries_its_group_id_in_plaintext_and_sealed() -> None:
    """The group (design 3.6) is what the server groups its retention by: equal for one host
    and set of paths, in any order, different for other paths, hosts or repositories."""
    repo = new_repo()
    commit(repo, [b"x"])
    handle, record = _snapshot(repo)
    assert record.group == repo.snapshot_group("host", ["/f"])
    assert repo.read_snapshot(ObjectName.from_hex(handle.name)).body.group == record.group
    group = repo.snapshot_group("web1", ["/home", "/etc"])
    assert group == repo.snapshot_group("web1", ["/etc", "/home", "/etc"])
    assert len(group) == GROUP_ID_SIZE
    assert group != repo.snapshot_group("web1", ["/home"])
    assert group != repo.snapshot_group("web2", ["/etc", "/home"])
    assert group != new_repo().snapshot_group("web1", ["/etc", "/home"])


def test_a_relabelled_snapshot_is_refused() -> None:
    """The plaintext group is not authenticated; its sealed copy is, and a reader compares."""
    repo = new_repo()
    commit(repo, [b"x"])
    _, record = _snapshot(repo)
    for group in (bytes(GROUP_ID_SIZE), None):
        data = encode_snapshot(replace(record, group=group))
        repo.backend.save(Handle(ObjectKind.SNAPSHOT, object_name(data).hex), data)
        with pytest.raises(IntegrityError, match="relabelled"):
            repo.read_snapshot(object_name(data))


def test_a_snapshot_written_before_group_ids_reads() -> None:
    """R11: a format-1 snapshot with no group, plaintext or sealed, reads as before."""
    repo = new_repo()
    repo.start_writing()
    tree_id, _ = repo.store_blob(BlobKind.TREE, encode_tree([]))
    body = SnapshotBody("2026-11-24T12:00:00+00:00", "host", "user", ["/f"], [], tree_id)
    sealed = repo.seal_object(b"snapshot", encode_body(body))
    reflist = encode_reflist({tree_id}, b"s" * 16)
    repo.backend.save(Handle(ObjectKind.REFLIST, object_name(reflist).hex), reflist)
    data = encode_snapshot(SnapshotRecord(repo.repo_id, [object_name(reflist)], sealed))
    repo.flush()
    repo.backend.save(Handle(ObjectKind.SNAPSHOT, object_name(data).hex), data)
    read = reopen(repo).read_snapshot(object_name(data))
    assert read.record.group is None and read.body.group is None and read.body.tree == tree_id
