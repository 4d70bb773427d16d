"""Cutting around holes gives exactly the chunks of a full read, without reading the holes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cairn.chunking.fastcdc import ChunkerParams, FastCDCChunker
from cairn.chunking.holes import split_with_holes

PARAMS = ChunkerParams(min_size=1024, avg_size=2048, max_size=8192)


def full_read(chunker: FastCDCChunker, path: Path) -> list[bytes]:
    with open(path, "rb", buffering=0) as stream:
        return [bytes(c) for c in chunker.split(stream)]


def layout(seed: int) -> tuple[int, list[tuple[int, bytes]]]:
    """A file size and the data written at offsets; everything else is zeros."""
    rng = random.Random(seed)
    size = rng.randrange(1, 200_000)
    pieces = []
    for _ in range(rng.randrange(0, 6)):
        at = rng.randrange(0, size)
        pieces.append((at, rng.randbytes(min(rng.randrange(1, 20_000), size - at))))
    return size, pieces


def declared_holes(size: int, pieces: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
    data = sorted((at, at + len(b)) for at, b in pieces)
    holes, pos = [], 0
    for start, end in data:
        if start > pos:
            holes.append((pos, start))
        pos = max(pos, end)
    if pos < size:
        holes.append((pos, size))
    return holes


@pytest.mark.parametrize("seed", range(40))
def test_the_chunks_are_those_of_a_full_read(tmp_path: Path, seed: int) -> None:
    chunker = FastCDCChunker(PARAMS, seed=seed)
    size, pieces = layout(seed)
    path = tmp_path / "f"
    with open(path, "wb") as f:
        f.truncate(size)
        for at, data in pieces:
            f.seek(at)
            f.write(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        cut = [
            bytes(c) for c, _ in split_with_holes(chunker, fd, size, declared_holes(size, pieces))
        ]
    finally:
        os.close(fd)
    assert cut == full_read(chunker, path)


def test_hole_interiors_are_not_read(tmp_path: Path) -> None:
    """Bytes that are declared a hole but hold 0xFF show which parts were read: only the ends
    of the hole, never a chunk that lies wholly inside it."""
    chunker = FastCDCChunker(PARAMS, seed=1)
    zero = len(chunker.zero_chunk)
    path = tmp_path / "f"
    path.write_bytes(b"d" * 3000 + b"\xff" * (20 * zero) + b"e" * 3000)
    fd = os.open(path, os.O_RDONLY)
    try:
        cut = list(split_with_holes(chunker, fd, 6000 + 20 * zero, [(3000, 3000 + 20 * zero)]))
        zeros = [bytes(c) for c, is_zero in cut if is_zero]
        read = b"".join(bytes(c) for c, is_zero in cut if not is_zero)
    finally:
        os.close(fd)
    assert len(zeros) >= 18 and all(z == bytes(zero) for z in zeros)
    assert read.count(b"\xff") < 2 * zero


def test_a_file_that_shrank_ends_the_chunks(tmp_path: Path) -> None:
    chunker = FastCDCChunker(PARAMS, seed=1)
    path = tmp_path / "f"
    path.write_bytes(b"x" * 5000)
    fd = os.open(path, os.O_RDONLY)
    try:
        cut = list(split_with_holes(chunker, fd, 100_000, [(50_000, 60_000)]))
    finally:
        os.close(fd)
    assert b"".join(bytes(c) for c, _ in cut) == b"x" * 5000
