"""Cairn to a WebDAV share vs to a local folder (and `rclone copy`), on loopback, interleaved.

python bench/webdav.py [--server apache|wsgidav] [--scale 0.05] [--runs 2] [--rclone]
                       [--workdir /dev/shm/cairn-webdav]

Starts the share's server over plain http on loopback with basic authentication: Apache httpd's
mod_dav (Debian apache2, tests/support/apachedav.py; the default where installed) or wsgidav
(tests/support/webdavd.py). Then, `--runs` times, in this order so that the machine's load
falls on both alike: Cairn's initial backup to a fresh local folder, Cairn's initial backup to a
fresh folder of the share, and Cairn's full restore from it. With `--rclone`, `rclone copy` of
the corpus to the share and back (Debian's rclone), once. Prints a Markdown table of every run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_ROOT), str(_ROOT / "bench")]

import corpus  # noqa: E402
from cputime import timed  # noqa: E402
from tests.support import apachedav  # noqa: E402
from tests.support.storageservers import WebDavServer  # noqa: E402

Share = WebDavServer | apachedav.ApacheDav


Row = tuple[str, float, float, float]
"""A step: its label, wall seconds, the client's CPU seconds and the server's CPU seconds."""


def size_of(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@contextlib.contextmanager
def share(kind: str, work: Path) -> Iterator[Share]:
    if kind == "apache":
        with apachedav.apache_dav(auth="basic", tls=False, parent=work) as server:
            yield server
        return
    (work / "share").mkdir(parents=True)
    wsgidav = WebDavServer(work / "share", auth="basic")
    wsgidav.start()
    try:
        yield wsgidav
    finally:
        wsgidav.stop()


def cairn_runs(server: Share, data: Path, work: Path, runs: int) -> list[Row]:
    cairn = [sys.executable, "-m", "cairn.cli.main"]
    env = {
        **os.environ,
        **server.environ(),
        "CAIRN_PASSWORD": "bench",
        "CAIRN_KDF": "t=1,m=65536,p=1",
    }
    rows: list[Row] = []
    for run in range(1, runs + 1):
        env["CAIRN_CACHE_DIR"] = str(work / f"cache-{run}")
        local = str(work / f"local-repo-{run}")
        dav = server.location(f"cairn-{run}")
        for repo in (local, dav):
            subprocess.run([*cairn, "-r", repo, "init"], env=env, check=True, capture_output=True)
        backup_local = timed([*cairn, "-r", local, "backup", str(data)], env, server.pid)
        backup_dav = timed([*cairn, "-r", dav, "backup", str(data)], env, server.pid)
        out = work / f"out-{run}"
        restore = timed(
            [*cairn, "-r", dav, "restore", "latest", "--target", str(out)], env, server.pid
        )
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)
        rows += [
            (f"run {run}: Cairn backup to a local folder", *backup_local),
            (f"run {run}: Cairn backup to WebDAV", *backup_dav),
            (f"run {run}: Cairn full restore from WebDAV", *restore),
        ]
    return rows


def rclone_runs(server: Share, data: Path, work: Path) -> list[Row]:
    obscured = subprocess.run(
        ["rclone", "obscure", apachedav.PASSWORD], capture_output=True, text=True, check=True
    ).stdout.strip()
    remote = [
        f"--webdav-url={server.url()}",
        f"--webdav-user={apachedav.USER}",
        f"--webdav-pass={obscured}",
        "--config=/dev/null",
    ]
    env = dict(os.environ)
    up = timed(["rclone", "copy", str(data), ":webdav:rclone", *remote], env, server.pid)
    down = timed(
        ["rclone", "copy", ":webdav:rclone", str(work / "rclone-out"), *remote], env, server.pid
    )
    return [("rclone copy to WebDAV", *up), ("rclone copy from WebDAV", *down)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = "apache" if apachedav.installed() else "wsgidav"
    parser.add_argument("--server", choices=("apache", "wsgidav"), default=default)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rclone", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm/cairn-webdav"))
    args = parser.parse_args()
    work: Path = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = work / "corpus"
    corpus.make(data, args.scale)
    mib = size_of(data) / 2**20
    with share(args.server, work) as server:
        rows = cairn_runs(server, data, work, args.runs)
        if args.rclone and shutil.which("rclone"):
            rows += rclone_runs(server, data, work)
    print(f"corpus: {mib:.0f} MiB (scale {args.scale}), loopback, {args.server} over http\n")
    print("| step | seconds | MiB/s | client CPU s | server CPU s |")
    print("|---|---|---|---|---|")
    for label, seconds, client, served in rows:
        print(f"| {label} | {seconds:.1f} | {mib / seconds:.1f} | {client:.1f} | {served:.1f} |")
    local = [r[1] for r in rows if r[0].endswith("to a local folder")]
    dav = [r[1] for r in rows if r[0].endswith("backup to WebDAV")]
    ratios = [d / loc for d, loc in zip(dav, local, strict=True)]
    each = ", ".join(f"{r:.2f}" for r in ratios)
    print(
        f"\nbackup to WebDAV / to a local folder, run by run: {each}"
        f" (median {statistics.median(ratios):.2f}); medians: local "
        f"{statistics.median(local):.1f} s, WebDAV {statistics.median(dav):.1f} s"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
