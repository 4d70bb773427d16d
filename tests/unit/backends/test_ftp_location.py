"""FTP locations: parsed without a server; a password in the location is refused unseen."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.backends.errors import FtpSetupError
from cairn.backends.ftp import FtpBackend, FtpLocation, ftp_password, parse_ftp_location


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("ftp://bob@nas:2121/srv/cairn", FtpLocation(False, "nas", 2121, "bob", "/srv/cairn")),
        ("ftps://bob@nas/srv/cairn/", FtpLocation(True, "nas", 21, "bob", "/srv/cairn")),
        ("ftp://bob@nas", FtpLocation(False, "nas", 21, "bob", "")),
        ("ftp://b%40x@[::1]:21/a%20b", FtpLocation(False, "::1", 21, "b@x", "/a b")),
        ("ftp://nas/pub", FtpLocation(False, "nas", 21, "anonymous", "/pub")),
    ],
)
def test_locations_parse(location: str, expected: FtpLocation) -> None:
    assert parse_ftp_location(location) == expected


def test_the_location_string_shows_no_secret() -> None:
    assert str(parse_ftp_location("ftps://bob@nas:990/x")) == "ftps://bob@nas:990/x/"


def test_a_password_in_the_location_is_refused_without_repeating_it() -> None:
    with pytest.raises(FtpSetupError) as caught:
        parse_ftp_location("ftp://bob:s3cret-word@nas/x")
    assert "s3cret-word" not in str(caught.value)
    assert "CAIRN_FTP_PASSWORD" in str(caught.value)


@pytest.mark.parametrize(
    "location", ["ftp:///x", "ftp://bob@nas:99999/x", "ftp://bob@nas/a/../b", "ftp://n/x?q=1"]
)
def test_bad_locations_are_refused(location: str) -> None:
    with pytest.raises(FtpSetupError):
        parse_ftp_location(location)


def test_the_password_comes_from_a_file_first(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from the file\nsecond line\n")
    env = {"CAIRN_FTP_PASSWORD_FILE": str(secret), "CAIRN_FTP_PASSWORD": "from env"}
    assert ftp_password(env) == "from the file"
    assert ftp_password({"CAIRN_FTP_PASSWORD": "from env"}) == "from env"
    assert ftp_password({}) is None
    with pytest.raises(FtpSetupError, match="cannot read the FTP password file"):
        ftp_password({"CAIRN_FTP_PASSWORD_FILE": str(tmp_path / "missing")})


def test_a_user_without_a_password_is_refused_before_connecting() -> None:
    with pytest.raises(FtpSetupError, match="needs a password"):
        FtpBackend(parse_ftp_location("ftp://bob@nas/x"), None)
