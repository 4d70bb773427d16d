"""The writing side of restore, safe against crafted snapshots.

Every operation is relative to an open folder descriptor (``openat`` and friends) and every name is
one checked path component, so nothing — ``..``, absolute names, a symlink planted as a parent
folder (in the snapshot or already in the target) — can make restore write outside its target.
Folders are opened with ``O_NOFOLLOW``; files are created with ``O_NOFOLLOW`` too.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from pathlib import Path

from cairn.core.errors import CairnError
from cairn.format.tree import Node

Components = tuple[bytes, ...]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_HOLE_BLOCK = 64 * 1024
_ZERO_BLOCK = bytes(_HOLE_BLOCK)
_TOLERATED = {errno.ENOTSUP, errno.EPERM, errno.EACCES}


class UnsafePathError(CairnError):
    """A name that could escape the restore target; the entry is skipped."""


def check_name(name: bytes) -> None:
    """Accept exactly one path component."""
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise UnsafePathError(f"unsafe name {name!r} refused")


class SafeTarget:
    """A restore target folder; all paths are tuples of checked components below it."""

    def __init__(self, root: Path, cache_size: int = 64) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._root = os.open(root, _DIR_FLAGS)
        self._dirs: OrderedDict[Components, int] = OrderedDict()
        self._cache_size = cache_size
        self.is_root = os.geteuid() == 0
        self.metadata_failures = 0

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

    def open_existing(self, comps: Components) -> int | None:
        """Open an existing regular file for reading; None when nothing is there."""
        parent, name = self._parent(comps)
        try:
            return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            return None

    def create_file(self, comps: Components, size: int) -> int:
        """Create (or truncate) a regular file for writing; never follows a symlink."""
        parent, name = self._parent(comps)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(name, flags, 0o600, dir_fd=parent)

    def reopen_file(self, comps: Components) -> int:
        """Open a file this restore created, to write more of it (no truncation)."""
        parent, name = self._parent(comps)
        return os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)

    def close_file(self, fd: int) -> None:
        os.close(fd)

    def write_chunk(self, fd: int, offset: int, data: bytes) -> None:
        """Write at `offset`, leaving all-zero blocks as holes, so sparse files stay sparse."""
        view = memoryview(data)
        start = 0
        for block in range(0, len(view), _HOLE_BLOCK):
            # Most blocks hold data: their first or last byte says so without a comparison.
            end = min(block + _HOLE_BLOCK, len(data))
            if data[block] or data[end - 1] or data[block:end] != _ZERO_BLOCK[: end - block]:
                continue
            _pwrite_all(fd, view[start:block], offset + start)
            start = end
        _pwrite_all(fd, view[start:], offset + start)

    def finish_file(self, fd: int, size: int) -> None:
        """Set the final size (creating trailing holes) and close."""
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

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

    def make_symlink(self, comps: Components, target: bytes) -> None:
        parent, name = self._parent(comps)
        os.symlink(target, name, dir_fd=parent)

    def make_hardlink(self, comps: Components, existing: Components) -> None:
        src_parent, src_name = self._parent(existing)
        dst_parent, dst_name = self._parent(comps)
        os.link(
            src_name, dst_name, src_dir_fd=src_parent, dst_dir_fd=dst_parent, follow_symlinks=False
        )

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

    def apply_metadata(self, comps: Components, node: Node, *, is_dir: bool = False) -> None:
        """Ownership (as root), mode, xattrs, then times; best effort where the OS refuses."""
        if not comps:
            return
        parent, name = self._parent(comps)
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


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _show(comps: Components) -> str:
    return "/".join(c.decode(errors="replace") for c in comps)
