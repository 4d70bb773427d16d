"""An interrupted first backup keeps what it stored: the next run does not upload it again."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

from tests.support.clitools import Cairn, manifest


def test_a_killed_first_backup_resumes_from_what_it_stored(tmp_path: Path) -> None:
    tool = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    tool.run("init", "--pack-size", "64KiB")
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(11)
    for i in range(150):
        (src / f"part{i:03}.bin").write_bytes(rng.randbytes(200 * 1024))
    total = 150 * 200 * 1024

    # One blob per 64 KiB pack, an index every 64 packs: SIGKILL at the 100th durable publish
    # comes after the first index and before the end.
    crash = tool.env(CAIRN_CRASH_AT="local.save.publish:100")
    killed = tool.run("backup", str(src), check=False, env=crash)
    assert killed.code == -signal.SIGKILL
    assert not list((Path(tool.repo) / "snapshots").iterdir()), (
        "a killed backup commits no snapshot"
    )
    assert list((Path(tool.repo) / "index").iterdir()), "indexes were flushed while it ran"

    resumed = tool.run("backup", str(src), "--json").json()
    assert resumed["bytes_added"] < 0.6 * total, "data stored before the kill is not stored again"
    tool.run("check", "--read-data")
    tool.run("restore", "latest", "--target", str(tmp_path / "out"))
    assert manifest(tmp_path / "out" / src.relative_to("/")) == manifest(src)
    assert os.path.exists(tmp_path / "repo" / "config")
