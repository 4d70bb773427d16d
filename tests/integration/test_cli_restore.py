"""`cairn restore` and `cairn dump` as a user meets them: lost data after a repair, entries of
another type in the target, targets that cannot be written, an interrupted restore run again,
sparse files, restic's `ID:/sub/folder`, and folders dumped as tar or zip."""

from __future__ import annotations

import io
import os
import random
import signal
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.clitools import Cairn, manifest


@pytest.fixture
def cairn(tmp_path: Path) -> Cairn:
    tool = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    tool.run("init", "--pack-size", "256KiB")
    return tool


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    rng = random.Random(3)
    for i in range(40):
        (src / f"f{i:02}.bin").write_bytes(rng.randbytes(rng.randrange(1, 60_000)))
    (src / "sub" / "big.bin").write_bytes(rng.randbytes(3_000_000))
    (src / "sub" / "notes.txt").write_text("notes\n" * 100)
    os.chmod(src / "sub" / "notes.txt", 0o640)
    os.symlink("notes.txt", src / "sub" / "link")
    os.utime(src / "sub" / "notes.txt", ns=(1_600_000_000_000_000_000, 1_600_000_000_500_000_000))
    return src


def _flip_and_repair(cairn: Cairn) -> None:
    """A byte flipped in the largest pack, then `check --repair --read-data`, as in issue 11."""
    packs = [p for p in Path(cairn.repo, "packs").rglob("*") if p.is_file()]
    victim = max(packs, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    repaired = cairn.run("check", "--repair", "--read-data", check=False)
    assert "lost" in repaired.out or "missing" in repaired.out, repaired.out


def _binary(cairn: Cairn, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run `cairn` keeping stdout as bytes (dump writes file contents and archives)."""
    done = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", *args],
        capture_output=True,
        env=cairn.env(),
        timeout=300,
        check=False,
    )
    assert b"Traceback" not in done.stderr, done.stderr
    return done


def _inside(target: Path, src: Path) -> Path:
    return target / src.relative_to("/")


def test_a_lost_chunk_costs_only_the_files_that_hold_it(cairn: Cairn, tmp_path: Path) -> None:
    src = _source(tmp_path)
    cairn.run("backup", str(src))
    _flip_and_repair(cairn)

    target = tmp_path / "out"
    done = cairn.run("restore", "latest", "--target", str(target), "--json", check=False)
    assert done.code == 23, done.err
    document = done.json()
    assert document["error"]["code"] == "CAIRN-E023"
    damaged = document["result"]["damaged"]
    assert damaged, "the damaged files are listed"
    restored = manifest(_inside(target, src))
    expected = manifest(src)
    lost = {os.fsencode(d["path"]).removeprefix(os.fsencode(src) + b"/") for d in damaged}
    for rel, entry in expected.items():
        if rel in lost:
            assert rel not in restored, "a damaged file is never under its own name"
        elif not rel.endswith(b"sub") or rel == b"sub":
            assert restored[rel] == entry, rel  # every intact file bit-exact
    for item in damaged:
        assert item["lost_ranges"] and all(
            0 <= a < b <= item["size"] for a, b in item["lost_ranges"]
        )
        original = Path(item["path"]).read_bytes()
        aside = _inside(target, Path(item["saved_as"])).read_bytes()
        kept = bytearray(original)
        for a, b in item["lost_ranges"]:
            kept[a:b] = bytes(b - a)
        assert aside == bytes(kept), "the intact parts set aside, the lost ranges zeroed"
    files = [e for e in expected.values() if stat.S_ISREG(e[0])]
    assert document["result"]["files"] == len(files) - len(lost)

    human = cairn.run("restore", "latest", "--target", str(tmp_path / "again"), check=False)
    assert human.code == 23
    assert "damaged in the repository, not restored" in human.out
    assert f"{damaged[0]['path']}: " in human.out and "bytes lost (bytes " in human.out
    assert "CAIRN-E023" in human.err

    bad = damaged[0]["path"]
    dumped = cairn.run("dump", "latest", bad, check=False)
    assert dumped.code == 23 and dumped.out == "", "a damaged file is never streamed"
    assert "CAIRN-E023" in dumped.err and "bytes lost" in dumped.err
    good = next(p for p in sorted(src.iterdir()) if p.is_file() and p.name.encode() not in lost)
    assert _binary(cairn, "dump", "latest", str(good)).stdout == good.read_bytes()


def test_restore_a_folder_where_the_snapshot_has_a_file(cairn: Cairn, tmp_path: Path) -> None:
    src = _source(tmp_path)
    cairn.run("backup", str(src))
    target = tmp_path / "t"
    in_the_way = _inside(target, src) / "f00.bin"
    (in_the_way / "inner").mkdir(parents=True)
    refused = cairn.run("restore", "latest", "--target", str(target), check=False)
    assert refused.code == 17 and "CAIRN-E017" in refused.err
    assert "f00.bin (a folder where the snapshot has no folder)" in refused.err
    assert not (_inside(target, src) / "f01.bin").exists(), "nothing written when refused"
    cairn.run("restore", "latest", "--target", str(target), "--overwrite")
    assert manifest(_inside(target, src)) == manifest(src)


def test_restore_a_symlink_where_the_snapshot_has_a_folder(cairn: Cairn, tmp_path: Path) -> None:
    src = _source(tmp_path)
    cairn.run("backup", str(src))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("not in the restore")
    target = tmp_path / "t"
    _inside(target, src).mkdir(parents=True)
    os.symlink(elsewhere, _inside(target, src) / "sub")
    refused = cairn.run("restore", "latest", "--target", str(target), check=False)
    assert refused.code == 17 and "a file or symlink where the snapshot has a folder" in refused.err
    cairn.run("restore", "latest", "--target", str(target), "--overwrite")
    assert manifest(_inside(target, src)) == manifest(src)
    assert sorted(os.listdir(elsewhere)) == ["keep"], "the symlink was replaced, not followed"


def test_a_target_that_cannot_be_written_names_the_path(cairn: Cairn, tmp_path: Path) -> None:
    cairn.run("backup", str(_source(tmp_path)))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for target in (a_file / "sub", Path("/proc/cairn-no-such-dir")):
        failed = cairn.run("restore", "latest", "--target", str(target), check=False)
        assert failed.code == 24, failed.err
        assert f"CAIRN-E024: cannot write {target}" in failed.err


@pytest.mark.required("root: a read-only tmpfs mount")
def test_a_read_only_target_names_the_path(cairn: Cairn, tmp_path: Path) -> None:
    cairn.run("backup", str(_source(tmp_path)))
    mount = tmp_path / "ro"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only file system needs root (CI runs as root)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(mount)], check=False)
    if mounted.returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        failed = cairn.run("restore", "latest", "--target", str(mount / "x"), check=False)
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert failed.code == 24
    assert f"cannot write {mount / 'x'}: Read-only file system" in failed.err


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_restore_completes_when_run_again(
    cairn: Cairn, tmp_path: Path, signum: int
) -> None:
    src = _source(tmp_path)
    cairn.run("backup", str(src))
    target = tmp_path / "t"
    env = cairn.env(CAIRN_CRASH_PAUSE="restore.write:30")  # mid-way, inside big.bin
    proc = subprocess.Popen(
        [sys.executable, "-m", "cairn.cli.main", "restore", "latest", "--target", str(target)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # A test run earlier in this worker may have left SIGINT ignored, and a child inherits
        # an ignored signal (then Python installs no KeyboardInterrupt handler): start it as a
        # shell would start a foreground command.
        preexec_fn=_default_signals,
    )
    deadline = time.monotonic() + 120
    while not _stopped(proc.pid):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the restore never reached its pause point"
        time.sleep(0.05)
    proc.send_signal(signum)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    restored = _inside(target, src)
    expected = manifest(src)
    for rel, entry in manifest(restored).items():
        if stat.S_ISREG(entry[0]):  # what is there under its name is complete, metadata too
            assert entry == expected[rel], rel
    assert not [p for p in target.rglob("*") if ".cairn-partial." in p.name]

    cairn.run("restore", "latest", "--target", str(target))  # no --overwrite needed
    assert manifest(restored) == expected


def test_a_sparse_file_reports_the_bytes_really_written(cairn: Cairn, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "disk.img", "wb") as f:
        f.write(os.urandom(100_000))
        f.truncate(64 * 1024 * 1024)
    cairn.run("backup", str(src))
    done = cairn.run("restore", "latest", "--target", str(tmp_path / "t"), "--json").json()
    assert done["size"] == 64 * 1024 * 1024
    assert 100_000 <= done["bytes_written"] < 1024 * 1024
    folders = [p for p in (tmp_path / "t").rglob("*") if p.is_dir()]
    assert done["dirs"] == len(folders), "the folders inside the target, the target not counted"
    human = cairn.run("restore", "latest", "--target", str(tmp_path / "h")).out
    assert f"{len(folders)} folders inside the target" in human
    assert "64.0 MiB of file data" in human and "written to disk" in human


def test_restore_id_colon_folder_restores_that_folders_contents(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = _source(tmp_path)
    snapshot = cairn.run("backup", str(src), "--json").json()["snapshot_id"]
    target = tmp_path / "t"
    cairn.run("restore", f"{snapshot[:8]}:{src / 'sub'}", "--target", str(target))
    assert manifest(target) == manifest(src / "sub")
    not_folder = cairn.run("restore", f"latest:{src / 'f00.bin'}", "-t", str(target), check=False)
    assert not_folder.code == 2 and "is a file in the snapshot, not a folder" in not_folder.err


def _members(archive: Any) -> dict[str, Any]:
    return {m.name: m for m in archive.getmembers()}


def test_dump_a_folder_as_tar(cairn: Cairn, tmp_path: Path) -> None:
    src = _source(tmp_path)
    cairn.run("backup", str(src))
    out = _binary(cairn, "dump", "latest", str(src / "sub")).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        members = _members(tar)
        assert set(members) == {"sub", "sub/big.bin", "sub/notes.txt", "sub/link"}
        notes = members["sub/notes.txt"]
        assert (notes.mode, int(notes.mtime)) == (0o640, 1_600_000_000)
        assert members["sub/link"].issym() and members["sub/link"].linkname == "notes.txt"
        extracted = tar.extractfile("sub/big.bin")
        assert extracted is not None
        assert extracted.read() == (src / "sub" / "big.bin").read_bytes()


def test_dump_a_folder_as_zip(cairn: Cairn, tmp_path: Path) -> None:
    src = _source(tmp_path)
    cairn.run("backup", str(src))
    out = _binary(cairn, "dump", "latest", str(src / "sub"), "--archive", "zip").stdout
    with zipfile.ZipFile(io.BytesIO(out)) as archive:
        assert archive.read("sub/big.bin") == (src / "sub" / "big.bin").read_bytes()
        info = archive.getinfo("sub/notes.txt")
        assert stat.S_IMODE(info.external_attr >> 16) == 0o640
        link = archive.getinfo("sub/link")
        assert stat.S_ISLNK(link.external_attr >> 16) and archive.read(link) == b"notes.txt"
        assert "sub/" in archive.namelist()


def test_dump_a_damaged_folder_leaves_out_and_lists_the_damaged_files(
    cairn: Cairn, tmp_path: Path
) -> None:
    src = _source(tmp_path)
    cairn.run("backup", str(src))
    _flip_and_repair(cairn)
    dumped = _binary(cairn, "dump", "latest", str(src))
    assert dumped.returncode == 23 and b"CAIRN-E023" in dumped.stderr
    with tarfile.open(fileobj=io.BytesIO(dumped.stdout)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                data = tar.extractfile(member)
                assert data is not None
                assert data.read() == (src.parent / member.name).read_bytes(), member.name
    listed = [line for line in dumped.stderr.decode().splitlines() if "bytes lost" in line]
    assert listed


def _compare_members(archive: bytes, base: Path, complete: list[str]) -> None:
    """Read a tar stream member by member, each file equal to the one under `base`."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r|") as tar:
        for member in tar:
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                assert extracted.read() == (base / member.name).read_bytes()
                complete.append(member.name)


def test_dump_stops_where_a_chunk_fails_verification(cairn: Cairn, tmp_path: Path) -> None:
    """Without a repair the index still lists the damaged chunk: the dump streams what comes
    before it, then stops with the code and the range; the archive is cut short, so a reader
    sees it is incomplete, and never gets wrong bytes."""
    src = _source(tmp_path)
    cairn.run("backup", str(src))
    packs = [p for p in Path(cairn.repo, "packs").rglob("*") if p.is_file()]
    victim = max(packs, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    dumped = _binary(cairn, "dump", "latest", str(src))
    assert dumped.returncode == 23 and b"bytes lost (bytes " in dumped.stderr
    complete: list[str] = []
    with pytest.raises(tarfile.ReadError):
        _compare_members(dumped.stdout, src.parent, complete)
    files = [p for p in src.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len(complete) < len(files)
