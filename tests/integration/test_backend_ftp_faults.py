"""The FTP backend against a real pure-ftpd when things break: a control or a data connection cut
in the middle of an upload or a download (an FTP-aware relay in between), a listing that breaks
off, the server restarted mid-run, a full target (a small tmpfs), and a cut large upload that
resumes with only the rest."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import ListingIncomplete, StorageFull, TransientBackendError
from cairn.backends.ftp import RESUMABLE_ABOVE, FtpBackend, parse_ftp_location, tls_context
from cairn.backends.testing.conformance import handle_for
from cairn.backends.wrappers.retrying import RetryingBackend
from tests.support.storageservers import FTP_PASSWORD, PureFtpd, ftp_server

__all__ = ["ftp_server"]

_PASV = re.compile(rb"^227 .*\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)")


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a broken network or a killed peer leaves it. The shutdown
    first wakes a relay thread blocked reading the same socket: while a read is in progress
    the kernel would not close it (and the peer would wait for its timeout instead)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    sock.close()


class FtpRelay:
    """A loopback relay in front of a plain FTP server that also carries the data connections:
    it rewrites each 227 (PASV) answer to a port of its own (over TLS the answers cannot be
    read, so the fault cases run on plain FTP; the FTPS path differs only below ftplib). It
    counts the bytes uploaded and downloaded on data connections, and cuts once when armed:
    the data connection after `cut_upload_after` / `cut_download_after` bytes, or the control
    connection instead when `cut_control` is set."""

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.uploaded = 0
        self.downloaded = 0
        self.cuts = 0
        self.cut_upload_after: int | None = None
        self.cut_download_after: int | None = None
        self.cut_control = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        # Per control connection, the downloads still being relayed: the end-of-transfer answer
        # waits for them, as it would reach a client behind a real link only after the data.
        self._relaying: dict[int, list[threading.Event]] = {}
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        for sock in list(self._sockets):
            _reset(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.server_port))
            self._sockets += [client, upstream]
            control = (client, upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(
                target=self._answers, args=(upstream, client, control), daemon=True
            ).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while block := source.recv(65536):
                target.sendall(block)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                _reset(sock)

    def _answers(
        self,
        upstream: socket.socket,
        client: socket.socket,
        control: tuple[socket.socket, socket.socket],
    ) -> None:
        buffer = b""
        try:
            while block := upstream.recv(65536):
                buffer += block
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line[:1] in (b"2", b"4") and line[:3] not in (b"227", b"200"):
                        self._after_data(control)
                    client.sendall(self._rewrite(line, control) + b"\n")
        except OSError:
            pass
        finally:
            for sock in (upstream, client):
                _reset(sock)

    def _after_data(self, control: tuple[socket.socket, socket.socket]) -> None:
        """Hold an answer back until the data this control connection's transfers carry has
        been relayed (or cut). Without this the server's 226 could overtake the last bytes
        still in the relay's buffers, and a cut meant for mid-transfer would come too late."""
        with self._lock:
            pending = self._relaying.pop(id(control), [])
        for done in pending:
            done.wait(30)

    def _rewrite(self, line: bytes, control: tuple[socket.socket, socket.socket]) -> bytes:
        match = _PASV.match(line)
        if match is None:
            return line
        real = int(match[5]) * 256 + int(match[6])
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        threading.Thread(target=self._data, args=(listener, real, control), daemon=True).start()
        return f"227 Entering Passive Mode (127,0,0,1,{port // 256},{port % 256})\r".encode()

    def _data(
        self, listener: socket.socket, real: int, control: tuple[socket.socket, socket.socket]
    ) -> None:
        with listener:
            listener.settimeout(30)
            try:
                client, _ = listener.accept()
            except OSError:
                return
        upstream = socket.create_connection(("127.0.0.1", real))
        self._sockets += [client, upstream]
        done = threading.Event()
        with self._lock:
            self._relaying.setdefault(id(control), []).append(done)
        threading.Thread(
            target=self._counted, args=(client, upstream, "up", control), daemon=True
        ).start()
        threading.Thread(
            target=self._counted, args=(upstream, client, "down", control, done), daemon=True
        ).start()

    def _counted(
        self,
        source: socket.socket,
        target: socket.socket,
        direction: str,
        control: tuple[socket.socket, socket.socket],
        done: threading.Event | None = None,
    ) -> None:
        try:
            self._relay_counted(source, target, direction, control)
        finally:
            if done is not None:
                done.set()

    def _relay_counted(
        self,
        source: socket.socket,
        target: socket.socket,
        direction: str,
        control: tuple[socket.socket, socket.socket],
    ) -> None:
        moved = 0
        try:
            while block := source.recv(65536):
                limit = self.cut_upload_after if direction == "up" else self.cut_download_after
                if limit is not None and moved + len(block) > limit:
                    with self._lock:
                        self.cut_upload_after = self.cut_download_after = None
                        self.cuts += 1
                    if self.cut_control:  # the data connection goes on; the control one is cut
                        for sock in control:
                            _reset(sock)
                    else:
                        block = block[: max(0, limit - moved)]
                        target.sendall(block)
                        self._count(direction, len(block))
                        break
                target.sendall(block)
                moved += len(block)
                self._count(direction, len(block))
            else:
                target.shutdown(socket.SHUT_WR)
                return
        except OSError:
            pass
        for sock in (source, target):
            _reset(sock)

    def _count(self, direction: str, count: int) -> None:
        with self._lock:
            if direction == "up":
                self.uploaded += count
            else:
                self.downloaded += count


