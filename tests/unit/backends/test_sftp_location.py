"""SFTP locations and credentials: the forms a user types, and what they are refused for."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from cairn.backends.errors import BackendError
from cairn.backends.location import SftpPasswordFileUnreadable, open_backend, sftp_credentials
from cairn.backends.sftp import SftpAddress, parse_address
from cairn.backends.wrappers.retrying import RetryingBackend


@pytest.mark.parametrize(
    ("location", "address"),
    [
        ("sftp:backup@nas:/srv/cairn", SftpAddress("nas", "/srv/cairn", "backup")),
        ("sftp:backup@nas:relative/repo", SftpAddress("nas", "relative/repo", "backup")),
        ("sftp:backup@[::1]:/srv", SftpAddress("::1", "/srv", "backup")),
        ("sftp://backup@nas:2222/srv/cairn/", SftpAddress("nas", "/srv/cairn", "backup", 2222)),
        ("sftp://backup@nas/srv/cairn", SftpAddress("nas", "/srv/cairn", "backup", 22)),
        ("sftp://b%40x@[::1]:22/srv", SftpAddress("::1", "/srv", "b@x", 22)),
        ("sftp:nas:/srv", SftpAddress("nas", "/srv", getpass.getuser())),
    ],
)
def test_location_forms(location: str, address: SftpAddress) -> None:
    assert parse_address(location) == address


def test_a_host_alias_resolves_through_the_ssh_config(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "Host nas\n  HostName 192.0.2.7\n  Port 2200\n  User backup\n"
        "  IdentityFile ~/.ssh/nas_key\n"
        "Host jump\n  ProxyJump bastion\n"
    )
    home_key = str(Path("~/.ssh/nas_key").expanduser())
    assert parse_address("sftp:nas:/srv", config) == SftpAddress(
        "192.0.2.7", "/srv", "backup", 2200, (home_key,)
    )
    # What the location says wins over the file, as with OpenSSH's client.
    assert parse_address("sftp://me@nas:2222/srv", config) == SftpAddress(
        "192.0.2.7", "/srv", "me", 2222, (home_key,)
    )
    assert parse_address("sftp:other:/srv", config) == SftpAddress(
        "other", "/srv", getpass.getuser()
    )
    assert parse_address("sftp:nas:/srv", tmp_path / "missing") == SftpAddress(
        "nas", "/srv", getpass.getuser()
    )
    with pytest.raises(BackendError, match="ProxyJump"):
        parse_address("sftp:jump:/srv", config)
    config.write_text("Host nas\n  Port notaport\n")
    with pytest.raises(BackendError, match="Port"):
        parse_address("sftp:nas:/srv", config)


@pytest.mark.parametrize(
    "location",
    [
        "sftp:",
        "sftp:nas",
        "sftp://nas",
        "sftp://backup:secret@nas/srv",
        "sftp://nas:notaport/srv",
        "sftp://nas/srv/../etc",
        "sftp:nas:/srv/../etc",
    ],
)
def test_bad_locations_are_refused(location: str) -> None:
    with pytest.raises(BackendError):
        parse_address(location)


def test_a_password_never_shows_in_the_location() -> None:
    with pytest.raises(BackendError) as caught:
        parse_address("sftp://backup:hunter2@nas/srv")
    assert "hunter2" not in str(caught.value)
    assert str(parse_address("sftp://backup@nas:2222/srv")) == "sftp://backup@nas:2222/srv"


def test_credentials_from_the_environment(tmp_path: Path) -> None:
    assert sftp_credentials({}).key_file is None
    assert sftp_credentials({}).known_hosts_path() == Path("~/.ssh/known_hosts").expanduser()
    secret = tmp_path / "pw"
    secret.write_text("from the file\nignored\n")
    found = sftp_credentials(
        {
            "CAIRN_SFTP_KEY": str(tmp_path / "key"),
            "CAIRN_SFTP_KNOWN_HOSTS": str(tmp_path / "kh"),
            "CAIRN_SFTP_PASSWORD": "from the variable",
            "CAIRN_SFTP_PASSWORD_FILE": str(secret),
            "CAIRN_SFTP_NO_AGENT": "1",
        }
    )
    assert found.key_file == tmp_path / "key" and found.known_hosts == tmp_path / "kh"
    assert found.password == "from the file" and not found.agent
    assert "from the file" not in repr(found)
    with pytest.raises(SftpPasswordFileUnreadable):
        sftp_credentials({"CAIRN_SFTP_PASSWORD_FILE": str(tmp_path / "missing")})


def test_open_backend_chooses_sftp_retried_without_connecting() -> None:
    backend = open_backend("sftp://backup@192.0.2.1:2222/srv/cairn", environ={})
    assert isinstance(backend, RetryingBackend)
    assert backend.location() == "sftp://backup@192.0.2.1:2222/srv/cairn"
    assert backend.capabilities.resumable_writes and not backend.capabilities.local
    backend.close()
