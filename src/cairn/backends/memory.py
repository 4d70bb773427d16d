"""A backend that keeps objects in a dictionary: fast, for tests and dry runs.

Deviations from the protocol: nothing is durable beyond the process, and each instance is its own
empty store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from cairn.backends.base import Capabilities, Handle, ObjectInfo, ObjectKind
from cairn.backends.contract import check_handle, read_span
from cairn.backends.errors import AlreadyExists, NotFound


class MemoryBackend:
    """Objects in a dict, guarded by one lock so any number of threads may use it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Handle, bytes] = {}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(connections=8, local=True)

    def location(self) -> str:
        return "memory:"

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        check_handle(handle)
        copy = bytes(data)
        with self._lock:
            existing = self._objects.get(handle)
            if existing is None:
                self._objects[handle] = copy
            elif existing != copy:
                raise AlreadyExists(f"{handle} exists with different bytes")

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        data = self._get(handle)
        count = read_span(len(data), offset, length, handle)
        return data[offset : offset + count]

    def stat(self, handle: Handle) -> ObjectInfo:
        return ObjectInfo(handle, len(self._get(handle)))

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        with self._lock:
            infos = [ObjectInfo(h, len(d)) for h, d in self._objects.items() if h.kind is kind]
        yield from infos

    def remove(self, handle: Handle) -> None:
        check_handle(handle)
        with self._lock:
            if self._objects.pop(handle, None) is None:
                raise NotFound(f"{handle} does not exist")

    def exists(self, handle: Handle) -> bool:
        check_handle(handle)
        with self._lock:
            return handle in self._objects

    def close(self) -> None:
        """Nothing to release; the objects stay readable."""

    def _get(self, handle: Handle) -> bytes:
        check_handle(handle)
        with self._lock:
            data = self._objects.get(handle)
        if data is None:
            raise NotFound(f"{handle} does not exist")
        return data
