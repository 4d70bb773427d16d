"""Cairn to a WebDAV share vs to a local folder vs `rclone copy`, on loopback, in one run.

python bench/webdav.py [--scale 0.05] [--workdir /dev/shm/cairn-webdav]

Starts wsgidav (tests/support/webdavd.py, its own process, plain http on loopback, basic auth) on
the
bench corpus's scale, then times: Cairn's initial backup to a local folder; Cairn's initial
backup to the share and full restore from it; `rclone copy` of the corpus to the same share and
back (Debian's rclone). Prints a Markdown table. Informative: the share's server (wsgidav through
a WSGI bridge) bounds every WebDAV figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_ROOT), str(_ROOT / "bench")]

import corpus  # noqa: E402
from tests.support.storageservers import WEBDAV_PASSWORD, WEBDAV_USER, WebDavServer  # noqa: E402


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def size_of(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm/cairn-webdav"))
    args = parser.parse_args()
    work: Path = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    (work / "share").mkdir(parents=True)
    data = work / "corpus"
    corpus.make(data, args.scale)
    mib = size_of(data) / 2**20
    server = WebDavServer(work / "share", auth="basic")
    server.start()
    cairn = [sys.executable, "-m", "cairn.cli.main"]
    env = {
        **os.environ,
        **server.environ(),
        "CAIRN_PASSWORD": "bench",
        "CAIRN_KDF": "t=1,m=65536,p=1",
        "CAIRN_CACHE_DIR": str(work / "cache"),
    }
    rows: list[tuple[str, float]] = []
    try:
        local = str(work / "local-repo")
        subprocess.run([*cairn, "-r", local, "init"], env=env, check=True, capture_output=True)
        rows.append(
            (
                "Cairn backup to a local folder",
                timed([*cairn, "-r", local, "backup", str(data)], env),
            )
        )
        dav = server.location("cairn")
        subprocess.run([*cairn, "-r", dav, "init"], env=env, check=True, capture_output=True)
        rows.append(
            ("Cairn backup to WebDAV", timed([*cairn, "-r", dav, "backup", str(data)], env))
        )
        restore = [*cairn, "-r", dav, "restore", "latest", "--target", str(work / "out")]
        rows.append(("Cairn full restore from WebDAV", timed(restore, env)))
        if shutil.which("rclone"):
            obscured = subprocess.run(
                ["rclone", "obscure", WEBDAV_PASSWORD], capture_output=True, text=True, check=True
            ).stdout.strip()
            remote = [
                f"--webdav-url={server.url()}",
                f"--webdav-user={WEBDAV_USER}",
                f"--webdav-pass={obscured}",
                "--config=/dev/null",
            ]
            up = ["rclone", "copy", str(data), ":webdav:rclone", *remote]
            rows.append(("rclone copy to WebDAV", timed(up, env)))
            down = ["rclone", "copy", ":webdav:rclone", str(work / "rclone-out"), *remote]
            rows.append(("rclone copy from WebDAV", timed(down, env)))
    finally:
        server.stop()
    print(f"corpus: {mib:.0f} MiB (scale {args.scale}), loopback, wsgidav over http, basic auth\n")
    print("| step | seconds | MiB/s |")
    print("|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {mib / seconds:.1f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
