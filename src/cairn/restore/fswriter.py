"""The writing side of restore, safe against crafted snapshots.

Every operation is relative to an open folder descriptor (``openat`` and friends) and every name is
one checked path component, so nothing — ``..``, absolute names, a symlink planted as a parent
folder (in the snapshot or already in the target) — can make restore write outside its target.
Folders are opened with ``O_NOFOLLOW``; files are created with ``O_NOFOLLOW`` too.

A file is written under a partial name beside its final one (``.cairn-partial.NAME``) and renamed
into place once its contents and metadata are complete: an interrupted restore never leaves a
half-written file under a name the snapshot gives, so running it again simply completes it.
Every ``OSError`` on a path of the target leaves this module as a ``TargetError`` naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from cairn.core.errors import CairnError
from cairn.format.tree import Node

Components = tuple[bytes, ...]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_HOLE_BLOCK = 64 * 1024
_ZERO_BLOCK = bytes(_HOLE_BLOCK)
_TOLERATED = {errno.ENOTSUP, errno.EPERM, errno.EACCES}
_NAME_MAX = 255
PARTIAL_PREFIX = b".cairn-partial."
DAMAGED_SUFFIX = b".cairn-damaged"

P = ParamSpec("P")
R = TypeVar("R")


class UnsafePathError(CairnError):
    """A name that could escape the restore target; the entry is skipped."""


def check_name(name: bytes) -> None:
    """Accept exactly one path component."""
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise UnsafePathError(f"unsafe name {name!r} refused")


class TargetError(CairnError):
    """The restore target cannot be written (read-only, full, not a folder, permissions)."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


def partial_name(name: bytes) -> bytes:
    """The name a file is written under until it is complete, in the same folder."""
    hidden = PARTIAL_PREFIX + name
    if len(hidden) <= _NAME_MAX:
        return hidden
    return PARTIAL_PREFIX + hashlib.blake2b(name, digest_size=16).hexdigest().encode()


def damaged_name(name: bytes) -> bytes | None:
    """The clearly marked name for the intact parts of a damaged file; None when too long."""
    marked = name + DAMAGED_SUFFIX
    return marked if len(marked) <= _NAME_MAX else None


def _naming(
    method: Callable[Concatenate[SafeTarget, Components, P], R],
) -> Callable[Concatenate[SafeTarget, Components, P], R]:
    """Turn an OSError of a method on `comps` into a TargetError that names the full path."""

    def wrapper(self: SafeTarget, comps: Components, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, comps, *args, **kwargs)
        except OSError as exc:
            raise self.error(comps, exc) from exc

    wrapper.__doc__ = method.__doc__
    return wrapper


