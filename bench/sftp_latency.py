"""SFTP over a network with a round trip time, measured: a real OpenSSH sshd on loopback (started
here, as the tests start it) reached through a relay that holds every byte for half the round
trip each way, so the round trips a backend spends show as they would to a NAS across a WAN.
Prints the backend's steps (listing the 256 pack folders, a small save, an 8 MiB save) and an
initial backup of the bench corpus by Cairn and by restic (Debian's, through `ssh -s sftp`), both
through the relay; no timing is asserted anywhere.

    python bench/sftp_latency.py --rtt-ms 10 --scale 0.02 --workdir /tmp/sftplatency
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.sftp_backup import CORPUS_SCRIPT, PASSWORD, timed
from cairn.backends.base import Handle, ObjectKind
from cairn.backends.sftp import SftpBackend, SftpCredentials, parse_address
from cairn.backends.testing.conformance import object_name
from tests.support.storageservers import SshServer, ssh_server


class DelayRelay:
    """A TCP relay to `target_port` that delays each direction by `rtt` / 2."""

    def __init__(self, target_port: int, rtt: float) -> None:
        self.target_port, self.delay = target_port, rtt / 2
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for end in (client, upstream):
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pipe(client, upstream)
            self._pipe(upstream, client)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        due: list[tuple[float, int, bytes]] = []
        ready = threading.Condition()
        order = itertools.count()

        def receive() -> None:
            data = b"-"
            while data:
                try:
                    data = src.recv(1 << 20)
                except OSError:
                    data = b""
                with ready:
                    heapq.heappush(due, (time.monotonic() + self.delay, next(order), data))
                    ready.notify()

        def send() -> None:
            while True:
                with ready:
                    while not due or due[0][0] > time.monotonic():
                        ready.wait(max(0.0, due[0][0] - time.monotonic()) if due else None)
                    _, _, data = heapq.heappop(due)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=receive, daemon=True).start()
        threading.Thread(target=send, daemon=True).start()

    def close(self) -> None:
        self._listener.close()


def backend_steps(server: SshServer, port: int, folder: Path) -> dict[str, float]:
    """Milliseconds of the backend's own steps through the relay."""
    credentials = SftpCredentials(server.key, server.known_hosts, agent=False)
    backend = SftpBackend.create(parse_address(server.location(folder, port)), credentials)
    steps: dict[str, float] = {}
    start = time.perf_counter()
    list(backend.list(ObjectKind.PACK))
    steps["list the packs (256 folders)"] = time.perf_counter() - start
    smalls = [os.urandom(2000) for _ in range(10)]
    start = time.perf_counter()
    for data in smalls:
        backend.save(Handle(ObjectKind.INDEX, object_name(data)), data)
    steps["save a 2 kB object (mean of 10)"] = (time.perf_counter() - start) / len(smalls)
    pack = os.urandom(8 << 20)
    start = time.perf_counter()
    backend.save(Handle(ObjectKind.PACK, object_name(pack)), pack)
    steps["save an 8 MiB pack"] = time.perf_counter() - start
    backend.close()
    return {name: seconds * 1000 for name, seconds in steps.items()}


def backups(server: SshServer, port: int, work: Path, corpus: Path) -> dict[str, float]:
    env = {
        **os.environ,
        **server.env(CAIRN_SFTP_NO_AGENT="1"),
        "CAIRN_PASSWORD": PASSWORD,
        "RESTIC_PASSWORD": PASSWORD,
        "CAIRN_CACHE_DIR": str(work / "cairn-cache"),
    }
    cairn = [sys.executable, "-m", "cairn.cli.main", "-q"]
    results: dict[str, float] = {}
    for name, location in (
        ("Cairn, local folder (no relay)", str(work / "cairn-local")),
        ("Cairn, SFTP", server.location(work / "cairn-sftp", port)),
    ):
        subprocess.run([*cairn, "-r", location, "init"], env=env, check=True, stdout=-3)
        results[name] = timed([*cairn, "-r", location, "backup", str(corpus)], env, limit=900)
    if shutil.which("restic"):
        ssh = (
            f"ssh -i {server.key} -p {port} -o UserKnownHostsFile={server.known_hosts} "
            f"-o StrictHostKeyChecking=yes -o BatchMode=yes {server.user}@127.0.0.1 -s sftp"
        )
        restic = [
            "restic",
            "-q",
            "--cache-dir",
            str(work / "restic-cache"),
            "-o",
            f"sftp.command={ssh}",
        ]
        location = f"sftp:{server.user}@127.0.0.1:{work / 'restic-sftp'}"
        subprocess.run([*restic, "-r", location, "init"], env=env, check=True, stdout=-3)
        results["restic 0.14, SFTP"] = timed(
            [*restic, "-r", location, "backup", str(corpus)], env, limit=900
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rtt-ms", type=float, default=10.0)
    parser.add_argument("--scale", type=float, default=0.02)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sftplatency"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    corpus = args.workdir / "corpus"
    cmd = [sys.executable, str(CORPUS_SCRIPT), "make", str(corpus), "--scale", str(args.scale)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    size = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file() and not p.is_symlink())
    with ssh_server(args.workdir / "sshd") as server:
        relay = DelayRelay(server.port, args.rtt_ms / 1000)
        server.write_known_hosts([server.port, relay.port])
        steps = backend_steps(server, relay.port, args.workdir / "steps")
        results = backups(server, relay.port, args.workdir, corpus)
        relay.close()
    print(f"round trip {args.rtt_ms:g} ms added on loopback")
    print("| backend step | ms |\n|---|---:|")
    for name, ms in steps.items():
        print(f"| {name} | {ms:.0f} |")
    print(f"\ncorpus: {size / 2**20:.0f} MiB, scale {args.scale}")
    print("| initial backup | s |\n|---|---:|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
