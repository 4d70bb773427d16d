"""A backend in a local folder, laid out as in docs/design.md section 2.

Saves are atomic and durable: the bytes go to a temporary file in the target folder, which is
fsynced and then published under its final name with ``os.link`` (which fails instead of replacing
an object another process published meanwhile), and the folder is fsynced. Every durable step
announces itself as a crash point first, so the robustness harness can kill the process there.
Every file-system call goes through a `FileSystem` (cairn.backends.filesystem), so tests can fail
any one of them or simulate a power loss.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Self

from cairn.backends.base import Capabilities, Handle, ObjectInfo, ObjectKind, exists_by_stat
from cairn.backends.contract import CONFIG_NAME, check_handle, read_span
from cairn.backends.errors import (
    AlreadyExists,
    BackendError,
    ForeignLocation,
    ListingIncomplete,
    NotFound,
    PermissionDenied,
    StorageFull,
)
from cairn.backends.filesystem import OS_FILE_SYSTEM, FileSystem
from cairn.core.crashpoints import crashpoint
from cairn.core.ids import is_hex_name

TEMP_PREFIX = ".tmp-"
FOLDER_MODE = 0o700
FILE_MODE = 0o600
_BLOCK = 1 << 20
_FOLDER_KINDS = tuple(kind for kind in ObjectKind if kind is not ObjectKind.CONFIG)
_LAYOUT_NAMES = frozenset([CONFIG_NAME, *(kind.value for kind in _FOLDER_KINDS)])
_FRESH_DISK_NAMES = frozenset(["lost+found"])
"""What a freshly formatted file system holds: a folder of only these counts as empty."""
_SHARDS = tuple(f"{i:02x}" for i in range(256))
_SHARD_SET = frozenset(_SHARDS)

_ERRNO_CLASSES: dict[int, type[BackendError]] = {
    errno.ENOENT: NotFound,
    errno.ENOSPC: StorageFull,
    errno.EDQUOT: StorageFull,
    errno.EACCES: PermissionDenied,
    errno.EPERM: PermissionDenied,
    errno.EROFS: PermissionDenied,
    errno.ENOTDIR: NotFound,  # a file stands in the object's path: the object is not there
}
# File systems without hard links (FAT, some FUSE mounts) answer link() with one of these.
_LINK_UNSUPPORTED = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})
# Some file systems cannot fsync a folder; their entries are then as durable as they get.
_DIRSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})


class LocalBackend:
    """Objects as files under one root folder. The constructor creates nothing; see `create`."""

    def __init__(self, path: Path, fs: FileSystem = OS_FILE_SYSTEM) -> None:
        self._root = Path(os.path.abspath(path))
        self._fs = fs

    @classmethod
    def create(cls, path: Path, fs: FileSystem = OS_FILE_SYSTEM) -> Self:
        """Make the root and every folder of the layout, durably, and return the backend.

        An existing empty folder or an existing Cairn layout is accepted; any other existing
        folder or file is refused, so `init` never scatters a repository into someone's data.
        """
        backend = cls(path, fs)
        backend._check_creatable()
        backend._make_layout()
        return backend

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(connections=4, local=True)

    def location(self) -> str:
        return str(self._root)

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        path = self._path(handle)
        view = memoryview(data).cast("B")
        fs = self._fs
        temp = _write_temp(fs, path.parent, view)
        try:
            _publish(fs, temp, path, view)
        finally:
            _discard(fs, temp)
        _sync_folder(fs, path.parent, "local.save.dirsync")

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Deviation: a missing config in a location that holds other files, or that is a file,
        is ForeignLocation rather than NotFound (no repository, but not an empty place either)."""
        try:
            return self._load(handle, offset, length)
        except NotFound:
            if handle.kind is ObjectKind.CONFIG:
                self._refuse_foreign()
            raise

    def _load(self, handle: Handle, offset: int, length: int | None) -> bytes:
        path = self._path(handle)
        with _translated("read", path):
            fd = self._fs.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                count = read_span(self._fs.fsize(fd), offset, length, handle)
                return _pread_exact(self._fs, fd, offset, count, path)
            finally:
                self._fs.close(fd)

    def stat(self, handle: Handle) -> ObjectInfo:
        path = self._path(handle)
        with _translated("stat", path):
            return ObjectInfo(handle, self._fs.size(path))

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        if kind is ObjectKind.CONFIG:
            yield from self._list_config()
        elif kind is ObjectKind.PACK:
            for shard in _scan(self._fs, self._root / kind.value, folders=True):
                yield from self._list_folder(kind, self._root / kind.value / shard, shard)
        else:
            yield from self._list_folder(kind, self._root / kind.value, "")

    def remove(self, handle: Handle) -> None:
        path = self._path(handle)
        crashpoint("local.remove.unlink")
        with _translated("remove", path):
            self._fs.unlink(path)
        _sync_folder(self._fs, path.parent, "local.remove.dirsync")

    def exists(self, handle: Handle) -> bool:
        return exists_by_stat(self, handle)

    def close(self) -> None:
        """Nothing to release: no descriptor stays open between calls."""

    def _path(self, handle: Handle) -> Path:
        check_handle(handle)
        if handle.kind is ObjectKind.CONFIG:
            return self._root / CONFIG_NAME
        folder: str = handle.kind.value
        if handle.kind is ObjectKind.PACK:
            return self._root / folder / handle.name[:2] / handle.name
        return self._root / folder / handle.name

    def _list_config(self) -> Iterator[ObjectInfo]:
        handle = Handle(ObjectKind.CONFIG, CONFIG_NAME)
        try:
            size = self._fs.size(self._root / CONFIG_NAME)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ListingIncomplete(f"cannot list {self._root}: {exc.strerror}") from exc
        yield ObjectInfo(handle, size)

    def _list_folder(self, kind: ObjectKind, folder: Path, prefix: str) -> Iterator[ObjectInfo]:
        for name in _scan(self._fs, folder, folders=False):
            if not name.startswith(prefix):
                continue
            try:
                size = self._fs.size(folder / name)
            except FileNotFoundError:
                continue  # removed since the folder was read
            except OSError as exc:
                raise ListingIncomplete(f"cannot stat {folder / name}: {exc.strerror}") from exc
            yield ObjectInfo(Handle(kind, name), size)

    def _check_creatable(self) -> None:
        """An existing empty folder (or one holding only lost+found) or Cairn layout is fine."""
        try:
            self._refuse_foreign()
        except ForeignLocation as exc:
            raise ForeignLocation(f"refusing to create a repository: {exc}") from exc

    def _refuse_foreign(self) -> None:
        """Raise ForeignLocation if the root is a file (or lies below one) or holds entries that
        are no part of a repository; return if it is missing, empty, or a Cairn layout."""
        try:
            entries = self._fs.listdir(self._root)
        except FileNotFoundError:
            return
        except NotADirectoryError as exc:
            blocking = _blocking_file(self._fs, self._root)
            what = "is a file" if blocking == self._root else f"lies below the file {blocking}"
            raise ForeignLocation(f"{self._root} {what}") from exc
        except OSError as exc:
            raise _backend_error(exc, "read", self._root) from exc
        foreign = sorted(
            e
            for e in entries
            if e not in _LAYOUT_NAMES | _FRESH_DISK_NAMES and not e.startswith(TEMP_PREFIX)
        )
        if foreign:
            raise ForeignLocation(f"{self._root} holds other files (found {foreign[0]!r})")

    def _make_layout(self) -> None:
        fs = self._fs
        missing = _missing_parents(fs, self._root)
        _make_folder(fs, self._root, parents=True)
        for kind in _FOLDER_KINDS:
            _make_folder(fs, self._root / kind.value)
        packs = self._root / ObjectKind.PACK.value
        for shard in _SHARDS:
            _make_folder(fs, packs / shard)
        _sync_folder(fs, packs, "local.create.dirsync")
        _sync_folder(fs, self._root, "local.create.dirsync")
        # A folder's name lives in its parent: the root's, and those of any parent folders made
        # above, are durable only once each parent is fsynced (deepest first).
        for folder in [self._root, *missing]:
            _sync_folder(fs, folder.parent, "local.create.dirsync")


