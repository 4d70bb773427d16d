"""Issue #5's "done when", end to end, with real parts only.

Two agents (`cairn agent run`, each with its own config file, state and host name) back up on
their own schedules to one real server over TLS. The second reaches the server through a TCP relay
the test cuts and restores: cut off from the network and brought back, it catches up at once. A job
whose `before` hook fails produces a failure e-mail that the test reads from a real SMTP server
(aiosmtpd, STARTTLS + AUTH). A PostgreSQL dump job's data, restored from the server, loads into a
fresh database with every row. `cairn agent status` tells the truth: it agrees with the agent's
history, the repository's snapshots and what the server was told.

No timing assertions: each step waits for what it needs with a generous deadline.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.server.auth import Role
from tests.support.agentfixtures import AgentProcess, PostgresServer, wait_for
from tests.support.agentfixtures import postgres_fixture as postgres_fixture
from tests.support.clitools import Cairn
from tests.support.notifyfixtures import SMTP_PASSWORD, SMTP_USER, make_certificates, smtp_server
from tests.support.serverfixture import RunningServer, free_port, running_server

PASSPHRASE = "correct horse"


class Relay:
    """A TCP relay on loopback: the second agent's only way to the server. `cut` closes the
    listener and every connection (new ones are refused), `restore` listens again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> None:
        self._stop.clear()
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for s in self._sockets:
                s.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while not self._stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port))
                except OSError:
                    client.close()
                    continue
                with self._lock:
                    self._sockets += [client, upstream]
                threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            a.close()
            b.close()


class Machine(AgentProcess):
    """One machine: its agent (agentfixtures.AgentProcess), host name, passphrase file and
    pinned certificates."""

    def __init__(self, root: Path, host: str) -> None:
        env = Cairn(root / "unused", cache=root / "cache").env(XDG_CONFIG_HOME=str(root / "home"))
        super().__init__(root, env)
        self.host = host
        self.password = root / "pass"
        self.password.write_text(PASSPHRASE + "\n")

    def write(self, text: str) -> None:
        self.write_config(text, host=self.host)


def job(name: str, location: str, password: Path, token: Path, paths: list[Path], **kw: str) -> str:
    lines = [
        "[[job]]",
        f'name = "{name}"',
        f'repository = "{location}"',
        f'password_file = "{password}"',
        f'token_file = "{token}"',
        f"paths = {json.dumps([str(p) for p in paths])}",
    ]
    lines += [f"{key} = {value}" for key, value in kw.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "server") as running:
        yield running


