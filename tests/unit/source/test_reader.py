"""Finding a file's holes, and falling back where the file system cannot tell."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cairn.source.reader import find_holes

MiB = 1 << 20


def sparse_file(path: Path) -> int:
    with open(path, "wb") as f:
        f.write(b"head")
        f.seek(8 * MiB)
        f.write(b"tail")
        f.truncate(16 * MiB)
    if os.stat(path).st_blocks * 512 >= 8 * MiB:
        pytest.skip("this file system stores no holes (the sparse file was allocated whole)")
    return os.open(path, os.O_RDONLY)


def test_holes_are_found_and_the_offset_is_left_at_the_start(tmp_path: Path) -> None:
    fd = sparse_file(tmp_path / "f")
    try:
        holes = find_holes(fd, 16 * MiB)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
    finally:
        os.close(fd)
    assert len(holes) == 2
    assert holes[0][0] < MiB and holes[0][1] <= 8 * MiB
    assert holes[1][0] > 8 * MiB and holes[1][1] == 16 * MiB
    assert sum(end - start for start, end in holes) > 14 * MiB


def test_a_file_system_without_seek_hole_gives_no_holes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd = sparse_file(tmp_path / "f")
    real = os.lseek

    def refusing(fd: int, pos: int, how: int) -> int:
        if how in (os.SEEK_HOLE, os.SEEK_DATA):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, pos, how)

    monkeypatch.setattr(os, "lseek", refusing)
    try:
        assert find_holes(fd, 16 * MiB) == []
    finally:
        os.close(fd)
