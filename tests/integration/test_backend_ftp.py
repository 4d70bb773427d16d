"""The CLI end to end on an FTPS repository served by a real pure-ftpd, and its errors."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_cli_roundtrip import make_tree
from tests.support.clitools import Cairn, manifest
from tests.support.storageservers import FTP_PASSWORD, PureFtpd, ftp_server

__all__ = ["ftp_server"]


@pytest.fixture
def ftp_env(ftp_server: PureFtpd, monkeypatch: pytest.MonkeyPatch) -> PureFtpd:
    for name, value in ftp_server.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CAIRN_FTP_PASSWORD_FILE", raising=False)
    return ftp_server


def test_a_repository_on_ftps_end_to_end(ftp_env: PureFtpd, tmp_path: Path) -> None:
    folder = ftp_env.folder()
    cairn = Cairn(ftp_env.location(folder + "/repo"), cache=tmp_path / "cache")
    cairn.run("init")
    assert (ftp_env.data / folder.strip("/") / "repo" / "config").is_file()
    src = make_tree(tmp_path)
    cairn.run("backup", str(src))
    (src / "docs" / "notes.txt").write_text("changed\n")
    cairn.run("backup", str(src))
    cairn.run("restore", "latest", "--target", str(tmp_path / "out"))
    assert manifest(tmp_path / "out" / src.relative_to("/")) == manifest(src)
    report = cairn.run("check", "--read-data", "--json").json()
    assert report["ok"] and report["packs_read"] == report["packs"] > 0
    cairn.run("forget", "--keep-last", "1")
    cairn.run("prune")
    assert len(cairn.run("snapshots", "--json").json()) == 1
    assert cairn.run("check", "--read-data", "--json").json()["ok"]
    new = tmp_path / "new-password"
    new.write_text("another passphrase\n")
    cairn.run("key", "add", "--new-password-file", str(new))
    other = Cairn(cairn.repo, password="another passphrase", cache=tmp_path / "cache2")
    other.run("restore", "latest", "--target", str(tmp_path / "again"))
    assert manifest(tmp_path / "again" / src.relative_to("/")) == manifest(src)
    leftovers = [p.name for p in (ftp_env.data / folder.strip("/")).rglob("*") if "." in p.name]
    assert leftovers == [], "no temporary file is left behind"


def test_plain_ftp_and_a_password_file(
    ftp_env: PureFtpd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "ftp-password"
    secret.write_text(FTP_PASSWORD + "\n")
    monkeypatch.delenv("CAIRN_FTP_PASSWORD")
    monkeypatch.setenv("CAIRN_FTP_PASSWORD_FILE", str(secret))
    cairn = Cairn(ftp_env.location(ftp_env.folder(), tls=False), cache=tmp_path / "cache")
    cairn.run("init")
    src = make_tree(tmp_path)
    cairn.run("backup", str(src))
    cairn.run("restore", "latest", "--target", str(tmp_path / "out"))
    assert manifest(tmp_path / "out" / src.relative_to("/")) == manifest(src)


def refused(cairn: Cairn, code: str, **env: str) -> str:
    result = cairn.run("snapshots", check=False, env=cairn.env(**env))
    assert result.code != 0
    assert code in result.err, result.err
    assert "Traceback" not in result.err
    return result.err


def test_a_wrong_password_is_e037(
    ftp_env: PureFtpd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAIRN_FTP_PASSWORD", "not the password")
    err = refused(Cairn(ftp_env.location(ftp_env.folder()), cache=tmp_path / "c"), "CAIRN-E037")
    assert "not the password" not in err


def test_a_password_in_the_location_is_refused_and_not_shown(
    ftp_env: PureFtpd, tmp_path: Path
) -> None:
    location = ftp_env.location("/x").replace("cairn@", "cairn:hunter2secret@")
    err = refused(Cairn(location, cache=tmp_path / "c"), "CAIRN-E111")
    assert "hunter2secret" not in err
    assert "CAIRN_FTP_PASSWORD" in err


def test_no_password_set_is_e111(
    ftp_env: PureFtpd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAIRN_FTP_PASSWORD")
    refused(Cairn(ftp_env.location("/x"), cache=tmp_path / "c"), "CAIRN-E111")


def test_an_untrusted_certificate_is_e105(
    ftp_env: PureFtpd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAIRN_FTP_CA")
    err = refused(Cairn(ftp_env.location(ftp_env.folder()), cache=tmp_path / "c"), "CAIRN-E105")
    assert "CAIRN_FTP_CA" in err


@pytest.fixture
def not_ftp() -> Iterator[int]:
    """A loopback server that answers like a web server, not FTP."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_a_server_that_is_not_ftp_is_e106(ftp_env: PureFtpd, tmp_path: Path, not_ftp: int) -> None:
    location = ftp_env.location("/x", tls=False, port=not_ftp)
    refused(Cairn(location, cache=tmp_path / "c"), "CAIRN-E106")


def test_an_unreachable_server_is_e033_after_retries(ftp_env: PureFtpd, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens once it is closed
    tool = Cairn(ftp_env.location("/x", port=closed), cache=tmp_path / "c")
    # a short retry budget: the default (60 s) would be waited out to the end for nothing
    err = refused(tool, "CAIRN-E033", CAIRN_RETRY_FOR="3s")
    assert "127.0.0.1" in err and "retried for 3 s" in err
