"""Real `cairn peer` processes for tests (design 20): peer folders on free loopback ports, each
`peer serve` in its own process, and `cairn peer ...` commands run as a user's shell would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.clitools import FAST_KDF, Result, run_cairn
from tests.support.serverfixture import SRC, free_port

PASSWORD = "owner's passphrase"


@dataclass
class PeerProcess:
    name: str
    folder: Path
    port: int
    host: str = "127.0.0.1"
    netns: str | None = None
    """The network namespace its processes run in (None: this one)."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def prefix(self) -> list[str]:
        return [] if self.netns is None else ["ip", "netns", "exec", self.netns]


@dataclass
class PeerKit:
    """The peers of one test; `close` stops every `peer serve` it started."""

    root: Path
    peers: dict[str, PeerProcess] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(CAIRN_PASSWORD=PASSWORD, CAIRN_KDF=FAST_KDF, PYTHONPATH=str(SRC))
        env.update(extra)
        return env

    def cairn(
        self, *args: str, check: bool = True, prefix: Sequence[str] = (), **extra: str
    ) -> Result:
        """`cairn ARGS`; `prefix` runs it through another program (`ip netns exec NS`)."""
        return run_cairn(args, self.env(**extra), check=check, prefix=prefix)

    def peer(self, name: str, *args: str, check: bool = True, **extra: str) -> Result:
        """`cairn peer ACTION --data <name's folder> ...`: args[0] is the action."""
        action, *rest = args
        folder = str(self.peers[name].folder)
        prefix = self.peers[name].prefix
        return self.cairn(
            "peer", action, "--data", folder, *rest, check=check, prefix=prefix, **extra
        )

    def init(
        self,
        name: str,
        *role: str,
        port: int | None = None,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> PeerProcess:
        """A new peer folder; `role` is `--offer SIZE` or `--client-only` and any other option;
        with `netns`, its commands and its serve run in that network namespace, at `host`."""
        made = PeerProcess(name, self.root / name, port or free_port(), host, netns)
        self.peers[name] = made
        self.peer(name, "init", "--name", name, "--listen", made.address, *role)
        return made

    def serve(self, name: str, *extra: str) -> PeerProcess:
        """`peer serve` in its own process; returns once its server answers its health check.
        Only a peer in a network namespace announces itself by mDNS: one on the host would
        multicast on the machine's real interfaces."""
        peer = self.peers[name]
        if not peer.prefix and "--no-announce" not in extra:
            extra = (*extra, "--no-announce")
        log = (self.root / f"{name}.log").open("ab")
        peer.process = subprocess.Popen(
            [
                *peer.prefix,
                sys.executable,
                "-m",
                "cairn.cli.main",
                "peer",
                "serve",
                "--data",
                str(peer.folder),
                *extra,
            ],
            stdout=log,
            stderr=log,
            env=self.env(),
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if peer.process.poll() is not None:
                raise RuntimeError(f"peer {name} exited: {self.log(name)}")
            try:
                url = f"https://{peer.address}/v1/health"
                if httpx.get(url, verify=False, timeout=2).status_code == 200:
                    return peer
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"peer {name} did not come up: {self.log(name)}")

    def stop(self, name: str) -> None:
        process = self.peers[name].process
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.peers[name].process = None

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def pair(self, offering: str, joining: str) -> Result:
        """`invite` on `offering`, `join` with its code on `joining`."""
        code = self.peer(offering, "invite", "--json").json()["code"]
        return self.peer(joining, "join", code, "--json")

    def close(self) -> None:
        for name in list(self.peers):
            self.stop(name)
