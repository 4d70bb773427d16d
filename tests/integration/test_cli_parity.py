"""What restic users look for: version, unlock, tag, copy, snapshots --latest, ls of a path the
snapshot does not hold, and names that are not UTF-8 printed in a form every command takes back."""

from __future__ import annotations

import os
import platform
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cairn.backends.location import open_backend
from cairn.core.clock import FrozenClock, SystemClock
from cairn.repository.repository import Repository
from tests.support.clitools import Cairn, manifest

PASSWORD = "correct horse"


@pytest.fixture
def cairn(tmp_path: Path) -> Cairn:
    tool = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    tool.run("init")
    return tool


def small_tree(root: Path) -> Path:
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("a\n" * 100)
    (src / "big.bin").write_bytes(random.Random(2).randbytes(2 * 1024 * 1024 + 5))
    os.symlink("sub/a.txt", src / "link")
    with open(os.path.join(os.fsencode(src), b"caf\xe9"), "wb") as f:
        f.write(b"latin-1 name")
    return src


# ---- version --------------------------------------------------------------------------------


def test_version_names_cairn_python_the_repository_format_and_the_platform(cairn: Cairn) -> None:
    text = cairn.run("version").out
    assert text.startswith("cairn 0.")
    assert platform.python_version() in text
    assert "repository format 1" in text
    assert platform.system() in text
    doc = cairn.run("version", "--json").json()
    assert doc["repository_formats_read"] == [1]
    assert doc["repository_format_written"] == 1
    assert "repository format 1" in cairn.run("--version").out


# ---- snapshots --latest -----------------------------------------------------------------------


