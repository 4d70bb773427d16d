"""The tree-blob cache: sealed tree blobs of snapshots already read, kept on local disk.

``ls``, ``find``, ``diff``, ``stats`` and ``restore`` read the trees of their snapshots, again and
again for the same snapshots; on a server each is a range read of a pack. The cache keeps each
tree blob as it is in its pack (sealed), in ``<root>/<id[0:2]>/<chunk id>``. It proves nothing by
itself: the repository opens every entry it is given, which authenticates it and re-derives its
chunk ID (``Repository.open_blob``), and drops an entry that fails. Bounded: past `limit` bytes
the entries least recently used (by file time, refreshed on every hit) are deleted until the
folder is under nine tenths of the bound. Every file-system failure is a miss; the cache never
fails a command.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from cairn.core.ids import ChunkId

DEFAULT_TREE_CACHE_BYTES = 512 * 1024 * 1024
"""Plenty for the trees of a few snapshots of a million files; small beside the data."""
_LOW_WATER = 0.9


class BlobCache(Protocol):
    """Where `Repository.fetch_blob` keeps sealed tree blobs (design 14.12)."""

    def get(self, chunk_id: ChunkId) -> bytes | None:
        """The sealed blob, unverified, or None."""
        ...

    def put(self, chunk_id: ChunkId, sealed: bytes) -> None:
        """Keep a sealed blob that was just opened and verified."""
        ...

    def drop(self, chunk_id: ChunkId) -> None:
        """Delete an entry that failed to open."""
        ...


class TreeCache:
    """Sealed tree blobs by chunk ID in a folder, at most about `limit` bytes. Thread-safe."""

    def __init__(self, root: Path, limit: int = DEFAULT_TREE_CACHE_BYTES) -> None:
        self.root = root
        self.limit = limit
        self._lock = threading.Lock()
        self._total: int | None = None  # counted on the first put

    def path(self, chunk_id: ChunkId) -> Path:
        name = chunk_id.hex()
        return self.root / name[:2] / name

    def get(self, chunk_id: ChunkId) -> bytes | None:
        path = self.path(chunk_id)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return data

    def put(self, chunk_id: ChunkId, sealed: bytes | memoryview) -> None:
        path = self.path(chunk_id)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(sealed)
            os.replace(temp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            return
        self._account(len(sealed))

    def drop(self, chunk_id: ChunkId) -> None:
        with contextlib.suppress(OSError):
            self.path(chunk_id).unlink()

    def _account(self, added: int) -> None:
        with self._lock:
            if self._total is None:
                self._total = sum(size for _, size, _ in self._entries())
            else:
                self._total += added
            if self._total > self.limit:
                self._total = self._evict()

    def _evict(self) -> int:
        """Delete the least recently used entries until under the low-water mark; the new total."""
        entries = sorted(self._entries(), key=lambda entry: entry[2])
        total = sum(size for _, size, _ in entries)
        target = int(self.limit * _LOW_WATER)
        for path, size, _ in entries:
            if total <= target:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size
        return total

    def _entries(self) -> list[tuple[str, int, float]]:
        """(path, size, time of last use) of every entry (temporary files left out)."""
        found: list[tuple[str, int, float]] = []
        try:
            shards = [e for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return found
        for shard in shards:
            with contextlib.suppress(OSError):
                for entry in os.scandir(shard.path):
                    if not entry.name.startswith("."):
                        with contextlib.suppress(OSError):
                            st = entry.stat(follow_symlinks=False)
                            found.append((entry.path, st.st_size, st.st_mtime))
        return found
