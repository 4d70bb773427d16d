"""The master key and the subkeys derived from it (design.md 4.1)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import blake3

from cairn.core.ids import GROUP_ID_SIZE, ChunkId

MASTER_KEY_SIZE = 32

_CONTEXT_DATA_ID = "cairn 2026 data id"
_CONTEXT_TREE_ID = "cairn 2026 tree id"
_CONTEXT_SEAL = "cairn 2026 seal"
_CONTEXT_CHUNKER = "cairn 2026 chunker"
_CONTEXT_GROUP = "cairn 2026 snapshot group"


def _derive(context: str, master: bytes, length: int = 32) -> bytes:
    out: bytes = blake3.blake3(master, derive_key_context=context).digest(length)
    return out


@dataclass(frozen=True, slots=True)
class MasterKey:
    """32 random bytes from which every secret of one repository is derived."""

    raw: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.raw) != MASTER_KEY_SIZE:
            raise ValueError("a master key is 32 bytes")

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(MASTER_KEY_SIZE))

    def subkeys(self) -> Subkeys:
        return Subkeys(
            data_id=_derive(_CONTEXT_DATA_ID, self.raw),
            tree_id=_derive(_CONTEXT_TREE_ID, self.raw),
            seal=_derive(_CONTEXT_SEAL, self.raw),
            group=_derive(_CONTEXT_GROUP, self.raw),
            chunker_seed=int.from_bytes(_derive(_CONTEXT_CHUNKER, self.raw, 8), "little")
            & 0x7FFF_FFFF_FFFF_FFFF
            or 1,
        )


@dataclass(frozen=True, slots=True)
class Subkeys:
    """The working keys of an open repository."""

    data_id: bytes = field(repr=False)
    tree_id: bytes = field(repr=False)
    seal: bytes = field(repr=False)
    group: bytes = field(repr=False)
    chunker_seed: int = field(repr=False)

    def data_chunk_id(self, data: bytes | memoryview) -> ChunkId:
        """Keyed BLAKE3 of a data chunk's plaintext."""
        return ChunkId(blake3.blake3(data, key=self.data_id).digest())

    def tree_chunk_id(self, data: bytes | memoryview) -> ChunkId:
        """Keyed BLAKE3 of a tree blob's plaintext (a separate key: no cross-kind collisions)."""
        return ChunkId(blake3.blake3(data, key=self.tree_id).digest())

    def snapshot_group(self, material: bytes) -> bytes:
        """Keyed BLAKE3 of what makes a snapshot's retention group (design 3.6): opaque to the
        server, which has no key, yet equal for every snapshot of one host and set of paths."""
        return blake3.blake3(material, key=self.group).digest(GROUP_ID_SIZE)
