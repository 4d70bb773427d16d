"""Restore over a memory backend: reads planned by pack, shared chunks, crafted sizes, few fds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.errors import IntegrityError
from cairn.core.ids import ChunkId
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.repository.repository import Repository
from cairn.restore import fetcher
from cairn.restore.fetcher import fetch, plan_reads
from cairn.restore.fswriter import SafeTarget
from cairn.restore.openfiles import OpenFiles
from tests.support.restoring import new_repo, restore


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


def test_a_chunk_in_no_index_loses_only_the_files_that_hold_it(tmp_path: Path) -> None:
    repo = new_repo()
    repo.start_writing()
    blobs = [os.urandom(2000), os.urandom(3000)]
    ids = store(repo, blobs)
    ghost = ChunkId(bytes(32))
    bad = file_node(b"bad", [ids[0], ghost, ids[1]], [blobs[0], b"x" * 10, blobs[1]])
    tree_id = commit(repo, [file_node(b"ok", ids[:1], blobs[:1]), bad])
    result = restore(repo, tree_id, tmp_path / "out")
    assert (tmp_path / "out" / "ok").read_bytes() == blobs[0]
    assert not (tmp_path / "out" / "bad").exists(), "a damaged file never gets its own name"
    [damaged] = result.damaged
    assert (damaged.path, damaged.ranges) == (b"/bad", [(2000, 2010)])
    assert damaged.saved_as == b"/bad.cairn-damaged"
    aside = (tmp_path / "out" / "bad.cairn-damaged").read_bytes()
    assert aside == blobs[0] + bytes(10) + blobs[1], "intact parts kept, the lost range zeroed"
    assert result.files == 1
    assert sorted(os.listdir(tmp_path / "out")) == ["bad.cairn-damaged", "ok"]


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


def test_a_missing_pack_loses_its_blobs_and_nothing_else(tmp_path: Path) -> None:
    repo = new_repo()
    repo.start_writing()
    blobs = [os.urandom(5000) for _ in range(40)]
    ids = store(repo, blobs)
    tree_id = commit(repo, [file_node(b"f", ids, blobs), file_node(b"g", ids[:1], blobs[:1])])
    backend = repo.backend
    assert isinstance(backend, MemoryBackend)
    victim = repo.index.get(ids[20]).pack  # type: ignore[union-attr]
    assert repo.index.get(ids[0]).pack != victim  # type: ignore[union-attr]
    backend.remove(Handle(ObjectKind.PACK, victim.hex))
    result = restore(repo, tree_id, tmp_path / "out", workers=3)
    lost = [i for i, c in enumerate(ids) if repo.index.get(c).pack == victim]  # type: ignore[union-attr]
    assert [d.path for d in result.damaged] == [b"/f"]
    assert result.damaged[0].ranges == [(lost[0] * 5000, (lost[-1] + 1) * 5000)]
    assert (tmp_path / "out" / "g").read_bytes() == blobs[0]
    assert not (tmp_path / "out" / "f").exists()


def test_an_interrupted_restore_leaves_no_partial_file(tmp_path: Path) -> None:
    """Stopped mid-file (Ctrl-C), a restore leaves complete files only; a rerun completes."""
    repo = new_repo()
    repo.start_writing()
    small = [os.urandom(1000)]  # below the chunker's minimum: one chunk, as a backup cuts it
    blobs = [os.urandom(5000) for _ in range(20)]
    ids = store(repo, blobs)
    a = file_node(b"a", store(repo, small), small)
    tree_id = commit(repo, [a, file_node(b"z", ids, blobs)])
    real_fetch = fetcher.fetch

    def interrupted(*args: object, **kw: object) -> object:
        """Ctrl-C once `a` is complete: one reader reads a's pack first, z is half written."""
        for item in real_fetch(*args, **kw):  # type: ignore[arg-type]
            if (tmp_path / "out" / "a").exists():
                raise KeyboardInterrupt
            yield item

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("cairn.restore.restorer.fetch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            restore(repo, tree_id, tmp_path / "out", workers=1)
    assert os.listdir(tmp_path / "out") == ["a"], "no partial file, under any name"
    result = restore(repo, tree_id, tmp_path / "out")
    assert (result.files, result.files_verified) == (2, 1)
    assert (tmp_path / "out" / "z").read_bytes() == b"".join(blobs)


def test_open_files_with_one_descriptor_interleave(tmp_path: Path) -> None:
    """Chunks of many files arriving interleaved are written right with a single open fd."""
    target = SafeTarget(tmp_path / "t")
    finished: list[bytes] = []

    def publish(comps: tuple[bytes, ...], node: Node, damage: object) -> None:
        assert damage is None
        target.publish(comps, node)
        finished.append(comps[-1])

    files = OpenFiles(target, publish, limit=1)
    parts = {name: [os.urandom(100) for _ in range(4)] for name in (b"a", b"b", b"c")}
    numbers = {}
    for name in parts:
        node = Node(name=name, type="file", size=400, content=[ChunkId(bytes(32))] * 4)
        numbers[name] = files.add((name,), node)
    for index in (3, 0, 2, 1):  # last chunk first: a file reopened keeps what it has
        for name, chunks in parts.items():
            files.write(numbers[name], index * 100, chunks[index])
    files.close_all()
    for name, chunks in parts.items():
        assert (tmp_path / "t" / name.decode()).read_bytes() == b"".join(chunks)
    assert sorted(finished) == [b"a", b"b", b"c"]
