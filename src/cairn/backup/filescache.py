"""The files cache: lets a backup skip reading files whose metadata did not change.

A local SQLite database per repository (``<cache dir>/<repo id>/files.sqlite``), read into memory
when a backup starts and written back in batches. An entry maps a path to (device, inode, size,
mtime, ctime) and the chunk IDs and sizes of its contents. An entry is used only if every one of
its chunks is in the repository's loaded index, so an entry written before a crash, or whose
chunks went missing and were dropped from the index, simply causes a re-read.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from pathlib import Path

from cairn.core.errors import CairnError
from cairn.core.ids import ID_SIZE, ChunkId

FileMeta = tuple[int, int, int, int, int]
"""(device, inode, size, mtime ns, ctime ns): a file with all five unchanged is not read again."""

# Content: per chunk, its 32-byte ID and its size as 4 bytes little-endian. A cache in an older
# layout is dropped (it only saves reading; nothing depends on it).
_RECORD = struct.Struct(f"<{ID_SIZE}sI")
_SCHEMA = """
DROP TABLE IF EXISTS files;
CREATE TABLE IF NOT EXISTS files_v2 (
    path BLOB PRIMARY KEY,
    dev INTEGER, inode INTEGER, size INTEGER, mtime INTEGER, ctime INTEGER,
    content BLOB NOT NULL
);
"""


class FilesCacheUnusable(CairnError):
    """The files cache cannot be opened (its folder cannot be made or written); a backup goes
    on without it and reads every file."""


class FilesCache:
    """Loaded into memory when opened; new entries are written in batches. Thread-safe.

    The cache only saves reading, so a failure to write it never stops a backup: the first one
    is kept in `problem`, and the cache stops recording."""

    def __init__(self, path: Path, batch_seconds: float = 10.0) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            rows = self._db.execute("SELECT * FROM files_v2").fetchall()
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise FilesCacheUnusable(f"{path.parent}: {reason.lower()}") from exc
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[int, int, int, int, int, bytes]] = {
            row[0]: tuple(row[1:]) for row in rows
        }
        self._pending: list[tuple[bytes, int, int, int, int, int, bytes]] = []
        self._batch_seconds = batch_seconds
        self._last_write = time.monotonic()

    def lookup(self, path: bytes, meta: FileMeta) -> tuple[list[ChunkId], list[int]] | None:
        """The cached chunk IDs and sizes of `path` if its metadata is unchanged, else None."""
        entry = self._entries.get(path)
        if entry is None or entry[:5] != meta:
            return None
        blob = entry[5]
        if len(blob) % _RECORD.size:
            return None
        records = list(_RECORD.iter_unpack(blob))
        return [ChunkId(r[0]) for r in records], [r[1] for r in records]

    def record(self, path: bytes, meta: FileMeta, content: list[ChunkId], sizes: list[int]) -> None:
        blob = b"".join(_RECORD.pack(c, n) for c, n in zip(content, sizes, strict=True))
        with self._lock:
            if self.problem is not None:
                return
            self._pending.append((path, *meta, blob))
            due = time.monotonic() - self._last_write >= self._batch_seconds
        if due:
            self.commit()

    def commit(self) -> None:
        """Write the pending entries in one transaction."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._last_write = time.monotonic()
            if not pending or self.problem is not None:
                return
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO files_v2 VALUES (?, ?, ?, ?, ?, ?, ?)", pending
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self.problem = str(exc)
                if self._db.in_transaction:
                    self._db.rollback()

    def close(self) -> None:
        self.commit()
        self._db.close()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cairn"
