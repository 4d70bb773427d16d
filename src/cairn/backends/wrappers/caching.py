"""Keep local copies of the small immutable objects a remote repository is read for again and again.

``CachingBackend`` serves whole loads of snapshots, indexes, reflists, keys and deletion records
from a local folder (design 14.12) and passes everything else through. Every entry is checked on
every read by the `verify` callable it is given (backends may not import crypto: the repository
layer passes the hash check in); an entry that fails it is deleted and fetched again. The folder
is only ever a copy: losing it, or finding garbage in it, costs time, never an error.

Deviations from the Backend contract that a cache makes necessary: none for callers. ``list`` of a
cached kind also deletes the entries a complete listing does not name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cairn.backends.base import (
    Backend,
    Handle,
    ObjectInfo,
    ObjectKind,
)
from cairn.backends.contract import check_handle, read_span
from cairn.backends.wrappers.forwarding import ForwardingBackend

CACHED_KINDS = frozenset(
    {
        ObjectKind.KEY,
        ObjectKind.INDEX,
        ObjectKind.REFLIST,
        ObjectKind.SNAPSHOT,
        ObjectKind.DELETION,
    }
)
"""Immutable, named by their hash, small, and read by nearly every command. Packs are the data
itself; locks are renewed and short-lived; config is not named by its hash."""

Verify = Callable[[Handle, bytes], bool]
"""True when `bytes` are the object `handle` names (they hash to its name)."""


class CacheFolder:
    """Whole objects in ``<root>/<kind>/<name>``, written atomically; every failure is a miss.

    Several processes may share the folder: writes are a rename of a complete temporary file (in
    the same folder, so never seen half-written), and a file deleted under a reader is a miss.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, handle: Handle) -> Path:
        return self.root / handle.kind.value / handle.name

    def read(self, handle: Handle) -> bytes | None:
        try:
            return self.path(handle).read_bytes()
        except OSError:
            return None

    def write(self, handle: Handle, data: bytes) -> None:
        """Store a copy; a cache that cannot be written is simply not used."""
        folder = self.root / handle.kind.value
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temp, self.path(handle))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)

    def drop(self, handle: Handle) -> None:
        with contextlib.suppress(OSError):
            self.path(handle).unlink()

    def names(self, kind: ObjectKind) -> list[str]:
        """The names of the entries of `kind` (temporary files left out)."""
        try:
            return [
                e.name for e in os.scandir(self.root / kind.value) if not e.name.startswith(".")
            ]
        except OSError:
            return []


class CachingBackend(ForwardingBackend):
    """Wraps `inner`; whole loads of CACHED_KINDS come from `folder` when the copy there verifies.

    ``load`` of a cached kind: the verified copy if there is one, else the object from `inner`,
    which is then copied into the folder (when it verifies too: a lying storage is the repository
    layer's to report, and its bytes are not kept). ``save`` writes the copy once `inner` has the
    object; ``remove`` drops it; a complete ``list`` drops the copies it does not name. ``stat``
    and ``exists`` always ask `inner`: whether an object still exists is the storage's to say.
    """

    def __init__(self, inner: Backend, folder: CacheFolder, verify: Verify) -> None:
        super().__init__(inner)
        self._folder = folder
        self._verify = verify
        self.hits = 0
        self.misses = 0

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        self._inner.save(handle, data)
        if handle.kind in CACHED_KINDS:
            body = bytes(data)
            if self._verify(handle, body):
                self._folder.write(handle, body)

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        if handle.kind not in CACHED_KINDS:
            return self._inner.load(handle, offset, length)
        check_handle(handle)  # before a path is built from the name
        data = self._cached(handle)
        if data is None:
            self.misses += 1
            data = self._inner.load(handle)
            if self._verify(handle, data):
                self._folder.write(handle, data)
        else:
            self.hits += 1
        count = read_span(len(data), offset, length, handle)
        return data if (offset, count) == (0, len(data)) else data[offset : offset + count]

    def _cached(self, handle: Handle) -> bytes | None:
        data = self._folder.read(handle)
        if data is not None and not self._verify(handle, data):
            self._folder.drop(handle)  # damaged: fetched again, never an error
            return None
        return data

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        if kind not in CACHED_KINDS:
            yield from self._inner.list(kind)
            return
        listed: set[str] = set()
        for info in self._inner.list(kind):
            listed.add(info.handle.name)
            yield info
        # Reached only when the listing completed: a partial one proves nothing gone.
        for name in self._folder.names(kind):
            if name not in listed:
                self._folder.drop(Handle(kind, name))

    def remove(self, handle: Handle) -> None:
        if handle.kind in CACHED_KINDS:
            check_handle(handle)
            self._folder.drop(handle)  # first: a copy of a removed object must not outlive it
        self._inner.remove(handle)
