"""Reflists: the sorted chunk IDs one snapshot references, readable without keys (design 3.5)."""

from __future__ import annotations

import itertools

import zstandard

from cairn.core.errors import FormatError
from cairn.core.ids import ID_SIZE, ChunkId
from cairn.format.codec import packb, unpackb
from cairn.format.fields import get_bytes, require_map, require_version

REFLIST_MAGIC = b"CAIRNRL1"
REFLIST_VERSION = 1
MAX_REFLIST = 1 << 31
SALT_SIZE = 16


def encode_reflist(ids: set[ChunkId] | list[ChunkId], salt: bytes) -> bytes:
    """`salt` (SALT_SIZE random bytes) gives every snapshot's reflist a name of its own: two
    snapshots of the same data must not share one, or a prune sweeping the reflist of a
    forgotten snapshot could delete the reflist of a snapshot committed meanwhile."""
    body = packb({"v": REFLIST_VERSION, "ids": b"".join(sorted(ids)), "salt": salt})
    return REFLIST_MAGIC + zstandard.ZstdCompressor(level=3).compress(body)


def decode_reflist(data: bytes) -> list[ChunkId]:
    if not data.startswith(REFLIST_MAGIC):
        raise FormatError("not a reflist (bad magic)")
    try:
        body = zstandard.ZstdDecompressor().decompress(
            data[len(REFLIST_MAGIC) :], max_output_size=MAX_REFLIST
        )
    except zstandard.ZstdError as exc:
        raise FormatError(f"reflist does not decompress: {exc}") from exc
    obj = require_map(unpackb(body), "reflist")
    require_version(obj, "reflist", REFLIST_VERSION)
    raw = get_bytes(obj, "ids")
    if len(raw) % ID_SIZE:
        raise FormatError("reflist length is not a multiple of the ID size")
    ids = [ChunkId(raw[i : i + ID_SIZE]) for i in range(0, len(raw), ID_SIZE)]
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise FormatError("reflist IDs are not sorted and unique")
    return ids
