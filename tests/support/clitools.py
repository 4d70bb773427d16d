"""Running the real `cairn` command, and describing file trees for bit-exact comparison."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAST_KDF = "t=1,m=64,p=1"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cairn:
    """Runs `cairn` against one repository with one passphrase, as a user's shell would."""

    def __init__(
        self, repo: Path | str, password: str = "correct horse", cache: Path | None = None
    ) -> None:
        self.repo = repo
        self.password = password
        self.cache = cache

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CAIRN_REPOSITORY=str(self.repo), CAIRN_PASSWORD=self.password, CAIRN_KDF=FAST_KDF
        )
        if self.cache is not None:
            env["CAIRN_CACHE_DIR"] = str(self.cache)
        env.update(extra)
        return env

    def run(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None, **kw: Any
    ) -> Result:
        return run_cairn(args, env or self.env(), check=check, **kw)


def run_cairn(
    args: Sequence[str],
    env: dict[str, str],
    *,
    check: bool = True,
    prefix: Sequence[str] = (),
    **kw: Any,
) -> Result:
    """`cairn ARGS` in its own process (`prefix` runs it through another program, such as
    `ip netns exec NS`): a non-zero exit fails the test when `check`, a traceback always."""
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "cairn.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        **kw,
    )
    result = Result(done.returncode, done.stdout, done.stderr)
    if check and done.returncode != 0:
        raise AssertionError(f"cairn {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    assert "Traceback" not in done.stderr, done.stderr
    return result


def manifest(root: Path, *, with_atime: bool = False) -> dict[bytes, tuple[Any, ...]]:
    """Everything a bit-exact restore must reproduce, per relative path (bytes)."""
    base = os.fsencode(root)
    entries: dict[bytes, tuple[Any, ...]] = {}
    inodes: dict[tuple[int, int], bytes] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in sorted(dirnames) + sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base)
            entries[rel] = _describe(full, inodes, rel)
    return entries


def _describe(path: bytes, inodes: dict[tuple[int, int], bytes], rel: bytes) -> tuple[Any, ...]:
    st = os.lstat(path)
    kind = stat.S_IFMT(st.st_mode)
    xattrs = _xattrs(path)
    common = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, xattrs)
    if stat.S_ISLNK(st.st_mode):
        return (*common, os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return (*common, st.st_mtime_ns)
    if stat.S_ISREG(st.st_mode):
        link_group = None
        if st.st_nlink > 1:
            link_group = inodes.setdefault((st.st_dev, st.st_ino), rel)
        with open(path, "rb") as f:
            content = f.read()
        return (*common, st.st_mtime_ns, st.st_size, content, link_group, _holes(path, st))
    return (*common, st.st_mtime_ns, st.st_rdev)


def _xattrs(path: bytes) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))


def _holes(path: bytes, st: os.stat_result) -> bool:
    """True when the file uses noticeably less disk than its size (it is sparse)."""
    return st.st_blocks * 512 < st.st_size // 2
