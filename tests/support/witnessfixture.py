"""The hot standby's real parts for tests (design 19): `cairn witness serve` in its own process,
servers of a pair started with `--peer` and `--witness`, and reading who leads from each one's
`/v1/health` and from the witness."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.serverfixture import SRC, RunningServer, free_port, spawn_server


@dataclass
class RunningWitness:
    data: Path
    port: int
    process: subprocess.Popen[bytes]
    url: str
    """`https://127.0.0.1:PORT#FINGERPRINT`, as the witness printed it."""

    @property
    def token_file(self) -> Path:
        return self.data / "token"

    def lease(self, name: str) -> dict[str, Any]:
        token = self.token_file.read_text().strip()
        answer = httpx.get(
            f"https://127.0.0.1:{self.port}/v1/leases/{name}",
            headers={"authorization": f"Bearer {token}"},
            verify=False,
            timeout=5,
        )
        answer.raise_for_status()
        return dict(answer.json())

    def log(self) -> str:
        return (self.data / "witness.log").read_text(errors="replace")


def start_witness(data: Path, port: int | None = None) -> RunningWitness:
    """`cairn witness serve`, up and answering, with the URL it printed."""
    port = port or free_port()
    data.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, "PYTHONPATH": str(SRC)}
    args = ["witness", "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"]
    with (data / "witness.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cairn.cli.main", *args], stdout=log, stderr=log, env=environ
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the witness exited: {(data / 'witness.log').read_text()}")
        found = re.findall(r"witness URL: (\S+)", (data / "witness.log").read_text())
        if found:
            try:
                httpx.get(f"https://127.0.0.1:{port}/v1/health", verify=False, timeout=2)
                return RunningWitness(data, port, process, found[-1])
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the witness did not come up")


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a process the test started (it may be stopped by SIGSTOP: continue it first)."""
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_witness(data: Path, port: int | None = None) -> Iterator[RunningWitness]:
    witness = start_witness(data, port)
    try:
        yield witness
    finally:
        stop(witness.process)


def spawn_pair_member(
    data: Path, port: int, peer_port: int, witness: RunningWitness, *extra: str
) -> RunningServer:
    """One server of a pair, started and not waited for."""
    return spawn_server(
        data,
        True,
        "--peer",
        f"127.0.0.1:{peer_port}",
        "--witness",
        witness.url,
        "--witness-token-file",
        str(witness.token_file),
        *extra,
        port=port,
    )


def standby_status(server: RunningServer) -> dict[str, Any] | None:
    """The server's `standby` part of /v1/health; None while it does not answer."""
    try:
        answer = httpx.get(f"{server.url}/v1/health", verify=False, timeout=5)
        return dict(answer.json()["standby"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def role(server: RunningServer) -> str | None:
    status = standby_status(server)
    return None if status is None else str(status["role"])


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
    """Poll `check` until it holds; a generous deadline, never a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting until {what}")
