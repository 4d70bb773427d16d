"""Cairn's backup and restore to an S3 bucket (a SeaweedFS started here, on loopback) beside the
same to a local folder, and, where installed, `restic -r s3:` and `rclone copy` to the same
server (Debian's restic and rclone). A benchmark: it prints a Markdown table; nothing asserts on
time.

    python bench/s3.py --size-mib 200
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.storageservers import S3_BUCKET, SeaweedS3


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


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    done = subprocess.run(args, env=env, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--workdir", default=None)
    options = parser.parse_args()
    work = Path(options.workdir or tempfile.mkdtemp(prefix="cairn-bench-s3-"))
    src = corpus(work, options.size_mib)
    server = SeaweedS3(work / "seaweed", volume_size_mb=1024)
    server.start()
    rows: list[tuple[str, float, float | None]] = []
    try:
        base = {
            **os.environ,
            **server.env(),
            "CAIRN_PASSWORD": "bench",
            "CAIRN_KDF": "t=1,m=64,p=1",
        }
        cairn = [sys.executable, "-m", "cairn.cli.main"]
        for name, repo in (
            ("cairn, local folder", str(work / "local-repo")),
            ("cairn, s3", server.location(prefix="cairn")),
        ):
            env = {
                **base,
                "CAIRN_REPOSITORY": repo,
                "CAIRN_CACHE_DIR": str(work / f"cache-{len(rows)}"),
            }
            subprocess.run([*cairn, "init"], env=env, check=True, capture_output=True)
            backup = timed([*cairn, "backup", "--no-cache", str(src)], env)
            out = work / f"restore-{len(rows)}"
            restore = timed([*cairn, "restore", "latest", "--target", str(out)], env)
            rows.append((name, backup, restore))
        if shutil.which("restic"):
            env = {
                **base,
                "RESTIC_PASSWORD": "bench",
                "RESTIC_REPOSITORY": f"s3:{server.endpoint}/{S3_BUCKET}/restic",
            }
            subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
            backup = timed(["restic", "backup", str(src)], env)
            restore = timed(
                ["restic", "restore", "latest", "--target", str(work / "restic-out")], env
            )
            rows.append(("restic, s3", backup, restore))
        if shutil.which("rclone"):
            env = {
                **{k: v for k, v in base.items() if k != "AWS_CA_BUNDLE"},  # rclone 1.60 chokes
                "RCLONE_CONFIG_B_TYPE": "s3",
                "RCLONE_CONFIG_B_PROVIDER": "Other",
                "RCLONE_CONFIG_B_ENDPOINT": server.endpoint,
                "RCLONE_CONFIG_B_ACCESS_KEY_ID": base["AWS_ACCESS_KEY_ID"],
                "RCLONE_CONFIG_B_SECRET_ACCESS_KEY": base["AWS_SECRET_ACCESS_KEY"],
            }
            copy = timed(["rclone", "copy", str(src), f"b:{S3_BUCKET}/rclone"], env)
            back = timed(["rclone", "copy", f"b:{S3_BUCKET}/rclone", str(work / "rclone-out")], env)
            rows.append(("rclone copy, s3", copy, back))
    finally:
        server.stop()
    print(f"| {options.size_mib} MiB corpus | backup s | restore s |\n|---|---|---|")
    for name, backup, restore in rows:
        print(
            f"| {name} | {backup:.1f} | {restore:.1f} |"
            if restore
            else f"| {name} | {backup:.1f} | – |"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