@contextmanager
def _translated(action: str, path: Path, missing: type[BackendError] = NotFound) -> Iterator[None]:
    """Turn any OSError raised inside into the BackendError its errno stands for."""
    try:
        yield
    except OSError as exc:
        error = _backend_error(exc, action, path)
        if isinstance(error, NotFound):
            error = missing(str(error))
        raise error from exc


def _backend_error(exc: OSError, action: str, path: Path) -> BackendError:
    cls = _ERRNO_CLASSES.get(exc.errno or 0, BackendError)
    return cls(f"cannot {action} {path}: {exc.strerror or exc}")


def _write_temp(fs: FileSystem, folder: Path, data: memoryview) -> Path:
    """Write `data` to a new temporary file in `folder` and fsync it; return its path."""
    temp = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    crashpoint("local.save.write")
    with _translated("create a temporary file in", folder, missing=BackendError):
        fd = fs.open(temp, flags, FILE_MODE)
    try:
        with _translated("write", temp):
            _write_all(fs, fd, data)
        crashpoint("local.save.fsync")
        with _translated("fsync", temp):
            fs.fsync(fd)
    except BaseException:
        fs.close(fd)
        _discard(fs, temp)
        raise
    with _translated("close", temp):
        fs.close(fd)
    return temp


def _write_all(fs: FileSystem, fd: int, data: memoryview) -> None:
    done = 0
    while done < len(data):
        done += fs.write(fd, data[done:])