@pytest.mark.required("a PostgreSQL server")
def test_two_agents_back_up_catch_up_alert_dump_and_tell_the_truth(
    server: RunningServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    server.tenant("acme")
    admin_token = server.token("acme", Role.TENANT_ADMIN)
    owner = Cairn(server.location("acme"), cache=tmp_path / "owner-cache")
    owner_env = owner.env(CAIRN_TOKEN=admin_token, XDG_CONFIG_HOME=str(tmp_path / "owner-home"))
    owner_env["CAIRN_PASSWORD"] = PASSPHRASE
    owner.run("init", env=owner_env)

    def backup_token(where: Path) -> Path:
        where.write_text(server.token("acme", Role.BACKUP) + "\n")
        return where

    # the database the office machine dumps before its backup
    postgres.psql("CREATE DATABASE shop")
    rows = [(i, f"item {i} ✓ 'quoted'", os.urandom(64).hex()) for i in range(200)]
    values = ",".join(f"({i}, $${name}$$, '\\x{blob}'::bytea)" for i, name, blob in rows)
    postgres.psql("CREATE TABLE items (id int PRIMARY KEY, name text, blob bytea)", database="shop")
    postgres.psql(f"INSERT INTO items VALUES {values}", database="shop")  # noqa: S608

    certs = make_certificates(tmp_path / "certs")
    relay = Relay(server.port)
    relay.restore()
    office, laptop = (
        Machine(tmp_path / "office", "office"),
        Machine(tmp_path / "laptop", "laptop"),
    )
    try:
        with smtp_server(certs, "starttls") as mail:
            smtp_pass = tmp_path / "smtp.pass"
            smtp_pass.write_text(SMTP_PASSWORD + "\n")
            site = tmp_path / "site"
            site.mkdir()
            (site / "index.html").write_text("<h1>shop</h1>\n" * 1000)
            office_token = backup_token(tmp_path / "office.token")
            location = server.location("acme")
            pg_pass = postgres.password_file(tmp_path)
            dump = f"""
[[job.dump]]
kind = "postgresql"
database = "shop"
host = "127.0.0.1"
port = {postgres.port}
user = "{postgres.user}"
password_file = "{pg_pass}"
"""
            failing_hook = """
[[job.hook]]
when = "before"
run = ["sh", "-c", "echo no snapshot volume >&2; exit 3"]
"""
            email = f"""
[[notify]]
kind = "email"
smtp = "127.0.0.1:{mail.port}"
security = "starttls"
user = "{SMTP_USER}"
password_file = "{smtp_pass}"
ca_file = "{certs.ca_file}"
from = "cairn@office.example"
to = ["ops@example.org"]
on = ["failure", "recovery"]
"""
            every = {"retries": "0"}
            office.write(
                job(
                    "site",
                    location,
                    office.password,
                    office_token,
                    [site],
                    schedule='{ every = "3s" }',
                    **every,
                )
                + job(
                    "db",
                    location,
                    office.password,
                    office_token,
                    [tmp_path / "empty-db"],
                    schedule='{ every = "1h" }',
                    **every,
                )
                + dump
                + job(
                    "broken",
                    location,
                    office.password,
                    office_token,
                    [site],
                    schedule='{ every = "1h" }',
                    **every,
                )
                + failing_hook
                + email
            )
            (tmp_path / "empty-db").mkdir()

            docs = tmp_path / "docs"
            docs.mkdir()
            (docs / "thesis.txt").write_text("chapter one\n" * 2000)
            laptop_location = f"cairns://127.0.0.1:{relay.port}/acme"
            laptop.write(
                job(
                    "docs",
                    laptop_location,
                    laptop.password,
                    backup_token(tmp_path / "laptop.token"),
                    [docs],
                    schedule='{ when_reachable = true, every = "4s", probe = "0.3s" }',
                    retries="0",
                )
            )
            office.start()
            laptop.start()

            # both agents back up on their own schedules
            wait_for(lambda: len(office.ended("site", "success")) >= 2, "two runs of office/site")
            wait_for(lambda: office.ended("db", "success"), "the dump job's run")
            wait_for(lambda: laptop.ended("docs", "success"), "the laptop's first run")

            # a failing before-hook: a failure e-mail, read back from the SMTP server
            wait_for(lambda: office.ended("broken", "failure"), "the broken job's failed run")
            wait_for(lambda: mail.inbox.messages, "the failure e-mail")
            got = mail.inbox.messages[0]
            assert got.rcpt_tos == ["ops@example.org"] and got.authenticated_as == SMTP_USER
            assert got.tls
            assert "FAILED" in got.message["Subject"] and "broken" in got.message["Subject"]
            body = got.message.get_content()
            assert "CAIRN-E084" in body and "office" in body
            assert "no snapshot volume" in body  # the hook's output, from the run's log

            # the laptop is cut off: no run while it cannot reach the server, ...
            runs_before_cut = len(laptop.events("run_started"))
            relay.cut()
            time.sleep(10)  # > two `every` periods: slots are missed while away
            assert len(laptop.events("run_started")) <= runs_before_cut + 1  # one in flight at most
            missed_from = len(laptop.events("run_started"))
            # ... and brought back, it catches up at once: woken by reachability, no jitter
            relay.restore()
            started = wait_for(
                lambda: [
                    e for e in laptop.events("run_started")[missed_from:] if e.get("catch_up")
                ],
                "the laptop's catch-up run",
            )
            assert started[0]["job"] == "docs"
            assert any(e.get("job") == "docs" for e in laptop.events("woken")), (
                "the reachability trigger woke the agent"
            )
            wait_for(
                lambda: len(laptop.ended("docs", "success")) >= 2, "the catch-up run's success"
            )
    finally:
        office.stop()
        laptop.stop()
        relay.cut()

    # the dump restores: from the server, into a fresh database, every row
    target = tmp_path / "restored"
    listed = owner.run("snapshots", "--json", env=owner_env).json()
    snapshots = {s["id"] for s in listed}
    db_snapshots = [
        s for s in listed if s["host"] == "office" and any("db" in p for p in s["paths"])
    ]
    assert db_snapshots, listed
    owner.run("restore", db_snapshots[-1]["id"], "--target", str(target), env=owner_env)
    dumps = list(target.rglob("postgresql-shop.sql"))
    assert dumps, f"no dump restored under {target}"
    postgres.psql("CREATE DATABASE shop_restored")
    postgres.load(dumps[0], database="shop_restored")
    got_rows = (
        postgres.psql(
            "SELECT id, name, encode(blob, 'hex') FROM items ORDER BY id", database="shop_restored"
        )
        .decode()
        .splitlines()
    )
    assert got_rows == [f"{i}|{name}|{blob}" for i, name, blob in rows]

    # `agent status` tells the truth: history, repository and server agree with it
    reported = _server_jobs(server)
    for agent in (office, laptop):
        status = agent.status()
        assert not status["agent"]["running"]
        for entry in status["jobs"]:
            ended = agent.ended(entry["job"])
            assert ended, entry
            last, shown = ended[-1], entry["last_run"]
            assert shown["outcome"] == last["outcome"], (entry, last)
            assert shown["error_code"] == last["error_code"]
            assert shown["snapshot"] == last["snapshot"]
            if last["outcome"] == "success":
                assert any(s.startswith(last["snapshot"]) for s in snapshots), last
            assert reported[(agent.host, entry["job"])] == last["outcome"]


def _server_jobs(server: RunningServer) -> dict[tuple[str, str], str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cairn.cli.main",
            "server",
            "jobs",
            "acme",
            "--json",
            "--data",
            str(server.data),
        ],
        capture_output=True,
        text=True,
        env=Cairn(server.data).env(),
        timeout=120,
        check=True,
    )
    parsed = json.loads(done.stdout)
    return {(j["host"], j["job"]): j["outcome"] for j in parsed}
