"""The CLI end to end: backup, list, restore bit-exact with metadata, resume, conflicts."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import pytest

from tests.support.clitools import Cairn, manifest


def make_tree(root: Path) -> Path:
    """A source tree with the awkward cases a restore must get right."""
    src = root / "src"
    (src / "docs" / "deep" / "er").mkdir(parents=True)
    (src / "empty").mkdir()
    rng = random.Random(1)
    (src / "docs" / "notes.txt").write_text("notes\n" * 1000)
    (src / "docs" / "deep" / "er" / "blob.bin").write_bytes(rng.randbytes(3 * 1024 * 1024 + 17))
    (src / "zero-length").write_bytes(b"")
    with open(src / "sparse.img", "wb") as f:
        f.write(b"head")
        f.seek(8 * 1024 * 1024)
        f.write(b"tail")
    os.link(src / "docs" / "notes.txt", src / "notes-hardlink.txt")
    os.symlink("docs/notes.txt", src / "link-to-notes")
    os.symlink("/nonexistent/target", src / "dangling")
    with open(os.path.join(os.fsencode(src), b"caf\xe9 \xff name"), "wb") as f:
        f.write(b"not UTF-8 in the name")
    os.mkfifo(src / "a-fifo")
    (src / "docs" / "mode-0600").write_text("private")
    os.chmod(src / "docs" / "mode-0600", 0o600)
    os.chmod(src / "empty", 0o750)
    # Where the file system has no user xattrs, the round trip still covers the rest.
    with contextlib.suppress(OSError):
        os.setxattr(src / "docs" / "notes.txt", "user.cairn", b"xattr value")
    os.utime(src / "docs", ns=(1_600_000_000_123_456_789, 1_600_000_000_987_654_321))
    return src


@pytest.fixture
def cairn(tmp_path: Path) -> Cairn:
    tool = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    tool.run("init")
    return tool


def test_backup_and_restore_are_bit_exact(cairn: Cairn, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    before = manifest(src)
    backup = cairn.run("backup", str(src), "--json").json()
    assert backup["errors"] == []
    cairn.run("restore", "latest", "--target", str(tmp_path / "out"))
    restored = tmp_path / "out" / src.relative_to("/")
    assert manifest(restored) == before
    assert manifest(src) == before, "backup must not change its source"


def test_second_backup_reads_only_what_changed(cairn: Cairn, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    first = cairn.run("backup", str(src), "--json").json()
    second = cairn.run("backup", str(src), "--json").json()
    assert second["bytes_read"] == 0
    assert second["files_unmodified"] == first["files_new"] > 0
    (src / "docs" / "notes.txt").write_text("changed\n")
    third = cairn.run("backup", str(src), "--json").json()
    assert 0 < third["bytes_read"] < 100
    assert len(cairn.run("snapshots", "--json").json()) == 3


def test_restore_include_puts_the_file_at_its_absolute_path(cairn: Cairn, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    cairn.run("backup", str(src))
    wanted = src / "docs" / "notes.txt"
    cairn.run("restore", "latest", "--target", str(tmp_path / "t"), "--include", str(wanted))
    out = tmp_path / "t" / wanted.relative_to("/")
    assert out.read_bytes() == wanted.read_bytes()
    restored_files = [p for p in (tmp_path / "t").rglob("*") if p.is_file()]
    assert restored_files == [out]


def test_restore_exclude(cairn: Cairn, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    cairn.run("backup", str(src))
    cairn.run("restore", "latest", "--target", str(tmp_path / "t"), "--exclude", "*.bin")
    restored = tmp_path / "t" / src.relative_to("/")
    assert (restored / "docs" / "notes.txt").exists()
    assert not list(restored.rglob("*.bin"))


def test_a_second_restore_verifies_instead_of_rewriting(cairn: Cairn, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    cairn.run("backup", str(src))
    target = str(tmp_path / "t")
    first = cairn.run("restore", "latest", "--target", target, "--json").json()
    again = cairn.run("restore", "latest", "--target", target, "--json").json()
    assert first["bytes_written"] > 0
    assert again["bytes_written"] == 0
    assert again["files_verified"] >= first["files"] - 2  # hardlinks are re-linked, not verified


def test_restore_refuses_to_overwrite_different_files(cairn: Cairn, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    cairn.run("backup", str(src))
    target = tmp_path / "t"
    clash = target / src.relative_to("/") / "docs" / "notes.txt"
    clash.parent.mkdir(parents=True)
    clash.write_text("my precious edits")
    refused = cairn.run("restore", "latest", "--target", str(target), check=False)
    assert refused.code == 17
    assert "CAIRN-E017" in refused.err
    assert clash.read_text() == "my precious edits"
    assert not (clash.parent / "deep").exists(), "nothing is written when the restore is refused"
    cairn.run("restore", "latest", "--target", str(target), "--overwrite")
    assert clash.read_bytes() == (src / "docs" / "notes.txt").read_bytes()


def test_ls_find_diff_dump_stats(cairn: Cairn, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    first = cairn.run("backup", str(src), "--json").json()["snapshot_id"]
    (src / "docs" / "new.txt").write_text("new")
    (src / "zero-length").unlink()
    cairn.run("backup", str(src))
    listed = cairn.run("ls", "latest", "--json").json()["nodes"]
    assert any(n["path"].endswith("/docs/new.txt") for n in listed)
    found = cairn.run("find", "*.txt", "--json").json()
    assert [len(s["matches"]) for s in found] == [2, 3]
    diff = cairn.run("diff", first[:8], "latest", "--json").json()["changes"]
    changes = {(c["change"], c["path"].rsplit("/", 1)[-1]) for c in diff}
    assert ("added", "new.txt") in changes
    assert ("removed", "zero-length") in changes
    dumped = cairn.run("dump", "latest", str(src / "docs" / "notes.txt"))
    assert dumped.out == (src / "docs" / "notes.txt").read_text()
    stats = cairn.run("stats", "--json").json()
    assert stats["snapshots"] == 2
    assert stats["logical_bytes"] > stats["referenced_stored_bytes"] > 0


def test_snapshot_filters_and_tags(cairn: Cairn, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    cairn.run("backup", str(src), "--tag", "daily", "--host", "alpha")
    cairn.run("backup", str(src / "docs"), "--tag", "weekly", "--host", "beta")
    assert len(cairn.run("snapshots", "--host", "alpha", "--json").json()) == 1
    weekly = cairn.run("snapshots", "--tag", "weekly", "--json").json()
    assert [s["host"] for s in weekly] == ["beta"]
    assert cairn.run("snapshots", "--path", str(src / "docs"), "--json").json()[0]["tags"] == [
        "weekly"
    ]


def test_check_read_data_passes_on_a_healthy_repository(cairn: Cairn, tmp_path: Path) -> None:
    cairn.run("backup", str(make_tree(tmp_path)))
    report = cairn.run("check", "--read-data", "--json").json()
    assert report["ok"] and report["packs_read"] == report["packs"] > 0
    subset = cairn.run("check", "--read-data-subset", "1/2", "--json").json()
    assert subset["ok"]
