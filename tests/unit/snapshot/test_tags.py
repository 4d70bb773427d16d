"""Tagging writes a new snapshot object, durable before the old one is removed."""

from __future__ import annotations

from datetime import UTC, datetime

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import FrozenClock
from cairn.crypto.kdf import TEST_KDF
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.repository.repository import Repository
from cairn.snapshot.select import read_snapshots
from cairn.snapshot.tags import TagChange, retag, retagged_body

CLOCK = FrozenClock(datetime(2026, 12, 7, 12, 0, tzinfo=UTC))


def one_snapshot() -> Repository:
    repo = Repository.init(MemoryBackend(), b"pw", CLOCK, kdf=TEST_KDF)
    repo.start_writing()
    chunk, _ = repo.store_blob(BlobKind.DATA, b"contents")
    node = Node(name=b"f", type="file", content=[chunk], sizes=[8], size=8)
    tree, _ = repo.store_blob(BlobKind.TREE, encode_tree([node]))
    repo.commit_snapshot(
        SnapshotBody(CLOCK.now().isoformat(), "h", "u", ["/d"], ["a"], tree), {chunk, tree}
    )
    return repo


def test_the_new_snapshot_holds_the_tags_and_the_original_and_the_old_is_gone() -> None:
    repo = one_snapshot()
    (old,), _ = read_snapshots(repo)
    body = retagged_body(old, TagChange(add=["b"], remove=["a"]))
    assert body is not None
    new = retag(repo, old, body, [old])
    (snap,), _ = read_snapshots(repo)
    assert snap.name == new
    assert snap.body.tags == ["b"]
    assert snap.body.original == old.name
    assert snap.record.reflists != old.record.reflists  # a reflist of its own (design 3.5)
    assert set(repo.read_reflist(snap.record.reflists[0])) == set(
        repo.read_reflist(old.record.reflists[0])
    )


def test_a_rerun_after_a_crash_before_the_removal_only_removes_the_old_one() -> None:
    repo = one_snapshot()
    (old,), _ = read_snapshots(repo)
    body = retagged_body(old, TagChange(set_to=["x"]))
    assert body is not None
    refs = set(repo.read_reflist(old.record.reflists[0]))
    first = repo.commit_snapshot(body, refs)  # what a run killed before the removal leaves
    every, _ = read_snapshots(repo)
    assert len(every) == 2

    again = retag(repo, old, body, every)

    assert again == first
    (snap,), _ = read_snapshots(repo)
    assert snap.name == first
    assert not repo.backend.exists(Handle(ObjectKind.SNAPSHOT, old.name.hex))


def test_tags_already_as_asked_change_nothing() -> None:
    repo = one_snapshot()
    (old,), _ = read_snapshots(repo)
    assert retagged_body(old, TagChange(add=["a"])) is None
    assert TagChange(set_to=[]).apply(["a", "b"]) == []
    assert TagChange(add=["c", "a"]).apply(["a", "b"]) == ["a", "b", "c"]
