"""Index objects: chunk ID → (pack, kind, offset, length), plaintext (design.md 3.4)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cairn.core.errors import FormatError
from cairn.core.ids import ObjectName
from cairn.format.codec import packb, unpackb
from cairn.format.fields import as_id, get_bytes, get_list, require_map, require_version
from cairn.format.lock import SESSION_SIZE
from cairn.format.pack import PackEntry, decode_entries

INDEX_VERSION = 1
MAX_PACK_SIZE = 2**40


@dataclass(slots=True)
class IndexRecord:
    """The packs one index object describes, and the indexes it replaces."""

    packs: dict[ObjectName, list[PackEntry]] = field(default_factory=dict)
    supersedes: list[ObjectName] = field(default_factory=list)
    session: bytes | None = None
    """The session that wrote it, for a backup's own indexes: prune leaves the indexes of a
    session that is still running alone (design 13.3)."""

    def blob_count(self) -> int:
        return sum(len(v) for v in self.packs.values())


def encode_index(record: IndexRecord) -> bytes:
    obj: dict[str, object] = {
        "v": INDEX_VERSION,
        "packs": encode_packs(record.packs),
        "supersedes": [s.raw for s in record.supersedes],
    }
    if record.session is not None:
        obj["session"] = record.session
    return packb(obj)


def encode_packs(packs: dict[ObjectName, list[PackEntry]]) -> list[list[object]]:
    """Packs and their blobs as index objects (and deletion records) store them."""
    return [
        [name.raw, [[e.chunk_id, int(e.kind), e.offset, e.length] for e in entries]]
        for name, entries in sorted(packs.items())
    ]


def decode_packs(items: list[object], what: str) -> dict[ObjectName, list[PackEntry]]:
    packs: dict[ObjectName, list[PackEntry]] = {}
    for item in items:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list):
            raise FormatError(f"{what} pack entry is not [name, blobs]")
        packs[ObjectName(as_id(item[0], "pack name"))] = decode_entries(item[1], MAX_PACK_SIZE)
    return packs


def decode_index(data: bytes) -> IndexRecord:
    obj = require_map(unpackb(data), "index")
    require_version(obj, "index", INDEX_VERSION)
    record = IndexRecord(packs=decode_packs(get_list(obj, "packs"), "index"))
    record.supersedes = [
        ObjectName(as_id(s, "superseded index")) for s in get_list(obj, "supersedes")
    ]
    if "session" in obj:
        record.session = get_bytes(obj, "session", SESSION_SIZE)
    return record