def test_snapshots_latest_shows_the_n_newest_of_each_host_and_paths(
    cairn: Cairn, tmp_path: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    ids = {}
    for host in ("h1", "h2"):
        for i in range(3):
            (one / "f").write_text(f"{host} {i}")
            ids[(host, i)] = cairn.run("backup", str(one), "--host", host, "--json").json()
    cairn.run("backup", str(two), "--host", "h1")

    shown = cairn.run("snapshots", "--latest", "2", "--json").json()

    assert len(shown) == 5  # 2 of (h1, one), 2 of (h2, one), 1 of (h1, two)
    hexes = {s["id"] for s in shown}
    assert ids[("h1", 0)]["snapshot_id"] not in hexes
    assert ids[("h1", 2)]["snapshot_id"] in hexes
    assert "3 snapshot(s)" in cairn.run("snapshots", "--latest", "1").out
    assert cairn.run("snapshots", "--latest", "0", check=False).code == 2


# ---- ls of a relative or missing path ---------------------------------------------------------


def test_ls_of_a_relative_or_missing_path_says_so(cairn: Cairn, tmp_path: Path) -> None:
    src = small_tree(tmp_path)
    cairn.run("backup", str(src))

    relative = cairn.run("ls", "latest", "sub", check=False)
    assert relative.code == 19
    assert "CAIRN-E019" in relative.err and "relative path" in relative.err

    missing = cairn.run("ls", "latest", str(src / "nothere"), check=False)
    assert missing.code == 19
    assert "is not in snapshot" in missing.err and str(src) in missing.err

    listed = cairn.run("ls", "latest", str(src / "sub")).out
    assert str(src / "sub" / "a.txt") in listed


# ---- names that are not UTF-8 -------------------------------------------------------------


def test_a_name_that_is_not_utf8_prints_escaped_and_is_accepted_back(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = small_tree(tmp_path)
    cairn.run("backup", str(src))
    printed = f"{src}/caf\\xe9"

    assert printed in cairn.run("ls", "latest").out.splitlines()
    assert "\\udc" not in cairn.run("ls", "latest", "--json").out
    assert printed in cairn.run("find", "caf*").out

    again = cairn.run("ls", "latest", printed).out.splitlines()
    assert again[1:] == [printed]
    doc = cairn.run("ls", "latest", printed, "--json").json()
    assert [n["path"] for n in doc["nodes"]] == [printed]


def test_a_backup_path_that_is_not_utf8_is_recorded_in_the_escaped_form(
    cairn: Cairn, tmp_path: Path
) -> None:
    folder = os.path.join(os.fsencode(tmp_path), b"d\xe9")
    os.mkdir(folder)
    with open(os.path.join(folder, b"caf\xe9"), "wb") as f:
        f.write(b"x")
    shown = f"{tmp_path}/d\\xe9"

    cairn.run("backup", os.fsdecode(folder))

    (snap,) = cairn.run("snapshots", "--json").json()
    assert snap["paths"] == [shown]
    assert len(cairn.run("snapshots", "--path", shown, "--json").json()) == 1
    assert f"{shown}/caf\\xe9" in cairn.run("ls", "latest", shown).out.splitlines()
    assert f"{shown}/caf\\xe9" in cairn.run("find", "caf\\xe9").out
    cairn.run("restore", "latest", "--target", str(tmp_path / "out"))
    restored = os.path.join(os.fsencode(tmp_path / "out"), folder.lstrip(b"/"), b"caf\xe9")
    with open(restored, "rb") as f:
        assert f.read() == b"x"


def test_diff_prints_the_same_escaped_form(cairn: Cairn, tmp_path: Path) -> None:
    src = small_tree(tmp_path)
    first = cairn.run("backup", str(src), "--json").json()["snapshot_id"]
    with open(os.path.join(os.fsencode(src), b"caf\xe9"), "ab") as f:
        f.write(b" changed")
    second = cairn.run("backup", str(src), "--json").json()["snapshot_id"]
    assert f"M    {src}/caf\\xe9" in cairn.run("diff", first[:8], second[:8]).out


# ---- unlock -----------------------------------------------------------------------------------


def test_unlock_shows_the_locks_removes_ended_ones_and_says_locks_end_by_themselves(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = small_tree(tmp_path)
    cairn.run("backup", str(src))
    backend = open_backend(str(cairn.repo))
    past = FrozenClock(datetime(2020, 1, 1, tzinfo=UTC))
    Repository.open(backend, PASSWORD.encode(), past).begin_session("backup")  # long ended
    live_repo = Repository.open(open_backend(str(cairn.repo)), PASSWORD.encode(), SystemClock())
    live = live_repo.begin_session("backup")
    try:
        out = cairn.run("unlock").out
        assert "2 lock(s): 1 live, 1 ended; 1 removed" in out
        assert "locks end by themselves" in out
        assert "backup" in out and "unless renewed" in out and "ended" in out
        assert f"pid {os.getpid()}" in out

        refused = cairn.run("unlock", "--remove-all", check=False)
        assert refused.code == 29 and "CAIRN-E029" in refused.err
        assert "running backup" in refused.err
        assert len(cairn.run("unlock", "--json").json()["locks"]) == 1

        removed = cairn.run("unlock", "--remove-all", "--yes")
        assert "1 removed" in removed.out and "warning:" in removed.out
        assert cairn.run("unlock", "--json").json() == {"locks": [], "removed": []}
    finally:
        live.release()


# ---- tag ------------------------------------------------------------------------------------


def test_tag_adds_removes_and_sets_on_a_new_snapshot_that_records_the_original(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = small_tree(tmp_path)
    old = cairn.run("backup", str(src), "--tag", "first", "--json").json()["snapshot_id"]

    done = cairn.run("tag", "--add", "keep", "--remove", "first", old[:8], "--json").json()
    (change,) = done["changed"]
    assert change["old"] == old and change["tags"] == ["keep"]
    (snap,) = cairn.run("snapshots", "--json").json()
    assert snap["id"] == change["new"] and snap["tags"] == ["keep"]
    assert snap["original"] == old

    cairn.run("tag", "--set", "a,b", "--tag", "keep")
    (snap,) = cairn.run("snapshots", "--json").json()
    assert snap["tags"] == ["a", "b"] and snap["original"] == old
    assert "tags already" in cairn.run("tag", "--add", "a", "latest").out
    assert cairn.run("tag", "latest", check=False).code == 2

    cairn.run("prune")
    cairn.run("prune")
    cairn.run("check", "--read-data")
    cairn.run("restore", "latest", "--target", str(tmp_path / "out"))
    assert manifest(tmp_path / "out" / src.relative_to("/")) == manifest(src)


# ---- copy ---------------------------------------------------------------------------------


def test_copy_between_two_repositories_restores_bit_exact_and_copies_nothing_twice(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = small_tree(tmp_path)
    first = cairn.run("backup", str(src), "--tag", "t", "--json").json()["snapshot_id"]
    (src / "sub" / "new.txt").write_text("added later")
    second = cairn.run("backup", str(src), "--json").json()["snapshot_id"]
    dest = Cairn(tmp_path / "dest", password="another one", cache=tmp_path / "cache2")
    dest.run("init")
    env = dest.env(CAIRN_FROM_REPOSITORY=str(cairn.repo), CAIRN_FROM_PASSWORD=PASSWORD)

    doc = dest.run("copy", "--json", env=env).json()

    assert [c["source"] for c in doc["copied"]] == [first, second]
    copies = dest.run("snapshots", "--json").json()
    assert [s["original"] for s in copies] == [first, second]
    assert copies[0]["tags"] == ["t"] and copies[0]["paths"] == [str(src)]
    assert {s["id"] for s in copies}.isdisjoint({first, second})
    dest.run("check", "--read-data")
    dest.run("restore", "latest", "--target", str(tmp_path / "out"))
    assert manifest(tmp_path / "out" / src.relative_to("/")) == manifest(src)

    again = dest.run("copy", "--json", env=env).json()
    assert again["copied"] == [] and sorted(again["skipped"]) == sorted([first, second])
    assert len(dest.run("snapshots", "--json").json()) == 2


def test_copy_stores_no_data_the_destination_already_holds(cairn: Cairn, tmp_path: Path) -> None:
    src = small_tree(tmp_path)
    cairn.run("backup", str(src))
    dest = Cairn(tmp_path / "dest", cache=tmp_path / "cache2")
    dest.run("init")
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    source = ["--from-repo", str(cairn.repo), "--from-password-file", str(tmp_path / "pw")]
    first = dest.run("copy", *source, "--json").json()
    (src / "sub" / "b.txt").write_text("one small change")
    cairn.run("backup", str(src))

    second = dest.run("copy", *source, "--json").json()

    assert first["bytes_added"] > 2 * 1024 * 1024
    assert len(second["copied"]) == 1 and len(second["skipped"]) == 1
    assert second["bytes_read"] > 2 * 1024 * 1024  # read again: the keys differ ...
    assert second["bytes_added"] < 64 * 1024  # ... but stored once: the new file and trees


def test_copy_from_itself_is_refused(cairn: Cairn) -> None:
    refused = cairn.run(
        "copy",
        "--from-repo",
        str(cairn.repo),
        check=False,
        env=cairn.env(CAIRN_FROM_PASSWORD=PASSWORD),
    )
    assert refused.code == 28 and "CAIRN-E028" in refused.err


# ---- -v/--verbose ---------------------------------------------------------------------------


def test_verbose_backup_lists_files_it_stored_and_restore_each_file(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = small_tree(tmp_path)
    cairn.run("backup", str(src))
    (src / "sub" / "new.txt").write_text("new")

    out = cairn.run("backup", "-v", str(src)).out.splitlines()

    assert f"stored   {src}/sub/new.txt" in out
    assert not any(line.endswith("a.txt") for line in out), "unchanged files are not listed"
    assert not any(
        line.startswith("stored") for line in cairn.run("backup", str(src)).out.splitlines()
    )
    restored = cairn.run("-v", "restore", "latest", "--target", str(tmp_path / "out")).out
    assert f"restored {src}/sub/a.txt" in restored.splitlines()
    assert f"restored {src}/caf\\xe9" in restored.splitlines()
    again = cairn.run("restore", "latest", "--target", str(tmp_path / "out"), "--verbose").out
    assert f"verified {src}/sub/a.txt" in again.splitlines()
    plain = cairn.run("restore", "latest", "-t", str(tmp_path / "o2")).out.splitlines()
    assert not any(line.startswith("restored /") for line in plain)


def test_verbose_adds_detail_to_version_snapshots_and_copy(cairn: Cairn, tmp_path: Path) -> None:
    assert "blake3 " in cairn.run("version", "-v").out
    assert "blake3" not in cairn.run("version").out
    src = small_tree(tmp_path)
    cairn.run("backup", str(src))
    cairn.run("tag", "--add", "x", "latest")
    table = cairn.run("snapshots", "-v").out
    assert "Original" in table and "Files" in table
    assert "Original" not in cairn.run("snapshots").out


# ---- prune's words ----------------------------------------------------------------------


def test_prune_says_what_it_freed_what_the_next_run_frees_and_why_two_runs(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = small_tree(tmp_path)
    cairn.run("backup", str(src))
    (src / "big.bin").write_bytes(random.Random(3).randbytes(1024 * 1024))
    cairn.run("backup", str(src))
    cairn.run("forget", "--keep-last", "1")

    first = cairn.run("prune").out
    second = cairn.run("prune").out

    assert "freed now: 0 B" in first
    assert "set aside for the next prune: 2.0 MiB" in first
    assert "why two runs: a backup running now may still use" in first
    assert "freed now: 2.0 MiB" in second
    for word in ("condemn", "swept", "reflist", "sweep"):
        assert word not in first + second
