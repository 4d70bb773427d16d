"""A backend that passes every call to the one it wraps: the base of wrappers that change a few
calls (rate limits, the local cache, the server's accounting) and leave the rest alone."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from cairn.backends.base import (
    Backend,
    Capabilities,
    ChunkAnswer,
    Handle,
    ObjectInfo,
    ObjectKind,
    forward_chunk_query,
)


class ForwardingBackend:
    def __init__(self, inner: Backend) -> None:
        self._inner = inner

    @property
    def capabilities(self) -> Capabilities:
        return self._inner.capabilities

    def location(self) -> str:
        return self._inner.location()

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        self._inner.save(handle, data)

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        return self._inner.load(handle, offset, length)

    def stat(self, handle: Handle) -> ObjectInfo:
        return self._inner.stat(handle)

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        return self._inner.list(kind)

    def remove(self, handle: Handle) -> None:
        self._inner.remove(handle)

    def exists(self, handle: Handle) -> bool:
        return self._inner.exists(handle)

    def query_chunks(self, ids: Sequence[bytes]) -> dict[bytes, ChunkAnswer]:
        """The wrapped backend's chunk query (capabilities.chunk_query says whether it has one)."""
        return forward_chunk_query(self._inner, ids)

    def close(self) -> None:
        self._inner.close()
