"""Dumping: one file of a snapshot, or a folder as a tar or zip archive, streamed to a stream.

Nothing is buffered whole: a file's chunks are fetched one after the other and written as they
come, and the archives are written in stream mode (tarfile ``w|``, zipfile on an unseekable
stream), so memory stays at a chunk or two whatever the size. Lost data (damage.py) is never
streamed silently: before a file's first byte is written its chunks are looked up in the index,
and a file that lost any is refused (a single file) or left out of the archive and listed (a
folder); a chunk that fails verification while streaming stops the dump, with the output cut
short where it failed (a tar or zip reader reports the archive as truncated).
"""

from __future__ import annotations

import os
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator
from typing import BinaryIO

from cairn.core.errors import FormatError, IntegrityError
from cairn.core.ids import ChunkId
from cairn.format.pack import BlobKind
from cairn.format.tree import Node
from cairn.restore.damage import DamagedFile, DamagedFiles
from cairn.restore.protocols import IndexedLoader
from cairn.snapshot.walk import load_tree

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def lost_ranges(repo: IndexedLoader, path: bytes, node: Node) -> DamagedFile | None:
    """The ranges of a file whose chunks no index lists (or lists as trees); None when whole."""
    damage = None
    offset = 0
    for chunk_id, size in zip(node.content, node.sizes, strict=True):
        location = repo.index.get(chunk_id)
        if location is None or location.kind is not BlobKind.DATA:
            damage = damage or DamagedFile(path, node.size)
            damage.add(offset, offset + size)
        offset += size
    return damage


def file_chunks(repo: IndexedLoader, path: bytes, node: Node) -> Iterator[bytes]:
    """A file's contents, chunk by chunk; DamagedFiles for a chunk that fails verification."""
    offset = 0
    for chunk_id, size in zip(node.content, node.sizes, strict=True):
        yield _fetch(repo, path, node, chunk_id, offset, size)
        offset += size


def _fetch(
    repo: IndexedLoader, path: bytes, node: Node, chunk_id: ChunkId, offset: int, size: int
) -> bytes:
    try:
        data = repo.fetch_blob(BlobKind.DATA, chunk_id)
    except (IntegrityError, FormatError):
        data = b""
    if len(data) != size:
        damage = DamagedFile(path, node.size)
        damage.add(offset, offset + size)
        raise DamagedFiles([damage])
    return data


def dump_file(repo: IndexedLoader, path: bytes, node: Node, out: BinaryIO) -> None:
    """Write one file's contents to `out`; a damaged file is refused before anything is written."""
    damage = lost_ranges(repo, path, node)
    if damage is not None:
        raise DamagedFiles([damage])
    for data in file_chunks(repo, path, node):
        out.write(data)


class _ChunkReader:
    """A file-like view of a file's chunks for tarfile, which reads exact-size pieces."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            piece = next(self._chunks, None)
            if piece is None:
                break
            self._buffer += piece
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def walk_folder(
    repo: IndexedLoader, node: Node, path: bytes, name: bytes
) -> Iterator[tuple[bytes, bytes, Node]]:
    """(path in the snapshot, name in the archive, node) for the folder and all below it."""
    yield path, name, node
    if node.type != "dir" or node.subtree is None:
        return
    for child in load_tree(repo, node.subtree):
        below = path.rstrip(b"/") + b"/" + child.name
        yield from walk_folder(repo, child, below, name + b"/" + child.name)


def dump_tar(repo: IndexedLoader, root: Node, path: bytes, out: BinaryIO) -> list[DamagedFile]:
    """Write the folder at `path` as a tar stream (names start with the folder's own name);
    returns the damaged files left out."""
    damaged: list[DamagedFile] = []
    first_link: dict[tuple[int, int], str] = {}
    name = path.rstrip(b"/").rpartition(b"/")[2] or b"."
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for where, arcname, node in walk_folder(repo, root, path, name):
            info = _tar_info(node, arcname)
            key = (node.dev, node.inode)
            if node.type == "file" and node.links > 1 and key in first_link:
                info.type, info.linkname, info.size = tarfile.LNKTYPE, first_link[key], 0
            elif node.type == "file":
                damage = lost_ranges(repo, where, node)
                if damage is not None:
                    damaged.append(damage)
                    continue
                first_link[key] = info.name
                tar.addfile(info, _ChunkReader(file_chunks(repo, where, node)))
                continue
            tar.addfile(info)
    return damaged


_TAR_TYPES = {
    "dir": tarfile.DIRTYPE,
    "file": tarfile.REGTYPE,
    "symlink": tarfile.SYMTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
}


def _tar_info(node: Node, arcname: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname.decode("utf-8", "surrogateescape"))
    info.type = _TAR_TYPES.get(node.type, tarfile.REGTYPE)
    info.mode = stat.S_IMODE(node.mode)
    info.mtime = node.mtime / 1e9
    info.uid, info.gid, info.uname, info.gname = node.uid, node.gid, node.user, node.group
    info.size = node.size if node.type == "file" else 0
    if node.type == "symlink":
        info.linkname = node.target.decode("utf-8", "surrogateescape")
    if node.type in ("chardev", "blockdev"):
        info.devmajor, info.devminor = os.major(node.rdev), os.minor(node.rdev)
    return info


def dump_zip(repo: IndexedLoader, root: Node, path: bytes, out: BinaryIO) -> list[DamagedFile]:
    """Write the folder at `path` as a zip stream (deflated; symlinks as Unix symlink entries,
    special files left out); returns the damaged files left out."""
    damaged: list[DamagedFile] = []
    name = path.rstrip(b"/").rpartition(b"/")[2] or b"."
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for where, arcname, node in walk_folder(repo, root, path, name):
            if node.type not in ("dir", "file", "symlink"):
                continue
            info = _zip_info(node, arcname)
            if node.type == "file":
                damage = lost_ranges(repo, where, node)
                if damage is not None:
                    damaged.append(damage)
                    continue
                with archive.open(info, "w", force_zip64=node.size >= zipfile.ZIP64_LIMIT) as f:
                    for data in file_chunks(repo, where, node):
                        f.write(data)
            else:
                archive.writestr(info, node.target if node.type == "symlink" else b"")
    return damaged


def _zip_info(node: Node, arcname: bytes) -> zipfile.ZipInfo:
    text = arcname.decode("utf-8", "surrogateescape").encode("utf-8", "backslashreplace")
    suffix = "/" if node.type == "dir" else ""
    moment = time.localtime(node.mtime / 1e9)[:6]
    info = zipfile.ZipInfo(text.decode() + suffix, max(moment, _ZIP_EPOCH))
    info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
    kind = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}.get(node.type, stat.S_IFREG)
    info.external_attr = (kind | stat.S_IMODE(node.mode)) << 16
    if node.type == "dir":
        info.external_attr |= 0x10  # the MS-DOS folder flag
    if node.type != "file":
        info.compress_type = zipfile.ZIP_STORED
    return info
