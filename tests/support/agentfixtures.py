"""What the agent's integration tests share: a running agent, and real database servers.

`AgentProcess` is one agent (`cairn agent run`) with its configuration file and state folder:
it starts and stops the process, reads its JSON log lines and its history database, and runs
the other `cairn agent` commands against the same file.

The database servers, for the dump tests: a PostgreSQL cluster and a MariaDB server, each made
fresh in a folder under /tmp and listening on a free loopback port, with real password
authentication over TCP. The session fixtures are `postgres` and `mariadb`: import
`postgres_fixture` / `mariadb_fixture` into a test module to use them.

As root (CI), PostgreSQL runs as the `postgres` system user (it refuses root) and MariaDB drops to
`mysql`; as anyone else both run as that user. Missing server binaries skip the tests locally but
fail them in CI (CI=true), where .ci/run installs them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.serverfixture import free_port

PG_PASSWORD = "pg sécret:with\\colon"
"""The superuser's password: a colon and a backslash test the PGPASSFILE escaping."""
MARIADB_PASSWORD = 'my "sécret" #1 \\ ok'
"""The backup user's password: quotes, a hash and a backslash test the option-file escaping."""


AGENT_DEADLINE_S = 240.0
"""How long a test waits for an agent to do something: only a hung test ever reaches it."""


def wait_for(condition: Callable[[], Any], what: str, deadline_s: float = AGENT_DEADLINE_S) -> Any:
    """Poll until `condition` returns something true, and return it (never a timing
    assertion: the deadline only stops a test that hangs)."""
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.1)


