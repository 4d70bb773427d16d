"""webdav: locations and credentials: the forms accepted, the ones refused, no secret echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.backends.errors import BackendError
from cairn.backends.location import open_backend, remote_credentials
from cairn.backends.webdav import WebDavAddress, parse_location, webdav_credentials


@pytest.mark.parametrize(
    ("location", "url", "user"),
    [
        ("webdav:https://nas.example.net/dav/cairn", "https://nas.example.net/dav/cairn/", None),
        ("webdav:https://me@nas:8443/d/", "https://nas:8443/d/", "me"),
        ("webdav:https://b%40x@[2001:db8::1]/d", "https://[2001:db8::1]/d/", "b@x"),
        ("webdav:http://127.0.0.1:8080/r", "http://127.0.0.1:8080/r/", None),
        ("webdav:http://localhost/r", "http://localhost/r/", None),
        ("webdav:http://[::1]:81/r", "http://[::1]:81/r/", None),
    ],
)
def test_accepted_forms(location: str, url: str, user: str | None) -> None:
    assert parse_location(location) == WebDavAddress(url, user)
    assert str(parse_location(location)) == f"webdav:{url}"


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("webdav:http://nas.example.net/r", "loopback only"),
        ("webdav:http://192.168.1.5/r", "loopback only"),
        ("webdav:ftp://nas/r", "use webdav:https://"),
        ("webdav:https:///r", "use webdav:https://"),
        ("webdav:https://nas/r?x=1", "no query"),
        ("webdav:https://nas:99999/r", "use webdav:https://"),
    ],
)
def test_refused_forms(location: str, words: str) -> None:
    with pytest.raises(BackendError, match=words):
        parse_location(location)


def test_a_password_in_the_location_is_refused_and_never_repeated() -> None:
    with pytest.raises(BackendError) as refused:
        parse_location("webdav:https://me:s3cret@nas/r")
    assert "s3cret" not in str(refused.value)
    assert "CAIRN_WEBDAV_PASSWORD" in str(refused.value)


def test_credentials_come_from_the_environment_given(tmp_path: Path) -> None:
    address = parse_location("webdav:https://nas/r")
    env = {"CAIRN_WEBDAV_USER": "u", "CAIRN_WEBDAV_PASSWORD": "p", "CAIRN_WEBDAV_CA": "/ca.pem"}
    creds = webdav_credentials(address, env)
    assert (creds.user, creds.password, creds.ca_file) == ("u", "p", "/ca.pem")
    (tmp_path / "pw").write_text("from file\nignored\n")
    env["CAIRN_WEBDAV_PASSWORD_FILE"] = str(tmp_path / "pw")
    assert webdav_credentials(address, env).password == "from file"
    named = parse_location("webdav:https://other@nas/r")
    assert webdav_credentials(named, env).user == "other", "the location's user wins"
    assert webdav_credentials(address, None).user is None


def test_an_unreadable_password_file_is_a_clear_error(tmp_path: Path) -> None:
    address = parse_location("webdav:https://nas/r")
    with pytest.raises(BackendError, match="password file"):
        webdav_credentials(address, {"CAIRN_WEBDAV_PASSWORD_FILE": str(tmp_path / "none")})


def test_open_backend_reaches_webdav_through_the_callers_environment(tmp_path: Path) -> None:
    remote = remote_credentials(None, {"CAIRN_WEBDAV_USER": "u", "XDG_CONFIG_HOME": "/x"})
    assert remote.environ["CAIRN_WEBDAV_USER"] == "u"
    backend = open_backend("webdav:http://127.0.0.1:9/r", remote=remote)
    assert backend.location() == "webdav:http://127.0.0.1:9/r/"
    assert not backend.capabilities.local and not backend.capabilities.resumable_writes
    backend.close()
