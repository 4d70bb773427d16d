"""Packs: many sealed blobs in one object, with a plaintext trailer (design.md 3.3)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from cairn.core.errors import FormatError
from cairn.core.ids import ChunkId
from cairn.format.codec import packb, unpackb
from cairn.format.fields import as_id, as_int, get_list, require_map, require_version

PACK_MAGIC = b"CAIRNPK1"
PACK_END = b"CAIRNEND"
PACK_VERSION = 1
FOOTER_SIZE = 4 + len(PACK_END)
MAX_TRAILER = 64 * 1024 * 1024


class BlobKind(IntEnum):
    """What a blob holds; bound into its AAD and ID key."""

    DATA = 0
    TREE = 1


@dataclass(frozen=True, slots=True)
class PackEntry:
    """Where one blob sits inside its pack."""

    chunk_id: ChunkId
    kind: BlobKind
    offset: int
    length: int


def build_pack(blobs: list[tuple[ChunkId, BlobKind, bytes]]) -> tuple[bytes, list[PackEntry]]:
    """Lay out sealed blobs (already in the order wanted) and append the trailer."""
    parts = [PACK_MAGIC]
    entries = []
    offset = len(PACK_MAGIC)
    for chunk_id, kind, sealed in blobs:
        parts.append(sealed)
        entries.append(PackEntry(chunk_id, kind, offset, len(sealed)))
        offset += len(sealed)
    trailer = packb(
        {
            "v": PACK_VERSION,
            "blobs": [[e.chunk_id, int(e.kind), e.offset, e.length] for e in entries],
        }
    )
    parts += [trailer, struct.pack("<I", len(trailer)), PACK_END]
    return b"".join(parts), entries


def trailer_length(footer: bytes) -> int:
    """Read the trailer length from a pack's last FOOTER_SIZE bytes."""
    if len(footer) != FOOTER_SIZE or footer[4:] != PACK_END:
        raise FormatError("pack does not end with a Cairn pack footer")
    (length,) = struct.unpack("<I", footer[:4])
    if length > MAX_TRAILER:
        raise FormatError(f"pack trailer claims {length} bytes")
    return int(length)


def decode_trailer(trailer: bytes, pack_size: int) -> list[PackEntry]:
    """Decode a trailer and check every blob lies inside the pack's blob area."""
    obj = require_map(unpackb(trailer), "pack trailer")
    require_version(obj, "pack trailer", PACK_VERSION)
    return decode_entries(get_list(obj, "blobs"), pack_size - len(trailer) - FOOTER_SIZE)


def decode_entries(raws: list[object], area_end: int) -> list[PackEntry]:
    """Check and convert [chunk_id, kind, offset, length] lists; blobs must lie in the area."""
    entries = []
    for raw in raws:
        if not isinstance(raw, list) or len(raw) != 4:
            raise FormatError("pack trailer entry is not a 4-item list")
        kind = as_int(raw[1], "blob kind", 0, 1)
        offset = as_int(raw[2], "blob offset", len(PACK_MAGIC), area_end)
        length = as_int(raw[3], "blob length", 1, area_end - offset)
        entries.append(
            PackEntry(ChunkId(as_id(raw[0], "chunk ID")), BlobKind(kind), offset, length)
        )
    return entries


def parse_pack(data: bytes) -> list[PackEntry]:
    """Decode a whole pack's trailer (for check and repair)."""
    if len(data) < len(PACK_MAGIC) + FOOTER_SIZE or not data.startswith(PACK_MAGIC):
        raise FormatError("not a Cairn pack (bad magic)")
    length = trailer_length(data[-FOOTER_SIZE:])
    if length > len(data) - len(PACK_MAGIC) - FOOTER_SIZE:
        raise FormatError("pack trailer is longer than the pack")
    start = len(data) - FOOTER_SIZE - length
    return decode_trailer(data[start : len(data) - FOOTER_SIZE], len(data))
