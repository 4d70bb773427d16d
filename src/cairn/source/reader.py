"""Opening source files for reading without following symlinks or touching their atime."""

from __future__ import annotations

import errno
import os

_BASE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NOATIME = getattr(os, "O_NOATIME", 0)
_noatime_allowed = bool(_NOATIME)


def open_for_backup(path: bytes) -> int:
    """Open a file for reading; O_NOATIME where the owner allows it (only owners and root may)."""
    global _noatime_allowed
    if _noatime_allowed:
        try:
            return os.open(path, _BASE_FLAGS | _NOATIME)
        except PermissionError:
            _noatime_allowed = False
    return os.open(path, _BASE_FLAGS)


def find_holes(fd: int, size: int) -> list[tuple[int, int]]:
    """The file's holes below `size` as (start, end), from SEEK_HOLE/SEEK_DATA; none where the
    file system cannot tell (it then reports the whole file as data, or refuses the seek).
    Leaves the offset at 0."""
    seek_hole, seek_data = getattr(os, "SEEK_HOLE", None), getattr(os, "SEEK_DATA", None)
    if seek_hole is None or seek_data is None:
        return []
    holes: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size and (start := os.lseek(fd, pos, seek_hole)) < size:
            try:
                pos = min(os.lseek(fd, start, seek_data), size)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no data after `start`
                    raise
                pos = size
            holes.append((start, pos))
    except OSError:
        return []  # EINVAL and the like: no hole information on this file system
    finally:
        os.lseek(fd, 0, os.SEEK_SET)
    return holes
