"""A WebDAV repository end to end through the real `cairn` command, and the faults a WebDAV share
shows, against wsgidav running in its own process (tests/support/storageservers.py)."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import (
    GarbledAnswer,
    ListingIncomplete,
    StorageFull,
    StorageLoginRefused,
    StorageTlsFailed,
    TransientBackendError,
)
from cairn.backends.testing.conformance import handle_for
from cairn.backends.webdav import (
    TEMP_PREFIX,
    WebDavBackend,
    parse_location,
    webdav_credentials,
)
from cairn.backends.wrappers.retrying import RetryingBackend
from tests.support.apachedav import ApacheDav
from tests.support.apachedav import apache_webdav_server as apache_webdav_server
from tests.support.clitools import Cairn, manifest
from tests.support.storageservers import CuttingRelay, WebDavServer, webdav_server
from tests.support.storageservers import webdav_tls_server as webdav_tls_server

MiB = 1024 * 1024


def make_source(root: Path) -> Path:
    src = root / "src"
    (src / "deep" / "er").mkdir(parents=True)
    (src / "notes.txt").write_text("notes\n" * 2000)
    (src / "deep" / "er" / "blob.bin").write_bytes(os.urandom(3 * MiB + 17))
    (src / "empty").write_bytes(b"")
    os.symlink("notes.txt", src / "link")
    return src


def webdav_cairn(
    server: WebDavServer | ApacheDav, tmp_path: Path, folder: str | None = None
) -> Cairn:
    location = server.location(folder or server.fresh_folder())
    tool = Cairn(location, cache=tmp_path / "cache")
    base_env = tool.env

    def env(**extra: str) -> dict[str, str]:
        return base_env(**{**server.environ(), **extra})

    tool.env = env  # type: ignore[method-assign]
    return tool


def open_backend(server: WebDavServer, folder: str, port: int | None = None) -> WebDavBackend:
    address = parse_location(server.location(folder, port))
    return WebDavBackend.create(address, webdav_credentials(address, server.environ()))


def temporaries(root: Path) -> list[Path]:
    return list(root.rglob(f"{TEMP_PREFIX}*"))


# ---- the CLI, end to end ------------------------------------------------------------------


@pytest.mark.parametrize("server_name", ["webdav_tls_server", "apache_webdav_server"])
def test_the_cli_runs_every_command_against_webdav(
    server_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: WebDavServer | ApacheDav = request.getfixturevalue(server_name)
    folder = server.fresh_folder()
    cairn = webdav_cairn(server, tmp_path, folder)
    cairn.run("init")
    src = make_source(tmp_path)
    before = manifest(src)
    first = cairn.run("backup", str(src), "--json").json()
    assert first["errors"] == []
    (src / "notes.txt").write_text("changed\n")
    cairn.run("backup", str(src))
    cairn.run("restore", "latest", "--target", str(tmp_path / "out"))
    restored = manifest(tmp_path / "out" / src.relative_to("/"))
    assert restored[b"deep/er/blob.bin"] == before[b"deep/er/blob.bin"]
    assert restored == manifest(src)
    cairn.run("check", "--read-data")
    cairn.run("forget", "--keep-last", "1", "--group-by", "")
    pruned = cairn.run("prune", "--json").json()
    assert pruned is not None
    assert len(cairn.run("snapshots", "--json").json()) == 1
    cairn.run("check", "--read-data")
    (tmp_path / "second").write_text("another passphrase\n")
    cairn.run("key", "add", "--new-password-file", str(tmp_path / "second"))
    other = webdav_cairn(server, tmp_path / "elsewhere", folder)
    other.password = "another passphrase"
    assert len(other.run("snapshots", "--json").json()) == 1
    assert temporaries(server.root) == []


def test_a_basic_auth_server_over_plain_http_on_loopback(tmp_path: Path) -> None:
    with webdav_server(tmp_path, auth="basic", tls=False) as server:
        cairn = webdav_cairn(server, tmp_path)
        cairn.run("init")
        src = make_source(tmp_path)
        cairn.run("backup", str(src))
        cairn.run("restore", "latest", "--target", str(tmp_path / "out"))
        assert manifest(tmp_path / "out" / src.relative_to("/")) == manifest(src)


def test_plain_http_elsewhere_than_loopback_is_refused(tmp_path: Path) -> None:
    done = Cairn("webdav:http://192.0.2.1/dav/repo", cache=tmp_path / "c").run("init", check=False)
    assert done.code != 0
    assert "loopback only" in done.err and "Traceback" not in done.err


def test_a_password_in_the_location_is_refused(tmp_path: Path) -> None:
    done = Cairn("webdav:https://me:hunter2@192.0.2.1/r", cache=tmp_path / "c").run(
        "init", check=False
    )
    assert done.code != 0 and "CAIRN_WEBDAV_PASSWORD" in done.err
    assert "hunter2" not in done.err + done.out


# ---- faults ---------------------------------------------------------------------------------


def test_wrong_credentials_are_e037_and_never_show_the_password(
    webdav_tls_server: WebDavServer, tmp_path: Path
) -> None:
    cairn = webdav_cairn(webdav_tls_server, tmp_path)
    cairn.run("init")
    done = cairn.run("snapshots", check=False, env=cairn.env(CAIRN_WEBDAV_PASSWORD="wrong one"))
    assert done.code != 0
    assert "CAIRN-E037" in done.err and "Traceback" not in done.err
    assert "wrong one" not in done.err
    secret = tmp_path / "pw"
    secret.write_text("wrong too\n")
    by_file = cairn.run(
        "snapshots", check=False, env=cairn.env(CAIRN_WEBDAV_PASSWORD_FILE=str(secret))
    )
    assert "CAIRN-E037" in by_file.err


def test_a_certificate_the_client_does_not_trust_is_e105(
    webdav_tls_server: WebDavServer, tmp_path: Path
) -> None:
    cairn = webdav_cairn(webdav_tls_server, tmp_path)
    env = cairn.env()
    del env["CAIRN_WEBDAV_CA"]
    done = cairn.run("init", check=False, env=env)
    assert done.code != 0
    assert "CAIRN-E105" in done.err and "Traceback" not in done.err
    assert "CAIRN_WEBDAV_CA" in done.err


def test_a_server_that_does_not_speak_webdav_is_e106(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
        cwd=tmp_path / "www",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert web.stdout is not None
        line = web.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
        port = int(line.split(" port ")[1].split()[0])
        cairn = Cairn(f"webdav:http://127.0.0.1:{port}/repo", cache=tmp_path / "c")
        done = cairn.run("init", check=False)
        assert done.code != 0
        assert "CAIRN-E106" in done.err and "Traceback" not in done.err
    finally:
        web.terminate()
        web.wait()
        if web.stdout is not None:
            web.stdout.close()


def test_an_upload_cut_midway_is_sent_again_whole(
    webdav_tls_server: WebDavServer, tmp_path: Path
) -> None:
    relay = CuttingRelay(webdav_tls_server.port)
    folder = webdav_tls_server.fresh_folder()
    backend = RetryingBackend(open_backend(webdav_tls_server, folder, relay.port))
    data = os.urandom(4 * MiB)
    handle = handle_for(ObjectKind.PACK, data)
    relay.cut_after(2 * MiB, "up")
    try:
        backend.save(handle, data)
        assert relay.cuts == 1
        # No portable partial PUT (resumable_writes=False): the retry sent everything again.
        assert relay.sent >= 2 * MiB + len(data)
        assert not backend.capabilities.resumable_writes
        assert backend.load(handle) == data
        assert [i.handle for i in backend.list(ObjectKind.PACK)] == [handle]
        # The cut PUT's temporary may outlive the DELETE sent after it (wsgidav may still be
        # writing it when the DELETE arrives): never listed, swept once stale (STALE_TEMP_AGE).
        assert len(temporaries(webdav_tls_server.root / folder)) <= 1
    finally:
        backend.close()
        relay.close()


def test_a_download_cut_midway_is_read_again(
    webdav_tls_server: WebDavServer, tmp_path: Path
) -> None:
    relay = CuttingRelay(webdav_tls_server.port)
    folder = webdav_tls_server.fresh_folder()
    backend = RetryingBackend(open_backend(webdav_tls_server, folder, relay.port))
    data = os.urandom(4 * MiB)
    handle = handle_for(ObjectKind.PACK, data)
    try:
        backend.save(handle, data)
        relay.cut_after(1 * MiB, "down")
        assert backend.load(handle) == data
        assert relay.cuts == 1
        relay.cut_after(1 * MiB, "down")
        assert backend.load(handle, MiB, 2 * MiB) == data[MiB : 3 * MiB]
    finally:
        backend.close()
        relay.close()


def test_a_listing_cut_midway_is_listing_incomplete(
    webdav_tls_server: WebDavServer, tmp_path: Path
) -> None:
    relay = CuttingRelay(webdav_tls_server.port)
    folder = webdav_tls_server.fresh_folder()
    backend = open_backend(webdav_tls_server, folder, relay.port)
    try:
        for i in range(120):
            backend.save(handle_for(ObjectKind.INDEX, b"%d" % i), b"%d" % i)
        relay.cut_after(20_000, "down")
        with pytest.raises(ListingIncomplete):
            list(backend.list(ObjectKind.INDEX))
        assert len(list(backend.list(ObjectKind.INDEX))) == 120
    finally:
        backend.close()
        relay.close()


def test_a_server_restarted_mid_run(tmp_path: Path) -> None:
    with webdav_server(tmp_path, tls=True) as server:
        cairn = webdav_cairn(server, tmp_path)
        cairn.run("init")
        src = make_source(tmp_path)
        cairn.run("backup", str(src))
        backend = RetryingBackend(open_backend(server, server.fresh_folder()))
        first, second = b"before the restart", b"after the restart"
        backend.save(handle_for(ObjectKind.SNAPSHOT, first), first)
        server.restart()  # the pooled connection is dead now: the next request is retried
        backend.save(handle_for(ObjectKind.SNAPSHOT, second), second)
        assert backend.load(handle_for(ObjectKind.SNAPSHOT, first)) == first
        backend.close()
        server.stop()
        down = cairn.run("snapshots", check=False, env=cairn.env(CAIRN_RETRY_FOR="3s"))
        assert down.code != 0 and "CAIRN-E033" in down.err and "Traceback" not in down.err
        assert "retried for 3 s" in down.err  # (not the default 60 s: nothing to wait for)
        server.start()
        (src / "new").write_text("new file")
        cairn.run("backup", str(src))
        cairn.run("check", "--read-data")
        assert len(cairn.run("snapshots", "--json").json()) == 2


def test_a_server_restarted_during_a_backup(tmp_path: Path) -> None:
    """The server goes away and comes back while a backup uploads (held to 1 MiB/s so that it
    is still uploading): the backup either rides it out by retrying or stops with E033; either
    way no traceback, the next backup completes, and the repository checks clean."""
    with webdav_server(tmp_path, tls=True) as server:
        cairn = webdav_cairn(server, tmp_path)
        cairn.run("init")
        src = tmp_path / "src"
        src.mkdir()
        for i in range(6):
            (src / f"f{i}").write_bytes(os.urandom(MiB))
        backup = subprocess.Popen(
            [sys.executable, "-m", "cairn.cli.main", "backup", str(src)],
            env=cairn.env(CAIRN_LIMIT_UPLOAD="1MiB/s"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)
        server.restart()
        _, err = backup.communicate(timeout=300)
        assert "Traceback" not in err
        assert backup.returncode == 0 or "CAIRN-E033" in err, err
        cairn.run("backup", str(src))
        cairn.run("check", "--read-data")
        restored = tmp_path / "out"
        cairn.run("restore", "latest", "--target", str(restored))
        assert manifest(restored / src.relative_to("/")) == manifest(src)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI"):
            raise RuntimeError("the full-target test needs root and mount(8) in CI")
        pytest.skip("mounting a tmpfs needs root")
    target = tmp_path / "small"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_target_is_storage_full_and_leaves_nothing_half_written(
    tmp_path: Path, small_tmpfs: Path
) -> None:
    with webdav_server(tmp_path, tls=False, root=small_tmpfs) as server:
        backend = open_backend(server, "repo")
        cairn = webdav_cairn(server, tmp_path, folder="cli")
        cairn.run("init")
        src = tmp_path / "src"
        src.mkdir()
        (src / "big").write_bytes(os.urandom(6 * MiB))
        done = cairn.run("backup", str(src), check=False)
        assert done.code != 0
        assert "CAIRN-E030" in done.err and "Traceback" not in done.err
        assert temporaries(small_tmpfs) == []
        data = os.urandom(3 * MiB)
        with pytest.raises(StorageFull):
            backend.save(handle_for(ObjectKind.PACK, data), data)
        assert temporaries(small_tmpfs) == []
        assert list(backend.list(ObjectKind.PACK)) == []
        backend.close()


def test_stale_temporaries_are_never_listed_and_are_swept(
    webdav_tls_server: WebDavServer,
) -> None:
    folder = webdav_tls_server.fresh_folder()
    backend = open_backend(webdav_tls_server, folder)
    try:
        data = b"an index"
        backend.save(handle_for(ObjectKind.INDEX, data), data)
        index = webdav_tls_server.root / folder / "index"
        fresh, stale = index / f"{TEMP_PREFIX}fresh", index / f"{TEMP_PREFIX}stale"
        fresh.write_bytes(b"an upload under way")
        stale.write_bytes(b"a killed upload")
        old = time.time() - 2 * 86400
        os.utime(stale, (old, old))
        assert [i.handle for i in backend.list(ObjectKind.INDEX)] == [
            handle_for(ObjectKind.INDEX, data)
        ]
        assert fresh.exists() and not stale.exists()
    finally:
        backend.close()


def test_errors_name_what_failed_without_the_password(webdav_tls_server: WebDavServer) -> None:
    address = parse_location(webdav_tls_server.location(webdav_tls_server.fresh_folder()))
    env = {**webdav_tls_server.environ(), "CAIRN_WEBDAV_PASSWORD": "not it"}
    with pytest.raises(StorageLoginRefused) as refused:
        WebDavBackend.create(address, webdav_credentials(address, env))
    assert "not it" not in str(refused.value)
    untrusted = {k: v for k, v in webdav_tls_server.environ().items() if k != "CAIRN_WEBDAV_CA"}
    with pytest.raises(StorageTlsFailed):
        WebDavBackend.create(address, webdav_credentials(address, untrusted))
    closed = parse_location(f"webdav:https://127.0.0.1:{_closed_port()}/x")
    with pytest.raises(TransientBackendError):
        WebDavBackend(closed, webdav_credentials(closed, {})).stat(
            Handle(ObjectKind.CONFIG, "config")
        )


# ---- answers no WebDAV server gives (a crafted or broken server) ----------------------------

_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY e "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">]>
<D:multistatus xmlns:D="DAV:"><D:response><D:href>/r/index/&g;</D:href></D:response>
</D:multistatus>"""
_ENTRY = (
    "<D:response><D:href>/r/index/{name}</D:href><D:propstat><D:prop>"
    "<D:resourcetype/><D:getcontentlength>5</D:getcontentlength></D:prop>"
    "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
)
_WHOLE = (
    '<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">'
    + "".join(_ENTRY.format(name=f"{i:064x}") for i in range(50))
    + "</D:multistatus>"
).encode()


