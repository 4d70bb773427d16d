"""The upload limit, measured: back up N MiB of random data to a fresh local repository with
`--limit-upload` at a few rates (and without), and print the achieved upload rate (bytes added
over the backup's wall time, process start included) as a Markdown table.

    python bench/upload_limit.py --mib 48 --rates 2MiB/s,8MiB/s --workdir /dev/shm/ul
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

KDF = "t=1,m=64,p=1"


def cairn(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAIRN_REPOSITORY": str(repo), "CAIRN_PASSWORD": "bench", "CAIRN_KDF": KDF}
    return subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def measure(work: Path, source: Path, rate: str | None) -> tuple[int, float]:
    repo = work / f"repo-{(rate or 'none').replace('/', '')}"
    shutil.rmtree(repo, ignore_errors=True)
    cairn(repo, "init")
    extra = ["--limit-upload", rate] if rate else []
    started = time.monotonic()
    done = cairn(repo, "backup", str(source), "--no-cache", "--json", *extra)
    elapsed = time.monotonic() - started
    return int(json.loads(done.stdout)["bytes_added"]), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=48)
    parser.add_argument("--rates", default="2MiB/s,8MiB/s")
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm/cairn-upload-limit"))
    args = parser.parse_args()
    source = args.workdir / "source"
    source.mkdir(parents=True, exist_ok=True)
    for i in range(args.mib // 8):
        (source / f"random-{i}.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    print("| limit | bytes added | wall time (s) | achieved (MiB/s) |")
    print("|---|---|---|---|")
    for rate in [None, *args.rates.split(",")]:
        added, elapsed = measure(args.workdir, source, rate)
        print(f"| {rate or 'none'} | {added} | {elapsed:.1f} | {added / elapsed / 2**20:.2f} |")
    shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