def _publish(fs: FileSystem, temp: Path, path: Path, data: memoryview) -> None:
    """Give the fsynced `temp` its final name without ever replacing an existing object."""
    crashpoint("local.save.publish")
    try:
        fs.link(temp, path)
    except FileExistsError:
        _check_same(fs, path, data)
    except OSError as exc:
        if exc.errno not in _LINK_UNSUPPORTED:
            raise _backend_error(exc, "publish", path) from exc
        _publish_by_rename(fs, temp, path, data)


def _publish_by_rename(fs: FileSystem, temp: Path, path: Path, data: memoryview) -> None:
    # rename() replaces silently, so another process publishing between this check and the
    # rename can be overwritten; both wrote the bytes the hash names, so nothing is lost.
    if fs.lexists(path):
        _check_same(fs, path, data)
        return
    with _translated("publish", path):
        fs.rename(temp, path)


def _check_same(fs: FileSystem, path: Path, data: memoryview) -> None:
    """An object of that name exists: succeed if it holds `data`, else raise AlreadyExists."""
    with _translated("read", path):
        fd = fs.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            same = fs.fsize(fd) == len(data) and _content_equals(fs, fd, data, path)
        finally:
            fs.close(fd)
    if not same:
        raise AlreadyExists(f"{path} exists with different bytes")


def _content_equals(fs: FileSystem, fd: int, data: memoryview, path: Path) -> bool:
    for start in range(0, len(data), _BLOCK):
        count = min(_BLOCK, len(data) - start)
        if _pread_exact(fs, fd, start, count, path) != data[start : start + count]:
            return False
    return True


def _pread_exact(fs: FileSystem, fd: int, offset: int, count: int, path: Path) -> bytes:
    """Exactly `count` bytes from `offset`; a file that ends early is an error."""
    parts: list[bytes] = []
    done = 0
    while done < count:
        part = fs.pread(fd, min(count - done, 16 * _BLOCK), offset + done)
        if not part:
            raise BackendError(
                f"short read of {path}: got {done} of {count} bytes at offset {offset}"
            )
        parts.append(part)
        done += len(part)
    return b"".join(parts)


def _discard(fs: FileSystem, temp: Path) -> None:
    """Remove a temporary file if it is still there."""
    crashpoint("local.save.cleanup")
    # Gone already (published by rename), or undeletable: a stray temporary file is never
    # listed, so it costs space and nothing else; the save's own outcome matters more.
    with suppress(OSError):
        fs.unlink(temp)


def _scan(fs: FileSystem, folder: Path, folders: bool) -> list[str]:
    """Valid entry names in `folder`: shard folders, or object names; never temporary files."""
    valid = _is_shard if folders else is_hex_name
    try:
        return [name for name, is_dir in fs.scan(folder) if valid(name) and is_dir == folders]
    except OSError as exc:
        raise ListingIncomplete(f"cannot list {folder}: {exc.strerror or exc}") from exc


def _is_shard(name: str) -> bool:
    return name in _SHARD_SET


def _blocking_file(fs: FileSystem, path: Path) -> Path:
    """The nearest of `path` and the folders above it that exists (and is, here, a file)."""
    while not fs.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _missing_parents(fs: FileSystem, path: Path) -> list[Path]:
    """The folders above `path` that do not exist yet, nearest first."""
    missing = []
    parent = path.parent
    while parent != parent.parent and not fs.lexists(parent):
        missing.append(parent)
        parent = parent.parent
    return missing


def _make_folder(fs: FileSystem, path: Path, parents: bool = False) -> None:
    crashpoint("local.create.mkdir")
    with _translated("create the folder", path, missing=BackendError):
        fs.mkdir(path, FOLDER_MODE, parents)
        if not fs.is_dir(path):
            raise BackendError(f"cannot create the folder {path}: a file is in the way")


def _sync_folder(fs: FileSystem, folder: Path, point: str) -> None:
    """fsync a folder so the names created or removed in it survive a power loss."""
    crashpoint(point)
    with _translated("open the folder", folder):
        fd = fs.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fs.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIRSYNC_UNSUPPORTED:
            raise _backend_error(exc, "fsync the folder", folder) from exc
    finally:
        fs.close(fd)
