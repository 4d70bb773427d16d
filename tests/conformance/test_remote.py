"""RemoteBackend passes the conformance suite against a real server over TLS."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.backends.base import Backend
from cairn.backends.remote import KnownServers, RemoteBackend, parse_address
from cairn.backends.testing.conformance import BackendConformance
from serverfixture import RunningServer, running_server

_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


class TestRemoteBackend(BackendConformance):
    @pytest.fixture
    def backend(self, server: RunningServer, tmp_path: Path) -> Iterator[Backend]:
        name = f"t{next(_names)}"
        token = server.tenant(name)
        known = KnownServers(tmp_path / "known_servers")
        backend = RemoteBackend(parse_address(server.location(name)), token, known)
        yield backend
        backend.close()
