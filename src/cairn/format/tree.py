"""Tree blobs: one directory's nodes, sorted by name bytes (design.md 3.7)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from cairn.core.errors import FormatError, UnsupportedFormat
from cairn.core.ids import ID_SIZE, ChunkId
from cairn.format.codec import packb, unpackb

TREE_VERSION = 1

MAX_CHUNK_SIZE = 16 * 1024 * 1024
"""No chunk is larger (the chunker's largest maximum is 4 MiB); bounds what a tree may claim."""

NODE_TYPES = ("file", "dir", "symlink", "chardev", "blockdev", "fifo", "socket")


@dataclass(slots=True)
class Node:
    """One entry of a directory, with the metadata needed to restore it bit-exact."""

    name: bytes
    type: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    user: str = ""
    group: str = ""
    mtime: int = 0
    atime: int = 0
    ctime: int = 0
    size: int = 0
    inode: int = 0
    dev: int = 0
    links: int = 1
    rdev: int = 0
    target: bytes = b""
    xattrs: list[tuple[bytes, bytes]] = field(default_factory=list)
    content: list[ChunkId] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    subtree: ChunkId | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "mode": self.mode,
            "uid": self.uid,
            "gid": self.gid,
            "user": self.user,
            "group": self.group,
            "mtime": self.mtime,
            "atime": self.atime,
            "ctime": self.ctime,
            "size": self.size,
            "inode": self.inode,
            "dev": self.dev,
            "links": self.links,
            "rdev": self.rdev,
        }
        if self.target:
            wire["target"] = self.target
        if self.xattrs:
            wire["xattrs"] = [[k, v] for k, v in self.xattrs]
        if self.type == "file":
            wire["content"] = list(self.content)
            wire["sizes"] = list(self.sizes)
        if self.subtree is not None:
            wire["subtree"] = self.subtree
        return wire

    @classmethod
    def from_wire(cls, wire: Any) -> Node:
        if not isinstance(wire, dict):
            raise FormatError("tree node is not a map")
        try:
            node = cls(
                name=_bytes(wire["name"]),
                type=_str(wire["type"]),
                mode=_int(wire["mode"]),
                uid=_int(wire["uid"]),
                gid=_int(wire["gid"]),
                user=_str(wire["user"]),
                group=_str(wire["group"]),
                mtime=_int(wire["mtime"]),
                atime=_int(wire["atime"]),
                ctime=_int(wire["ctime"]),
                size=_int(wire["size"]),
                inode=_int(wire["inode"]),
                dev=_int(wire["dev"]),
                links=_int(wire["links"]),
                rdev=_int(wire["rdev"]),
                target=_bytes(wire.get("target", b"")),
                xattrs=[(_bytes(k), _bytes(v)) for k, v in _list(wire.get("xattrs", []))],
                content=[_chunk_id(c) for c in _list(wire.get("content", []))],
                sizes=[_int(n) for n in _list(wire.get("sizes", []))],
                subtree=_chunk_id(wire["subtree"]) if wire.get("subtree") is not None else None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise FormatError(f"malformed tree node: {exc}") from exc
        if node.type not in NODE_TYPES:
            raise FormatError(f"unknown node type {node.type!r}")
        if node.type == "dir" and node.subtree is None:
            raise FormatError("directory node without a subtree")
        if len(node.sizes) != len(node.content):
            raise FormatError("file node lists a size for each chunk: counts differ")
        if any(not 0 < n <= MAX_CHUNK_SIZE for n in node.sizes):
            raise FormatError("file node lists a chunk size out of range")
        return node


def encode_tree(nodes: list[Node]) -> bytes:
    """Encode a directory's nodes; sorts them by name and refuses duplicate names."""
    ordered = sorted(nodes, key=lambda n: n.name)
    for a, b in itertools.pairwise(ordered):
        if a.name == b.name:
            raise FormatError(f"duplicate name in tree: {a.name!r}")
    return packb({"v": TREE_VERSION, "nodes": [n.to_wire() for n in ordered]})


def decode_tree(data: bytes) -> list[Node]:
    """Decode a tree blob's plaintext."""
    wire = unpackb(data)
    if not isinstance(wire, dict):
        raise FormatError("tree is not a map")
    if wire.get("v") != TREE_VERSION:
        raise UnsupportedFormat(f"tree format version {wire.get('v')!r} is not supported")
    nodes = [Node.from_wire(n) for n in _list(wire.get("nodes"))]
    if any(a.name >= b.name for a, b in itertools.pairwise(nodes)):
        raise FormatError("tree names are not sorted and unique (a crafted or damaged tree)")
    return nodes


def _bytes(v: Any) -> bytes:
    if not isinstance(v, bytes):
        raise TypeError(f"expected bytes, got {type(v).__name__}")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected str, got {type(v).__name__}")
    return v


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"expected int, got {type(v).__name__}")
    return v


def _list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise TypeError(f"expected list, got {type(v).__name__}")
    return v


def _chunk_id(v: Any) -> ChunkId:
    b = _bytes(v)
    if len(b) != ID_SIZE:
        raise ValueError(f"chunk ID of {len(b)} bytes")
    return ChunkId(b)
