"""open_cached: the repository's cache folder, private, and every cached kind read once."""

from __future__ import annotations

import os
from pathlib import Path

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.backends.wrappers.faulty import FaultyBackend
from cairn.core.clock import SystemClock
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import TEST_KDF
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.repository.localcache import object_matches, open_cached
from cairn.repository.repository import Repository

CLOCK = SystemClock()


def filled() -> FaultyBackend:
    storage = FaultyBackend(MemoryBackend())
    repo = Repository.init(storage, b"pw", CLOCK, kdf=TEST_KDF)
    repo.start_writing()
    tree, _ = repo.store_blob(BlobKind.TREE, encode_tree([Node(name=b"f", type="file")]))
    body = SnapshotBody("2026-11-29T12:00:00+00:00", "h", "u", ["/f"], [], tree)
    repo.commit_snapshot(body, {tree})
    repo.close()
    return storage


def read_everything(repo: Repository) -> None:
    repo.load_index()
    for name in repo.snapshot_names():
        snap = repo.read_snapshot(name)
        repo.read_reflist(snap.record.reflists[0])
        repo.fetch_blob(BlobKind.TREE, snap.body.tree)


def test_a_second_command_reads_no_object_but_the_config_again(tmp_path: Path) -> None:
    storage = filled()
    warnings: list[str] = []
    first = open_cached(storage, b"pw", CLOCK, tmp_path / "cache", warnings.append)
    read_everything(first)
    loads = storage.calls["load"]
    second = open_cached(storage, b"pw", CLOCK, tmp_path / "cache", warnings.append)
    read_everything(second)
    assert storage.calls["load"] == loads + 1, "only the config, which is not named by a hash"
    assert warnings == []
    folder = tmp_path / "cache" / first.repo_id.hex()
    assert os.stat(folder).st_mode & 0o777 == 0o700
    assert {p.name for p in folder.iterdir()} >= {"keys", "index", "snapshots", "reflists", "trees"}


def test_an_unusable_cache_folder_is_a_warning_and_the_command_goes_on(tmp_path: Path) -> None:
    storage = filled()
    (tmp_path / "file").write_bytes(b"in the way")
    warnings: list[str] = []
    repo = open_cached(storage, b"pw", CLOCK, tmp_path / "file", warnings.append)
    read_everything(repo)
    assert len(warnings) == 1 and "going on without it" in warnings[0]
    assert repo.tree_cache is None


def test_an_existing_folder_open_to_others_is_made_private(tmp_path: Path) -> None:
    storage = filled()
    repo_id = Repository.open(storage, b"pw", CLOCK).repo_id.hex()
    (tmp_path / "cache" / repo_id).mkdir(parents=True, mode=0o755)
    os.chmod(tmp_path / "cache" / repo_id, 0o755)
    open_cached(storage, b"pw", CLOCK, tmp_path / "cache", print)
    assert os.stat(tmp_path / "cache" / repo_id).st_mode & 0o777 == 0o700


def test_object_matches_checks_the_hash_and_refuses_odd_names() -> None:
    data = b"object"
    good = Handle(ObjectKind.INDEX, object_name(data).hex)
    assert object_matches(good, data)
    assert not object_matches(good, b"objecT")
    assert not object_matches(Handle(ObjectKind.CONFIG, "config"), data)
