"""Opening source files for reading without following symlinks or touching their atime."""

from __future__ import annotations

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
