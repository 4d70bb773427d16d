"""Bad input gets a clear error, a documented code and exit status, and no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cairn.cli.errors import CODES
from cairn.crypto.kdf import DEFAULT_KDF
from tests.support.clitools import FAST_KDF, Cairn

DOCS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


@pytest.fixture
def cairn(tmp_path: Path) -> Cairn:
    tool = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    tool.run("init")
    return tool


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i}.txt").write_text(f"file {i}\n" * 3000)
    (src / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    return src


def test_every_error_code_is_documented() -> None:
    documented = DOCS.read_text()
    for _cls, code in CODES:
        assert code.code in documented, f"{code.code} is missing from docs/errors.md"


def test_wrong_passphrase(cairn: Cairn) -> None:
    wrong = Cairn(cairn.repo, password="wrong")
    result = wrong.run("snapshots", check=False)
    assert result.code == 12
    assert "CAIRN-E012" in result.err and "wrong passphrase" in result.err


def test_missing_repository(tmp_path: Path) -> None:
    result = Cairn(tmp_path / "nowhere").run("snapshots", check=False)
    assert result.code == 10
    assert "cairn init" in result.err


def test_foreign_folder_is_not_a_repository(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config").write_text("this is not a cairn config")
    result = Cairn(foreign).run("snapshots", check=False)
    assert result.code == 15


def test_init_twice(cairn: Cairn) -> None:
    assert cairn.run("init", check=False).code == 13


def test_no_passphrase_and_no_terminal(cairn: Cairn) -> None:
    env = cairn.env()
    del env["CAIRN_PASSWORD"]
    result = cairn.run("snapshots", check=False, env=env, stdin=subprocess.DEVNULL)
    assert result.code == 11


def test_password_file_and_command(cairn: Cairn, tmp_path: Path) -> None:
    env = cairn.env()
    del env["CAIRN_PASSWORD"]
    secret = tmp_path / "pass"
    secret.write_text(cairn.password + "\n")
    assert cairn.run("--password-file", str(secret), "snapshots", env=env).code == 0
    command = f'{sys.executable} -c "print({cairn.password!r})"'
    assert cairn.run("snapshots", "--password-command", command, env=env).code == 0


def test_unknown_snapshot(cairn: Cairn) -> None:
    result = cairn.run("ls", "deadbeef", check=False)
    assert result.code == 16
    assert cairn.run("ls", "latest", check=False).code == 16


@pytest.mark.parametrize("pattern", ["[unclosed", ""])
def test_bad_pattern(cairn: Cairn, tmp_path: Path, pattern: str) -> None:
    result = cairn.run("backup", str(_source(tmp_path)), "--exclude", pattern, check=False)
    assert result.code == 2
    assert "CAIRN-E003" in result.err


def test_bad_arguments_are_usage_errors(cairn: Cairn) -> None:
    result = cairn.run("check", "--read-data-subset", "7/3", check=False)
    assert result.code == 2
    assert cairn.run("no-such-command", check=False).code == 2


def test_json_errors(cairn: Cairn) -> None:
    result = Cairn(cairn.repo, password="wrong").run("snapshots", "--json", check=False)
    assert result.json()["error"]["code"] == "CAIRN-E012"


def test_corrupted_pack_is_found_by_check_and_refused_by_restore(
    cairn: Cairn, tmp_path: Path
) -> None:
    cairn.run("backup", str(_source(tmp_path)))
    packs = sorted(
        (Path(cairn.repo) / "packs").rglob("*"),
        key=lambda p: p.stat().st_size if p.is_file() else 0,
    )
    victim = packs[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    check = cairn.run("check", "--read-data", check=False)
    assert check.code == 20
    assert victim.name[:8] in check.out
    restore = cairn.run("restore", "latest", "--target", str(tmp_path / "out"), check=False)
    assert restore.code == 23  # the intact files are restored, the damaged ones listed
    assert "CAIRN-E023" in restore.err


def test_missing_pack_is_found_by_structure_check(cairn: Cairn, tmp_path: Path) -> None:
    cairn.run("backup", str(_source(tmp_path)))
    victim = next(p for p in (Path(cairn.repo) / "packs").rglob("*") if p.is_file())
    victim.unlink()
    check = cairn.run("check", check=False)
    assert check.code == 20
    assert "missing" in check.out
    # with --json: one document, the check's result and the error that follows it
    found = cairn.run("check", "--json", check=False).json()
    assert found["result"]["ok"] is False and found["result"]["errors"]
    assert found["error"]["code"] == "CAIRN-E020" and found["error"]["exit"] == 20


def test_unreadable_source_file_is_reported_and_skipped(cairn: Cairn, tmp_path: Path) -> None:
    # /proc/self/mem opens but fails to read at offset 0 (EIO), even for root: a real unreadable
    # file. The rest of the backup must be saved, with the file reported and left out.
    src = _source(tmp_path)
    result = cairn.run("backup", str(src), "/proc/self/mem", "--json", check=False)
    assert result.code == 3, result.err
    report = result.json()
    assert [e["path"] for e in report["errors"]] == ["/proc/self/mem"]
    nodes = cairn.run("ls", "latest", "--json").json()["nodes"]
    paths = [n["path"] for n in nodes]
    assert str(src / "f0.txt") in paths
    assert "/proc/self/mem" not in paths


def test_fast_kdf_is_only_a_test_setting() -> None:
    # Tests pass cheap argon2id parameters explicitly; the default stays strong.
    assert FAST_KDF != "t=3,m=65536,p=4"
    assert (DEFAULT_KDF.t, DEFAULT_KDF.m, DEFAULT_KDF.p) == (3, 65536, 4)


_FULL_DISK_SCRIPT = """
mount -t tmpfs -o size=3m tmpfs "$REPO" || exit 99
cairn() { "$PYTHON" -m cairn.cli.main "$@"; }
cairn init > /dev/null || exit 98
cairn backup "$BIG" 2> "$OUT/full.err"; echo $? > "$OUT/full.rc"
ls -A "$REPO/data"/* > "$OUT/leftovers"
cairn backup "$SMALL" > /dev/null 2> "$OUT/small.err"; echo $? > "$OUT/small.rc"
cairn check --read-data > "$OUT/check.out" 2>&1; echo $? > "$OUT/check.rc"
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
@pytest.mark.required("unshare: a 3 MiB tmpfs in a private mount namespace")
def test_a_full_disk_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    # A real full file system: a 3 MiB tmpfs in a private mount namespace holds the repository.
    repo, out = tmp_path / "repo", tmp_path / "out"
    repo.mkdir()
    out.mkdir()
    big = tmp_path / "big"
    big.mkdir()
    (big / "random.bin").write_bytes(os.urandom(12 * 1024 * 1024))
    small = tmp_path / "small"
    small.mkdir()
    (small / "note.txt").write_text("still fits\n")
    env = Cairn(repo, cache=tmp_path / "cache").env(
        PYTHON=sys.executable, BIG=str(big), SMALL=str(small), OUT=str(out), REPO=str(repo)
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", _FULL_DISK_SCRIPT], env=env, check=False, timeout=300
    )
    if done.returncode in (98, 99) or not (out / "full.rc").exists():
        pytest.skip("cannot mount a tmpfs in a private mount namespace here")
    full_err = (out / "full.err").read_text()
    assert (out / "full.rc").read_text().strip() == "30", full_err
    assert "CAIRN-E030" in full_err and "Traceback" not in full_err
    assert ".tmp-" not in (out / "leftovers").read_text()  # no half-written objects remain
    assert (out / "small.rc").read_text().strip() == "0", (out / "small.err").read_text()
    assert (out / "check.rc").read_text().strip() == "0", (out / "check.out").read_text()


def test_a_closed_output_pipe_is_not_an_error(cairn: Cairn, tmp_path: Path) -> None:
    """`cairn ls latest | head -n 1`: the reader leaves early; no traceback, no bug report."""
    many = tmp_path / "many"
    many.mkdir()
    for i in range(3000):  # a listing larger than the pipe's buffer: the writer must block
        (many / f"a-file-with-a-long-name-{i:05}.txt").touch()
    cairn.run("backup", str(many))
    reader_gone = subprocess.Popen(
        [sys.executable, "-m", "cairn.cli.main", "ls", "latest"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cairn.env(),
    )
    assert reader_gone.stdout is not None
    reader_gone.stdout.readline()
    reader_gone.stdout.close()
    _, err = reader_gone.communicate(timeout=120)
    assert b"Traceback" not in err and b"CAIRN-E999" not in err, err.decode()
    assert reader_gone.returncode == 141
