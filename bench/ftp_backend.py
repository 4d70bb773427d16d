"""Cairn's backup and restore of the bench corpus to a local folder, and to pure-ftpd over plain
FTP and FTPS on loopback, side by side (docs/performance.md, "FTP").

python bench/ftp_backend.py WORKDIR [--scale 0.2]

Needs root (pure-ftpd) and Debian's pure-ftpd; prints one line per target, and, when Debian's
rclone is installed, `rclone copy` of the same corpus to the same server and back.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import make
from tests.support.storageservers import FTP_PASSWORD, PureFtpd, start_pure_ftpd


def cairn(env: dict[str, str], *args: str) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "cairn.cli.main", *args], env=env, check=True)
    return time.monotonic() - start


def rclone(server: PureFtpd, corpus: Path, workdir: Path, size: int) -> None:
    """`rclone copy` up and down, over plain FTP and explicit TLS, 4 transfers (as Cairn's 4
    connections)."""
    obscured = subprocess.run(
        ["rclone", "obscure", FTP_PASSWORD],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = server.port
    for name, tls in (("ftp", ""), ("ftps", ",explicit_tls=true,no_check_certificate=true")):
        options = f"host=127.0.0.1,port={port},user=cairn,pass={obscured},concurrency=4{tls}"
        remote = f":ftp,{options}:/rclone-{name}"
        back = workdir / f"rclone-back-{name}"
        shutil.rmtree(back, ignore_errors=True)
        times = []
        for source, target in ((str(corpus), remote), (remote, str(back))):
            start = time.monotonic()
            subprocess.run(
                ["rclone", "copy", "--transfers", "4", source, target],
                check=True,
            )
            times.append(time.monotonic() - start)
        up, down = times
        print(
            f"rclone {name:5} up {up:6.1f} s ({size / up / 2**20:6.1f} MiB/s)  "
            f"down {down:6.1f} s ({size / down / 2**20:6.1f} MiB/s)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--scale", type=float, default=0.2)
    args = parser.parse_args()
    corpus = args.workdir / "corpus"
    if not corpus.exists():
        make(corpus, args.scale)
    size = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
    base = Path(tempfile.mkdtemp(prefix="cairn-ftpbench-"))
    os.chmod(base, 0o755)  # noqa: S103 (the server runs as nobody and must reach its data)
    (base / "data").mkdir()
    server = start_pure_ftpd(base, base / "data")
    try:
        targets = {
            "local": str(args.workdir / "local-repo"),
            "ftp": server.location("/ftp-repo", tls=False),
            "ftps": server.location("/ftps-repo"),
        }
        for name, location in targets.items():
            env = dict(os.environ, **server.environ())
            env.update(
                CAIRN_REPOSITORY=location,
                CAIRN_PASSWORD="bench",  # noqa: S106 (a throwaway repository)
                CAIRN_CACHE_DIR=str(args.workdir / f"cache-{name}"),
            )
            shutil.rmtree(args.workdir / f"restore-{name}", ignore_errors=True)
            cairn(env, "init")
            backup = cairn(env, "backup", "--quiet", str(corpus))
            restore = cairn(
                env, "restore", "latest", "--target", str(args.workdir / f"restore-{name}")
            )
            print(
                f"{name:6} backup {backup:6.1f} s ({size / backup / 2**20:6.1f} MiB/s)  "
                f"restore {restore:6.1f} s ({size / restore / 2**20:6.1f} MiB/s)",
                flush=True,
            )
        if shutil.which("rclone"):
            rclone(server, corpus, args.workdir, size)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
