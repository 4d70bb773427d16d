"""Cutting a sparse file without reading its holes, into exactly the chunks a full read gives.

FastCDC decides each cut from the bytes after the previous cut only (its hash starts afresh at
every chunk). So a chunk that starts inside a hole and ends before the hole does is all zeros and
always has the same length: the zero chunk. Such chunks are produced without reading; the data
around the holes (and the last, partial stretch of each hole) is read and cut as usual. The
chunk IDs are therefore the same as reading the file whole, and deduplicate with it.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from typing import BinaryIO, Protocol

Holes = list[tuple[int, int]]
"""(start, end) byte ranges that read as zeros, sorted, not overlapping."""


class HoleAwareChunker(Protocol):
    """What cutting around holes needs of a chunker."""

    def split(self, stream: BinaryIO) -> Iterator[memoryview]: ...

    @property
    def zero_chunk(self) -> memoryview:
        """The chunk the chunker cuts first from a long run of zeros."""
        ...


def split_with_holes(
    chunker: HoleAwareChunker, fd: int, size: int, holes: Holes
) -> Iterator[tuple[memoryview, bool]]:
    """(chunk, is the zero chunk) in file order, as a full read of `fd` would cut it. Chunks
    lying inside a hole are not read. Each view is valid until the next is requested."""
    zero = chunker.zero_chunk
    starts = [start for start, _ in holes]
    pos = 0
    while pos < size:
        room = _hole_room(holes, starts, pos)
        if room >= len(zero):
            for _ in range(room // len(zero)):
                yield zero, True
            pos += room - room % len(zero)
            continue
        read = 0
        os.lseek(fd, pos, os.SEEK_SET)
        with open(fd, "rb", buffering=0, closefd=False) as stream:
            for chunk in chunker.split(stream):
                yield chunk, False
                read += len(chunk)
                if _hole_room(holes, starts, pos + read) >= len(zero):
                    break
        if not read:
            return  # the file shrank while read
        pos += read


def _hole_room(holes: Holes, starts: list[int], pos: int) -> int:
    """How many bytes of hole lie from `pos` on (0 when `pos` is in data)."""
    i = bisect.bisect_right(starts, pos) - 1
    if i < 0 or pos >= holes[i][1]:
        return 0
    return holes[i][1] - pos
