"""Real storage servers for the backends' tests, each started once per test session (per xdist
worker) in its own process, on a free loopback port, in its own temporary folder.

When `CI` is set and a server's software is missing, its fixture raises instead of skipping: a
suite must not shrink silently on the machine that proves it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from notifyfixtures import Certificates, make_certificates

_HERE = Path(__file__).resolve().parent


def require(available: bool, what: str) -> None:
    """Skip a test whose server is missing; in CI, fail it."""
    if available:
        return
    if os.environ.get("CI"):
        raise RuntimeError(f"{what} is missing, and CI must not skip its suite")
    pytest.skip(f"{what} is not installed")


# ---- WebDAV: wsgidav -----------------------------------------------------------------------

WEBDAV_USER = "cairn"
WEBDAV_PASSWORD = "dav secret"
_webdav_folders = itertools.count()


@dataclass
class WebDavServer:
    """wsgidav serving `root`, in a process of its own (tests/webdavd.py)."""

    root: Path
    auth: str = "digest"
    certs: Certificates | None = None
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def scheme(self) -> str:
        return "https" if self.certs is not None else "http"

    def url(self, folder: str = "", port: int | None = None, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{port or self.port}/{folder}"

    def location(self, folder: str = "", port: int | None = None) -> str:
        return f"webdav:{self.url(folder, port)}"

    def fresh_folder(self) -> str:
        """A folder name no test used before (the backend's `create` makes it)."""
        return f"t{next(_webdav_folders)}-{os.getpid()}"

    def environ(self) -> dict[str, str]:
        """What a client's environment needs to log in and trust the server's certificate."""
        env = {"CAIRN_WEBDAV_USER": WEBDAV_USER, "CAIRN_WEBDAV_PASSWORD": WEBDAV_PASSWORD}
        if self.certs is not None:
            env["CAIRN_WEBDAV_CA"] = str(self.certs.ca_file)
        return env

    def start(self) -> None:
        portfile = self.root.parent / f"{self.root.name}.port"
        portfile.unlink(missing_ok=True)
        argv = [sys.executable, str(_HERE / "webdavd.py"), str(self.root), str(portfile)]
        argv += ["--port", str(self.port), "--auth", self.auth]
        argv += ["--user", WEBDAV_USER, "--password", WEBDAV_PASSWORD]
        if self.certs is not None:
            argv += ["--cert", str(self.certs.cert_file), "--key", str(self.certs.key_file)]
        log = self.root.parent / f"{self.root.name}.log"
        with log.open("ab") as out:
            self._process = subprocess.Popen(argv, stdout=out, stderr=out)
        deadline = time.monotonic() + 30
        while not portfile.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"wsgidav did not start; see {log}")
            time.sleep(0.05)
        self.port = int(portfile.read_text())

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port (connections open meanwhile break)."""
        self.stop()
        self.start()


@contextlib.contextmanager
def webdav_server(
    folder: Path, auth: str = "digest", tls: bool = True, root: Path | None = None
) -> Iterator[WebDavServer]:
    """wsgidav on a free loopback port, over TLS with a private CA unless `tls` is False."""
    require(importlib.util.find_spec("wsgidav") is not None, "wsgidav (pip install wsgidav)")
    share = root or folder / "share"
    share.mkdir(parents=True, exist_ok=True)
    certs = make_certificates(folder / "certs") if tls else None
    server = WebDavServer(share, auth, certs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def webdav_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDavServer]:
    """One wsgidav per session: TLS, digest authentication (basic accepted too)."""
    with webdav_server(tmp_path_factory.mktemp("webdav")) as server:
        yield server


# ---- a TCP relay that breaks connections ---------------------------------------------------


class CuttingRelay:
    """A TCP relay on loopback in front of `target_port`. It counts the bytes it relays each way
    (`sent_up`: client to server, `sent_down`); with `cut_after` set, it closes the connection
    whose bytes would take the count of `direction` past it, once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut_after: int | None = None
        self.direction = "up"
        self.sent_up = 0
        self.sent_down = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, (upstream, "up"))
        selector.register(upstream, selectors.EVENT_READ, (client, "down"))
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    target, direction = key.data
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    allowed = self._count(direction, len(data))
                    target.sendall(data[:allowed])
                    if allowed < len(data):
                        return  # cut here: what passed the limit is dropped with the connection
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            upstream.close()

    def _count(self, direction: str, size: int) -> int:
        """Count bytes relayed; how many of `size` may pass (fewer: cut after them)."""
        with self._lock:
            done = self.sent_up if direction == "up" else self.sent_down
            limit = self.cut_after if direction == self.direction else None
            allowed = size
            if limit is not None and done + size > limit:
                allowed = max(0, limit - done)
                self.cut_after = None  # one cut: the retry goes through
                self.cuts += 1
            if direction == "up":
                self.sent_up += allowed
            else:
                self.sent_down += allowed
            return allowed
