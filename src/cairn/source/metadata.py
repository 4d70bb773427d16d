"""Turning stat results and extended attributes into tree nodes."""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from functools import lru_cache

from cairn.format.tree import Node

_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "blockdev",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}
_XATTR_TOLERATED = {errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.ENODATA, errno.ENOENT}


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@lru_cache(maxsize=1024)
def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def node_type(mode: int) -> str:
    return _TYPES.get(stat.S_IFMT(mode), "file")


def node_from_stat(
    name: bytes,
    st: os.stat_result,
    *,
    target: bytes = b"",
    xattrs: list[tuple[bytes, bytes]] | None = None,
) -> Node:
    """A node holding everything needed to restore this entry's metadata."""
    kind = node_type(st.st_mode)
    return Node(
        name=name,
        type=kind,
        mode=st.st_mode,
        uid=st.st_uid,
        gid=st.st_gid,
        user=user_name(st.st_uid),
        group=group_name(st.st_gid),
        mtime=st.st_mtime_ns,
        atime=st.st_atime_ns,
        ctime=st.st_ctime_ns,
        size=st.st_size if kind == "file" else 0,
        inode=st.st_ino,
        dev=st.st_dev,
        links=st.st_nlink,
        rdev=st.st_rdev,
        target=target,
        xattrs=xattrs or [],
    )


def read_xattrs(path: bytes) -> list[tuple[bytes, bytes]]:
    """The entry's extended attributes, sorted; unsupported or unreadable ones are left out."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _XATTR_TOLERATED:
            return []
        raise
    found = []
    for name in names:
        try:
            found.append((os.fsencode(name), os.getxattr(path, name, follow_symlinks=False)))
        except OSError as exc:
            if exc.errno not in _XATTR_TOLERATED:
                raise
    return sorted(found)