@contextlib.contextmanager
def crafted_server(
    status: int, body: bytes, headers: dict[str, str] | None = None
) -> Iterator[int]:
    """An HTTP server on loopback that answers every request with `status` and `body`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(status)
            self.send_header("content-type", "application/xml")
            self.send_header("content-length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_PROPFIND = do_GET = do_PUT = do_MKCOL = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (207, _BOMB, GarbledAnswer),  # entities: refused before they expand
        (207, _WHOLE[: len(_WHOLE) // 2], ListingIncomplete),  # cut off mid-document
        (207, b"<html><body>Welcome to nginx!</body></html>", GarbledAnswer),
        (207, b"\x00\x01 not xml at all", GarbledAnswer),
        (200, b"<html>a login page</html>", GarbledAnswer),
    ],
)
def test_a_crafted_or_broken_listing_is_a_clear_error(
    status: int, body: bytes, error: type[Exception]
) -> None:
    with crafted_server(status, body) as port:
        address = parse_location(f"webdav:http://127.0.0.1:{port}/r")
        backend = WebDavBackend(address, webdav_credentials(address, {}))
        with pytest.raises(error):
            list(backend.list(ObjectKind.INDEX))
        backend.close()


def test_a_server_that_ignores_range_still_gives_the_right_bytes() -> None:
    with crafted_server(200, b"0123456789") as port:
        address = parse_location(f"webdav:http://127.0.0.1:{port}/r")
        backend = WebDavBackend(address, webdav_credentials(address, {}))
        assert backend.capabilities.ranged_reads
        handle = handle_for(ObjectKind.PACK, b"0123456789")
        assert backend.load(handle, 2, 3) == b"234"
        assert backend.load(handle, 7) == b"789"
        assert not backend.capabilities.ranged_reads, "the capability says what was seen"
        backend.close()


def test_a_ranged_read_answered_with_too_much_is_refused_unread() -> None:
    flood = b"x" * (8 * MiB)
    with crafted_server(206, flood, {"content-range": f"bytes 0-1/{len(flood)}"}) as port:
        address = parse_location(f"webdav:http://127.0.0.1:{port}/r")
        backend = WebDavBackend(address, webdav_credentials(address, {}))
        with pytest.raises(GarbledAnswer, match="more than"):
            backend.load(handle_for(ObjectKind.PACK, b"x"), 0, 2)
        backend.close()


def test_a_whole_crafted_listing_is_read() -> None:
    with crafted_server(207, _WHOLE) as port:
        address = parse_location(f"webdav:http://127.0.0.1:{port}/r")
        backend = WebDavBackend(address, webdav_credentials(address, {}))
        assert len(list(backend.list(ObjectKind.INDEX))) == 50
        backend.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
