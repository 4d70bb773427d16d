"""LocalBackend passes the conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.backends.base import Backend
from cairn.backends.local import LocalBackend
from cairn.backends.testing.conformance import BackendConformance


class TestLocalBackend(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        backend = LocalBackend.create(tmp_path / "repo")
        yield backend
        backend.close()
