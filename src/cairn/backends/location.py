"""Turn a repository location string into a backend: the one place backends are chosen.

Supported: a plain path or ``local:/path`` (a LocalBackend), and ``memory:`` (a new, empty
MemoryBackend on every call, so it suits tests only: nothing outlives the process).
"""

from __future__ import annotations

import re
from pathlib import Path

from cairn.backends.base import Backend
from cairn.backends.errors import BackendError
from cairn.backends.local import LocalBackend
from cairn.backends.memory import MemoryBackend

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):")


def open_backend(location: str, create: bool = False) -> Backend:
    """The backend `location` names; with `create`, a local folder layout is made first."""
    if location == "memory:":
        return MemoryBackend()
    path = _local_path(location)
    if create:
        return LocalBackend.create(path)
    return LocalBackend(path)


def _local_path(location: str) -> Path:
    if location.startswith("local:"):
        location = location.removeprefix("local:")
    elif (match := _SCHEME.match(location)) is not None:
        raise BackendError(
            f"unsupported repository location {location!r} (scheme {match['scheme']!r}); "
            "supported: local paths, memory:"
        )
    if not location:
        raise BackendError("empty repository location; supported: local paths, memory:")
    return Path(location).expanduser()
