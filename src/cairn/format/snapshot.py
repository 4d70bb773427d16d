"""Snapshot objects: plaintext reflist names and group ID, and a sealed body (design.md 3.6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cairn.core.errors import FormatError
from cairn.core.ids import GROUP_ID_SIZE, REPO_ID_SIZE, ChunkId, ObjectName
from cairn.format.codec import packb, unpackb
from cairn.format.fields import (
    as_id,
    get_bytes,
    get_list,
    get_str,
    require_map,
    require_version,
)

SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """The outer snapshot object: what a server can read, plus the sealed body."""

    repo_id: bytes
    reflists: list[ObjectName]
    sealed: bytes
    group: bytes | None = None
    """The retention group (GROUP_ID_SIZE opaque bytes), or None in snapshots written before it
    existed: what the server groups its retention by, besides the uploading token."""


@dataclass(slots=True)
class SnapshotBody:
    """What a snapshot says, once opened."""

    time: str
    host: str
    user: str
    paths: list[str]
    tags: list[str]
    tree: ChunkId
    parent: ObjectName | None = None
    summary: dict[str, int] = field(default_factory=dict)
    partial: bool = False
    group: bytes | None = None
    """The sealed copy of the record's group: a reader compares the two (design 3.6)."""
    original: ObjectName | None = None
    """The snapshot this one was made from by `tag` or `copy` (restic's `original`); None for
    one a backup made."""


def group_material(host: str, paths: list[str]) -> bytes:
    """What a snapshot's group ID is the keyed hash of: its host and its paths, sorted and
    unique, so the group is the one `forget` makes by host and paths (design 13.2)."""
    return packb(["cairn snapshot group", host, sorted(set(paths))])


def encode_snapshot(record: SnapshotRecord) -> bytes:
    obj: dict[str, Any] = {
        "v": SNAPSHOT_VERSION,
        "repo_id": record.repo_id,
        "reflists": [r.raw for r in record.reflists],
        "sealed": record.sealed,
    }
    if record.group is not None:  # absent, not nil: a record without one keeps its old bytes
        obj["group"] = record.group
    return packb(obj)


def decode_snapshot(data: bytes) -> SnapshotRecord:
    obj = require_map(unpackb(data), "snapshot")
    require_version(obj, "snapshot", SNAPSHOT_VERSION)
    return SnapshotRecord(
        repo_id=get_bytes(obj, "repo_id", REPO_ID_SIZE),
        reflists=[ObjectName(as_id(r, "reflist name")) for r in get_list(obj, "reflists")],
        sealed=get_bytes(obj, "sealed"),
        group=_group(obj),
    )


def _group(obj: dict[str, Any]) -> bytes | None:
    return get_bytes(obj, "group", GROUP_ID_SIZE) if "group" in obj else None


def encode_body(body: SnapshotBody) -> bytes:
    obj: dict[str, Any] = {
        "v": SNAPSHOT_VERSION,
        "time": body.time,
        "host": body.host,
        "user": body.user,
        "paths": body.paths,
        "tags": body.tags,
        "tree": body.tree,
        "parent": body.parent.raw if body.parent else None,
        "summary": body.summary,
        "partial": body.partial,
    }
    if body.group is not None:
        obj["group"] = body.group
    if body.original is not None:  # absent, not nil, so a backup's body is as before
        obj["original"] = body.original.raw
    return packb(obj)


def decode_body(data: bytes) -> SnapshotBody:
    obj = require_map(unpackb(data), "snapshot body")
    require_version(obj, "snapshot body", SNAPSHOT_VERSION)
    parent = obj.get("parent")
    original = obj.get("original")
    summary = require_map(obj.get("summary", {}), "snapshot summary")
    if not all(isinstance(k, str) and isinstance(v, int) for k, v in summary.items()):
        raise FormatError("snapshot summary holds non-integer values")
    partial = obj.get("partial", False)
    if not isinstance(partial, bool):
        raise FormatError("field 'partial' is not a boolean")
    return SnapshotBody(
        time=get_str(obj, "time"),
        host=get_str(obj, "host"),
        user=get_str(obj, "user"),
        paths=_str_list(obj, "paths"),
        tags=_str_list(obj, "tags"),
        tree=ChunkId(as_id(obj.get("tree"), "root tree")),
        parent=ObjectName(as_id(parent, "parent")) if parent is not None else None,
        summary=summary,
        partial=partial,
        group=_group(obj),
        original=ObjectName(as_id(original, "original")) if original is not None else None,
    )


def _str_list(obj: dict[str, Any], key: str) -> list[str]:
    values = get_list(obj, key)
    if not all(isinstance(v, str) for v in values):
        raise FormatError(f"field {key!r} holds non-text items")
    return values
