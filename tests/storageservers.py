"""Real storage servers for the backend tests, each started once per test session (or per test,
where a test must restart or starve it), on free loopback ports, in its own temporary folder.

A suite whose server software is missing skips on a developer's machine and FAILS in CI (`CI` set
in the environment): coverage must never shrink silently.

Also here: `CuttingRelay`, a TCP relay on loopback that counts the bytes it forwards and can cut
every connection at once, or after a given number of bytes upstream (a connection broken in the
middle of an upload or a download).
"""

from __future__ import annotations

import getpass
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest


def require(what: str, present: bool) -> None:
    """Skip when `what` is missing, except in CI, where a missing server is a failure."""
    if present:
        return
    if os.environ.get("CI"):
        raise RuntimeError(f"{what} is missing: .ci/run must install it")
    pytest.skip(f"{what} is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port}")


# ---- SFTP: Debian's OpenSSH sshd -----------------------------------------------------------

SSHD = "/usr/sbin/sshd"
SFTP_PASSWORD = "sftp password 13"


@dataclass
class SshServer:
    """One OpenSSH sshd on a loopback port, with its own host key, an authorized user key made
    here, and a known_hosts file that names the host key (the client side of a test uses these
    through CAIRN_SFTP_KEY and CAIRN_SFTP_KNOWN_HOSTS, never the user's ~/.ssh).

    Password authentication needs a password for the login user, which root on a test machine has
    none of: where the process may, sshd runs in a private mount namespace in which a shadow file
    made here (root's password: SFTP_PASSWORD) is bound over /etc/shadow; the machine's users are
    never touched. `passwords` says whether that worked.
    """

    folder: Path
    port: int = 0
    user: str = ""
    passwords: bool = False
    _process: subprocess.Popen[bytes] | None = None

    @property
    def key(self) -> Path:
        return self.folder / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"

    @property
    def host_public_key(self) -> str:
        return (self.folder / "host_key.pub").read_text().split()[1]

    def location(self, path: str | Path, port: int | None = None) -> str:
        return f"sftp://{self.user}@127.0.0.1:{port or self.port}{path}"

    def env(self, **extra: str) -> dict[str, str]:
        """What a client process needs to reach this server with the fixture's key."""
        return {
            "CAIRN_SFTP_KEY": str(self.key),
            "CAIRN_SFTP_KNOWN_HOSTS": str(self.known_hosts),
            **extra,
        }

    def setup(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.port = self.port or free_port()
        _keygen(self.folder / "host_key")
        _keygen(self.key)
        (self.folder / "authorized_keys").write_text((self.folder / "client_key.pub").read_text())
        self.write_known_hosts([self.port])
        self._write_config()

    def write_known_hosts(self, ports: list[int], key: str | None = None) -> None:
        line = f"ssh-ed25519 {key or self.host_public_key}\n"
        self.known_hosts.write_text("".join(f"[127.0.0.1]:{p} {line}" for p in ports))

    def _write_config(self) -> None:
        root = self.folder
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
            f"PidFile {root / 'sshd.pid'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
            "UsePAM no\nStrictModes no\nPermitRootLogin yes\nPubkeyAuthentication yes\n"
            "PasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
            "Subsystem sftp internal-sftp\nMaxSessions 64\nMaxStartups 100:30:200\n"
            "LogLevel ERROR\nUseDNS no\n"
        )

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        command = [SSHD, "-D", "-e", "-f", str(self.folder / "sshd_config")]
        log = (self.folder / "sshd.log").open("ab")
        self.passwords = self._can_fake_shadow()
        if self.passwords:
            shadow = self.folder / "shadow"
            command = [
                "unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/shadow && exec "$@"', str(shadow), *command,
            ]  # fmt: skip
        with log:
            self._process = subprocess.Popen(command, stdout=log, stderr=log)
        wait_for_port(self.port, self._process, "sshd")

    def stop(self) -> None:
        """Stop sshd and end every session it serves (each runs in a child process of its
        own, which outlives the listener otherwise), as a restart of the machine would."""
        if self._process is not None:
            for pid in _descendants(self._process.pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def _can_fake_shadow(self) -> bool:
        if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("openssl") is None:
            return False
        hashed = (
            subprocess.run(
                ["openssl", "passwd", "-6", "-stdin"],
                input=SFTP_PASSWORD.encode(),
                capture_output=True,
                check=True,
            )
            .stdout.decode()
            .strip()
        )
        lines = [f"{self.user}:{hashed}:20000:0:99999:7:::"]
        with suppress(OSError):
            lines += [
                line
                for line in Path("/etc/shadow").read_text().splitlines()
                if not line.startswith(f"{self.user}:")
            ]
        (self.folder / "shadow").write_text("\n".join(lines) + "\n")
        probe = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
        )
        return probe.returncode == 0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _keygen(path: Path) -> None:
    if path.exists():
        return
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cairn-test", "-f", str(path)],
        check=True,
    )


@contextmanager
def ssh_server(folder: Path, port: int = 0) -> Iterator[SshServer]:
    """A running sshd; stopped on exit."""
    require("OpenSSH sshd (Debian openssh-server)", Path(SSHD).exists())
    server = SshServer(folder, port=port)
    server.setup()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """One sshd for the whole session (each xdist worker has its own)."""
    with ssh_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


# ---- a relay that breaks connections --------------------------------------------------------


class CuttingRelay:
    """Forwards loopback TCP connections to `target_port`, counting the bytes sent upstream
    (client to server) and downstream. `cut_after(n)` breaks every connection once `n` more
    bytes have gone in the direction named; `cut()` breaks them now. It keeps listening, so a
    retry connects again (through the relay, counted)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.upstream = 0
        self.downstream = 0
        self._budget: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def cut_after(self, count: int, direction: str = "up") -> None:
        with self._lock:
            self._budget = (direction, count)

    def cut(self) -> None:
        with self._lock:
            self._budget = None
            for s in self._sockets:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.cut()

    def _accept(self) -> None:
        with self._listener:
            while not self._stop.is_set():
                try:
                    client, _ = self._listener.accept()
                except TimeoutError:
                    continue
                try:
                    server = socket.create_connection(("127.0.0.1", self.target_port))
                except OSError:
                    client.close()
                    continue
                with self._lock:
                    self._sockets += [client, server]
                threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, (server, "up"))
        selector.register(server, selectors.EVENT_READ, (client, "down"))
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    peer, direction = key.data
                    if not self._account(direction, len(data)):
                        self.cut()
                        return
                    peer.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            server.close()

    def _account(self, direction: str, count: int) -> bool:
        """Count `count` bytes; False when they pass the budget (the connection must break)."""
        with self._lock:
            if direction == "up":
                self.upstream += count
            else:
                self.downstream += count
            if self._budget is None or self._budget[0] != direction:
                return True
            left = self._budget[1] - count
            self._budget = (direction, left)
            return left >= 0
