"""SFTP client libraries, measured: upload and download N MiB of random bytes over loopback to a
real OpenSSH sshd (started here, as the tests start it) with asyncssh, paramiko (pipelined writes,
prefetched reads) and the `sftp` binary, check every byte that comes back, and print a Markdown
table of MiB/s.

    python bench/sftp_clients.py --mib 256 --workdir /dev/shm/sftpbench
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.storageservers import SshServer, ssh_server


def with_asyncssh(server: SshServer, remote: str, data: bytes) -> tuple[float, float, bool]:
    import asyncssh

    async def run() -> tuple[float, float, bool]:
        async with (
            asyncssh.connect(
                "127.0.0.1",
                server.port,
                username=server.user,
                client_keys=[str(server.key)],
                known_hosts=str(server.known_hosts),
            ) as conn,
            conn.start_sftp_client() as sftp,
        ):
            start = time.perf_counter()
            async with sftp.open(remote, "wb") as f:
                await f.write(data)
            up = time.perf_counter() - start
            start = time.perf_counter()
            async with sftp.open(remote, "rb") as f:
                back = await f.read()
            down = time.perf_counter() - start
            await sftp.remove(remote)
            return up, down, back == data

    return asyncio.run(run())


def with_paramiko(server: SshServer, remote: str, data: bytes) -> tuple[float, float, bool]:
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(str(server.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        "127.0.0.1", server.port, username=server.user, key_filename=str(server.key),
        allow_agent=False, look_for_keys=False,
    )  # fmt: skip
    sftp = client.open_sftp()
    start = time.perf_counter()
    with sftp.open(remote, "wb") as f:
        f.set_pipelined(True)
        f.write(data)
    up = time.perf_counter() - start
    start = time.perf_counter()
    with sftp.open(remote, "rb") as f:
        f.prefetch(len(data))
        back = f.read()
    down = time.perf_counter() - start
    sftp.remove(remote)
    client.close()
    return up, down, back == data


def with_binary(server: SshServer, remote: str, data: bytes) -> tuple[float, float, bool]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as folder:
        local, back_path = Path(folder) / "up", Path(folder) / "down"
        local.write_bytes(data)
        base = [
            "sftp", "-q", "-b", "-", "-i", str(server.key), "-P", str(server.port),
            "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            f"{server.user}@127.0.0.1",
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(base, input=f"put {local} {remote}\n".encode(), check=True)
        up = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(base, input=f"get {remote} {back_path}\nrm {remote}\n".encode(), check=True)
        down = time.perf_counter() - start
        return up, down, back_path.read_bytes() == data


def with_backend(server: SshServer, remote: str, data: bytes) -> tuple[float, float, bool]:
    """Cairn's SftpBackend as the repository drives it: 16 MiB objects, 4 threads."""
    from concurrent.futures import ThreadPoolExecutor

    from cairn.backends.base import Handle, ObjectKind
    from cairn.backends.sftp import SftpBackend, SftpCredentials, parse_address
    from cairn.backends.testing.conformance import object_name

    credentials = SftpCredentials(server.key, server.known_hosts, agent=False)
    backend = SftpBackend.create(parse_address(server.location(remote + "-repo")), credentials)
    step = 16 << 20
    parts = [data[i : i + step] for i in range(0, len(data), step)]
    handles = [Handle(ObjectKind.PACK, object_name(p)) for p in parts]
    with ThreadPoolExecutor(backend.capabilities.connections) as pool:
        start = time.perf_counter()
        list(pool.map(backend.save, handles, parts))
        up = time.perf_counter() - start
        start = time.perf_counter()
        back = b"".join(pool.map(backend.load, handles))
        down = time.perf_counter() - start
        list(pool.map(backend.remove, handles))
    backend.close()
    return up, down, back == data


CANDIDATES: dict[str, Callable[[SshServer, str, bytes], tuple[float, float, bool]]] = {
    "asyncssh": with_asyncssh,
    "paramiko (pipelined, prefetch)": with_paramiko,
    "sftp binary (OpenSSH client)": with_binary,
    "Cairn SftpBackend (paramiko, 4 connections, 16 MiB objects)": with_backend,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "sftpbench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = os.urandom(args.mib << 20)
    print(f"{args.mib} MiB, sha256 {hashlib.sha256(data).hexdigest()[:16]}, best of {args.rounds}")
    print("| client | upload MiB/s | download MiB/s | bytes intact |\n|---|---:|---:|---|")
    with ssh_server(args.workdir / "sshd") as server:
        for name, run in CANDIDATES.items():
            results = [run(server, str(args.workdir / "object"), data) for _ in range(args.rounds)]
            up = args.mib / min(r[0] for r in results)
            down = args.mib / min(r[1] for r in results)
            intact = all(r[2] for r in results)
            print(f"| {name} | {up:.0f} | {down:.0f} | {'yes' if intact else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
