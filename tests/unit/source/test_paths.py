"""Named paths: the readable ones get their frame, the others a reason in words."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cairn.source.paths import frame_paths


def test_readable_missing_and_forbidden_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "here").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "secret").mkdir()
    real = os.lstat

    def forbidding(path: bytes) -> os.stat_result:
        if path.endswith(b"/secret"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "lstat", forbidding)
    base = os.fsencode(tmp_path)
    frames, missing = frame_paths(
        [base + b"/here/", base + b"/nothere", base + b"/file/sub", base + b"/secret"]
    )
    assert list(frames) == [base + b"/here"]
    assert frames[base + b"/here"][-1][0] == base
    assert dict(missing) == {
        base + b"/file/sub": "a part of the path is not a folder",
        base + b"/nothere": "does not exist",
        base + b"/secret": "cannot read: permission denied",
    }
