"""Chunker properties: chunks reassemble the input; boundaries survive an insertion."""

from __future__ import annotations

import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.chunking.fastcdc import ChunkerParams, FastCDCChunker, native_available

SMALL = ChunkerParams(min_size=1024, avg_size=2048, max_size=8192)


def _chunks(data: bytes, seed: int = 42) -> list[bytes]:
    return [bytes(c) for c in FastCDCChunker(SMALL, seed).split(io.BytesIO(data))]


def test_the_compiled_chunker_is_the_one_in_use() -> None:
    assert native_available()


@given(st.binary(max_size=100_000))
def test_chunks_reassemble_the_input(data: bytes) -> None:
    chunks = _chunks(data)
    assert b"".join(chunks) == data
    assert all(len(c) <= SMALL.max_size for c in chunks)


@settings(max_examples=25)
@given(st.integers(0, 2**32), st.integers(1, 200), st.data())
def test_an_insertion_changes_only_nearby_chunks(seed: int, size: int, data: st.DataObject) -> None:
    original = random.Random(seed).randbytes(200_000)
    at = data.draw(st.integers(0, len(original)))
    inserted = original[:at] + random.Random(seed + 1).randbytes(size) + original[at:]
    before, after = set(_chunks(original)), set(_chunks(inserted))
    # Content-defined boundaries resynchronise within a few chunks of the insertion, so all but a
    # handful of the ~65 chunks are shared.
    assert len(before - after) <= 6
    assert len(before & after) >= 0.85 * len(before)


def test_stream_and_buffer_agree() -> None:
    data = random.Random(3).randbytes(300_000)
    chunker = FastCDCChunker(SMALL, 9)
    assert [bytes(c) for c in chunker.split_buffer(data)] == _chunks(data, 9)


def test_keyed_boundaries_differ_between_repositories() -> None:
    data = random.Random(5).randbytes(300_000)
    assert [len(c) for c in _chunks(data, 1)] != [len(c) for c in _chunks(data, 2)]
