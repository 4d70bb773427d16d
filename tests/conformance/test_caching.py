"""CachingBackend passes the suite: a cache in front of a backend changes nothing callers see."""

from __future__ import annotations

from pathlib import Path

import blake3
import pytest

from cairn.backends.base import Backend, Handle
from cairn.backends.memory import MemoryBackend
from cairn.backends.testing.conformance import BackendConformance
from cairn.backends.wrappers.caching import CacheFolder, CachingBackend


def hashes_to_name(handle: Handle, data: bytes) -> bool:
    return blake3.blake3(data).hexdigest() == handle.name


class TestCachingBackend(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        return CachingBackend(MemoryBackend(), CacheFolder(tmp_path / "cache"), hashes_to_name)
