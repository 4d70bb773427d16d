"""forget and prune while a backup runs, with the real command: nothing waits, nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.clitools import Cairn, manifest


def _tree(root: Path, seed: int, files: int, size: int) -> Path:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"f{i:03}.bin").write_bytes(os.urandom(size) if seed else bytes(size))
    return root


def test_forget_and_prune_while_a_backup_runs(tmp_path: Path) -> None:
    cairn = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    cairn.run("init")
    old = _tree(tmp_path / "old", 1, 20, 200_000)
    cairn.run("backup", str(old))
    cairn.run("backup", str(old))  # two snapshots of `old`: forget keeps one
    big = _tree(tmp_path / "big", 1, 60, 2_000_000)
    backup = subprocess.Popen(
        [sys.executable, "-m", "cairn.cli.main", "backup", str(big)],
        env=cairn.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    locks = tmp_path / "repo" / "locks"
    deadline = time.monotonic() + 60
    while not any(locks.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(locks.iterdir()), "the backup saved no lock"
    cairn.run("forget", "--keep-last", "1", "--path", str(old))
    first = cairn.run("--json", "prune", "--max-unused", "0").json()
    _, err = backup.communicate(timeout=300)
    assert backup.returncode == 0, err.decode()
    assert first["condemned_packs"] > 0
    cairn.run("check", "--read-data")
    second = cairn.run("--json", "prune", "--max-unused", "0").json()
    assert second["swept_packs"] > 0, "the backup has ended: what the first prune condemned goes"
    cairn.run("check", "--read-data")
    for source in (big, old):
        target = tmp_path / f"restore-{source.name}"
        cairn.run("restore", "latest", "--path", str(source), "--target", str(target))
        assert manifest(target / source.relative_to("/")) == manifest(source)


def test_forget_with_prune_prints_one_json_document(tmp_path: Path) -> None:
    """forget --prune --json: what forget removed and what prune did, in one document."""
    cairn = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    cairn.run("init")
    cairn.run("backup", str(_tree(tmp_path / "old", 1, 3, 200_000)))
    cairn.run("backup", str(_tree(tmp_path / "new", 2, 3, 200_000)))
    done = cairn.run("forget", "--keep-last", "1", "--group-by", "", "--prune", "--json").json()
    assert done["removed"] == 1 and len(done["to_remove"]) == 1
    assert done["prune"]["condemned_packs"] > 0 and done["prune"]["dry_run"] is False
    alone = cairn.run("forget", "--keep-last", "1", "--group-by", "", "--json").json()
    assert alone["removed"] == 0 and alone["prune"] is None
