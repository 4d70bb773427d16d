"""The narrow repository roles the archiver needs: nine members of the Repository, not forty.

The archiver is typed against `BackupTarget`, so a test can hand it a fake and a reader sees at a
glance what a backup may do to a repository: identify, deduplicate and store blobs, and commit one
snapshot. `cairn.repository.Repository` implements every role.
"""

from __future__ import annotations

from typing import Protocol

from cairn.chunking.fastcdc import FastCDCChunker
from cairn.core.clock import Clock
from cairn.core.ids import ChunkId, ObjectName
from cairn.format.config import RepoParams
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.repository.chunkindex import ChunkIndex


class BlobSaver(Protocol):
    """Identifies, deduplicates and stores blobs. Obligations: `blob_id` is the repository's keyed
    ID of a plaintext; after `start_writing`, `store_blob` may be called from many threads and
    stores each new chunk once; a failure of a background upload is raised by the next
    `raise_if_failed` (or `store_blob`)."""

    @property
    def chunk_index(self) -> ChunkIndex: ...

    def blob_id(self, kind: BlobKind, plaintext: bytes | memoryview) -> ChunkId: ...

    def start_writing(self, connections: int = 2) -> None: ...

    def store_blob(
        self, kind: BlobKind, plaintext: bytes | memoryview, chunk_id: ChunkId | None = None
    ) -> tuple[ChunkId, int]: ...

    def raise_if_failed(self) -> None: ...


class ChunkerSource(Protocol):
    """The repository's chunking: its parameters and a chunker keyed for it."""

    @property
    def params(self) -> RepoParams: ...

    def chunker(self) -> FastCDCChunker: ...


class SnapshotCommitter(Protocol):
    """Commits a snapshot after its blobs: data and index flushed first, then the reflist, then
    the snapshot object (design.md 5). `clock` dates it."""

    @property
    def clock(self) -> Clock: ...

    def commit_snapshot(self, body: SnapshotBody, refs: set[ChunkId]) -> ObjectName: ...


class BackupTarget(BlobSaver, ChunkerSource, SnapshotCommitter, Protocol):
    """Everything the archiver uses of a repository."""
