"""restore(backup(tree)) == tree for generated trees: odd names, links, empty and sparse files."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.backends.local import LocalBackend
from cairn.backup.archiver import Archiver, BackupOptions
from cairn.core.clock import SystemClock
from cairn.core.progress import SilentProgress
from cairn.crypto.kdf import TEST_KDF
from cairn.format.config import RepoParams
from cairn.repository.repository import Repository
from cairn.restore.restorer import RestoreOptions, Restorer
from cairn.source.walker import Walker

PARAMS = RepoParams(
    chunk_min=1024, chunk_avg=2048, chunk_max=8192, pack_size=32 * 1024, compression=3
)

# Names: ordinary, non-UTF-8, spaces, newlines, leading dashes and dots (but never . or ..).
names = st.binary(min_size=1, max_size=12).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)
contents = st.one_of(
    st.binary(max_size=20_000),
    st.integers(0, 40_000).map(bytes),  # all zeros
    st.just(b""),
)


@st.composite
def trees(draw: st.DrawFn) -> list[tuple[str, tuple[bytes, ...], object]]:
    """A list of (kind, path components, payload) entries describing a tree.

    A ("meta", path, (mode, xattr)) entry after a file or folder sets its permissions and, where
    the file system has user xattrs, one extended attribute.
    """
    entries: list[tuple[str, tuple[bytes, ...], object]] = []
    dirs: list[tuple[bytes, ...]] = [()]
    used: set[tuple[bytes, ...]] = set()
    for _ in range(draw(st.integers(1, 14))):
        parent = draw(st.sampled_from(dirs))
        path = (*parent, draw(names))
        if path in used:
            continue
        used.add(path)
        kind = draw(st.sampled_from(["dir", "file", "file", "symlink", "sparse", "hardlink"]))
        files = [p for k, p, _ in entries if k == "file"]
        if kind == "hardlink" and not files:
            kind = "file"
        if kind == "dir":
            dirs.append(path)
            entries.append(("dir", path, None))
        elif kind == "file":
            entries.append(("file", path, draw(contents)))
        elif kind == "sparse":
            entries.append(("sparse", path, draw(st.integers(1, 3))))
        elif kind == "symlink":
            entries.append(
                (
                    "symlink",
                    path,
                    draw(st.binary(min_size=1, max_size=30).filter(lambda b: b"\0" not in b)),
                )
            )
        else:
            entries.append(("hardlink", path, draw(st.sampled_from(files))))
        if kind in ("dir", "file") and draw(st.booleans()):
            mode = draw(
                st.sampled_from(
                    [0o700, 0o750, 0o755] if kind == "dir" else [0o400, 0o600, 0o640, 0o755]
                )
            )
            entries.append(("meta", path, (mode, draw(st.none() | st.binary(max_size=40)))))
    return entries


def build(root: bytes, entries: list[tuple[str, tuple[bytes, ...], object]]) -> None:
    for kind, comps, payload in entries:
        path = os.path.join(root, *comps)
        if kind == "dir":
            os.mkdir(path)
        elif kind == "file":
            with open(path, "wb") as f:
                f.write(payload)  # type: ignore[arg-type]
        elif kind == "sparse":
            with open(path, "wb") as f:
                f.seek(int(payload) * 300_000)  # type: ignore[call-overload]
                f.write(b"end")
        elif kind == "symlink":
            os.symlink(payload, path)  # type: ignore[arg-type]
        elif kind == "meta":
            mode, xattr = cast(tuple[int, bytes | None], payload)
            os.chmod(path, mode)
            if xattr is not None:
                with contextlib.suppress(OSError):  # no user xattrs on this file system
                    os.setxattr(path, "user.cairn", xattr)
        else:
            os.link(os.path.join(root, *payload), path)  # type: ignore[misc]
        os.utime(path, ns=(1_000_000_123, 2_000_000_456), follow_symlinks=False)


def xattrs(path: bytes) -> tuple[tuple[str, bytes], ...]:
    if os.path.islink(path):
        return ()
    return tuple(sorted((n, os.getxattr(path, n)) for n in os.listxattr(path)))


def describe(root: bytes) -> dict[bytes, tuple[object, ...]]:
    out: dict[bytes, tuple[object, ...]] = {}
    groups: dict[int, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            data: object = None
            if os.path.islink(full):
                data = os.readlink(full)
            elif os.path.isfile(full):
                with open(full, "rb") as f:
                    data = f.read()
            group = (
                groups.setdefault(st.st_ino, rel)
                if st.st_nlink > 1 and not os.path.isdir(full)
                else None
            )
            mtime = None if os.path.isdir(full) else st.st_mtime_ns
            out[rel] = (
                st.st_mode,
                xattrs(full),
                st.st_size if not os.path.isdir(full) else 0,
                mtime,
                data,
                group,
            )
    return out


@settings(max_examples=25, deadline=None)
@given(trees())
def test_restore_of_backup_equals_the_tree(
    entries: list[tuple[str, tuple[bytes, ...], object]],
) -> None:
    work = tempfile.mkdtemp()
    try:
        src = os.path.join(os.fsencode(work), b"src")
        os.mkdir(src)
        build(src, entries)
        repo = Repository.init(
            LocalBackend.create(Path(work) / "repo"),
            b"pw",
            SystemClock(),
            kdf=TEST_KDF,
            params=PARAMS,
        )
        repo.load_index()
        result = Archiver(repo, Walker(), SilentProgress()).run(BackupOptions(paths=[src]))
        assert result.snapshot is not None
        assert result.errors == [] and result.changed == []
        snap = repo.read_snapshot(result.snapshot)
        target = Path(work) / "out"
        Restorer(repo, SilentProgress()).run(snap.body.tree, RestoreOptions(target=target))
        repo.close()
        assert describe(os.fsencode(target) + src) == describe(src)
    finally:
        shutil.rmtree(work)
