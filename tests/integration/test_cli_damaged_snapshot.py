"""One damaged snapshot object blocks no other snapshot (issue 11, item 13).

Listing, `latest`, stats, find and a forget policy leave the damaged snapshot out with a warning
that names it; asking for that snapshot by ID still fails with its code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.clitools import Cairn


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Cairn, str, str]:
    """A repository of two snapshots whose newer one has a flipped byte: (tool, good, bad)."""
    cairn = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    cairn.run("init")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("first\n")
    cairn.run("backup", str(src))
    (src / "b.txt").write_text("second\n")
    cairn.run("backup", str(src))
    listed = cairn.run("snapshots", "--json").json()
    good, bad = listed[0]["id"], listed[1]["id"]
    path = tmp_path / "repo" / "snapshots" / bad
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    return cairn, good, bad


def _warns(err: str, bad: str) -> bool:
    return f"warning: snapshot {bad[:8]} cannot be read" in err


@pytest.mark.parametrize(
    "command",
    [
        ["snapshots"],
        ["ls", "latest"],
        ["stats"],
        ["find", "a.txt"],
        ["forget", "--keep-last", "1", "--dry-run"],
    ],
)
def test_a_damaged_snapshot_is_left_out_with_a_warning(
    damaged: tuple[Cairn, str, str], command: list[str]
) -> None:
    cairn, _good, bad = damaged
    result = cairn.run(*command)
    assert result.code == 0
    assert _warns(result.err, bad), result.err
    assert bad[:8] not in result.out


def test_latest_is_the_newest_readable_snapshot(damaged: tuple[Cairn, str, str]) -> None:
    cairn, good, _bad = damaged
    assert f"snapshot {good[:8]}" in cairn.run("ls", "latest").out
    assert [s["id"] for s in cairn.run("snapshots", "--json").json()] == [good]


def test_a_forget_policy_keeps_the_damaged_snapshot(damaged: tuple[Cairn, str, str]) -> None:
    cairn, _good, bad = damaged
    result = cairn.run("--json", "forget", "--keep-last", "1", "--dry-run")
    assert json.loads(result.out)["to_remove"] == []
    assert f"kept (forget it by ID: `cairn forget {bad[:8]}`)" in result.err


@pytest.mark.parametrize("command", [["ls"], ["stats"], ["restore", "--target", "out"]])
def test_asking_for_the_damaged_snapshot_by_id_fails(
    damaged: tuple[Cairn, str, str], command: list[str], tmp_path: Path
) -> None:
    cairn, _good, bad = damaged
    args = [*command[:1], bad[:8], *command[1:]]
    result = cairn.run(*args, check=False, cwd=tmp_path)
    assert result.code == 21 and "CAIRN-E021" in result.err
    assert f"snapshot {bad[:8]}" in result.err
