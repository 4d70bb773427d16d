"""SftpBackend passes the conformance suite against a real OpenSSH sshd (storageservers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.backends.base import Backend
from cairn.backends.sftp import SftpBackend, SftpCredentials, parse_address
from cairn.backends.testing.conformance import BackendConformance
from tests.support.storageservers import SshServer
from tests.support.storageservers import sshd as sshd  # the session's server


def credentials(server: SshServer) -> SftpCredentials:
    return SftpCredentials(key_file=server.key, known_hosts=server.known_hosts, agent=False)


class TestSftpBackend(BackendConformance):
    @pytest.fixture
    def backend(self, sshd: SshServer, tmp_path: Path) -> Iterator[Backend]:
        backend = SftpBackend.create(
            parse_address(sshd.location(tmp_path / "repo")), credentials(sshd)
        )
        yield backend
        backend.close()
