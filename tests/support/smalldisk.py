"""A real full disk for tests: a small tmpfs mounted on a folder, and a filler that takes every
byte left on it (RELIABILITY.md R5, S9).

Mounting needs root, which CI has; elsewhere the test is skipped with that reason. A mock of
ENOSPC would not show what SQLite really does on a full disk (it fails at COMMIT, and may leave
the transaction open), which is what these tests are about.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(mount_point: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `mount_point` for the body of the `with`."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path) -> None:
    """Write `path` until the disk it is on has no byte left (then shrinking writes, so the
    last partial block is taken too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 1 << 10, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
