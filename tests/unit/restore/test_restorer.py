"""Restore over a memory backend: reads planned by pack, shared chunks, crafted sizes, few fds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import SystemClock
from cairn.core.errors import IntegrityError
from cairn.core.ids import ChunkId
from cairn.core.progress import SilentProgress
from cairn.crypto.kdf import TEST_KDF
from cairn.format.config import RepoParams
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.repository.errors import ObjectMissing
from cairn.repository.repository import Repository
from cairn.restore import fetcher
from cairn.restore.fetcher import fetch, plan_reads
from cairn.restore.fswriter import SafeTarget
from cairn.restore.openfiles import OpenFiles
from cairn.restore.restorer import RestoreOptions, Restorer

SMALL = RepoParams(
    chunk_min=1024, chunk_avg=2048, chunk_max=8192, pack_size=64 * 1024, compression=3
)


def new_repo() -> Repository:
    return Repository.init(MemoryBackend(), b"pw", SystemClock(), kdf=TEST_KDF, params=SMALL)


def store(repo: Repository, blobs: list[bytes]) -> list[ChunkId]:
    return [repo.store_blob(BlobKind.DATA, blob)[0] for blob in blobs]


def file_node(name: bytes, ids: list[ChunkId], blobs: list[bytes]) -> Node:
    sizes = [len(b) for b in blobs]
    return Node(name=name, type="file", mode=0o644, content=ids, sizes=sizes, size=sum(sizes))


def commit(repo: Repository, nodes: list[Node]) -> ChunkId:
    tree_id, _ = repo.store_blob(BlobKind.TREE, encode_tree(nodes))
    referenced = {tree_id, *(c for n in nodes for c in n.content)}
    body = SnapshotBody("2026-11-24T12:00:00+00:00", "host", "user", ["/"], [], tree_id)
    repo.commit_snapshot(body, referenced)
    return tree_id


def restore(repo: Repository, tree_id: ChunkId, target: Path, workers: int = 2) -> None:
    options = RestoreOptions(target=target, workers=workers)
    Restorer(repo, SilentProgress()).run(tree_id, options)


def test_shared_chunks_restore_bit_exact(tmp_path: Path) -> None:
    """A chunk repeated in a file and across identical files is read once, written everywhere."""
    repo = new_repo()
    repo.start_writing()
    blobs = [os.urandom(3000) for _ in range(30)]
    ids = store(repo, blobs)
    once = [0, 1, 0, 2, 0, 29, 1]  # chunk 0 three times in one file
    nodes = [
        file_node(b"repeats", [ids[i] for i in once], [blobs[i] for i in once]),
        file_node(b"all-a", ids, blobs),
        file_node(b"all-b", ids, blobs),
        file_node(b"reversed", ids[::-1], blobs[::-1]),
        file_node(b"empty", [], []),
    ]
    tree_id = commit(repo, nodes)
    restore(repo, tree_id, tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "repeats").read_bytes() == b"".join(blobs[i] for i in once)
    assert (out / "all-a").read_bytes() == b"".join(blobs)
    assert (out / "all-b").read_bytes() == b"".join(blobs)
    assert (out / "reversed").read_bytes() == b"".join(blobs[::-1])
    assert (out / "empty").read_bytes() == b""


def test_plan_reads_merges_neighbours_and_splits_long_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = new_repo()
    repo.start_writing()
    blobs = [os.urandom(4000) for _ in range(60)]  # ~240 KB: several 64 KiB packs
    ids = store(repo, blobs)
    repo.flush()
    spans = plan_reads(repo, ids)
    packs = {repo.index.get(i).pack for i in ids}  # type: ignore[union-attr]
    assert len(spans) == len(packs), "adjacent blobs of one pack are one read"
    assert sorted(b.chunk_id for s in spans for b in s.blobs) == sorted(ids)
    monkeypatch.setattr(fetcher, "MAX_SPAN", 10_000)
    short = plan_reads(repo, ids)
    assert len(short) > len(spans)
    assert all(s.length <= 10_000 for s in short)
    got = dict(fetch(repo, short, workers=3))
    assert got == dict(zip(ids, blobs, strict=True))


def test_plan_reads_leaves_wide_gaps_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = new_repo()
    repo.start_writing()
    blobs = [os.urandom(6000) for _ in range(10)]
    ids = store(repo, blobs)
    repo.flush()
    by_offset = sorted(ids, key=lambda i: repo.index.get(i).offset)  # type: ignore[union-attr]
    wanted = [by_offset[0], by_offset[-1]]  # blobs sit in random order inside a pack
    assert len(plan_reads(repo, wanted)) == 1, "a gap below MAX_GAP is read and dropped"
    monkeypatch.setattr(fetcher, "MAX_GAP", 1000)
    spans = plan_reads(repo, wanted)
    assert len(spans) == 2
    assert sum(s.length for s in spans) < 2 * 6100
    expected = dict(zip(ids, blobs, strict=True))
    assert dict(fetch(repo, spans, workers=2)) == {i: expected[i] for i in wanted}


def test_missing_chunk_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    repo = new_repo()
    repo.start_writing()
    blobs = [os.urandom(2000)]
    ids = store(repo, blobs)
    ghost = ChunkId(bytes(32))
    tree_id = commit(repo, [file_node(b"ok", ids, blobs), file_node(b"bad", [ghost], [b"x" * 10])])
    with pytest.raises(ObjectMissing):
        restore(repo, tree_id, tmp_path / "out")
    assert not (tmp_path / "out" / "ok").exists()


def test_tree_with_wrong_sizes_is_an_integrity_error(tmp_path: Path) -> None:
    """A crafted tree cannot make a restore write a chunk at an offset its sizes do not hold."""
    repo = new_repo()
    repo.start_writing()
    blobs = [os.urandom(2000), os.urandom(2000)]
    ids = store(repo, blobs)
    node = file_node(b"f", ids, blobs)
    node.sizes = [1000, 3000]
    tree_id = commit(repo, [node])
    with pytest.raises(IntegrityError, match="a tree says chunk"):
        restore(repo, tree_id, tmp_path / "out")


def test_failing_reader_stops_the_restore(tmp_path: Path) -> None:
    repo = new_repo()
    repo.start_writing()
    blobs = [os.urandom(5000) for _ in range(40)]
    ids = store(repo, blobs)
    tree_id = commit(repo, [file_node(b"f", ids, blobs)])
    backend = repo.backend
    assert isinstance(backend, MemoryBackend)
    packs = sorted({repo.index.get(i).pack for i in ids})  # type: ignore[union-attr]
    victim = packs[len(packs) // 2]
    backend.remove(Handle(ObjectKind.PACK, victim.hex))
    with pytest.raises(ObjectMissing):
        restore(repo, tree_id, tmp_path / "out", workers=3)


def test_open_files_with_one_descriptor_interleave(tmp_path: Path) -> None:
    """Chunks of many files arriving interleaved are written right with a single open fd."""
    target = SafeTarget(tmp_path / "t")
    finished: list[tuple[bytes, int]] = []
    files = OpenFiles(target, lambda c, n, w: finished.append((c[-1], w)), limit=1)
    parts = {name: [os.urandom(100) for _ in range(4)] for name in (b"a", b"b", b"c")}
    numbers = {}
    for name in parts:
        node = Node(name=name, type="file", size=400, content=[ChunkId(bytes(32))] * 4)
        numbers[name] = files.add((name,), node, replace=False)
    for index in (3, 0, 2, 1):  # last chunk first: a file reopened keeps what it has
        for name, chunks in parts.items():
            files.write(numbers[name], index * 100, chunks[index])
    files.close_all()
    for name, chunks in parts.items():
        assert (tmp_path / "t" / name.decode()).read_bytes() == b"".join(chunks)
    assert sorted(finished) == [(b"a", 400), (b"b", 400), (b"c", 400)]
