"""MemoryBackend passes the conformance suite."""

from __future__ import annotations

import pytest

from cairn.backends.base import Backend
from cairn.backends.memory import MemoryBackend
from cairn.backends.testing.conformance import BackendConformance


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def backend(self) -> Backend:
        return MemoryBackend()
