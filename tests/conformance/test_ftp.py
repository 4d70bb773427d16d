"""FtpBackend passes the conformance suite against a real pure-ftpd, over FTPS and plain FTP."""

from __future__ import annotations

import ftplib
import ssl
from collections.abc import Iterator

import pytest

from cairn.backends.base import Backend
from cairn.backends.ftp import FtpBackend, parse_ftp_location, tls_context
from cairn.backends.testing.conformance import BackendConformance
from tests.support.storageservers import FTP_PASSWORD, PureFtpd, ftp_server

__all__ = ["ftp_server"]


def ftp_backend(server: PureFtpd, tls: bool = True) -> FtpBackend:
    where = parse_ftp_location(server.location(server.folder(), tls=tls))
    backend = FtpBackend(where, FTP_PASSWORD, tls_context(str(server.ca)) if tls else None)
    backend.create()
    return backend


class TestFtpsBackend(BackendConformance):
    @pytest.fixture
    def backend(self, ftp_server: PureFtpd) -> Iterator[Backend]:
        backend = ftp_backend(ftp_server)
        yield backend
        backend.close()


class TestPlainFtpBackend(BackendConformance):
    @pytest.fixture
    def backend(self, ftp_server: PureFtpd) -> Iterator[Backend]:
        backend = ftp_backend(ftp_server, tls=False)
        yield backend
        backend.close()


class TestFtpBackendWithoutMlsd(BackendConformance):
    """A server without MLSD (older ones): listings come from LIST's `ls -l` lines."""

    @pytest.fixture
    def backend(self, ftp_server: PureFtpd) -> Iterator[Backend]:
        backend = ftp_backend(ftp_server, tls=False)
        backend._features = {"SIZE", "REST"}  # as FEAT of a server without MLSD would say
        yield backend
        backend.close()


def test_ftps_protects_the_data_connections(ftp_server: PureFtpd) -> None:
    backend = ftp_backend(ftp_server)
    ftp = backend._connect()
    try:
        assert isinstance(ftp, ftplib.FTP_TLS)
        assert isinstance(ftp.sock, ssl.SSLSocket), "the control connection is TLS (AUTH TLS)"
        assert ftp._prot_p, "data connections are TLS too (PROT P)"  # type: ignore[attr-defined]
        conn = ftp.transfercmd("MLSD /")
        assert isinstance(conn, ssl.SSLSocket)
        conn.close()
    finally:
        ftp.close()
        backend.close()