class AgentProcess:
    """One agent: `root/agent.toml`, the state folder `root/state`, and `cairn agent run` with
    its JSON log in `root/agent.stderr`. `env` is the environment of every `cairn` it starts
    (without a repository or passphrase of its own: the jobs name theirs)."""

    def __init__(self, root: Path, env: Mapping[str, str]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.config = root / "agent.toml"
        self.state = root / "state"
        self.stderr = root / "agent.stderr"
        self.base_env = {
            k: v
            for k, v in env.items()
            if k not in ("CAIRN_PASSWORD", "CAIRN_REPOSITORY", "CAIRN_TOKEN")
        }
        self.process: subprocess.Popen[bytes] | None = None

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.base_env, **extra}

    def write_config(self, body: str, *, jitter: str = "0s", host: str | None = None) -> None:
        """The file: an `[agent]` table with this state folder, then `body` (jobs, channels)."""
        head = f'[agent]\nstate = "{self.state}"\njitter = "{jitter}"\n'
        if host is not None:
            head += f'host = "{host}"\n'
        self.config.write_text(head + "\n" + body)

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        """`cairn agent run`, in the background; `env` adds to its environment."""
        argv = [
            sys.executable,
            "-m",
            "cairn.cli.main",
            "agent",
            "run",
            "--config",
            str(self.config),
        ]
        with self.stderr.open("ab") as err:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env=self.env(**env),
            )  # fmt: skip
        return self.process

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; its exit status. Its log never holds a traceback."""
        code = 0
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            code = self.process.wait(timeout=AGENT_DEADLINE_S)
        if self.stderr.exists():
            assert "Traceback" not in self.stderr.read_text()
        return code

    def kill(self) -> None:
        """For a fixture's teardown: a test that failed may leave it running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The agent's JSON log lines (all, or those of one event), in order."""
        if not self.stderr.exists():
            return []
        found = []
        for line in self.stderr.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found

    def ended(self, job: str, outcome: str | None = None) -> list[dict[str, Any]]:
        """The job's `run_ended` log lines (of one outcome)."""
        return [
            e
            for e in self.events("run_ended")
            if e.get("job") == job and (outcome is None or e.get("outcome") == outcome)
        ]

    def rows(self, job: str | None = None) -> list[dict[str, Any]]:
        """The history database's runs (of one job), oldest first."""
        db = self.state / "history.db"
        if not db.exists():
            return []
        query = "SELECT * FROM runs WHERE job = ? OR ? IS NULL ORDER BY id"
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in conn.execute(query, (job, job))]
            except sqlite3.OperationalError:
                return []  # the agent is creating it

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """`cairn agent ARGS --config FILE`; never a traceback; `check`: exit 0."""
        done = subprocess.run(
            [sys.executable, "-m", "cairn.cli.main", "agent", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=300,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def status(self) -> dict[str, Any]:
        """`cairn agent status --json`, which must succeed."""
        parsed: dict[str, Any] = json.loads(self.cli("status", "--json", check=True).stdout)
        return parsed


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def missing(what: str) -> None:
    """Skip; the tests that need a database server are marked `required`, so in CI the skip
    is a failure (tests/support/required.py), never a silently smaller suite."""
    pytest.skip(f"{what} not installed (Debian: apt-get install -y postgresql mariadb-server)")


def postgresql_bindir() -> Path | None:
    """Debian keeps initdb and postgres out of PATH, in /usr/lib/postgresql/<version>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parts[-3]
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def mariadb_server_binary() -> str | None:
    for name in ("mariadbd", "mysqld"):
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if found:
            return found
    return None


def postgres_missing() -> list[str]:
    lacks = []
    if postgresql_bindir() is None:
        lacks.append("PostgreSQL server (initdb, postgres)")
    if not all(shutil.which(tool) for tool in ("pg_dump", "pg_dumpall", "psql")):
        lacks.append("PostgreSQL client (pg_dump, pg_dumpall, psql)")
    return lacks


def mariadb_missing() -> list[str]:
    lacks = []
    if mariadb_server_binary() is None or not shutil.which("mariadb-install-db"):
        lacks.append("MariaDB server (mariadbd, mariadb-install-db)")
    if not shutil.which("mariadb") or not shutil.which("mariadb-dump"):
        lacks.append("MariaDB client (mariadb, mariadb-dump)")
    return lacks


def servers_missing() -> list[str]:
    """What the dump tests need and this machine lacks."""
    return postgres_missing() + mariadb_missing()


def _server_folder(prefix: str, owner: str) -> Path:
    """A fresh folder under /tmp (pytest's own is 0700 root, out of reach of a system user)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(owner)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    return folder


def _as(user: str, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(argv, capture_output=True, timeout=120, check=False, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr.decode()}")
    return done  # type: ignore[no-any-return]


@dataclass
class PostgresServer:
    folder: Path
    port: int
    user: str = "postgres"
    password: str = PG_PASSWORD

    def password_file(self, where: Path) -> Path:
        path = where / "pg.pass"
        path.write_text(self.password + "\n")
        path.chmod(0o600)
        return path

    def env(self, database: str = "postgres") -> dict[str, str]:
        """For the tests' own psql: the database from the environment is taken literally."""
        return {
            **os.environ,
            "PGPASSWORD": self.password,
            "PGCONNECT_TIMEOUT": "10",
            "PGDATABASE": database,
        }

    def psql(self, sql: str | bytes, database: str = "postgres") -> bytes:
        """Run SQL (sent on stdin, so it may be large) as the superuser over TCP."""
        argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"]
        argv += ["-p", str(self.port), "-U", self.user, "-At", "-f", "-"]
        data = sql.encode() if isinstance(sql, str) else sql
        return _run(argv, env=self.env(database), input=data).stdout

    def load(self, dump: Path, database: str = "postgres") -> None:
        argv = [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        argv += ["-U", self.user, "-f", str(dump)]
        _run(argv, env=self.env(database))


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    if postgres_missing():
        missing(", ".join(postgres_missing()))
    bindir = postgresql_bindir()
    assert bindir is not None
    folder = _server_folder("cairn-pg-", "postgres")
    pwfile = folder / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres")
    data = folder / "data"
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}"]
    _run(
        _as("postgres", [*initdb, "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"])
    )
    server = PostgresServer(folder, free_port())
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={server.port} "
        f"-c unix_socket_directories={folder} -c fsync=off -c full_page_writes=off"
    )
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log")]
    _run(_as("postgres", [*pg_ctl, "-w", "-t", "60", "-o", options, "start"]))
    try:
        yield server
    finally:
        subprocess.run(
            _as("postgres", [*pg_ctl, "-m", "fast", "stop"]), capture_output=True, check=False
        )
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class MariadbServer:
    folder: Path
    port: int
    user: str = "backup"
    password: str = MARIADB_PASSWORD

    @property
    def socket(self) -> Path:
        return self.folder / "sock"

    def password_file(self, where: Path) -> Path:
        path = where / "my.pass"
        path.write_text(self.password + "\n")
        path.chmod(0o600)
        return path

    def sql(self, sql: str | bytes, database: str | None = None) -> bytes:
        """Run SQL (sent on stdin, so it may be large) as root over the socket; the dumps use
        `backup` over TCP."""
        argv = [*self.client(), "-N", "-B", *([database] if database else [])]
        data = sql.encode() if isinstance(sql, str) else sql
        return _run(argv, input=data).stdout

    def client(self) -> list[str]:
        return [
            "mariadb",
            "--no-defaults",
            f"--socket={self.socket}",
            "-uroot",
            "--default-character-set=utf8mb4",
            "--max-allowed-packet=64M",
        ]

    def load(self, dump: Path, database: str | None = None) -> None:
        argv = [*self.client(), *([database] if database else [])]
        with dump.open("rb") as f:
            _run(argv, stdin=f)


_MARIADB_FAST = [
    "--innodb-flush-method=nosync",
    "--innodb-doublewrite=0",
    "--innodb-log-file-size=8M",
    "--innodb-buffer-pool-size=32M",
    "--skip-name-resolve",
]


@contextlib.contextmanager
def running_mariadb() -> Iterator[MariadbServer]:
    if mariadb_missing():
        missing(", ".join(mariadb_missing()))
    binary = mariadb_server_binary()
    assert binary is not None
    folder = _server_folder("cairn-mariadb-", "mysql")
    data = folder / "data"
    as_user = ["--user=mysql"] if os.geteuid() == 0 else []
    install = ["mariadb-install-db", "--no-defaults", f"--datadir={data}", *as_user]
    _run([*install, "--auth-root-authentication-method=normal", "--skip-test-db", *_MARIADB_FAST])
    server = MariadbServer(folder, free_port())
    argv = [binary, "--no-defaults", f"--datadir={data}", f"--socket={server.socket}"]
    argv += [f"--port={server.port}", "--bind-address=127.0.0.1", f"--pid-file={folder / 'pid'}"]
    argv += [f"--log-error={folder / 'error.log'}", "--skip-log-bin", *as_user, *_MARIADB_FAST]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_mariadb(server, process)
        user = f"'{server.user}'@'127.0.0.1'"
        quoted = server.password.replace("\\", "\\\\").replace("'", "\\'")
        server.sql(f"CREATE USER {user} IDENTIFIED BY '{quoted}'; GRANT ALL ON *.* TO {user}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_mariadb(server: MariadbServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    argv = ["mariadb", "--no-defaults", f"--socket={server.socket}", "-uroot", "-e", "SELECT 1"]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (server.folder / "error.log").read_text(errors="replace")
            raise AssertionError(f"mariadbd exited {process.returncode}:\n{log}")
        if subprocess.run(argv, capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("mariadbd did not accept connections within 60 s")


@pytest.fixture(scope="session", name="postgres")
def postgres_fixture() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session", name="mariadb")
def mariadb_fixture() -> Iterator[MariadbServer]:
    with running_mariadb() as server:
        yield server
