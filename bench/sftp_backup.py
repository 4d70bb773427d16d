"""Backup and restore over SFTP, measured: the bench corpus (bench/corpus.py) backed up and
restored by Cairn to a local folder and to a real OpenSSH sshd on loopback (started here, as the
tests start it), by restic to the same sshd, and copied there and back by `rclone copy` (Debian's
restic and rclone). With ``--rounds N`` every tool runs N times, one after another in each round
(so Cairn's local and SFTP runs interleave and share the machine's load alike), each into a fresh
folder, and the table shows the medians. Prints a Markdown table; no timing is asserted anywhere.

    python bench/sftp_backup.py --scale 0.2 --rounds 3 --workdir /tmp/sftpbackup
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.storageservers import SshServer, ssh_server

PASSWORD = "bench passphrase"  # noqa: S105 - a throwaway benchmark repository
CORPUS_SCRIPT = Path(__file__).resolve().parent / "corpus.py"


def timed(cmd: list[str], env: dict[str, str], limit: float = 300) -> float:
    """Seconds `cmd` took; NaN when it did not finish within `limit`."""
    start = time.perf_counter()
    try:
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, timeout=limit)
    except subprocess.TimeoutExpired:
        return float("nan")
    return time.perf_counter() - start


def same_tree(a: Path, b: Path) -> bool:
    done = subprocess.run(["diff", "-rq", "--no-dereference", str(a), str(b)], capture_output=True)
    return done.returncode == 0


def runs(server: SshServer, work: Path, corpus: Path) -> dict[str, tuple[float, float, bool]]:
    """One round: every tool once, into folders under `work` (which must be new)."""
    work.mkdir(parents=True)
    env = {
        **os.environ,
        **server.env(CAIRN_SFTP_NO_AGENT="1"),
        "CAIRN_PASSWORD": PASSWORD,
        "RESTIC_PASSWORD": PASSWORD,
        "CAIRN_CACHE_DIR": str(work / "cairn-cache"),
    }
    cairn = [sys.executable, "-m", "cairn.cli.main", "-q"]
    ssh = (
        f"ssh -i {server.key} -p {server.port} -o UserKnownHostsFile={server.known_hosts} "
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
    rclone_env = {
        **env,
        "RCLONE_CONFIG_NAS_TYPE": "sftp",
        "RCLONE_CONFIG_NAS_HOST": "127.0.0.1",
        "RCLONE_CONFIG_NAS_PORT": str(server.port),
        "RCLONE_CONFIG_NAS_USER": server.user,
        "RCLONE_CONFIG_NAS_KEY_FILE": str(server.key),
        "RCLONE_CONFIG_NAS_KNOWN_HOSTS_FILE": str(server.known_hosts),
    }
    results: dict[str, tuple[float, float, bool]] = {}

    def cairn_at(name: str, location: str) -> None:
        target = work / f"{name}-out"
        subprocess.run(
            [*cairn, "-r", location, "init"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        up = timed([*cairn, "-r", location, "backup", str(corpus)], env)
        down = timed([*cairn, "-r", location, "restore", "latest", "--target", str(target)], env)
        results[name] = (up, down, same_tree(corpus, target / corpus.relative_to("/")))

    cairn_at("Cairn, local folder", str(work / "cairn-local"))
    cairn_at("Cairn, SFTP", server.location(work / "cairn-sftp"))
    if shutil.which("restic"):
        location = f"sftp:{server.user}@127.0.0.1:{work / 'restic-sftp'}"
        target = work / "restic-out"
        subprocess.run(
            [*restic, "-r", location, "init"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        up = timed([*restic, "-r", location, "backup", str(corpus)], env)
        down = timed([*restic, "-r", location, "restore", "latest", "--target", str(target)], env)
        results["restic 0.14, SFTP"] = (
            up,
            down,
            same_tree(corpus, target / corpus.relative_to("/")),
        )
    if shutil.which("rclone"):
        remote = f"nas:{work / 'rclone-sftp'}"
        rclone = ["rclone", "copy", "--links", "--sftp-disable-hashcheck", "--transfers", "4"]
        up = timed([*rclone, str(corpus), remote], rclone_env, limit=120)
        down = timed([*rclone, remote, str(work / "rclone-out")], rclone_env, limit=120)
        results["rclone copy (no dedup, no encryption), SFTP"] = (
            up, down, same_tree(corpus, work / "rclone-out"),
        )  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sftpbackup"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    corpus = args.workdir / "corpus"
    cmd = [sys.executable, str(CORPUS_SCRIPT), "make", str(corpus), "--scale", str(args.scale)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    size = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file() and not p.is_symlink())
    with ssh_server(args.workdir / "sshd") as server:
        rounds = [runs(server, args.workdir / f"round{i}", corpus) for i in range(args.rounds)]
    results = {
        name: (
            statistics.median(r[name][0] for r in rounds),
            statistics.median(r[name][1] for r in rounds),
            all(r[name][2] for r in rounds),
        )
        for name in rounds[0]
    }
    local = results["Cairn, local folder"][0]
    print(
        f"corpus: {size / 2**20:.0f} MiB, scale {args.scale}; loopback; seconds (lower is better), "
        f"median of {args.rounds}"
    )
    for name in results:
        print(f"  {name}: backups " + " ".join(f"{r[name][0]:.1f}" for r in rounds))
    print("| tool | initial backup s | full restore s | backup vs Cairn local | restored intact |")
    print("|---|---:|---:|---:|---|")
    for name, (up, down, intact) in results.items():
        print(
            f"| {name} | {up:.1f} | {down:.1f} | {up / local:.2f}x | {'yes' if intact else 'NO'} |"
        )


if __name__ == "__main__":
    main()
