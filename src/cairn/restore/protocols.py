"""The narrow repository roles restore and dump need: six members of the Repository, not forty.

They read trees (`BlobLoader`), find where each data blob lives and read packs span by span
(`PackReader`), and identify what a target file already holds (`ContentIdentifier`).
`cairn.repository.Repository` implements every role.
"""

from __future__ import annotations

from typing import Protocol

from cairn.chunking.fastcdc import FastCDCChunker
from cairn.core.ids import ChunkId, ObjectName
from cairn.format.pack import BlobKind
from cairn.repository.chunkindex import Location
from cairn.snapshot.protocols import BlobLoader


class LocationLookup(Protocol):
    """Where a chunk is stored, or None when no index lists it."""

    def get(self, chunk_id: ChunkId) -> Location | None: ...


class PackReader(Protocol):
    """Reads blobs pack by pack. Obligations: `load_span` returns exactly the bytes asked for or
    raises (ObjectMissing for a pack that is gone); `open_blob` verifies the plaintext against
    the chunk ID and raises IntegrityError or FormatError when it does not match."""

    @property
    def index(self) -> LocationLookup: ...

    def load_span(self, pack: ObjectName, offset: int, length: int) -> bytes: ...

    def open_blob(
        self, kind: BlobKind, chunk_id: ChunkId, envelope: bytes | memoryview
    ) -> bytes: ...


class ContentIdentifier(Protocol):
    """Cuts and identifies content as a backup would, to tell whether a file already in the
    target holds what the snapshot says."""

    def chunker(self) -> FastCDCChunker: ...

    def blob_id(self, kind: BlobKind, plaintext: bytes | memoryview) -> ChunkId: ...


class IndexedLoader(BlobLoader, Protocol):
    """Loads blobs and knows where each lives (dump reads files blob by blob)."""

    @property
    def index(self) -> LocationLookup: ...


class RestoreSource(BlobLoader, PackReader, ContentIdentifier, Protocol):
    """Everything the restorer uses of a repository."""
