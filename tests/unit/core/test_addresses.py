"""Which hosts count as loopback: the only place plain HTTP is allowed."""

from __future__ import annotations

import pytest

from cairn.core.addresses import is_loopback


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "192.0.2.1", "::2", "example.invalid", "localhost.", "", "127.0.0.1.nip"]
)
def test_other_hosts(host: str) -> None:
    assert not is_loopback(host)
