"""WebDavBackend passes the conformance suite against two real WebDAV servers, each in its own
process: wsgidav (over TLS with a private CA, digest authentication) and Apache httpd's mod_dav
(over TLS, basic authentication; Debian's apache2), whose answers differ in places."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cairn.backends.base import Backend
from cairn.backends.testing.conformance import BackendConformance
from cairn.backends.webdav import WebDavBackend, parse_location, webdav_credentials
from tests.support.apachedav import ApacheDav
from tests.support.apachedav import apache_webdav_server as apache_webdav_server
from tests.support.storageservers import WebDavServer
from tests.support.storageservers import webdav_tls_server as webdav_tls_server


def _open(server: WebDavServer | ApacheDav) -> WebDavBackend:
    address = parse_location(server.location(server.fresh_folder()))
    return WebDavBackend.create(address, webdav_credentials(address, server.environ()))


class TestWebDavBackend(BackendConformance):
    @pytest.fixture
    def backend(self, webdav_tls_server: WebDavServer) -> Iterator[Backend]:
        backend = _open(webdav_tls_server)
        yield backend
        backend.close()


class TestWebDavBackendOnApache(BackendConformance):
    @pytest.fixture
    def backend(self, apache_webdav_server: ApacheDav) -> Iterator[Backend]:
        backend = _open(apache_webdav_server)
        yield backend
        backend.close()
