"""The narrow repository roles the snapshot layer needs."""

from __future__ import annotations

from typing import Protocol

from cairn.core.ids import ChunkId, ObjectName
from cairn.format.pack import BlobKind


class BlobLoader(Protocol):
    """Fetches and verifies one blob's plaintext."""

    def fetch_blob(self, kind: BlobKind, chunk_id: ChunkId) -> bytes: ...


class SnapshotReader(Protocol):
    """Lists and reads snapshot objects."""

    def snapshot_names(self) -> list[ObjectName]: ...