class SafeTarget:
    """A restore target folder; all paths are tuples of checked components below it."""

    def __init__(self, root: Path, cache_size: int = 64) -> None:
        self._root_path = root
        if root.exists() and not root.is_dir():
            raise TargetError(f"cannot write {root}: it exists and is not a folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
            # The target is the user's choice: a symlink to a folder is followed there, and only
            # there; nothing below it is.
            self._root = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
        except OSError as exc:
            raise self.error((), exc) from exc
        self._dirs: OrderedDict[Components, int] = OrderedDict()
        self._cache_size = cache_size
        self.is_root = os.geteuid() == 0
        self.metadata_failures = 0

    def show(self, comps: Components) -> str:
        """The full path of `comps`, for messages."""
        return os.fsdecode(os.path.join(os.fsencode(self._root_path), *comps))

    def error(self, comps: Components, exc: OSError) -> TargetError:
        """A TargetError naming the path below the target where `exc` happened."""
        return TargetError(f"cannot write {self.show(comps)}: {exc.strerror or exc}", exc.errno)

    # ---- folders ------------------------------------------------------------------------

    def open_dir(self, comps: Components) -> int:
        """A descriptor for the folder at `comps` (cached; the caller must not close it)."""
        if not comps:
            return self._root
        fd = self._dirs.get(comps)
        if fd is not None:
            self._dirs.move_to_end(comps)
            return fd
        check_name(comps[-1])
        fd = os.open(comps[-1], _DIR_FLAGS, dir_fd=self.open_dir(comps[:-1]))
        self._dirs[comps] = fd
        if len(self._dirs) > self._cache_size:
            _, old = self._dirs.popitem(last=False)
            os.close(old)
        return fd

    @_naming
    def make_dir(self, comps: Components) -> None:
        """Create the folder and missing parents; an existing folder is fine, a file is not."""
        for depth in range(1, len(comps) + 1):
            parent, name = self.open_dir(comps[: depth - 1]), comps[depth - 1]
            check_name(name)
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise UnsafePathError(
                        f"{_show(comps[:depth])} exists and is not a folder"
                    ) from None

    def _parent(self, comps: Components) -> tuple[int, bytes]:
        if not comps:
            raise UnsafePathError("empty path")
        check_name(comps[-1])
        return self.open_dir(comps[:-1]), comps[-1]

    # ---- files --------------------------------------------------------------------------

    def lstat(self, comps: Components) -> os.stat_result | None:
        """What is at `comps` (not following a symlink); None when nothing is, or when a parent
        is missing or is no folder (that parent is the entry in the way)."""
        try:
            parent, name = self._parent(comps)
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink where a parent folder should be
                return None
            raise

    def open_existing(self, comps: Components) -> int | None:
        """Open an existing regular file for reading; None when nothing is there."""
        parent, name = self._parent(comps)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            return os.open(name, flags, dir_fd=parent)
        except FileNotFoundError:
            return None

    @_naming
    def clear(self, comps: Components) -> None:
        """Remove whatever is at `comps` (for --overwrite): a folder with everything in it, or a
        file, symlink or special file. A symlink is removed itself, never followed."""
        parent, name = self._parent(comps)
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        self._forget_below(comps)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=parent)  # fd-based on Linux: no symlink is followed
        else:
            os.unlink(name, dir_fd=parent)

    def _forget_below(self, comps: Components) -> None:
        for cached in [c for c in self._dirs if c[: len(comps)] == comps]:
            os.close(self._dirs.pop(cached))

    # ---- files written under a partial name ---------------------------------------------

    @_naming
    def create_partial(self, comps: Components) -> int:
        """Create the file's partial name afresh (one left by a killed run is replaced).

        Created first and removed only when one is there: almost always nothing is, and a
        failed unlink per file (a system call and an exception) cost a restore of many small
        files more than its writes."""
        parent, name = self._parent(comps)
        temp = partial_name(name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(temp, flags, 0o600, dir_fd=parent)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=parent)
        return os.open(temp, flags, 0o600, dir_fd=parent)

    @_naming
    def reopen_partial(self, comps: Components) -> int:
        parent, name = self._parent(comps)
        flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(partial_name(name), flags, dir_fd=parent)

    @_naming
    def publish(self, comps: Components, node: Node, as_name: bytes | None = None) -> None:
        """Apply the metadata to the complete partial file and rename it to its final name
        (or to `as_name` in the same folder), replacing a file or symlink there."""
        parent, name = self._parent(comps)
        temp = partial_name(name)
        self._apply(parent, temp, node)
        os.rename(temp, as_name or name, src_dir_fd=parent, dst_dir_fd=parent)

    @_naming
    def discard_partial(self, comps: Components) -> None:
        """Remove the partial file of `comps`, if there is one."""
        try:
            parent, name = self._parent(comps)
            os.unlink(partial_name(name), dir_fd=parent)
        except (FileNotFoundError, NotADirectoryError):
            pass

    def close_file(self, fd: int) -> None:
        os.close(fd)

    def write_chunk(self, fd: int, offset: int, data: bytes) -> int:
        """Write at `offset`, leaving all-zero blocks as holes, so sparse files stay sparse.
        Returns the bytes written (holes not counted)."""
        view = memoryview(data)
        start = written = 0
        for block in range(0, len(view), _HOLE_BLOCK):
            # Most blocks hold data: their first or last byte says so without a comparison.
            end = min(block + _HOLE_BLOCK, len(data))
            if data[block] or data[end - 1] or data[block:end] != _ZERO_BLOCK[: end - block]:
                continue
            written += _pwrite_all(fd, view[start:block], offset + start)
            start = end
        return written + _pwrite_all(fd, view[start:], offset + start)

    def finish_file(self, fd: int, size: int) -> None:
        """Set the final size (creating trailing holes) and close."""
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    @_naming
    def remove_if_exists(self, comps: Components) -> None:
        """Remove a file or symlink in the way; folders are never removed."""
        parent, name = self._parent(comps)
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(
                f"{_show(comps)} is a folder in the target; refusing to replace it"
            )
        os.unlink(name, dir_fd=parent)

    # ---- other entries ------------------------------------------------------------------

    def read_link(self, comps: Components) -> bytes | None:
        """The target of the symlink at `comps`; None when it is no symlink."""
        try:
            parent, name = self._parent(comps)
            return os.readlink(name, dir_fd=parent)
        except OSError:
            return None

    @_naming
    def make_symlink(self, comps: Components, target: bytes) -> None:
        parent, name = self._parent(comps)
        os.symlink(target, name, dir_fd=parent)

    @_naming
    def make_hardlink(self, comps: Components, existing: Components) -> None:
        src_parent, src_name = self._parent(existing)
        dst_parent, dst_name = self._parent(comps)
        os.link(
            src_name, dst_name, src_dir_fd=src_parent, dst_dir_fd=dst_parent, follow_symlinks=False
        )

    @_naming
    def make_special(self, comps: Components, node: Node) -> bool:
        """Create a fifo, or a device node when running as root; False when skipped."""
        parent, name = self._parent(comps)
        if node.type == "fifo":
            os.mkfifo(name, 0o600, dir_fd=parent)
            return True
        if node.type in ("chardev", "blockdev") and self.is_root:
            os.mknod(name, node.mode, node.rdev, dir_fd=parent)
            return True
        return False

    # ---- metadata -----------------------------------------------------------------------

    @_naming
    def apply_metadata(self, comps: Components, node: Node, *, is_dir: bool = False) -> None:
        """Ownership (as root), mode, xattrs, then times; best effort where the OS refuses."""
        if not comps:
            return
        parent, name = self._parent(comps)
        self._apply(parent, name, node)

    def _apply(self, parent: int, name: bytes, node: Node) -> None:
        if self.is_root:
            chown = partial(
                os.chown, name, node.uid, node.gid, dir_fd=parent, follow_symlinks=False
            )
            self._tolerate(chown)
        if node.type != "symlink":
            self._tolerate(partial(os.chmod, name, stat.S_IMODE(node.mode), dir_fd=parent))
        if node.xattrs:
            self._set_xattrs(parent, name, node)
        os.utime(name, ns=(node.atime, node.mtime), dir_fd=parent, follow_symlinks=False)

    def _set_xattrs(self, parent: int, name: bytes, node: Node) -> None:
        if node.type == "symlink":
            return  # Linux allows user xattrs only on files and folders
        # The parent is reached through its open descriptor (no path walk), and the last
        # component is not followed; opening the entry instead could block on a fifo.
        path = b"/proc/self/fd/%d/%s" % (parent, name)
        for key, value in node.xattrs:
            self._tolerate(partial(os.setxattr, path, key, value, follow_symlinks=False))

    def _tolerate(self, action: Callable[[], object]) -> None:
        try:
            action()
        except OSError as exc:
            if exc.errno not in _TOLERATED:
                raise
            self.metadata_failures += 1

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        os.close(self._root)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> int:
    total = len(view)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
    return total


def _show(comps: Components) -> str:
    return "/".join(c.decode(errors="replace") for c in comps)
