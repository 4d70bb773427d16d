"""Crafted snapshots (RELIABILITY.md R10): whoever holds the key can write any tree; a restore of it
must never write outside its target.

Each case encodes raw tree blobs (bypassing `encode_tree`'s own checks), commits them as a snapshot
and restores it into `target`, beside an `outside` folder that also holds the planted link targets.
Whatever the restore does — refuse with a typed error, skip an entry, or restore it — `outside` must
be byte-for-byte and entry-for-entry what it was, and no path under `target` may resolve outside it.
Trees whose names are not sorted and unique (every colliding-name case) are refused when decoded;
unsafe names are skipped and reported; device nodes are made inside the target (as root).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cairn.core.errors import CairnError
from cairn.core.ids import ChunkId
from cairn.format.codec import packb
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.repository.repository import Repository
from tests.support.restoring import new_repo, restore

Wire = dict[str, Any]


def node(name: bytes, type_: str = "file", **extra: Any) -> Wire:
    wire: Wire = {
        "name": name,
        "type": type_,
        "mode": 0o644 if type_ != "dir" else 0o755,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "user": "",
        "group": "",
        "mtime": 0,
        "atime": 0,
        "ctime": 0,
        "size": 0,
        "inode": 0,
        "dev": 0,
        "links": 1,
        "rdev": 0,
    }
    wire.update(extra)
    return wire


def tree(repo: Repository, nodes: list[Wire]) -> ChunkId:
    """A tree blob with exactly these nodes, in this order (no sorting, no duplicate check)."""
    return repo.store_blob(BlobKind.TREE, packb({"v": 1, "nodes": nodes}))[0]


def data(repo: Repository, text: bytes) -> Wire:
    chunk_id, _ = repo.store_blob(BlobKind.DATA, text)
    return {"content": [chunk_id], "sizes": [len(text)], "size": len(text)}


def commit(repo: Repository, root: ChunkId) -> ChunkId:
    body = SnapshotBody("2026-11-24T12:00:00+00:00", "host", "user", ["/"], [], root)
    repo.commit_snapshot(body, {root})
    return root


def crafted_cases() -> dict[str, Callable[[Repository, Path], ChunkId]]:
    def dotdot(repo: Repository, outside: Path) -> ChunkId:
        return tree(repo, [node(b"..", **data(repo, b"escaped"))])

    def absolute(repo: Repository, outside: Path) -> ChunkId:
        return tree(repo, [node(os.fsencode(outside / "planted"), **data(repo, b"escaped"))])

    def slash_inside(repo: Repository, outside: Path) -> ChunkId:
        return tree(repo, [node(b"../outside/planted", **data(repo, b"escaped"))])

    def nul(repo: Repository, outside: Path) -> ChunkId:
        return tree(repo, [node(b"ok\0/../../x", **data(repo, b"escaped"))])

    def dot(repo: Repository, outside: Path) -> ChunkId:
        return tree(repo, [node(b".", "dir", subtree=tree(repo, []))])

    def symlink_then_dir(repo: Repository, outside: Path) -> ChunkId:
        """Two entries named `a`: a symlink out, then a folder whose file would go through it."""
        inner = tree(repo, [node(b"planted", **data(repo, b"escaped"))])
        return tree(
            repo,
            [
                node(b"a", "symlink", target=os.fsencode(outside)),
                node(b"a", "dir", subtree=inner),
            ],
        )

    def dir_then_symlink(repo: Repository, outside: Path) -> ChunkId:
        inner = tree(repo, [node(b"planted", **data(repo, b"escaped"))])
        return tree(
            repo,
            [
                node(b"a", "dir", subtree=inner),
                node(b"a", "symlink", target=os.fsencode(outside)),
            ],
        )

    def symlink_parent_in_subtree(repo: Repository, outside: Path) -> ChunkId:
        """`d/link` points out, and `d/link/planted` is a file in the tree below a folder of
        the same name in a second copy of `d`."""
        first = tree(repo, [node(b"link", "symlink", target=os.fsencode(outside))])
        second = tree(
            repo,
            [node(b"link", "dir", subtree=tree(repo, [node(b"planted", **data(repo, b"x"))]))],
        )
        return tree(repo, [node(b"d", "dir", subtree=first), node(b"d", "dir", subtree=second)])

    def relative_symlink_escape(repo: Repository, outside: Path) -> ChunkId:
        inner = tree(repo, [node(b"planted", **data(repo, b"escaped"))])
        return tree(
            repo,
            [
                node(b"up", "symlink", target=b"../outside"),
                node(b"up", "dir", subtree=inner),
            ],
        )

    def hardlink_to_symlink(repo: Repository, outside: Path) -> ChunkId:
        """A hardlink group whose first member is a symlink out, second a file with content."""
        return tree(
            repo,
            [
                node(b"h1", "symlink", target=os.fsencode(outside / "victim"), links=2, inode=9),
                node(b"h2", links=2, inode=9, **data(repo, b"overwritten")),
            ],
        )

    def hardlink_colliding(repo: Repository, outside: Path) -> ChunkId:
        """Two hardlinks of one inode under the same name, one a symlink out."""
        return tree(
            repo,
            [
                node(b"h", links=2, inode=7, dev=1, **data(repo, b"first")),
                node(b"h", "symlink", target=os.fsencode(outside / "victim")),
                node(b"h2", links=2, inode=7, dev=1, **data(repo, b"second")),
            ],
        )

    def file_twice(repo: Repository, outside: Path) -> ChunkId:
        return tree(
            repo,
            [node(b"f", **data(repo, b"one")), node(b"f", **data(repo, b"two"))],
        )

    def devices(repo: Repository, outside: Path) -> ChunkId:
        return tree(
            repo,
            [
                node(b"disk", "blockdev", mode=0o60600, rdev=os.makedev(8, 0)),
                node(b"null", "chardev", mode=0o20666, rdev=os.makedev(1, 3)),
                node(b"pipe", "fifo", mode=0o10644),
                node(b"sock", "socket", mode=0o140755),
            ],
        )

    def symlink_loop(repo: Repository, outside: Path) -> ChunkId:
        inner = tree(repo, [node(b"planted", **data(repo, b"escaped"))])
        return tree(
            repo,
            [
                node(b"loop", "symlink", target=b"loop"),
                node(b"loop", "dir", subtree=inner),
            ],
        )

    return {
        f.__name__: f
        for f in (
            dotdot,
            absolute,
            slash_inside,
            nul,
            dot,
            symlink_then_dir,
            dir_then_symlink,
            symlink_parent_in_subtree,
            relative_symlink_escape,
            hardlink_to_symlink,
            hardlink_colliding,
            file_twice,
            devices,
            symlink_loop,
        )
    }


def snapshot_of(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under `root`: (mode, size, content or link target)."""
    seen: dict[str, tuple[int, int, bytes]] = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(folder, name)
            st = path.lstat()
            if path.is_symlink():
                body = os.fsencode(os.readlink(path))
            elif path.is_file():
                body = path.read_bytes()
            else:
                body = b""
            seen[str(path.relative_to(root))] = (st.st_mode, st.st_size, body)
    return seen


@pytest.mark.parametrize("case", sorted(crafted_cases()))
def test_a_crafted_snapshot_writes_nothing_outside_the_target(case: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"untouched")
    before = snapshot_of(tmp_path)
    repo = new_repo()
    repo.start_writing()
    root = commit(repo, crafted_cases()[case](repo, outside))
    target = tmp_path / "target"
    with contextlib.suppress(CairnError):  # refusing is a fine outcome; writing outside is not
        restore(repo, root, target)
    after = {k: v for k, v in snapshot_of(tmp_path).items() if not k.startswith("target")}
    assert after == before, f"{case}: something outside the target changed"
    for folder, dirs, names in os.walk(target):
        for name in dirs + names:
            path = Path(folder, name)
            if not path.is_symlink():
                assert path.resolve().is_relative_to(target.resolve()), f"{case}: {path}"
