"""Deletion records: what one prune condemned and which sessions were running (design 13.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cairn.core.errors import FormatError
from cairn.core.ids import ObjectName
from cairn.format.codec import packb, unpackb
from cairn.format.fields import as_id, get_int, get_list, require_map, require_version
from cairn.format.index import decode_packs, encode_packs
from cairn.format.lock import MAX_TIME_MS, SESSION_SIZE
from cairn.format.pack import PackEntry

DELETION_VERSION = 1


@dataclass(slots=True)
class DeletionRecord:
    """Packs (with the index entries they had) and reflists to delete once `sessions` ended."""

    created_ms: int
    sessions: list[bytes] = field(default_factory=list)
    packs: dict[ObjectName, list[PackEntry]] = field(default_factory=dict)
    reflists: list[ObjectName] = field(default_factory=list)


def encode_deletion(record: DeletionRecord) -> bytes:
    return packb(
        {
            "v": DELETION_VERSION,
            "created": record.created_ms,
            "sessions": sorted(record.sessions),
            "packs": encode_packs(record.packs),
            "reflists": sorted(r.raw for r in record.reflists),
        }
    )


def decode_deletion(data: bytes) -> DeletionRecord:
    obj = require_map(unpackb(data), "deletion record")
    require_version(obj, "deletion record", DELETION_VERSION)
    record = DeletionRecord(created_ms=get_int(obj, "created", 0, MAX_TIME_MS))
    for session in get_list(obj, "sessions"):
        if not isinstance(session, bytes) or len(session) != SESSION_SIZE:
            raise FormatError("deletion record session is not 16 bytes")
        record.sessions.append(session)
    record.packs = decode_packs(get_list(obj, "packs"), "deletion record")
    record.reflists = [ObjectName(as_id(r, "reflist name")) for r in get_list(obj, "reflists")]
    return record
