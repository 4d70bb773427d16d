"""A real Cairn server for tests: `cairn server serve` in its own process, on a free loopback
port, with TLS (a self-signed certificate made on first start), and helpers to make tenants and
tokens in its data folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from cairn.server.app import open_services
from cairn.server.auth import Role
from cairn.server.context import Services, Settings

SRC = Path(__file__).resolve().parents[2] / "src"


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held open together so none is chosen twice): the
    one free-port helper of tests/support."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    """One free loopback port."""
    return free_ports(1)[0]


@dataclass
class RunningServer:
    data: Path
    port: int
    process: subprocess.Popen[bytes]
    tls: bool

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def location(self, tenant: str) -> str:
        return f"{'cairns' if self.tls else 'cairn'}://127.0.0.1:{self.port}/{tenant}"

    def services(self) -> Services:
        return open_services(Settings(data=self.data))

    def tenant(self, name: str, quota: int | None = None) -> str:
        """Create a tenant; returns its tenant-admin token."""
        services = self.services()
        services.tenants.create(name, quota)
        return str(services.tokens.issue(Role.TENANT_ADMIN, name))

    def token(self, tenant: str | None, role: Role) -> str:
        return str(self.services().tokens.issue(role, tenant))

    def log(self) -> str:
        return (self.data / "server.log").read_text(errors="replace")


@contextmanager
def running_server(
    data: Path,
    tls: bool = True,
    *extra: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[RunningServer]:
    """With `port`, on that port (a server stopped and started again where clients know it);
    `env` is added to the server's environment only (a crash point armed in it, not in the
    test's own commands)."""
    server = spawn_server(data, tls, *extra, port=port, env=env)
    process = server.process
    try:
        wait_until_up(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn_server(
    data: Path,
    tls: bool = True,
    *extra: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> RunningServer:
    """Start `cairn server serve` and return at once, not waiting for it to answer (servers
    started at the same instant); `wait_until_up` waits, and the caller stops the process."""
    port = port or free_port()
    data.mkdir(parents=True, exist_ok=True)
    args = ["server", "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}", *extra]
    args.append("--access-log")  # tests read the request lines (server.log) to see what was asked
    if not tls:
        args.append("--insecure-http")
    environ = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    with (data / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cairn.cli.main", *args], stdout=log, stderr=log, env=environ
        )
    return RunningServer(data, port, process, tls)


def wait_until_up(server: RunningServer) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited: {server.log()}")
        try:
            health = httpx.get(f"{server.url}/v1/health", verify=False, timeout=2)
            if health.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not come up: {server.log()}")
