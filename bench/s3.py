"""Cairn's backup and restore to an S3 bucket (a SeaweedFS started here, on loopback) beside the
same to a local folder and, where installed, `restic -r s3:` and `rclone copy` to the same
server (Debian's restic and rclone). A benchmark: it prints a Markdown table; nothing asserts on
time.

    python bench/s3.py --size-mib 200 --runs 2 [--pin-store 1] [--weed-arg=-volume.index=leveldb]

Every run backs up, in this order so that the machine's load falls on all alike: Cairn to a fresh
local folder, Cairn to a fresh prefix of the bucket, restic to a fresh prefix; then restores each
in the same order. rclone (`--rclone`) runs once, at the end. Each step shows its wall time, the
client's CPU seconds and the store's CPU seconds meanwhile. `--pin-store CPUS` starts SeaweedFS
under `taskset -c CPUS` (the clients stay unpinned); `--weed-arg` passes a setting to `weed
server` (the table's header names every one used).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from cputime import Step, timed  # noqa: E402
from tests.support.storageservers import S3_BUCKET, SeaweedS3  # noqa: E402


def corpus(root: Path, size_mib: int) -> Path:
    """Half random (incompressible) big files, half small text-like files."""
    rng = random.Random(7)
    src = root / "corpus"
    for i in range(max(1, size_mib // 50)):
        (src / "big").mkdir(parents=True, exist_ok=True)
        (src / "big" / f"f{i}.bin").write_bytes(rng.randbytes(25 * 1024 * 1024))
    words = [f"word{n}" for n in range(2000)]
    for i in range(size_mib * 20):
        folder = src / "small" / f"d{i % 50}"
        folder.mkdir(parents=True, exist_ok=True)
        text = " ".join(rng.choice(words) for _ in range(rng.randint(500, 5000)))
        (folder / f"s{i}.txt").write_text(text)
    return src


class Tools:
    """The command lines of each tool against the local folder or the store, run by run."""

    def __init__(self, work: Path, server: SeaweedS3) -> None:
        self.work = work
        self.server = server
        self.base = {
            **os.environ,
            **server.env(),
            "CAIRN_PASSWORD": "bench",
            "CAIRN_KDF": "t=1,m=64,p=1",
            "RESTIC_PASSWORD": "bench",
        }

    def cairn_env(self, repo: str, run: int, name: str) -> dict[str, str]:
        cache = str(self.work / f"cache-{name}-{run}")
        return {**self.base, "CAIRN_REPOSITORY": repo, "CAIRN_CACHE_DIR": cache}

    def prepare(self, run: int) -> dict[str, tuple[list[str], list[str], dict[str, str]]]:
        """For each tool: its backup and restore command lines and environment (initialised)."""
        src, out = str(self.work / "corpus"), self.work / f"out-{run}"
        cairn = [sys.executable, "-m", "cairn.cli.main"]
        tools: dict[str, tuple[list[str], list[str], dict[str, str]]] = {}
        repos = {
            "local": str(self.work / f"local-{run}"),
            "s3": self.server.location(prefix=f"cairn-{run}"),
        }
        for short, repo in repos.items():
            env = self.cairn_env(repo, run, short)
            subprocess.run([*cairn, "init"], env=env, check=True, capture_output=True)
            backup = [*cairn, "backup", "--no-cache", src]
            restore = [*cairn, "restore", "latest", "--target", str(out / short)]
            tools["cairn, local folder" if short == "local" else "cairn, s3"] = (
                backup,
                restore,
                env,
            )
        if shutil.which("restic"):
            repo = f"s3:{self.server.endpoint}/{S3_BUCKET}/restic-{run}"
            env = {**self.base, "RESTIC_REPOSITORY": repo}
            subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
            restore = ["restic", "restore", "latest", "--target", str(out / "restic")]
            tools["restic, s3"] = (["restic", "backup", src], restore, env)
        return tools

    def rclone(self) -> tuple[Step, Step]:
        env = {
            **{k: v for k, v in self.base.items() if k != "AWS_CA_BUNDLE"},  # rclone 1.60 chokes
            "RCLONE_CONFIG_B_TYPE": "s3",
            "RCLONE_CONFIG_B_PROVIDER": "Other",
            "RCLONE_CONFIG_B_ENDPOINT": self.server.endpoint,
            "RCLONE_CONFIG_B_ACCESS_KEY_ID": self.base["AWS_ACCESS_KEY_ID"],
            "RCLONE_CONFIG_B_SECRET_ACCESS_KEY": self.base["AWS_SECRET_ACCESS_KEY"],
        }
        pid = self.server.process.pid if self.server.process else None
        src, back = str(self.work / "corpus"), str(self.work / "rclone-out")
        up = timed(["rclone", "copy", src, f"b:{S3_BUCKET}/rclone"], env, pid)
        down = timed(["rclone", "copy", f"b:{S3_BUCKET}/rclone", back], env, pid)
        return up, down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--pin-store", default="", help="taskset -c CPUS for SeaweedFS")
    parser.add_argument("--weed-arg", action="append", default=[])
    parser.add_argument("--rclone", action="store_true")
    parser.add_argument("--workdir", default=None)
    options = parser.parse_args()
    work = Path(options.workdir or tempfile.mkdtemp(prefix="cairn-bench-s3-"))
    if options.workdir:
        shutil.rmtree(work, ignore_errors=True)
    corpus(work, options.size_mib)
    launcher = ("taskset", "-c", options.pin_store) if options.pin_store else ()
    server = SeaweedS3(
        work / "seaweed", volume_size_mb=1024, launcher=launcher, extra=tuple(options.weed_arg)
    )
    server.start()
    rows: list[tuple[str, str, Step]] = []
    try:
        tools = Tools(work, server)
        pid = server.process.pid if server.process else None
        for run in range(1, options.runs + 1):
            prepared = tools.prepare(run)
            for name, (backup, _, env) in prepared.items():
                rows.append((f"run {run}: {name}", "backup", timed(backup, env, pid)))
            for name, (_, restore, env) in prepared.items():
                rows.append((f"run {run}: {name}", "restore", timed(restore, env, pid)))
            shutil.rmtree(work / f"out-{run}", ignore_errors=True)
        if options.rclone and shutil.which("rclone"):
            up, down = tools.rclone()
            rows += [("rclone copy, s3", "backup", up), ("rclone copy, s3", "restore", down)]
    finally:
        server.stop()
    report(options, rows)
    shutil.rmtree(work, ignore_errors=True)


def report(options: argparse.Namespace, rows: list[tuple[str, str, Step]]) -> None:
    settings = " ".join(options.weed_arg) or "none"
    pinned = f"taskset -c {options.pin_store}" if options.pin_store else "unpinned"
    print(f"{options.size_mib} MiB corpus; SeaweedFS {pinned}, extra settings: {settings}\n")
    print("| step | what | wall s | client CPU s | store CPU s |\n|---|---|---|---|---|")
    for name, what, (wall, client, store) in rows:
        print(f"| {name} | {what} | {wall:.1f} | {client:.1f} | {store:.1f} |")
    backups = {n: s for n, w, s in rows if w == "backup"}
    for other in ("cairn, s3", "restic, s3"):
        ratios = [
            backups[f"run {r}: {other}"][0] / backups[f"run {r}: cairn, local folder"][0]
            for r in range(1, options.runs + 1)
            if f"run {r}: {other}" in backups
        ]
        if ratios:
            each = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"\n{other} backup / cairn local backup, run by run: {each}", end="")
            print(f" (median {statistics.median(ratios):.2f})")


if __name__ == "__main__":
    main()
