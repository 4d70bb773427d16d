"""WebDavBackend passes the conformance suite against a real WebDAV server (wsgidav, in its own
process, over TLS with a private CA, digest authentication)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cairn.backends.base import Backend
from cairn.backends.testing.conformance import BackendConformance
from cairn.backends.webdav import WebDavBackend, parse_location, webdav_credentials
from tests.support.storageservers import WebDavServer
from tests.support.storageservers import webdav_tls_server as webdav_tls_server


class TestWebDavBackend(BackendConformance):
    @pytest.fixture
    def backend(self, webdav_tls_server: WebDavServer) -> Iterator[Backend]:
        server = webdav_tls_server
        address = parse_location(server.location(server.fresh_folder()))
        backend = WebDavBackend.create(address, webdav_credentials(address, server.environ()))
        yield backend
        backend.close()
