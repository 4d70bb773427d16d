"""Everyday mistakes with files and folders the user names get a documented code and a message
that names the path, never a traceback (issue 11, items 4 and 7).

Every case runs the real CLI. None needs a permission a root user would pass anyway: they use
paths below a regular file (ENOTDIR) or in /proc, which fail the same way for everyone.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.clitools import Cairn

DOCS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


@dataclass(frozen=True)
class Case:
    """A command line (with {file}, {repo}, {src} filled in), extra environment, the expected
    code, and a text the message must hold ({file} filled in)."""

    args: tuple[str, ...]
    code: str
    names: str
    env: tuple[tuple[str, str], ...] = ()


FILE = "{file}"  # a regular file, so that "{file}/x" cannot exist
CASES = {
    "password file missing": Case(
        ("--password-file", "{tmp}/nothere", "snapshots"), "CAIRN-E041", "{tmp}/nothere"
    ),
    "password file a folder": Case(
        ("--password-file", "{tmp}", "snapshots"), "CAIRN-E041", "{tmp}"
    ),
    "CAIRN_PASSWORD_FILE below a file": Case(
        ("snapshots",), "CAIRN-E041", f"{FILE}/x", (("CAIRN_PASSWORD_FILE", f"{FILE}/x"),)
    ),
    "password command fails": Case(
        ("--password-command", "sh -c 'echo locked >&2; exit 3'", "snapshots"),
        "CAIRN-E042",
        "locked",
    ),
    "password command missing": Case(
        ("--password-command", "{tmp}/no-such-tool", "snapshots"),
        "CAIRN-E042",
        "{tmp}/no-such-tool",
    ),
    "repository is a file": Case(("-r", FILE, "snapshots"), "CAIRN-E015", FILE),
    "repository below a file": Case(("-r", f"{FILE}/repo", "snapshots"), "CAIRN-E015", FILE),
    "init below a file": Case(("-r", f"{FILE}/repo", "init"), "CAIRN-E015", FILE),
    "init where no folder can be made": Case(
        ("-r", "/proc/cairn-no-such/repo", "init"), "CAIRN-E035", "/proc/cairn-no-such"
    ),
    "--cache-dir below a file": Case(
        ("--cache-dir", f"{FILE}/cache", "backup", "{src}"), "CAIRN-E043", f"{FILE}/cache"
    ),
    "CAIRN_CACHE_DIR below a file": Case(
        ("backup", "{src}"), "CAIRN-E043", f"{FILE}/c", (("CAIRN_CACHE_DIR", f"{FILE}/c"),)
    ),
    "--token-file missing": Case(
        ("-r", "cairns://127.0.0.1:9/t", "--token-file", "{tmp}/none", "snapshots"),
        "CAIRN-E041",
        "{tmp}/none",
    ),
    "CAIRN_TOKEN_FILE a folder": Case(
        ("-r", "cairns://127.0.0.1:9/t", "snapshots"),
        "CAIRN-E041",
        "{tmp}",
        (("CAIRN_TOKEN_FILE", "{tmp}"),),
    ),
    "known_servers below a file": Case(
        ("-r", "cairns://127.0.0.1:9/t", "snapshots"),
        "CAIRN-E044",
        f"{FILE}/cairn/known_servers",
        (("CAIRN_TOKEN", "x"), ("XDG_CONFIG_HOME", FILE)),
    ),
    "CAIRN_SERVER_FINGERPRINT malformed": Case(
        ("-r", "cairns://127.0.0.1:9/t", "snapshots"),
        "CAIRN-E002",
        "CAIRN_SERVER_FINGERPRINT='00aa' is not a certificate fingerprint",
        (("CAIRN_TOKEN", "x"), ("CAIRN_SERVER_FINGERPRINT", "00aa")),
    ),
    "key add: new password file missing": Case(
        ("key", "add", "--new-password-file", "{tmp}/nothere"), "CAIRN-E041", "{tmp}/nothere"
    ),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Cairn:
    tmp = tmp_path_factory.mktemp("repo")
    cairn = Cairn(tmp / "repo", cache=tmp / "cache")
    cairn.run("init")
    return cairn


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_path_gets_a_documented_code_naming_it(
    name: str, repo: Cairn, tmp_path: Path
) -> None:
    case = CASES[name]
    (tmp_path / "file").write_text("not a folder\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("a\n")
    fill = {
        "{file}": str(tmp_path / "file"),
        "{tmp}": str(tmp_path),
        "{src}": str(tmp_path / "src"),
    }

    def filled(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    env = repo.env(**{k: filled(v) for k, v in case.env})
    if "CAIRN_CACHE_DIR" not in dict(case.env):
        env.pop("CAIRN_CACHE_DIR", None)
    result = repo.run(*map(filled, case.args), check=False, env=env)
    assert "Traceback" not in result.err
    assert f"error {case.code}:" in result.err, result.err
    assert filled(case.names) in result.err, result.err
    exit_status = _documented_exit(case.code)
    assert result.code == exit_status, result.err


def _documented_exit(code: str) -> int:
    """The exit status docs/errors.md gives for `code`."""
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 3 and re.search(rf"\b{code}\b", cells[2]):
            return int(cells[1])
    raise AssertionError(f"{code} is not in docs/errors.md")


def test_the_default_cache_folder_unusable_is_a_warning(repo: Cairn, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "src").mkdir()
    env = repo.env(XDG_CACHE_HOME=str(tmp_path / "file"))
    env.pop("CAIRN_CACHE_DIR", None)
    result = repo.run("backup", str(tmp_path / "src"), env=env)
    assert f"warning: cannot use the cache folder {tmp_path / 'file'}" in result.err


def test_the_empty_passphrase_is_refused_unless_asked_for(tmp_path: Path) -> None:
    cairn = Cairn(tmp_path / "repo", password="")
    for args in (["init"], ["--password-file", "/dev/null", "init"]):
        result = cairn.run(*args, check=False, stdin=subprocess.DEVNULL)
        assert result.code == 2 and "empty passphrase" in result.err, result.err
        assert "--insecure-no-password" in result.err
    assert not (tmp_path / "repo").exists()
    cairn.run("--insecure-no-password", "init")
    assert cairn.run("--insecure-no-password", "snapshots").code == 0
    assert cairn.run("snapshots", check=False).code == 2, "the flag is needed to open it too"
    both = Cairn(tmp_path / "repo", password="secret").run(
        "--insecure-no-password", "snapshots", check=False
    )
    assert both.code == 2 and "one or the other" in both.err


def test_a_new_key_with_an_empty_passphrase_needs_the_flag(repo: Cairn, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    for action in ("add", "passwd"):
        result = repo.run("key", action, "--new-password-file", str(empty), check=False)
        assert result.code == 2 and "empty new passphrase" in result.err
        assert "--new-insecure-no-password" in result.err
    assert len(repo.run("key", "list", "--json").json()) == 1
    repo.run("key", "add", "--new-insecure-no-password")
    keys = Cairn(repo.repo, password="").run("--insecure-no-password", "key", "list", "--json")
    assert [k["current"] for k in keys.json()].count(True) == 1


def test_removing_an_unknown_key_says_no_key_matches(repo: Cairn) -> None:
    result = repo.run("key", "remove", "zzzz", check=False)
    assert result.code == 18
    assert "no key of this repository has an ID starting with 'zzzz'" in result.err
    assert "longer" not in result.err


def test_the_wrong_passphrase_hint_needs_no_passphrase(repo: Cairn) -> None:
    result = Cairn(repo.repo, password="wrong").run("snapshots", check=False)
    assert result.code == 12
    hint = result.err.split("hint:", 1)[1]
    assert "key list" not in hint and "CAIRN_PASSWORD" in hint


def test_no_hint_only_repeats_the_message() -> None:
    source = (Path(__file__).resolve().parents[2] / "src/cairn/cli/errors.py").read_text()
    assert "see the message" not in source
    assert "the message says how" not in source
    assert "part of the next release" not in DOCS.read_text()
