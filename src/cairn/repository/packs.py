"""Reading a pack's own description of itself: its plaintext trailer (design 3.3)."""

from __future__ import annotations

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.core.errors import FormatError
from cairn.core.ids import ObjectName
from cairn.format.pack import FOOTER_SIZE, PackEntry, decode_trailer, trailer_length


def read_trailer(backend: Backend, pack: ObjectName, size: int) -> list[PackEntry]:
    """The blobs a pack of `size` bytes says it holds (two range reads, no keys needed)."""
    handle = Handle(ObjectKind.PACK, pack.hex)
    if size < FOOTER_SIZE:
        raise FormatError(f"pack {pack.short()} is shorter than a pack footer")
    length = trailer_length(backend.load(handle, size - FOOTER_SIZE, FOOTER_SIZE))
    if length > size - FOOTER_SIZE:
        raise FormatError(f"pack {pack.short()}: the trailer is longer than the pack")
    return decode_trailer(backend.load(handle, size - FOOTER_SIZE - length, length), size)
