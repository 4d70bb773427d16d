"""An agent's machine cut off from its server's network and brought back (design 15.3).

Two hosts on one machine: network namespaces joined by a veth pair, the server (`cairn server
serve`, TLS) in one, an agent's reachability trigger in the other, as separate processes. The
test cuts the link (`ip link set down`) and brings it back; the agent must see the server go,
and catch up the moment it returns: its trigger wakes and the run it reports reaches the server.
No timing assertions: each step waits for what it needs, with generous deadlines.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from cairn.server.app import open_services
from cairn.server.auth import Role
from cairn.server.context import Settings

pytestmark = pytest.mark.required("root and iproute2: network namespaces")

SRC = Path(__file__).resolve().parents[2] / "src"
DEADLINE = 90.0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Hosts:
    server_ns: str
    agent_ns: str
    server_link: str
    server_ip: str

    def run_in(
        self, ns: str, argv: list[str], home: Path | None = None, **kw: object
    ) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        if home is not None:
            env["XDG_CONFIG_HOME"] = str(home)  # the agent machine's pinned certificates
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            ["ip", "netns", "exec", ns, *argv], env=env, text=True, **kw
        )


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = secrets.token_hex(3)
    server_ns, agent_ns = f"cs-{tag}", f"ca-{tag}"
    server_link, agent_link = f"vs{tag}", f"va{tag}"
    net = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}"
    try:
        _ip("netns", "add", server_ns)
        _ip("netns", "add", agent_ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot make network namespaces here: {exc.stderr!r}")
    try:
        _ip("link", "add", server_link, "type", "veth", "peer", "name", agent_link)
        _ip("link", "set", server_link, "netns", server_ns)
        _ip("link", "set", agent_link, "netns", agent_ns)
        for ns, link, host in ((server_ns, server_link, 1), (agent_ns, agent_link, 2)):
            _ip("-n", ns, "addr", "add", f"{net}.{host}/30", "dev", link)
            _ip("-n", ns, "link", "set", link, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield Hosts(server_ns, agent_ns, server_link, f"{net}.1")
    finally:
        for ns in (server_ns, agent_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


AGENT = textwrap.dedent(
    """
    import sys, threading, time
    from cairn.agent.report import report_run
    from cairn.agent.spec import Every, JobSpec
    from cairn.agent.triggers import ReachableTrigger, probe_repository
    from cairn.notify.message import Outcome, RunSummary

    location, token_file = sys.argv[1], sys.argv[2]
    job = JobSpec("home", location, ("/home",), Every(86400.0), token_file=token_file)
    runs = 0

    def wake(reason):
        global runs
        runs += 1
        now = time.time()
        report_run(job, RunSummary("home", "laptop", now, now, Outcome.SUCCESS, attempt=runs))
        print(f"woke {reason} ran {runs}", flush=True)

    trigger = ReachableTrigger(lambda: probe_repository(location, timeout_s=2.0), probe_s=0.3)
    trigger.start(wake)
    seen = None
    while sys.stdin.readable():
        if trigger.reachable != seen:
            seen = trigger.reachable
            print("reachable" if seen else "unreachable", flush=True)
        time.sleep(0.05)
    """
)


def _expect(stream: IO[str], wanted: str) -> list[str]:
    """Lines of the agent's output up to and including one that starts with `wanted`."""
    lines: list[str] = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith(wanted):
            return lines
    raise AssertionError(f"no {wanted!r} from the agent: {lines}")


def _wait_for_server(hosts: Hosts, server: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                hosts.server_ns,
                sys.executable,
                "-c",
                "import httpx, sys; httpx.get(sys.argv[1], verify=False, timeout=2)",
                f"https://{hosts.server_ip}:8443/v1/health",
            ],
            capture_output=True,
            check=False,
            timeout=30,
        )
        if done.returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"the server did not come up: {log.read_text()}")


def test_an_agent_cut_off_and_brought_back_catches_up_at_once(hosts: Hosts, tmp_path: Path) -> None:
    data = tmp_path / "server"
    services = open_services(Settings(data=data))
    services.tenants.create("acme")
    token_file = tmp_path / "token"
    token_file.write_text(str(services.tokens.issue(Role.BACKUP, "acme", "laptop")))
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = hosts.run_in(
            hosts.server_ns,
            [
                sys.executable,
                "-m",
                "cairn.cli.main",
                "server",
                "serve",
                "--data",
                str(data),
                "--listen",
                f"{hosts.server_ip}:8443",
            ],
            stdout=out,
            stderr=out,
        )
    agent = None
    try:
        _wait_for_server(hosts, server, log)
        home = tmp_path / "agent-home"
        home.mkdir()
        agent = hosts.run_in(
            hosts.agent_ns,
            [sys.executable, "-c", AGENT, f"cairns://{hosts.server_ip}:8443/acme", str(token_file)],
            home,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert agent.stdout is not None
        _expect(agent.stdout, "woke reachable ran 1")  # reachable at start: runs once
        _ip("-n", hosts.server_ns, "link", "set", hosts.server_link, "down")  # cut off
        _expect(agent.stdout, "unreachable")
        _ip("-n", hosts.server_ns, "link", "set", hosts.server_link, "up")  # brought back
        seen = _expect(agent.stdout, "woke reachable ran 2")
        assert "woke" not in " ".join(seen[:-1])  # no run while it was away
        reported = services.jobs.latest("acme")
        assert [(r.latest.host, r.latest.job, r.latest.outcome) for r in reported] == [
            ("laptop", "home", "success")
        ]
        rows = services.db.read().execute("SELECT COUNT(*) FROM job_results").fetchone()[0]
        assert rows == 2  # the run at start and the catch-up, both reached the server
    finally:
        for process in (agent, server):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for stream in (process.stdin, process.stdout) if process is not None else ():
                if stream is not None:
                    stream.close()
