"""The safe restore writer: nothing escapes the target, whatever the names or planted symlinks."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.format.tree import Node
from cairn.restore.fswriter import SafeTarget, UnsafePathError, check_name


@pytest.mark.parametrize("name", [b"", b".", b"..", b"a/b", b"/etc", b"x\0y"])
def test_unsafe_names_are_refused(name: bytes) -> None:
    with pytest.raises(UnsafePathError):
        check_name(name)


def test_a_planted_symlink_parent_cannot_redirect_writes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "evil").symlink_to(outside)
    writer = SafeTarget(target)
    with pytest.raises((OSError, UnsafePathError)):
        writer.make_dir((b"evil", b"sub"))
    with pytest.raises(OSError):
        writer.create_file((b"evil", b"x"), 1)
    writer.close()
    assert list(outside.iterdir()) == []


def test_a_symlink_in_place_of_a_file_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "victim"
    outside.write_text("keep me")
    target = tmp_path / "target"
    target.mkdir()
    (target / "file").symlink_to(outside)
    writer = SafeTarget(target)
    with pytest.raises(OSError):
        writer.create_file((b"file",), 3)
    writer.remove_if_exists((b"file",))
    fd = writer.create_file((b"file",), 3)
    writer.write_chunk(fd, 0, b"new")
    writer.finish_file(fd, 3)
    writer.close()
    assert outside.read_text() == "keep me"
    assert (target / "file").read_text() == "new"


def test_sparse_writes_leave_holes(tmp_path: Path) -> None:
    writer = SafeTarget(tmp_path)
    fd = writer.create_file((b"sparse",), 4 << 20)
    writer.write_chunk(fd, 0, b"x" + bytes((4 << 20) - 2) + b"y")
    writer.finish_file(fd, 4 << 20)
    writer.close()
    st = (tmp_path / "sparse").stat()
    assert st.st_size == 4 << 20
    assert st.st_blocks * 512 < 1 << 20
    data = (tmp_path / "sparse").read_bytes()
    assert data[0:1] == b"x" and data[-1:] == b"y" and data.count(0) == len(data) - 2


def test_metadata_is_applied(tmp_path: Path) -> None:
    writer = SafeTarget(tmp_path)
    fd = writer.create_file((b"f",), 0)
    writer.finish_file(fd, 0)
    node = Node(name=b"f", type="file", mode=0o100640, mtime=1_234_567_890_123_456_789, atime=5)
    writer.apply_metadata((b"f",), node)
    writer.make_symlink((b"l",), b"\xff target")
    writer.close()
    st = (tmp_path / "f").stat()
    assert st.st_mode & 0o7777 == 0o640
    assert st.st_mtime_ns == 1_234_567_890_123_456_789
    assert os.readlink(os.fsencode(tmp_path / "l")) == b"\xff target"


components = st.lists(
    st.sampled_from([b"..", b".", b"/", b"a", b"b/..", b"\0", b"", b"../../x", b"c"]),
    min_size=1,
    max_size=4,
)


@settings(max_examples=100, deadline=None)
@given(components)
def test_no_component_list_writes_outside(
    tmp_path_factory: pytest.TempPathFactory, comps: list[bytes]
) -> None:
    base = tmp_path_factory.mktemp("jail")
    sentinel = base / "sibling"
    sentinel.mkdir()
    target = base / "target"
    writer = SafeTarget(target)
    with contextlib.suppress(UnsafePathError, OSError):
        writer.make_dir(tuple(comps[:-1]))
        fd = writer.create_file(tuple(comps), 1)
        writer.finish_file(fd, 1)
    writer.close()
    assert list(sentinel.iterdir()) == []
    assert sorted(p.name for p in base.iterdir()) == ["sibling", "target"]
