"""Typed identifiers: chunk IDs, object names and repository IDs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType, Self

from cairn.core.errors import FormatError

ID_SIZE = 32
REPO_ID_SIZE = 16
GROUP_ID_SIZE = 16
"""A snapshot's retention group ID (design 3.6): opaque, keyed, short."""


@dataclass(frozen=True, slots=True, order=True)
class ObjectName:
    """The name of a stored object: BLAKE3-256 of its bytes, shown as 64 hex digits."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != ID_SIZE:
            raise FormatError(f"object name must be {ID_SIZE} bytes, got {len(self.raw)}")

    @classmethod
    def from_hex(cls, text: str) -> Self:
        if len(text) != 2 * ID_SIZE or text != text.lower():
            raise FormatError(f"not an object name: {text!r}")
        try:
            return cls(bytes.fromhex(text))
        except ValueError as exc:
            raise FormatError(f"not an object name: {text!r}") from exc

    @property
    def hex(self) -> str:
        return self.raw.hex()

    def short(self) -> str:
        return self.raw.hex()[:8]

    def __str__(self) -> str:
        return self.hex


# Chunk IDs are compared and hashed millions of times per backup, so they stay plain bytes
# behind a NewType rather than a dataclass.
ChunkId = NewType("ChunkId", bytes)
RepoId = NewType("RepoId", bytes)


def is_hex_name(text: str) -> bool:
    """True when `text` looks like an object name (64 lowercase hex digits)."""
    return len(text) == 2 * ID_SIZE and all(c in "0123456789abcdef" for c in text)