@pytest.fixture
def relay(ftp_server: PureFtpd) -> Iterator[FtpRelay]:
    relay = FtpRelay(ftp_server.port)
    yield relay
    relay.close()


def backend_via(
    server: PureFtpd, port: int, folder: str | None = None, tls: bool = False
) -> FtpBackend:
    location = server.location(folder or server.folder(), tls=tls, port=port)
    context = tls_context(str(server.ca)) if tls else None
    return FtpBackend(parse_ftp_location(location), FTP_PASSWORD, context, timeout=10)


def stored(server: PureFtpd, backend: FtpBackend) -> Path:
    return server.data / parse_ftp_location(backend.location()).path.strip("/")


def files_under(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def settled_size(path: Path) -> int:
    """The size of a file the server may still be finishing writing, once it stops changing."""
    size = -1
    for _ in range(100):
        now = path.stat().st_size if path.exists() else 0
        if now == size:
            return now
        size = now
        time.sleep(0.1)
    return size


def big(size: int = RESUMABLE_ABOVE + 4 * 1024 * 1024) -> tuple[Handle, bytes]:
    data = os.urandom(size)
    return handle_for(ObjectKind.PACK, data), data


def test_a_cut_upload_resumes_sending_only_the_rest(ftp_server: PureFtpd, relay: FtpRelay) -> None:
    backend = backend_via(ftp_server, relay.port)
    backend.create()
    handle, data = big()
    relay.cut_upload_after = 5 * 1024 * 1024
    with pytest.raises(TransientBackendError):
        backend.save(handle, data)
    assert relay.cuts == 1
    assert list(backend.list(ObjectKind.PACK)) == [], "a half-written object is never listed"
    folder = stored(ftp_server, backend) / "packs" / handle.name[:2]
    partial = folder / f"{handle.name}.partial"
    have = settled_size(partial)
    assert 0 < have < len(data)
    relay.uploaded = 0
    backend.save(handle, data)
    assert relay.uploaded == len(data) - have, "only what the server lacked was sent again"
    assert backend.load(handle) == data
    assert files_under(folder) == [handle.name]
    backend.close()


def test_a_control_connection_cut_mid_upload_is_retried(
    ftp_server: PureFtpd, relay: FtpRelay
) -> None:
    inner = backend_via(ftp_server, relay.port)
    inner.create()
    backend = RetryingBackend(inner, base_delay=0.01)
    handle, data = big()
    relay.cut_control = True
    relay.cut_upload_after = 3 * 1024 * 1024
    backend.save(handle, data)
    assert relay.cuts == 1
    assert backend.load(handle) == data
    assert [info.handle for info in backend.list(ObjectKind.PACK)] == [handle]
    small = handle_for(ObjectKind.INDEX, b"small after the cut")
    backend.save(small, b"small after the cut")
    assert files_under(stored(ftp_server, inner) / "index") == [small.name]
    backend.close()


def test_a_small_upload_cut_leaves_nothing_visible_and_is_retried(
    ftp_server: PureFtpd, relay: FtpRelay
) -> None:
    inner = backend_via(ftp_server, relay.port)
    inner.create()
    data = os.urandom(2 * 1024 * 1024)
    handle = handle_for(ObjectKind.PACK, data)
    relay.cut_upload_after = 1024 * 1024
    with pytest.raises(TransientBackendError):
        inner.save(handle, data)
    assert list(inner.list(ObjectKind.PACK)) == []
    RetryingBackend(inner, base_delay=0.01).save(handle, data)
    assert inner.load(handle) == data
    assert [info.handle for info in inner.list(ObjectKind.PACK)] == [handle]
    inner.close()


@pytest.mark.parametrize("cut_control", [False, True], ids=["data", "control"])
def test_a_download_cut_is_transient_and_retried(
    ftp_server: PureFtpd, relay: FtpRelay, cut_control: bool
) -> None:
    inner = backend_via(ftp_server, relay.port)
    inner.create()
    handle, data = big(6 * 1024 * 1024)
    inner.save(handle, data)
    relay.cut_control = cut_control
    relay.cut_download_after = 2 * 1024 * 1024
    with pytest.raises(TransientBackendError):
        inner.load(handle)
    relay.cut_download_after = 1024 * 1024
    backend = RetryingBackend(inner, base_delay=0.01)
    assert backend.load(handle, 1000, 4 * 1024 * 1024) == data[1000 : 1000 + 4 * 1024 * 1024]
    assert relay.cuts == 2
    assert backend.load(handle) == data
    backend.close()


def test_a_listing_that_breaks_off_is_incomplete(ftp_server: PureFtpd, relay: FtpRelay) -> None:
    backend = backend_via(ftp_server, relay.port)
    backend.create()
    for i in range(120):
        payload = f"index {i}".encode()
        backend.save(handle_for(ObjectKind.INDEX, payload), payload)
    assert len(list(backend.list(ObjectKind.INDEX))) == 120
    relay.cut_download_after = 4000
    with pytest.raises(ListingIncomplete):
        list(RetryingBackend(backend, base_delay=0.01).list(ObjectKind.INDEX))
    assert relay.cuts == 1
    assert len(list(backend.list(ObjectKind.INDEX))) == 120
    backend.close()


@pytest.mark.parametrize("tls", [True, False], ids=["ftps", "ftp"])
def test_the_server_restarted_mid_run(ftp_server: PureFtpd, tls: bool) -> None:
    inner = backend_via(ftp_server, ftp_server.port, tls=tls)
    inner.create()
    backend = RetryingBackend(inner, base_delay=0.05)
    before = [os.urandom(1000 + i) for i in range(6)]
    for data in before:
        backend.save(handle_for(ObjectKind.SNAPSHOT, data), data)
    ftp_server.restart()  # every pooled connection is now dead
    after = [os.urandom(2000 + i) for i in range(6)]
    for data in after:
        backend.save(handle_for(ObjectKind.SNAPSHOT, data), data)
    for data in before + after:
        assert backend.load(handle_for(ObjectKind.SNAPSHOT, data)) == data
    assert len(list(backend.list(ObjectKind.SNAPSHOT))) == 12
    backend.close()


@pytest.fixture
def full_folder(ftp_server: PureFtpd) -> Iterator[str]:
    """A folder of the server on a 2 MiB tmpfs (mounting needs root, as in CI)."""
    name = f"full{ftp_server.folder().strip('/')}"
    mount = ftp_server.data / name
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,uid=65534,gid=65534", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        if os.environ.get("CI"):
            raise RuntimeError(f"cannot mount a tmpfs: {done.stderr.decode()}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield f"/{name}"
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


@pytest.mark.parametrize("size", [3 * 1024 * 1024, RESUMABLE_ABOVE + 1], ids=["small", "large"])
def test_a_full_target_is_storage_full_and_leaves_nothing(
    ftp_server: PureFtpd, full_folder: str, size: int
) -> None:
    backend = backend_via(ftp_server, ftp_server.port, folder=full_folder, tls=True)
    backend.create()
    handle, data = big(size)
    with pytest.raises(StorageFull):
        RetryingBackend(backend, base_delay=0.01).save(handle, data)
    assert list(backend.list(ObjectKind.PACK)) == []
    assert files_under(ftp_server.data / full_folder.strip("/")) == []
    small = handle_for(ObjectKind.KEY, b"a key still fits")
    backend.save(small, b"a key still fits")
    assert backend.load(small) == b"a key still fits"
    backend.close()


@pytest.mark.parametrize("tls", [True, False], ids=["ftps", "ftp"])
def test_ranged_reads_abort_and_keep_their_connection(
    ftp_server: PureFtpd, tls: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = backend_via(ftp_server, ftp_server.port, tls=tls)
    backend.create()
    handle, data = big(4 * 1024 * 1024)
    backend.save(handle, data)
    opened: list[object] = []
    connect = FtpBackend._connect

    def counted(self: FtpBackend) -> object:
        opened.append(self)
        return connect(self)

    monkeypatch.setattr(FtpBackend, "_connect", counted)
    for start in range(0, 3 * 1024 * 1024, 300 * 1024):
        assert backend.load(handle, start, 1000) == data[start : start + 1000]
    assert backend.load(handle) == data
    assert opened == [], "ABOR left the connection usable: no new connection was opened"
    backend.close()
