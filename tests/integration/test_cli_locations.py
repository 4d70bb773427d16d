"""What `init` and the other commands say about a location that holds no repository (issue 11,
item 16): nothing there is "no repository" (E010); something else there is "not a Cairn
repository" (E015), never a storage failure (E035)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.clitools import Cairn


def _other_files(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"jpeg")
    return folder


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("x")
    return tmp_path / "file"


def _below_a_file(tmp_path: Path) -> Path:
    return _a_file(tmp_path) / "repo"


@pytest.mark.parametrize("where", [_other_files, _a_file, _below_a_file])
@pytest.mark.parametrize("command", [["init"], ["snapshots"]])
def test_a_location_holding_something_else_is_e015(
    tmp_path: Path, where: object, command: list[str]
) -> None:
    location = where(tmp_path)  # type: ignore[operator]
    result = Cairn(location).run(*command, check=False)
    assert result.code == 15 and "CAIRN-E015" in result.err, result.err
    assert str(location) in result.err
    assert "hint:" in result.err and "the storage failed" not in result.err


def test_init_refuses_other_files_and_leaves_them_alone(tmp_path: Path) -> None:
    folder = _other_files(tmp_path)
    result = Cairn(folder).run("init", check=False)
    assert "holiday.jpg" in result.err and "empty folder" in result.err
    assert [p.name for p in folder.iterdir()] == ["holiday.jpg"]


def test_init_accepts_a_freshly_formatted_disk(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    (disk / "lost+found").mkdir(parents=True)
    cairn = Cairn(disk)
    assert cairn.run("snapshots", check=False).code == 10, "nothing there yet: no repository"
    cairn.run("init")
    assert cairn.run("snapshots").code == 0


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: None])
def test_an_empty_or_missing_folder_is_no_repository(tmp_path: Path, make: object) -> None:
    make(tmp_path / "repo")  # type: ignore[operator]
    result = Cairn(tmp_path / "repo").run("snapshots", check=False)
    assert result.code == 10 and "cairn init" in result.err
