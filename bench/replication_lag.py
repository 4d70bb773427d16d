"""Offsite lag under continuous backups (issue 14's figure): a real `cairn server serve` with one
continuous target (a local folder, or SFTP on OpenSSH's sshd started here as the tests start it),
N clients (default 10), each backing up its own small tree that changes before every backup,
one `cairn backup` process every few seconds, for a while. Once a second
the target's lag (seconds, bytes) is sampled as `cairn server target status --json` computes it
(the same function, in this process: see `Status`); at the end
the time from the last backup's end to the target having caught up (no lag left). Prints a
Markdown table.

    python bench/replication_lag.py --clients 10 --seconds 60 --every 3 --target folder

The lag the status names is the age of the oldest journal entry the target has not received,
so it includes the wait for the scheduler to wake and the run itself.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from cairn.core.clock import SystemClock, utc_now
from cairn.replication.status import target_status
from cairn.server.app import open_services
from cairn.server.context import Settings
from tests.support.clitools import Cairn
from tests.support.serverfixture import RunningServer, running_server
from tests.support.storageservers import ssh_server

TARGET = "offsite"


def server_command(server: RunningServer, *args: str) -> object:
    """`cairn server ... --json` on the server's data folder (what an administrator runs)."""
    return Cairn(server.data).run("server", *args, "--data", str(server.data), "--json").json()


class Machine:
    """One client: its own tenant, config folder, cache and tree; a backup every `every` s."""

    def __init__(self, server: RunningServer, index: int, work: Path) -> None:
        name = f"client{index:02d}"
        added = server_command(server, "tenant", "add", name)
        assert isinstance(added, dict)
        self.home = work / name
        self.home.mkdir(parents=True)
        self.tree = work / f"{name}-tree"
        self.tree.mkdir()
        for n in range(20):
            (self.tree / f"file{n:02d}.bin").write_bytes(os.urandom(20_000))
        self.tool = Cairn(server.location(name), cache=self.home / "cache")
        self.env = self.tool.env(
            CAIRN_TOKEN=str(added["admin_token"]), XDG_CONFIG_HOME=str(self.home)
        )
        self.tool.run("init", env=self.env)
        self.backups: list[tuple[float, float]] = []
        self.failures = 0

    def loop(self, until: float, every: float) -> None:
        """Change a file, back up, wait out the rest of `every`; until the clock says stop."""
        turn = 0
        while time.monotonic() < until:
            began = time.monotonic()
            (self.tree / f"file{turn % 20:02d}.bin").write_bytes(os.urandom(20_000))
            (self.tree / f"new{turn:03d}.bin").write_bytes(os.urandom(5_000))
            done = self.tool.run("backup", str(self.tree), env=self.env, check=False)
            ended = time.monotonic()
            if done.code == 0:
                self.backups.append((began, ended))
            else:
                self.failures += 1
            turn += 1
            time.sleep(max(0.0, every - (ended - began)))


class Status:
    """What `cairn server target status --json` prints for the target, computed by the same
    function (`target_status`) in this process: on a loaded 2-core machine one `cairn` process
    took ~6 s to start, too slow to sample once a second."""

    def __init__(self, server: RunningServer) -> None:
        self.services = open_services(Settings(data=server.data), create=False)
        self.clock = SystemClock()

    def __call__(self) -> dict[str, object]:
        store = self.services.targets
        ids = {t.name: t.id for t in self.services.tenants.all()}
        return target_status(store.db, store.get(TARGET), utc_now(self.clock), ids).as_json()


def sample(server: RunningServer, stop: threading.Event, into: list[tuple[float, float, int]]):
    """(when, lag s, lag bytes) once a second until `stop`."""
    status = Status(server)
    while not stop.is_set():
        began = time.monotonic()
        row = status()
        into.append((began, float(row["lag_s"]), int(row["lag_bytes"])))
        stop.wait(max(0.0, 1.0 - (time.monotonic() - began)))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=3.0)
    parser.add_argument("--target", choices=("folder", "sftp"), default="folder")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cairn-replication-lag"))
    args = parser.parse_args()
    work: Path = args.workdir
    if work.exists():
        raise SystemExit(f"{work} exists: name a fresh --workdir")
    with ExitStack() as stack:
        if args.target == "sftp":
            sshd = stack.enter_context(ssh_server(work / "sshd"))
            os.environ.update(sshd.env())  # the server's environment: its target's key
            location = sshd.location(work / "sftp-offsite")
        else:
            location = str(work / "offsite")
            Path(location).mkdir(parents=True)
        server = stack.enter_context(running_server(work / "data"))
        server_command(server, "target", "add", TARGET, location)
        machines = [Machine(server, i, work / "clients") for i in range(args.clients)]
        samples: list[tuple[float, float, int]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(server, stop, samples))
        started = time.monotonic()
        sampler.start()
        until = started + args.seconds
        threads = [threading.Thread(target=m.loop, args=(until, args.every)) for m in machines]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        last_end = max(end for m in machines for _, end in m.backups)
        status = Status(server)
        while True:
            row = status()
            if int(row["lag_objects"]) == 0:
                caught_up = time.monotonic() - last_end
                break
            time.sleep(0.2)
        stop.set()
        sampler.join()
        shown = server_command(server, "target", "status")  # the command agrees at the end
        assert isinstance(shown, list), shown
        assert shown[0]["lag_objects"] == 0, shown
    report(args, machines, samples, caught_up, time.monotonic() - started)


def report(args, machines: list[Machine], samples, caught_up: float, wall: float) -> None:
    lags = [lag for _, lag, _ in samples]
    sizes = [float(size) for _, _, size in samples]
    durations = [end - began for m in machines for began, end in m.backups]
    print(f"{platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()}, {wall:.0f} s")
    print(
        f"{args.clients} clients, a backup every {args.every:.0f} s for {args.seconds:.0f} s, "
        f"target {args.target}: {len(durations)} backups "
        f"(median {statistics.median(durations):.1f} s), "
        f"{sum(m.failures for m in machines)} failed, {len(samples)} samples\n"
    )
    print("| lag | max | median | p95 |")
    print("|---|---|---|---|")
    print(
        f"| seconds | {max(lags):.1f} | {statistics.median(lags):.1f} "
        f"| {percentile(lags, 95):.1f} |"
    )
    print(
        f"| bytes | {max(sizes) / 1e3:.0f} kB | {statistics.median(sizes) / 1e3:.0f} kB "
        f"| {percentile(sizes, 95) / 1e3:.0f} kB |"
    )
    print(f"\nlast backup's end to the target caught up: {caught_up:.1f} s")


if __name__ == "__main__":
    main()
