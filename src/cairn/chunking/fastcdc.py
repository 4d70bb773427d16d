"""FastCDC 2020 through pyfastcdc's compiled (Cython, GIL-free) chunker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import pyfastcdc

from cairn.core.errors import CairnError


class ChunkerUnavailable(CairnError):
    """The compiled chunker is missing; the pure-Python fallback is ~300x slower."""


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    """Cut-point constraints. The average chunk is about ``min + avg`` (FastCDC's cut skipping)."""

    min_size: int = 512 * 1024
    avg_size: int = 512 * 1024
    max_size: int = 4 * 1024 * 1024


class Chunker(Protocol):
    """Splits a stream into content-defined chunks."""

    def split(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield chunks in order; each view is valid only until the next one is requested."""
        ...

    def split_buffer(self, data: bytes | memoryview) -> Iterator[memoryview]:
        """Yield chunks of an in-memory buffer; views stay valid while `data` lives."""
        ...


def native_available() -> bool:
    """True when pyfastcdc's compiled extension is the one in use."""
    return pyfastcdc.FastCDC.__module__.startswith("pyfastcdc.cy")


class FastCDCChunker:
    """FastCDC with a repository-keyed gear table."""

    def __init__(self, params: ChunkerParams, seed: int, *, require_native: bool = True) -> None:
        if require_native and not native_available():
            raise ChunkerUnavailable(
                "pyfastcdc's compiled extension did not load; reinstall pyfastcdc for this platform"
            )
        self._cdc = pyfastcdc.FastCDC(
            params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=1,
            seed=seed,
        )
        self._zero_chunk: memoryview | None = None

    @property
    def zero_chunk(self) -> memoryview:
        """The first chunk cut from a long run of zeros (every chunk that starts and ends in a
        hole is this one; see holes.py). Computed once."""
        if self._zero_chunk is None:
            first = next(iter(self._cdc.cut_buf(bytes(2 * self._cdc.max_size))))
            self._zero_chunk = memoryview(bytes(len(first.data)))
        return self._zero_chunk

    def split(self, stream: BinaryIO) -> Iterator[memoryview]:
        for chunk in self._cdc.cut_stream(stream):
            yield chunk.data

    def split_buffer(self, data: bytes | memoryview) -> Iterator[memoryview]:
        for chunk in self._cdc.cut_buf(data):
            yield chunk.data

    def split_file(self, stream: BinaryIO, size: int) -> Iterator[memoryview]:
        """Chunks of a file of (expected) `size`; a file under the minimum is one chunk.

        Backup and restore verification both cut through here, so they always agree.
        """
        if size < self._cdc.min_size:
            data = stream.read()
            if data:
                yield memoryview(data)
            return
        yield from self.split(stream)
