"""Real storage servers for the backend tests, started once per test session.

Each backend has its own clearly named part; every server listens on loopback only, on ports
found free at start, with its data in its own temporary folder, and stops at the end. When `CI`
is set and a server's software is missing, the fixture fails instead of skipping.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        raise RuntimeError(f"{what} is not installed, and CI must run these tests")
    pytest.skip(f"{what} is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_range(count: int) -> tuple[int, int]:
    """`count` consecutive free loopback ports (for a passive port range)."""
    for _ in range(200):
        base = free_port()
        if base + count > 65000:
            continue
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base, base + count - 1
    raise RuntimeError("no range of free ports found")


def _wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start ({process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port}")


# ---- FTP: pure-ftpd (Debian) ----------------------------------------------------------------

FTP_USER = "cairn"
FTP_PASSWORD = "ftp-test-password"


@dataclass
class PureFtpd:
    """pure-ftpd on loopback with one virtual user (a PureDB of its own: no system user is
    added), mapped to the existing `nobody` account, chrooted to `data`; explicit TLS (AUTH TLS)
    with a self-signed certificate in `ca` (what CAIRN_FTP_CA names)."""

    base: Path
    data: Path
    ca: Path
    port: int = 0
    passive: tuple[int, int] = (0, 0)
    process: subprocess.Popen[bytes] | None = None
    folders: int = field(default=0)
    extra: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        return [
            shutil.which("pure-ftpd") or "pure-ftpd",
            "-S",
            f"127.0.0.1,{self.port}",
            "-l",
            f"puredb:{self.base / 'users.pdb'}",
            "-E",  # no anonymous logins
            "-A",  # every user chrooted to their folder
            "-H",  # no DNS look-ups
            "-p",
            f"{self.passive[0]}:{self.passive[1]}",
            "-Y",
            "1",  # TLS offered, plain allowed (the ftp:// tests)
            "-2",
            f"{self.base / 'cert.pem'},{self.base / 'key.pem'}",
            "-c",
            "50",
            "-C",
            "50",
            *self.extra,
        ]

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_listening(self.port, self.process, "pure-ftpd")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # pure-ftpd serves each session in a child process; end those this server forked.
        if self.process is not None:
            subprocess.run(
                ["pkill", "-TERM", "-P", str(self.process.pid)],
                check=False,
            )
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def folder(self) -> str:
        """A fresh, empty folder's path as the FTP user sees it (made on first save/create)."""
        self.folders += 1
        return f"/t{self.folders}"

    def location(self, path: str, tls: bool = True, port: int | None = None) -> str:
        scheme = "ftps" if tls else "ftp"
        return f"{scheme}://{FTP_USER}@127.0.0.1:{port or self.port}{path}"

    def environ(self) -> dict[str, str]:
        return {"CAIRN_FTP_PASSWORD": FTP_PASSWORD, "CAIRN_FTP_CA": str(self.ca)}


def start_pure_ftpd(base: Path, data: Path) -> PureFtpd:
    """Set up and start pure-ftpd under `base`, serving `data` (which `nobody` must own)."""
    if shutil.which("pure-ftpd") is None or shutil.which("pure-pw") is None:
        _missing("pure-ftpd (Debian package pure-ftpd)")
    nobody = pwd.getpwnam("nobody")
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(base / "key.pem"),
            "-out",
            str(base / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    # The user's line written directly, with a SHA-512 crypt hash: pure-pw's own argon2 hash
    # costs seconds of CPU per login on a busy machine.
    hashed = (
        subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"],
            input=FTP_PASSWORD.encode(),
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .strip()
    )
    (base / "users.passwd").write_text(
        f"{FTP_USER}:{hashed}:{nobody.pw_uid}:{nobody.pw_gid}::{data}/./::::::::::::\n"
    )
    subprocess.run(
        ["pure-pw", "mkdb", str(base / "users.pdb"), "-f", str(base / "users.passwd")],
        check=True,
        capture_output=True,
    )
    server = PureFtpd(base=base, data=data, ca=base / "cert.pem")
    server.port = free_port()
    server.passive = _free_range(200)  # each transfer takes one; closed ones linger in TIME_WAIT
    server.start()
    return server


@pytest.fixture(scope="session")
def ftp_server() -> Iterator[PureFtpd]:
    """pure-ftpd for the whole session. Its data folder is made with mkdtemp outside pytest's
    (root-only) temporary folders, so that `nobody` can reach it."""
    base = Path(tempfile.mkdtemp(prefix="cairn-ftpd-"))
    data = base / "data"
    data.mkdir()
    os.chmod(base, 0o755)
    server = start_pure_ftpd(base, data)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
