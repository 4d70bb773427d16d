"""Offsite replication, measured (issue 14's figures): the bench corpus backed up into a
repository, then that repository replicated by Cairn's engine (from its journal) and by
`rclone sync` of the same folder, to SFTP (OpenSSH sshd) and to S3 (SeaweedFS), both started
here as the tests start them; then the day of changes, backed up and replicated again; then a
run with nothing to do. Prints a Markdown table.

    python bench/replication.py --scale 0.1 --workdir /dev/shm/replbench

The journal is filled as the server fills it when a client backs up through it: one entry per
object stored, in the order of the write (packs, index, reflists, snapshots), and one per
removal. `rclone` is Debian's (`apt-get install rclone`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus
from cairn.backends.base import Backend, Handle
from cairn.backends.local import LocalBackend
from cairn.core.clock import FrozenClock
from cairn.replication.db import ReplicationDb
from cairn.replication.engine import SEND_ORDER, Replicator
from cairn.replication.journal import Journal
from cairn.replication.layout import TargetLayouts
from cairn.replication.model import Action, Target
from tests.support.storageservers import S3_BUCKET, seaweed_s3, ssh_server

MiB = 2**20
TENANT = "0" * 32


class OneRepository:
    """The engine's source: one tenant, the repository folder."""

    def __init__(self, root: Path) -> None:
        self.backend = LocalBackend(root)

    def tenant_ids(self) -> list[str]:
        return [TENANT]

    def tenant_name(self, tenant_id: str) -> str | None:
        return "bench"

    def open(self, tenant_id: str) -> Backend:
        return self.backend


def listing(repo: Path) -> dict[Handle, int]:
    backend = LocalBackend(repo)
    return {info.handle: info.size for kind in SEND_ORDER for info in backend.list(kind)}


def journal_changes(journal: Journal, before: dict[Handle, int], after: dict[Handle, int]) -> int:
    """Journal what a backup changed, as the server would have; the bytes it added."""
    added = 0
    for kind in SEND_ORDER:
        for handle, size in after.items():
            if handle.kind is kind and handle not in before:
                journal.record(TENANT, handle, size, Action.ADD)
                added += size
    for handle, size in before.items():
        if handle not in after:
            journal.record(TENANT, handle, size, Action.REMOVE)
    return added


def cairn(args: list[str], repo: Path, work: Path) -> None:
    env = {
        **os.environ,
        "CAIRN_REPOSITORY": str(repo),
        "CAIRN_PASSWORD": "bench",
        "CAIRN_KDF": "t=1,m=64,p=1",
        "XDG_CACHE_HOME": str(work / "cache"),
    }
    subprocess.run([sys.executable, "-m", "cairn.cli.main", *args], env=env, check=True)


def rclone_sync(repo: Path, remote: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["rclone", "sync", str(repo), remote, "--exclude", "locks/**", "-q"],
        env={**{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}, **env},
        check=True,
    )
    return time.perf_counter() - start


