"""The safe restore writer: nothing escapes the target, whatever the names or planted symlinks."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.format.tree import Node
from cairn.restore.fswriter import SafeTarget, TargetError, UnsafePathError, check_name


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
    with pytest.raises((TargetError, UnsafePathError)):
        writer.make_dir((b"evil", b"sub"))
    with pytest.raises(TargetError):
        writer.create_partial((b"evil", b"x"))
    writer.close()
    assert list(outside.iterdir()) == []


def test_a_symlink_in_place_of_a_file_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "victim"
    outside.write_text("keep me")
    target = tmp_path / "target"
    target.mkdir()
    (target / "file").symlink_to(outside)
    writer = SafeTarget(target)
    fd = writer.create_partial((b"file",))
    writer.write_chunk(fd, 0, b"new")
    writer.finish_file(fd, 3)
    writer.publish((b"file",), Node(name=b"file", type="file", mode=0o100644, size=3))
    writer.close()
    assert outside.read_text() == "keep me"
    assert (target / "file").read_text() == "new"


def test_sparse_writes_leave_holes(tmp_path: Path) -> None:
    writer = SafeTarget(tmp_path)
    fd = writer.create_partial((b"sparse",))
    written = writer.write_chunk(fd, 0, b"x" + bytes((4 << 20) - 2) + b"y")
    writer.finish_file(fd, 4 << 20)
    writer.publish((b"sparse",), Node(name=b"sparse", type="file", mode=0o100644))
    writer.close()
    assert written < 1 << 20, "holes are not counted as written"
    st = (tmp_path / "sparse").stat()
    assert st.st_size == 4 << 20
    assert st.st_blocks * 512 < 1 << 20
    data = (tmp_path / "sparse").read_bytes()
    assert data[0:1] == b"x" and data[-1:] == b"y" and data.count(0) == len(data) - 2


def test_metadata_is_applied(tmp_path: Path) -> None:
    writer = SafeTarget(tmp_path)
    fd = writer.create_partial((b"f",))
    writer.finish_file(fd, 0)
    node = Node(name=b"f", type="file", mode=0o100640, mtime=1_234_567_890_123_456_789, atime=5)
    writer.publish((b"f",), node)
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
    with contextlib.suppress(UnsafePathError, TargetError):
        writer.make_dir(tuple(comps[:-1]))
        fd = writer.create_partial(tuple(comps))
        writer.finish_file(fd, 1)
        writer.publish(tuple(comps), Node(name=comps[-1], type="file", mode=0o100600))
    writer.close()
    assert list(sentinel.iterdir()) == []
    assert sorted(p.name for p in base.iterdir()) == ["sibling", "target"]


def test_a_partial_file_has_no_final_name_until_published(tmp_path: Path) -> None:
    writer = SafeTarget(tmp_path)
    long_name = b"n" * 250  # the partial prefix would pass NAME_MAX: a hashed name instead
    for name in (b"f", long_name):
        fd = writer.create_partial((name,))
        writer.write_chunk(fd, 0, b"data")
        assert not (tmp_path / name.decode()).exists()
        writer.finish_file(fd, 4)
        writer.publish((name,), Node(name=name, type="file", mode=0o100644))
        assert (tmp_path / name.decode()).read_bytes() == b"data"
    writer.close()
    assert sorted(os.listdir(tmp_path)) == sorted(["f", long_name.decode()])


def test_clear_removes_a_folder_or_a_symlink_never_what_it_points_to(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "keep").write_text("keep")
    target = tmp_path / "target"
    (target / "folder" / "inner").mkdir(parents=True)
    os.symlink(outside, target / "folder" / "inner" / "escape")
    os.symlink(outside, target / "link")
    writer = SafeTarget(target)
    writer.open_dir((b"folder", b"inner"))  # cached descriptors of a cleared folder are dropped
    writer.clear((b"folder",))
    writer.clear((b"link",))
    writer.make_dir((b"folder", b"inner"))
    writer.close()
    assert (outside / "deep" / "keep").read_text() == "keep"
    assert sorted(os.listdir(target)) == ["folder"]


def test_an_unwritable_target_is_a_target_error_naming_the_path(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(TargetError, match=f"cannot write {a_file}: it exists and is not a folder"):
        SafeTarget(a_file)
    with pytest.raises(TargetError, match=f"cannot write {a_file / 'sub'}: Not a directory"):
        SafeTarget(a_file / "sub")


def test_a_partial_file_left_by_a_killed_run_is_replaced(tmp_path: Path) -> None:
    writer = SafeTarget(tmp_path)
    fd = writer.create_partial((b"f",))
    writer.write_chunk(fd, 0, b"old and longer")
    writer.close_file(fd)
    fd = writer.create_partial((b"f",))  # created afresh: the leftover's bytes are gone
    writer.write_chunk(fd, 0, b"new")
    writer.finish_file(fd, 3)
    writer.publish((b"f",), Node(name=b"f", type="file", mode=0o100644))
    writer.close()
    assert os.listdir(tmp_path) == ["f"]
    assert (tmp_path / "f").read_bytes() == b"new"
