"""Client memory of a backup to a server whose repository has a large index: loading the whole
index (before design 14.11) against asking the server (the chunk query).

    python bench/chunkquery_memory.py [--entries 1000000] [--per-index 10000] [--source-mib 64]
                                      [--before REV] [--workdir DIR] [--output FILE.md]

One `cairn server serve` (TLS, loopback) with one tenant. A first backup stores a small tree; then
`--entries` index entries (chunk IDs nobody backs up, in index objects of `--per-index` entries,
uploaded through the server like any index) make the index large, as years of backups of many
machines would. Then, with the client code of `--before` (a git revision: its `src/` is
extracted, default the commit this feature started from) and with this checkout's code, in turn:
a backup of `--source-mib` MiB of new data (small files and a few large ones, its own seed per
side), then the same backup again (files cache hits, nothing new). Each client's peak RSS and
wall time come from `wait4`. Nothing is asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

from cairn.core.ids import ChunkId, ObjectName  # noqa: E402
from cairn.crypto.hashing import object_name  # noqa: E402
from cairn.format.index import IndexRecord, encode_index  # noqa: E402
from cairn.format.pack import BlobKind, PackEntry  # noqa: E402

BEFORE = "50184f9"
"""The commit this feature started from: its client loads the whole index for a backup."""
PASSWORD = "bench"  # noqa: S105 (the bench's throwaway repository)
FAST_KDF = "t=1,m=64,p=1"


@dataclass
class Run:
    side: str
    what: str
    peak_rss_mib: float
    seconds: float
    exit_code: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cairn(src: Path, env: dict[str, str], *args: str) -> None:
    """Run `cairn ARGS` with the code under `src` (not measured)."""
    done = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", *args],
        env={**env, "PYTHONPATH": str(src)},
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"cairn {' '.join(args)}: {done.stderr.decode(errors='replace')}")


def run_measured(src: Path, env: dict[str, str], *args: str) -> tuple[int, float, float]:
    """Run `cairn ARGS` with the code under `src`: (exit code, peak RSS in MiB, seconds), the
    peak of exactly this child (wait4 before anything else reaps it)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cairn.cli.main", *args],
            env={**env, "PYTHONPATH": str(src)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            print(f"cairn {' '.join(args)} exited {code}:\n{err.read().decode('replace')}")
    return code, usage.ru_maxrss / 1024, time.monotonic() - started


def make_tree(root: Path, seed: int, mib: int) -> None:
    rng = random.Random(seed)
    large = mib // 2
    for i in range(4):
        (root / "large").mkdir(parents=True, exist_ok=True)
        (root / "large" / f"f{i}.bin").write_bytes(rng.randbytes((large << 20) // 4))
    left = (mib - large) << 20
    n = 0
    while left > 0:
        folder = root / f"d{n // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        size = min(left, rng.randint(1_000, 60_000))
        (folder / f"s{n}.bin").write_bytes(rng.randbytes(size))
        left -= size
        n += 1


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = (data / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cairn.cli.main",
            "server",
            "serve",
            "--data",
            str(data),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"https://127.0.0.1:{port}/v1/health", verify=False).status_code == 200:  # noqa: S501
                return process, port
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("the server did not come up")


def admin(data: Path, *args: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", "server", *args, "--data", str(data), "--json"],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


def fill_index(port: int, token: str, pack: str, entries: int, per: int) -> None:
    rng = random.Random(7)
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(
        base_url=f"https://127.0.0.1:{port}",
        verify=False,  # noqa: S501 (the bench's own loopback server)
        headers=headers,
        timeout=600,
    ) as client:
        for start in range(0, entries, per):
            count = min(per, entries - start)
            blobs = [
                PackEntry(ChunkId(rng.randbytes(32)), BlobKind.DATA, 8, 64) for _ in range(count)
            ]
            data = encode_index(IndexRecord(packs={ObjectName.from_hex(pack): blobs}))
            answer = client.put(f"/v1/t/big/index/{object_name(data).hex}", content=data)
            answer.raise_for_status()


def before_src(work: Path, rev: str) -> Path:
    target = work / f"before-{rev}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--per-index", type=int, default=10_000)
    parser.add_argument("--source-mib", type=int, default=64)
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cqbench-"))
    shutil.rmtree(work / "server", ignore_errors=True)
    (work / "server").mkdir(parents=True)
    sides = {"before (load the index)": before_src(work, args.before), "after (chunk query)": SRC}
    server, port = start_server(work / "server")
    runs: list[Run] = []
    try:
        owner = admin(work / "server", "tenant", "add", "big")["admin_token"]
        backup = admin(work / "server", "token", "add", "big", "--role", "backup")["token"]
        base = {
            **os.environ,
            "CAIRN_REPOSITORY": f"cairns://127.0.0.1:{port}/big",
            "CAIRN_PASSWORD": PASSWORD,
            "CAIRN_KDF": FAST_KDF,
            "XDG_CONFIG_HOME": str(work / "config"),
        }
        cairn(SRC, {**base, "CAIRN_TOKEN": owner}, "init")
        seed_tree = work / "seed"
        shutil.rmtree(seed_tree, ignore_errors=True)
        make_tree(seed_tree, 1, 2)
        cairn(
            SRC,
            {**base, "CAIRN_TOKEN": backup, "CAIRN_CACHE_DIR": str(work / "c0")},
            "backup",
            str(seed_tree),
        )
        tenant_root = next((work / "server" / "tenants").iterdir())
        pack = next((tenant_root / "packs").glob("*/*")).name
        started = time.monotonic()
        fill_index(port, owner, pack, args.entries, args.per_index)
        print(f"index filled: {args.entries} entries in {time.monotonic() - started:.0f} s")
        for number, (side, src) in enumerate(sides.items()):
            tree = work / f"tree{number}"
            shutil.rmtree(tree, ignore_errors=True)
            make_tree(tree, 10 + number, args.source_mib)
            env = {**base, "CAIRN_TOKEN": backup, "CAIRN_CACHE_DIR": str(work / f"cache{number}")}
            shutil.rmtree(work / f"cache{number}", ignore_errors=True)
            for what in (f"backup of {args.source_mib} MiB of new data", "the same backup again"):
                code, rss, seconds = run_measured(src, env, "backup", str(tree), "--json")
                runs.append(Run(side, what, rss, seconds, code))
                print(runs[-1])
    finally:
        server.terminate()
        server.wait()
    table = report(args, runs)
    print(table)
    if args.output is not None:
        args.output.write_text(table)


def report(args: argparse.Namespace, runs: list[Run]) -> str:
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        f"Command: `python bench/chunkquery_memory.py --entries {args.entries} --per-index "
        f"{args.per_index} --source-mib {args.source_mib} --before {args.before}` (code: "
        f"{commit}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; Linux {platform.release()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores shared with other work)",
        "",
        "| client | backup | peak RSS (MiB) | wall time (s) | exit |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run.side} | {run.what} | {run.peak_rss_mib:.0f} | {run.seconds:.1f} | "
            f"{run.exit_code} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