def replicate(replicator: Replicator, target: Target, layouts: TargetLayouts) -> tuple[float, int]:
    start = time.perf_counter()
    report = replicator.run(target, layouts)
    took = time.perf_counter() - start
    if report.error:
        raise SystemExit(f"replication to {target.name} failed: {report.error}")
    return took, report.bytes_sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm/replbench"))
    options = parser.parse_args()
    work: Path = options.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    source, repo = work / "corpus", work / "repo"
    corpus.make(source, options.scale)
    cairn(["init"], repo, work)
    cairn(["backup", str(source)], repo, work)

    with ExitStack() as stack:
        sshd = stack.enter_context(ssh_server(work / "sshd"))
        seaweed = stack.enter_context(seaweed_s3(work / "seaweed"))
        os.environ.update(seaweed.env(**sshd.env()))
        rclone_env = {
            "RCLONE_SFTP_HOST": "127.0.0.1",
            "RCLONE_SFTP_PORT": str(sshd.port),
            "RCLONE_SFTP_USER": sshd.user,
            "RCLONE_SFTP_KEY_FILE": str(sshd.key),
            "RCLONE_SFTP_KNOWN_HOSTS_FILE": str(sshd.known_hosts),
            "RCLONE_S3_PROVIDER": "SeaweedFS",
            "RCLONE_S3_ENDPOINT": seaweed.endpoint,
            "RCLONE_S3_ACCESS_KEY_ID": seaweed.env()["AWS_ACCESS_KEY_ID"],
            "RCLONE_S3_SECRET_ACCESS_KEY": seaweed.env()["AWS_SECRET_ACCESS_KEY"],
            "RCLONE_S3_REGION": "us-east-1",
        }
        kinds = {
            "sftp": (sshd.location(work / "cairn-sftp"), f":sftp:{work / 'rclone-sftp'}"),
            "s3": (seaweed.location(prefix="cairn"), f":s3:{S3_BUCKET}/rclone"),
        }
        for _, remote in kinds.values():  # a fresh SeaweedFS allocates volumes on first writes
            rclone_sync(repo, remote.rsplit("/", 1)[0] + "/warm-up", rclone_env)
        db = ReplicationDb(work / "replication.db")
        clock = FrozenClock(datetime(2026, 12, 7, tzinfo=UTC))
        journal = Journal(db, clock)
        replicator = Replicator(db, OneRepository(repo), "bench-server", clock)
        first = listing(repo)
        initial_bytes = journal_changes(journal, {}, first)
        rows: list[str] = []
        results: dict[str, dict[str, float]] = {}
        opened: dict[str, TargetLayouts] = {}  # kept open from run to run, as `serve` does
        for name, (location, remote) in kinds.items():
            with db.write() as conn:
                conn.execute("INSERT INTO targets VALUES (?, '{}', 0)", (name,))
            target = Target(name, location)
            layouts = opened[name] = TargetLayouts(location, "bench-server")
            took, sent = replicate(replicator, target, layouts)
            results[name] = {
                "initial": took,
                "initial_rclone": rclone_sync(repo, remote, rclone_env),
            }
            results[name]["initial_bytes"] = sent
        corpus.change(source, options.scale)
        cairn(["backup", str(source)], repo, work)
        second = listing(repo)
        new_bytes = journal_changes(journal, first, second)
        for name, (location, remote) in kinds.items():
            target = Target(name, location)
            layouts = opened[name]
            took, sent = replicate(replicator, target, layouts)
            results[name]["day"] = took
            results[name]["day_bytes"] = sent
            results[name]["day_rclone"] = rclone_sync(repo, remote, rclone_env)
            start = time.perf_counter()
            for _ in range(100):
                replicator.run(target, layouts)
            results[name]["idle"] = (time.perf_counter() - start) / 100
            results[name]["idle_rclone"] = rclone_sync(repo, remote, rclone_env)
            layouts.close()

    rows.append(
        f"Repository: {initial_bytes / MiB:.1f} MiB; the day of changes added "
        f"{new_bytes / MiB:.1f} MiB (scale {options.scale}).\n"
    )
    rows.append("| target | run | Cairn s | rclone sync s | ratio | Cairn bytes sent / new data |")
    rows.append("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        rows.append(
            f"| {name} | initial | {r['initial']:.2f} | {r['initial_rclone']:.2f} | "
            f"{r['initial'] / r['initial_rclone']:.2f} | {r['initial_bytes'] / initial_bytes:.3f} |"
        )
        rows.append(
            f"| {name} | day of changes | {r['day']:.2f} | {r['day_rclone']:.2f} | "
            f"{r['day'] / r['day_rclone']:.2f} | {r['day_bytes'] / max(new_bytes, 1):.3f} |"
        )
        rows.append(
            f"| {name} | nothing to do | {r['idle'] * 1000:.2f} ms | {r['idle_rclone']:.2f} | "
            f"{r['idle'] / r['idle_rclone']:.4f} | 0 requests |"
        )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
