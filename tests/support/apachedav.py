"""Apache httpd with mod_dav (Debian's apache2) as a WebDAV server for the tests and benches.

Why Apache beside wsgidav: it is the WebDAV server most shares sit on (Nextcloud, NAS boxes,
plain Debian), written in C, so it is the fast server a speed figure needs (wsgidav through a
WSGI bridge bounds a backup at ~15-20 MiB/s), and its answers differ from wsgidav's in places
(status codes of MOVE, MKCOL, PROPFIND hrefs).

Each `ApacheDav` is one httpd in the foreground with a ServerRoot of its own (config, PidFile,
DavLockDB, logs, htpasswd/htdigest file) on a free loopback port, no `a2enmod`, no system files
touched. Run by root, httpd is started as `nobody` through `setpriv` (httpd refuses to serve as
root), so its folders are made with mkdtemp outside pytest's root-only temporary folders and
handed to `nobody`; run by anyone else, it runs as that user.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.notifyfixtures import Certificates, make_certificates
from tests.support.storageservers import missing_server

HTTPD = "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
USER = "cairn"
PASSWORD = "dav secret"
REALM = "cairn-tests"
_folders = itertools.count()
_MODULES = [
    "mpm_event", "authn_core", "authn_file", "authz_core", "authz_user", "auth_basic",
    "auth_digest", "dav", "dav_fs", "mime", "ssl", "socache_shmcb",
]  # fmt: skip


def installed() -> bool:
    """Whether Debian's apache2 (with mod_dav_fs) is here."""
    return Path(HTTPD).exists() and (MODULES / "mod_dav_fs.so").exists()


@dataclass
class ApacheDav:
    """httpd serving `base/share` at `/`, basic or digest authentication, http or https."""

    base: Path
    auth: str = "basic"
    certs: Certificates | None = None
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        """The folder served (tests look into it)."""
        return self.base / "share"

    @property
    def scheme(self) -> str:
        return "https" if self.certs is not None else "http"

    def url(self, folder: str = "", port: int | None = None, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{port or self.port}/{folder}"

    def location(self, folder: str = "", port: int | None = None) -> str:
        return f"webdav:{self.url(folder, port)}"

    def fresh_folder(self) -> str:
        return f"a{next(_folders)}-{os.getpid()}"

    def environ(self) -> dict[str, str]:
        env = {"CAIRN_WEBDAV_USER": USER, "CAIRN_WEBDAV_PASSWORD": PASSWORD}
        if self.certs is not None:
            env["CAIRN_WEBDAV_CA"] = str(self.certs.ca_file)
        return env

    @property
    def pid(self) -> int | None:
        """httpd's parent process, also the id of its process group (its workers)."""
        return self._process.pid if self._process is not None else None

    def log(self) -> str:
        logs = [self.base / "stdout.log", self.base / "error.log"]
        return "".join(p.read_text(errors="replace") for p in logs if p.exists())

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.base / "run").mkdir(exist_ok=True)
        self.port = self.port or _free_port()
        if self.auth == "digest":
            # htdigest's format is MD5 by definition (RFC 2617 HA1)
            digest = hashlib.md5(f"{USER}:{REALM}:{PASSWORD}".encode(), usedforsecurity=False)
            ha1 = digest.hexdigest()
            (self.base / "users").write_text(f"{USER}:{REALM}:{ha1}\n")
        else:
            hashed = subprocess.run(
                ["openssl", "passwd", "-apr1", "-stdin"],
                input=PASSWORD.encode(),
                capture_output=True,
                check=True,
            ).stdout.decode()
            (self.base / "users").write_text(f"{USER}:{hashed.strip()}\n")
        (self.base / "httpd.conf").write_text(self._config())
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for path in [self.base, *self.base.rglob("*")]:
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            os.chmod(self.base, 0o755)

    def _config(self) -> str:
        b = self.base
        lines = [f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in _MODULES]
        lines += [
            f"ServerRoot {b}",
            "ServerName 127.0.0.1",
            f"Listen 127.0.0.1:{self.port}",
            f"PidFile {b}/run/httpd.pid",
            f"ErrorLog {b}/error.log",
            "LogLevel warn",
            f"DavLockDB {b}/run/davlock",
            f"Mutex file:{b}/run default",
            f"DefaultRuntimeDir {b}/run",
            "KeepAlive On",
            "MaxKeepAliveRequests 0",
            "KeepAliveTimeout 30",
            "Timeout 60",
            "LimitRequestBody 0",
            "ThreadsPerChild 25",
            "MaxRequestWorkers 50",
            "ServerLimit 2",
            "TypesConfig /dev/null",
            f'DocumentRoot "{b / "share"}"',
            f'<Directory "{b / "share"}">',
            "  Dav On",
            "  Options None",
            "  AllowOverride None",
            f"  AuthType {'Digest' if self.auth == 'digest' else 'Basic'}",
            f'  AuthName "{REALM}"',
            f"  AuthUserFile {b}/users",
            "  Require valid-user",
            "</Directory>",
        ]
        if self.certs is not None:
            lines += [
                f"SSLSessionCache shmcb:{b}/run/ssl_scache(512000)",
                "SSLEngine on",
                f"SSLCertificateFile {self.certs.cert_file}",
                f"SSLCertificateKeyFile {self.certs.key_file}",
            ]
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        command = [HTTPD, "-f", str(self.base / "httpd.conf"), "-DFOREGROUND"]
        if os.geteuid() == 0:
            command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
        return command

    def start(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}
        with (self.base / "stdout.log").open("ab") as out:
            self._process = subprocess.Popen(
                self.command(), stdout=out, stderr=out, env=env, start_new_session=True
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"apache2 exited: {self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"apache2 did not listen in 20 s: {self.log()}")

    def stop(self) -> None:
        if self._process is None:
            return
        # SIGTERM to httpd's parent ends its children at once ("graceful" would wait).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def apache_dav(
    auth: str = "basic", tls: bool = True, parent: Path | None = None
) -> Iterator[ApacheDav]:
    """A running Apache mod_dav in a fresh folder of its own (in `parent`, else the system's
    temporary folder), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="cairn-apache-", dir=parent))
    certs = make_certificates(base / "certs") if tls else None
    server = ApacheDav(base, auth, certs)
    try:
        server.setup()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def apache_webdav_server() -> Iterator[ApacheDav]:
    """One Apache mod_dav per session (per xdist worker): TLS with a private CA, basic
    authentication. Missing apache2 skips, and fails in CI (.ci/run installs it)."""
    if not installed():
        missing_server("Apache httpd with mod_dav (Debian packages apache2, apache2-utils)")
    with apache_dav(auth="basic", tls=True) as server:
        yield server
