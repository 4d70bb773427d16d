"""The files cache: lets a backup skip reading files whose metadata did not change.

A local SQLite database per repository (``<cache dir>/<repo id>/files.sqlite``). An entry maps a
path to (device, inode, size, mtime, ctime) and the chunk IDs of its contents. An entry is used
only if every one of its chunks is in the repository's loaded index, so an entry written before a
crash, or whose chunks went missing and were dropped from the index, simply causes a re-read.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from cairn.core.ids import ID_SIZE, ChunkId

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY,
    dev INTEGER, inode INTEGER, size INTEGER, mtime INTEGER, ctime INTEGER,
    content BLOB NOT NULL
);
"""


class FilesCache:
    """Thread-safe; writes are batched and committed by `commit()`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._pending: list[tuple[bytes, int, int, int, int, int, bytes]] = []

    def lookup(self, path: bytes, st: os.stat_result) -> list[ChunkId] | None:
        """The cached content of `path` if its metadata is unchanged, else None."""
        with self._lock:
            row = self._db.execute(
                "SELECT dev, inode, size, mtime, ctime, content FROM files WHERE path = ?", (path,)
            ).fetchone()
        if row is None:
            return None
        if tuple(row[:5]) != (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            return None
        blob: bytes = row[5]
        return [ChunkId(blob[i : i + ID_SIZE]) for i in range(0, len(blob), ID_SIZE)]

    def record(self, path: bytes, st: os.stat_result, content: list[ChunkId]) -> None:
        entry = (
            path,
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            b"".join(content),
        )
        with self._lock:
            self._pending.append(entry)
            if len(self._pending) >= 2000:
                self._write_pending()

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", pending)
        self._db.execute("COMMIT")

    def commit(self) -> None:
        with self._lock:
            if self._pending:
                self._write_pending()

    def close(self) -> None:
        self.commit()
        self._db.close()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cairn"
