"""What writing blobs needs of an index: the dedup decision, and where a known chunk lives.

Two implementations: `MasterIndex` (every index object loaded into memory: restore, check,
prune, repair, and backups of a local repository) and `RemoteIndex` (a backup to a Cairn server
asks the server in batches; design 14.11). Callers that meet many chunks at once `prefetch` them
first when the index is `batched`, so asking costs one round trip per batch, not per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cairn.core.ids import ChunkId, ObjectName
from cairn.format.pack import BlobKind, PackEntry


@dataclass(frozen=True, slots=True)
class Location:
    """Where one blob is stored."""

    pack: ObjectName
    kind: BlobKind
    offset: int
    length: int


class ChunkIndex(Protocol):
    """Obligations: `reserve` answers True exactly once per chunk that must be stored, however
    many threads meet it at once; `get` and `in` know every chunk `add_pack` recorded."""

    @property
    def batched(self) -> bool:
        """True when a lookup may cost a round trip: prefetch what is about to be asked."""
        ...

    def prefetch(self, chunk_ids: Sequence[ChunkId]) -> None:
        """Learn about these chunks in one go, so the reserve, get or `in` that follow are
        answered without asking again."""
        ...

    def reserve(self, chunk_id: ChunkId) -> bool:
        """True when the caller must store this chunk; False when it is known or in flight."""
        ...

    def release(self, chunk_ids: list[ChunkId]) -> None:
        """Forget reservations whose blobs were never stored (a failed pack)."""
        ...

    def add_pack(self, pack: ObjectName, entries: list[PackEntry]) -> None:
        """Record a stored pack's blobs, completing their reservations."""
        ...

    def get(self, chunk_id: ChunkId) -> Location | None:
        """Where a chunk can be read, or None."""
        ...

    def __contains__(self, chunk_id: object) -> bool:
        """True when the chunk is durably stored (in an index, or in a pack this run stored)."""
        ...
