"""The tree-blob cache: trees read once come from disk, verified by opening; bounded; no data."""

from __future__ import annotations

import os
from pathlib import Path

from cairn.backends.memory import MemoryBackend
from cairn.backends.wrappers.faulty import FaultyBackend
from cairn.core.clock import SystemClock
from cairn.core.ids import ChunkId
from cairn.crypto.kdf import TEST_KDF
from cairn.format.config import RepoParams
from cairn.format.pack import BlobKind
from cairn.format.tree import Node, decode_tree, encode_tree
from cairn.repository.repository import Repository
from cairn.repository.treecache import TreeCache

CLOCK = SystemClock()
SMALL = RepoParams(chunk_min=1024, chunk_avg=2048, chunk_max=8192, pack_size=4096, compression=3)


def tree_bytes(name: bytes, size: int = 1) -> bytes:
    return encode_tree([Node(name=name, type="file", size=size)])


def repository(tmp_path: Path, limit: int = 1 << 20) -> tuple[Repository, FaultyBackend]:
    """A repository holding a few trees and a data blob, reopened with a tree cache."""
    storage = FaultyBackend(MemoryBackend())
    repo = Repository.init(storage, b"pw", CLOCK, kdf=TEST_KDF, params=SMALL)
    repo.start_writing()
    for i in range(8):
        repo.store_blob(BlobKind.TREE, tree_bytes(b"file %d" % i, i))
    repo.store_blob(BlobKind.DATA, os.urandom(2000))
    repo.flush()
    repo.close()
    again = Repository.open(storage, b"pw", CLOCK)
    again.load_index()
    again.tree_cache = TreeCache(tmp_path / "trees", limit)
    return again, storage


def tree_id(repo: Repository, i: int) -> ChunkId:
    return repo.blob_id(BlobKind.TREE, tree_bytes(b"file %d" % i, i))


def pack_loads(storage: FaultyBackend) -> int:
    return storage.calls["load"]


def test_a_tree_read_twice_is_loaded_from_its_pack_once(tmp_path: Path) -> None:
    repo, storage = repository(tmp_path)
    first = repo.fetch_blob(BlobKind.TREE, tree_id(repo, 3))
    before = pack_loads(storage)
    assert repo.fetch_blob(BlobKind.TREE, tree_id(repo, 3)) == first
    assert pack_loads(storage) == before
    assert decode_tree(first)[0].name == b"file 3"


def test_the_entry_is_stored_sealed(tmp_path: Path) -> None:
    repo, _ = repository(tmp_path)
    plaintext = repo.fetch_blob(BlobKind.TREE, tree_id(repo, 2))
    entry = TreeCache(tmp_path / "trees").path(tree_id(repo, 2)).read_bytes()
    assert b"file 2" not in entry and entry != plaintext
    assert repo.open_blob(BlobKind.TREE, tree_id(repo, 2), entry) == plaintext


def test_data_blobs_are_never_cached(tmp_path: Path) -> None:
    repo, storage = repository(tmp_path)
    data_id = next(c for c, loc in repo.index.items() if loc.kind is BlobKind.DATA)
    before = pack_loads(storage)
    repo.fetch_blob(BlobKind.DATA, data_id)
    repo.fetch_blob(BlobKind.DATA, data_id)
    assert pack_loads(storage) == before + 2
    assert not (tmp_path / "trees").exists()


def test_a_damaged_entry_is_dropped_and_the_tree_fetched_again(tmp_path: Path) -> None:
    repo, storage = repository(tmp_path)
    wanted = tree_id(repo, 5)
    good = repo.fetch_blob(BlobKind.TREE, wanted)
    path = TreeCache(tmp_path / "trees").path(wanted)
    damaged = bytearray(path.read_bytes())
    damaged[-3] ^= 0x40
    path.write_bytes(bytes(damaged))
    before = pack_loads(storage)
    assert repo.fetch_blob(BlobKind.TREE, wanted) == good
    assert pack_loads(storage) == before + 1
    assert repo.open_blob(BlobKind.TREE, wanted, path.read_bytes()) == good, "healed"


def test_a_planted_entry_another_tree_is_not_accepted(tmp_path: Path) -> None:
    """Swapping two valid sealed trees on disk is caught: the chunk ID is in the AAD."""
    repo, _ = repository(tmp_path)
    one, two = tree_id(repo, 1), tree_id(repo, 2)
    first = repo.fetch_blob(BlobKind.TREE, one)
    repo.fetch_blob(BlobKind.TREE, two)
    cache = TreeCache(tmp_path / "trees")
    cache.path(one).write_bytes(cache.path(two).read_bytes())
    assert repo.fetch_blob(BlobKind.TREE, one) == first


def test_garbage_and_empty_entries_are_misses(tmp_path: Path) -> None:
    repo, _ = repository(tmp_path)
    wanted = tree_id(repo, 4)
    good = repo.fetch_blob(BlobKind.TREE, wanted)
    path = TreeCache(tmp_path / "trees").path(wanted)
    for junk in (b"", b"\x01", os.urandom(300)):
        path.write_bytes(junk)
        assert repo.fetch_blob(BlobKind.TREE, wanted) == good


def test_the_least_recently_used_entries_are_evicted_past_the_bound(tmp_path: Path) -> None:
    cache = TreeCache(tmp_path / "trees", limit=10_000)
    ids = [ChunkId(bytes([i]) * 32) for i in range(12)]
    for age, chunk_id in enumerate(ids[:9]):
        cache.put(chunk_id, b"x" * 1000)
        os.utime(cache.path(chunk_id), (1_000_000 + age, 1_000_000 + age))
    assert cache.get(ids[0]) is not None  # used again: now the most recent
    for chunk_id in ids[9:]:
        cache.put(chunk_id, b"x" * 1000)
    held = [c for c in ids if cache.path(c).exists()]
    total = sum(cache.path(c).stat().st_size for c in held)
    assert total <= 10_000
    assert ids[0] in held, "recently used survives"
    assert ids[1] not in held and ids[2] not in held, "the oldest went first"
    assert ids[-1] in held, "the newest stays"


def test_the_bound_counts_what_earlier_processes_left(tmp_path: Path) -> None:
    earlier = TreeCache(tmp_path / "trees", limit=1 << 30)
    for i in range(10):
        earlier.put(ChunkId(bytes([i]) * 32), b"y" * 1000)
    later = TreeCache(tmp_path / "trees", limit=5_000)
    later.put(ChunkId(b"\xff" * 32), b"y" * 1000)
    entries = [p for p in (tmp_path / "trees").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in entries) <= 5_000


def test_a_cache_that_cannot_be_written_costs_only_time(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"in the way")
    repo, _storage = repository(tmp_path)
    repo.tree_cache = TreeCache(tmp_path / "file" / "trees")
    first = repo.fetch_blob(BlobKind.TREE, tree_id(repo, 0))
    assert repo.fetch_blob(BlobKind.TREE, tree_id(repo, 0)) == first


def test_a_cached_tree_is_found_without_a_pack_read_even_in_a_new_process(tmp_path: Path) -> None:
    repo, storage = repository(tmp_path)
    first = repo.fetch_blob(BlobKind.TREE, tree_id(repo, 6))
    again = Repository.open(storage, b"pw", CLOCK)
    again.tree_cache = TreeCache(tmp_path / "trees")
    before = pack_loads(storage)
    assert again.fetch_blob(BlobKind.TREE, tree_id(repo, 6)) == first
    assert pack_loads(storage) == before
    assert len(again.index) == 0, "served without the index: the entry proves itself"
