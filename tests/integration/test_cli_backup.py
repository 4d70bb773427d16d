"""`cairn backup` as a user meets it: paths that do not exist, mount points named as paths,
files that change while read, counts that add up, --dry-run, --files-from, exclude files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clitools import Cairn, manifest


@pytest.fixture
def cairn(tmp_path: Path) -> Cairn:
    tool = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    tool.run("init")
    return tool


def snapshot_count(cairn: Cairn) -> int:
    return len(cairn.run("snapshots", "--json").json())


def restored(cairn: Cairn, tmp_path: Path, source: Path, snapshot: str = "latest") -> Path:
    target = tmp_path / f"out-{snapshot}"
    cairn.run("restore", snapshot, "--target", str(target))
    return target / source.relative_to("/")


# ---- paths that cannot be read --------------------------------------------------------------


@pytest.mark.parametrize("missing", ["/does/not/exist", "{tmp}/nothere", "{tmp}/file/sub"])
def test_no_readable_path_is_refused_and_saves_no_snapshot(
    cairn: Cairn, tmp_path: Path, missing: str
) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    path = missing.format(tmp=tmp_path)
    result = cairn.run("backup", path, check=False)
    assert result.code == 46
    assert "CAIRN-E046" in result.err and path in result.err
    assert snapshot_count(cairn) == 0


def test_a_missing_path_beside_a_good_one_is_named_and_the_good_one_saved(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "kept.txt").write_text("kept")
    result = cairn.run("backup", "/does/not/exist", str(src), check=False)
    assert result.code == 3
    assert "warning: /does/not/exist: does not exist (left out of the snapshot)" in result.out
    document = cairn.run("backup", "/does/not/exist", str(src), "--json", check=False).json()
    assert [e["path"] for e in document["errors"]] == ["/does/not/exist"]
    assert (restored(cairn, tmp_path, src) / "kept.txt").read_text() == "kept"
    paths = cairn.run("snapshots", "--json").json()[0]["paths"]
    assert paths == [str(src)]


# ---- a mount point named as a path (R13) --------------------------------------------------


def _namespace_prefix() -> list[str]:
    """A command prefix that runs in a private mount namespace where tmpfs can be mounted: as
    root (CI) `unshare -m`, otherwise a user namespace (`unshare -rm`)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed: no private mount namespace for the tmpfs")
    prefix = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    probe = subprocess.run(
        [*prefix, "sh", "-c", "mount -t tmpfs cairn-probe /mnt"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private namespace: {probe.stderr.decode()}")
    return prefix


def backup_with_tmpfs(cairn: Cairn, mount: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`cairn backup ARGS` with a fresh tmpfs at `mount` holding a file and a folder."""
    script = 'mount -t tmpfs cairn-test "$1" && mkdir "$1/deep" && echo on-tmpfs > "$1/deep/f"'
    script += ' && echo other > "$1/other" && shift && exec "$@"'
    command = [sys.executable, "-m", "cairn.cli.main", "backup", *args]
    return subprocess.run(
        [*_namespace_prefix(), "sh", "-c", script, "sh", str(mount), *command],
        capture_output=True,
        text=True,
        env=cairn.env(),
        check=False,
    )


@pytest.mark.parametrize("order", ["inner first", "outer first"])
@pytest.mark.required("unshare: a tmpfs in a private mount namespace")
def test_a_named_mount_point_is_backed_up_with_one_file_system(
    cairn: Cairn, tmp_path: Path, order: str
) -> None:
    outer = tmp_path / "oxs"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    (outer / "top.txt").write_text("top")
    paths = [str(inner), str(outer)] if order == "inner first" else [str(outer), str(inner)]
    done = backup_with_tmpfs(cairn, inner, "-x", *paths)
    assert done.returncode == 0, done.stderr
    back = restored(cairn, tmp_path, outer)
    assert (back / "top.txt").read_text() == "top"
    assert (back / "inner" / "deep" / "f").read_text() == "on-tmpfs\n"
    assert (back / "inner" / "other").read_text() == "other\n"
    assert sorted(cairn.run("snapshots", "--json").json()[0]["paths"]) == sorted(paths)


@pytest.mark.required("unshare: a tmpfs in a private mount namespace")
def test_one_file_system_still_stops_at_an_unnamed_mount_point(
    cairn: Cairn, tmp_path: Path
) -> None:
    outer = tmp_path / "oxs"
    mount = outer / "m"
    mount.mkdir(parents=True)
    done = backup_with_tmpfs(cairn, mount, "-x", str(outer))
    assert done.returncode == 0, done.stderr
    back = restored(cairn, tmp_path, outer)
    assert back.joinpath("m").is_dir() and list(back.joinpath("m").iterdir()) == []


@pytest.mark.required("unshare: a tmpfs in a private mount namespace")
def test_a_path_named_below_an_unnamed_mount_point_is_reached(cairn: Cairn, tmp_path: Path) -> None:
    outer = tmp_path / "oxs"
    mount = outer / "m"
    mount.mkdir(parents=True)
    done = backup_with_tmpfs(cairn, mount, "-x", str(outer), str(mount / "deep"))
    assert done.returncode == 0, done.stderr
    back = restored(cairn, tmp_path, outer)
    assert (back / "m" / "deep" / "f").read_text() == "on-tmpfs\n"
    assert not (back / "m" / "other").exists(), "-x leaves out the rest of the other file system"


# ---- files that change while read -------------------------------------------------------------


CHANGING_DRIVER = """
import sys
import cairn.backup.archiver as archiver
from cairn.cli.main import main

real_open = archiver.open_for_backup

def open_then_append(path):
    fd = real_open(path)
    if path.endswith(b"log.txt"):
        with open(path, "a") as f:
            f.write("written while read\\n")
    return fd

archiver.open_for_backup = open_then_append
sys.exit(main(sys.argv[1:]))
"""
"""`cairn` with a file that grows right after the backup opened it (as a log file does)."""


def test_a_file_changed_while_read_is_a_warning_of_its_own_not_missing(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "log.txt").write_text("first line\n")
    (src / "still.txt").write_text("still")

    def changing_backup(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", CHANGING_DRIVER, "backup", str(src), *args]
        return subprocess.run(command, capture_output=True, text=True, env=cairn.env())

    done = changing_backup()
    assert done.returncode == 0, done.stderr
    assert f"{src}/log.txt: changed while read: the snapshot holds what was read" in done.stdout
    assert "missing from the snapshot" not in done.stdout
    (src / "log.txt").write_text("first line\n")
    document = json.loads(changing_backup("--json").stdout)
    assert document["errors"] == []
    assert [c["path"] for c in document["changed"]] == [f"{src}/log.txt"]
    back = restored(cairn, tmp_path, src)
    assert (back / "log.txt").read_text().startswith("first line\n")
    assert (back / "still.txt").read_text() == "still"


# ---- the summary -------------------------------------------------------------------------------


def test_the_summary_adds_up_and_counts_the_folders_restore_makes(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    for n in range(4):
        (src / "a" / f"f{n}").write_text(str(n))
    os.symlink("a/f0", src / "link")
    os.mkfifo(src / "fifo")
    first = cairn.run("backup", str(src))
    assert "files: 4 (4 new or changed, 0 unchanged)" in first.out
    assert "symlinks: 1" in first.out and "other entries (devices, fifos, sockets): 1" in first.out
    assert " in " in first.out.splitlines()[1]  # the duration
    (src / "a" / "f1").write_text("changed")
    document = cairn.run("backup", str(src), "--json").json()
    assert document["files"] == document["files_new"] + document["files_unmodified"] == 4
    assert (document["files_new"], document["symlinks"], document["special"]) == (1, 1, 1)
    restore = cairn.run("restore", "latest", "--target", str(tmp_path / "out"), "--json").json()
    assert document["dirs"] == restore["dirs"]


# ---- restic's options ----------------------------------------------------------------------------


def test_dry_run_stores_nothing_and_says_what_would_be_added(cairn: Cairn, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(200_000))
    before = sorted(p.name for p in (tmp_path / "repo").rglob("*") if p.is_file())
    dry = cairn.run("backup", "--dry-run", str(src))
    assert (
        "would add" in dry.out and "dry run: nothing was stored, no snapshot was saved" in dry.out
    )
    assert sorted(p.name for p in (tmp_path / "repo").rglob("*") if p.is_file()) == before
    document = cairn.run("backup", "-n", str(src), "--json").json()
    assert document["dry_run"] is True and document["snapshot_id"] is None
    assert document["bytes_added"] >= 200_000
    assert snapshot_count(cairn) == 0
    cairn.run("backup", str(src))
    again = cairn.run("backup", "--dry-run", str(src), "--json").json()
    assert again["bytes_added"] < 10_000  # folder metadata (atime) may change; no data
    assert snapshot_count(cairn) == 1


def test_files_from_lists_paths_with_comments_verbatim_and_nul_forms(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b", "c", "# not a comment", "d"):
        (src / name).write_text(name)
    listing = tmp_path / "list"
    listing.write_text(f"# a comment\n\n{src / 'a'}\n  {src / 'b'}  \n{src / 'd*'}\n")
    verbatim = tmp_path / "verbatim"
    verbatim.write_text(f"{src / '# not a comment'}\n")
    raw = tmp_path / "raw"
    raw.write_bytes(os.fsencode(src / "c") + b"\0")
    cairn.run(
        "backup",
        "--files-from",
        str(listing),
        "--files-from-verbatim",
        str(verbatim),
        "--files-from-raw",
        str(raw),
    )
    back = restored(cairn, tmp_path, src)
    assert sorted(p.name for p in back.iterdir()) == ["# not a comment", "a", "b", "c", "d"]


def test_an_unreadable_list_file_is_a_clear_error(cairn: Cairn, tmp_path: Path) -> None:
    for option in ("--files-from", "--exclude-file"):
        result = cairn.run("backup", str(tmp_path), option, "/no/such/list", check=False)
        assert result.code == 2
        assert "CAIRN-E047" in result.err and "/no/such/list" in result.err
    assert "CAIRN-E002" in cairn.run("backup", check=False).err


def test_exclude_file_and_exclude_if_present_keep_the_marker(cairn: Cairn, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "skip").mkdir(parents=True)
    (src / "skip" / ".nobackup").write_text("")
    (src / "skip" / "data").write_text("data")
    (src / "x.log").write_text("log")
    (src / "keep").write_text("keep")
    patterns = tmp_path / "excludes"
    patterns.write_text("# logs are not needed\n*.log\n\n")
    cairn.run(
        "backup", str(src), "--exclude-file", str(patterns), "--exclude-if-present", ".nobackup"
    )
    back = restored(cairn, tmp_path, src)
    assert sorted(str(p.relative_to(back)) for p in back.rglob("*")) == [
        "keep",
        "skip",
        "skip/.nobackup",
    ]
    assert manifest(back)[b"keep"] == manifest(src)[b"keep"]


# ---- sparse files -------------------------------------------------------------------------------


def test_a_sparse_file_is_backed_up_without_reading_its_holes(cairn: Cairn, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    size = 64 << 20
    with open(src / "disk.img", "wb") as f:
        for at in (0, 20 << 20, 50 << 20):
            f.seek(at)
            f.write(os.urandom(1 << 20))
        f.truncate(size)
    if os.stat(src / "disk.img").st_blocks * 512 >= size // 2:
        pytest.skip("this file system stores no holes")
    document = cairn.run("backup", str(src), "--json").json()
    assert document["bytes_total"] == size
    assert document["bytes_read"] <= size // 2, "the holes were read"  # ends of holes are read
    back = restored(cairn, tmp_path, src)
    assert manifest(back) == manifest(src)  # bit-exact, and sparse again
    dense = tmp_path / "dense"
    dense.mkdir()
    (dense / "disk.img").write_bytes((src / "disk.img").read_bytes())
    again = cairn.run("backup", str(dense), "--json").json()
    assert again["bytes_read"] == size
    assert again["bytes_added"] < 64 << 10, "a full read must give the same chunks"


# ---- the files cache -----------------------------------------------------------------------------


def test_an_unusable_default_cache_folder_is_a_warning_and_the_backup_goes_on(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    (tmp_path / "a-file").write_text("not a folder")
    env = cairn.env(XDG_CACHE_HOME=str(tmp_path / "a-file"))
    env.pop("CAIRN_CACHE_DIR", None)
    result = cairn.run("backup", str(src), env=env)
    assert f"cannot use the cache folder {tmp_path / 'a-file' / 'cairn'}" in result.err
    assert "going on without a cache" in result.err
    assert snapshot_count(cairn) == 1


def test_an_unusable_files_cache_is_a_warning_and_the_backup_goes_on(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    cache = tmp_path / "cache"
    cairn.run("backup", str(src), "--cache-dir", str(cache))
    for db in cache.glob("*/files.sqlite"):  # a folder where the database should be
        db.unlink()
        db.mkdir()
    result = cairn.run("backup", str(src), "--cache-dir", str(cache))
    assert "warning: cannot use the files cache in" in result.out
    assert "backing up without it" in result.out
    assert snapshot_count(cairn) == 2


def test_a_named_cache_folder_that_cannot_be_used_is_an_error_naming_it(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    bad = tmp_path / "a-file" / "cache"
    result = cairn.run("backup", str(src), "--cache-dir", str(bad), check=False)
    assert result.code == 43 and "CAIRN-E043" in result.err and str(bad) in result.err
