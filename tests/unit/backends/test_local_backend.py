"""LocalBackend beyond the conformance suite: layout, error mapping, crash points, safety."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import (
    AlreadyExists,
    BackendError,
    ForeignLocation,
    ListingIncomplete,
    NotFound,
    PermissionDenied,
    StorageFull,
)
from cairn.backends.filesystem import OsFileSystem
from cairn.backends.local import LocalBackend
from cairn.backends.testing.conformance import handle_for, object_name

SRC = Path(__file__).resolve().parents[3] / "src"
PACK = handle_for(ObjectKind.PACK, b"pack bytes")


@pytest.fixture
def fs() -> OsFileSystem:
    """The real file system, as an object of the test's own: a test makes one of its operations
    fail by replacing that method (the FileSystem seam), never the `os` module."""
    return OsFileSystem()


@pytest.fixture
def backend(tmp_path: Path, fs: OsFileSystem) -> LocalBackend:
    return LocalBackend.create(tmp_path / "repo", fs)


def _raising(code: int) -> Callable[..., Any]:
    def fake(*_args: object, **_kwargs: object) -> Any:
        raise OSError(code, os.strerror(code))

    return fake


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


# Layout and create()


def test_create_makes_the_layout_of_the_design(backend: LocalBackend, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for folder in ("keys", "packs", "index", "reflists", "snapshots", "locks"):
        assert (root / folder).is_dir()
    assert sorted(p.name for p in (root / "packs").iterdir()) == [f"{i:02x}" for i in range(256)]
    backend.save(PACK, b"pack bytes")
    backend.save(Handle(ObjectKind.CONFIG, "config"), b"cfg")
    assert (root / "packs" / PACK.name[:2] / PACK.name).read_bytes() == b"pack bytes"
    assert (root / "config").read_bytes() == b"cfg"


def test_location_is_the_absolute_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert LocalBackend(Path("repo")).location() == str(tmp_path / "repo")


def test_the_constructor_creates_nothing(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "repo")
    with pytest.raises(NotFound):
        backend.load(Handle(ObjectKind.CONFIG, "config"))
    assert not (tmp_path / "repo").exists()


def test_create_accepts_an_empty_folder_and_an_existing_layout(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    first = LocalBackend.create(tmp_path / "repo")
    first.save(PACK, b"pack bytes")
    again = LocalBackend.create(tmp_path / "repo")
    assert again.load(PACK) == b"pack bytes"


def test_create_refuses_a_folder_holding_other_data(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(ForeignLocation, match="holds other files"):
        LocalBackend.create(tmp_path / "photos")
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["holiday.jpg"]


def test_create_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ForeignLocation, match="is a file"):
        LocalBackend.create(tmp_path / "file")


def test_create_accepts_a_fresh_disk_holding_only_lost_and_found(tmp_path: Path) -> None:
    (tmp_path / "disk" / "lost+found").mkdir(parents=True)
    LocalBackend.create(tmp_path / "disk")
    assert (tmp_path / "disk" / "snapshots").is_dir()


def test_a_missing_config_among_other_files_is_a_foreign_location(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(ForeignLocation, match=r"holiday\.jpg"):
        LocalBackend(tmp_path / "photos").load(Handle(ObjectKind.CONFIG, "config"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound):
        LocalBackend(tmp_path / "empty").load(Handle(ObjectKind.CONFIG, "config"))


def test_a_missing_folder_fails_the_save_clearly(backend: LocalBackend, tmp_path: Path) -> None:
    (tmp_path / "repo" / "keys").rmdir()
    with pytest.raises(BackendError, match="cannot create a temporary file") as caught:
        backend.save(handle_for(ObjectKind.KEY, b"k"), b"k")
    assert not isinstance(caught.value, NotFound)


# Names and listings


@pytest.mark.parametrize("name", ["../../escape", "../" + "a" * 61, "/tmp/escape", "a/../../b"])
def test_invalid_names_never_touch_the_file_system(tmp_path: Path, name: str) -> None:
    backend = LocalBackend.create(tmp_path / "repo")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(BackendError):
        backend.save(Handle(ObjectKind.KEY, name), b"escape")
    assert sorted(tmp_path.rglob("*")) == before


def test_temporary_and_foreign_files_are_never_listed(
    backend: LocalBackend, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    backend.save(PACK, b"pack bytes")
    key = handle_for(ObjectKind.KEY, b"key")
    backend.save(key, b"key")
    name = object_name(b"other")
    for junk in (
        root / "keys" / f".tmp-{name}",
        root / "keys" / ".tmp-0123abcd",
        root / "keys" / "README",
        root / "keys" / name.upper(),
        root / "packs" / PACK.name[:2] / ".tmp-0123abcd",
        root / "packs" / "zz",
        root / "packs" / "ab" / ("cd" + name[2:]),  # in the wrong shard
        root / ".tmp-0123abcd",
    ):
        junk.write_bytes(b"junk")
    (root / "keys" / object_name(b"a folder")).mkdir()
    assert [i.handle for i in backend.list(ObjectKind.KEY)] == [key]
    assert [i.handle for i in backend.list(ObjectKind.PACK)] == [PACK]
    assert list(backend.list(ObjectKind.CONFIG)) == []


def test_an_unreadable_folder_makes_the_listing_incomplete(
    backend: LocalBackend, fs: OsFileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.save(PACK, b"pack bytes")
    monkeypatch.setattr(fs, "scan", _raising(errno.EIO))
    with pytest.raises(ListingIncomplete):
        list(backend.list(ObjectKind.PACK))


def test_a_missing_kind_folder_makes_the_listing_incomplete(
    backend: LocalBackend, tmp_path: Path
) -> None:
    (tmp_path / "repo" / "snapshots").rmdir()
    with pytest.raises(ListingIncomplete):
        list(backend.list(ObjectKind.SNAPSHOT))


# Error mapping


@pytest.mark.parametrize(
    ("function", "code", "error"),
    [
        ("write", errno.ENOSPC, StorageFull),
        ("fsync", errno.EDQUOT, StorageFull),
        ("fsync", errno.EIO, BackendError),
        ("link", errno.EROFS, PermissionDenied),
        ("link", errno.EACCES, PermissionDenied),
        ("open", errno.EACCES, PermissionDenied),
    ],
)
def test_save_errors_are_classified_and_leave_no_temporary_file(
    backend: LocalBackend,
    fs: OsFileSystem,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    function: str,
    code: int,
    error: type[BackendError],
) -> None:
    monkeypatch.setattr(fs, function, _raising(code))
    with pytest.raises(error) as caught:
        backend.save(PACK, b"pack bytes")
    monkeypatch.undo()
    assert type(caught.value) is error
    assert os.strerror(code) in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert _temporaries(tmp_path) == []
    assert not backend.exists(PACK)


def test_remove_errors_are_classified(
    backend: LocalBackend, fs: OsFileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.save(PACK, b"pack bytes")
    monkeypatch.setattr(fs, "unlink", _raising(errno.EPERM))
    with pytest.raises(PermissionDenied, match=PACK.name):
        backend.remove(PACK)


def test_read_errors_are_classified(
    backend: LocalBackend, fs: OsFileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.save(PACK, b"pack bytes")
    monkeypatch.setattr(fs, "pread", _raising(errno.EIO))
    with pytest.raises(BackendError, match="Input/output error"):
        backend.load(PACK)


def test_a_short_read_is_an_error(
    backend: LocalBackend, fs: OsFileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.save(PACK, b"pack bytes")
    monkeypatch.setattr(fs, "pread", lambda fd, n, offset: b"")
    with pytest.raises(BackendError, match="short read"):
        backend.load(PACK, 2, 4)


def test_publishing_falls_back_to_rename_without_hard_links(
    backend: LocalBackend, fs: OsFileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fs, "link", _raising(errno.EPERM))
    backend.save(PACK, b"pack bytes")
    backend.save(PACK, b"pack bytes")
    with pytest.raises(AlreadyExists):
        backend.save(PACK, b"other bytes")
    assert backend.load(PACK) == b"pack bytes"
    assert _temporaries(tmp_path) == []


def test_a_different_existing_object_is_never_replaced(
    backend: LocalBackend, tmp_path: Path
) -> None:
    path = tmp_path / "repo" / "packs" / PACK.name[:2] / PACK.name
    path.write_bytes(b"corrupt!!!")
    with pytest.raises(AlreadyExists):
        backend.save(PACK, b"pack bytes")
    assert path.read_bytes() == b"corrupt!!!"
    assert _temporaries(tmp_path) == []


# Crash points

_WORKLOAD = """
import sys
from pathlib import Path
from cairn.backends.base import Handle, ObjectKind
from cairn.backends.local import LocalBackend
backend = LocalBackend(Path(sys.argv[1]))
handle = Handle(ObjectKind.PACK, "ab" * 32)
backend.save(handle, b"payload")
backend.remove(handle)
"""


def _run_workload(root: Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    environment = {**os.environ, "PYTHONPATH": str(SRC), **env}
    return subprocess.run(
        [sys.executable, "-c", _WORKLOAD, str(root)], env=environment, capture_output=True
    )


def test_every_durable_step_announces_its_crash_point(
    backend: LocalBackend, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    result = _run_workload(tmp_path / "repo", CAIRN_CRASH_TRACE=str(trace))
    assert result.returncode == 0, result.stderr
    assert trace.read_text().split() == [
        "local.save.write",
        "local.save.fsync",
        "local.save.publish",
        "local.save.cleanup",
        "local.save.dirsync",
        "local.remove.unlink",
        "local.remove.dirsync",
    ]


@pytest.mark.parametrize("point", ["local.save.fsync", "local.save.publish"])
def test_a_crash_mid_save_leaves_no_visible_object(
    backend: LocalBackend, tmp_path: Path, point: str
) -> None:
    result = _run_workload(tmp_path / "repo", CAIRN_CRASH_AT=f"{point}:1")
    assert result.returncode == -9
    assert list(backend.list(ObjectKind.PACK)) == []
    handle = Handle(ObjectKind.PACK, "ab" * 32)
    backend.save(handle, b"payload")
    assert [i.handle for i in backend.list(ObjectKind.PACK)] == [handle]


def test_a_crash_after_publishing_leaves_the_whole_object(
    backend: LocalBackend, tmp_path: Path
) -> None:
    result = _run_workload(tmp_path / "repo", CAIRN_CRASH_AT="local.save.cleanup:1")
    assert result.returncode == -9
    handle = Handle(ObjectKind.PACK, "ab" * 32)
    assert backend.load(handle) == b"payload"
    backend.save(handle, b"payload")
