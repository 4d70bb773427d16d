"""`cairn backup --limit-upload`: a limited backup completes and restores bit-exact, to a local
repository and to a real server; a bad rate is a usage error. (The bucket's accounting is proved
with a fake clock in tests/conformance/test_ratelimited.py; no timing is asserted here.)"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clitools import Cairn, manifest
from tests.support.serverfixture import RunningServer, running_server


def source(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "a.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    (root / "b.bin").write_bytes(os.urandom(1024 * 1024 + 7))
    (root / "notes.txt").write_text("limited\n" * 1000)
    return root


def restore_and_compare(tool: Cairn, src: Path, target: Path, env: dict[str, str]) -> None:
    tool.run("restore", "latest", "--target", str(target), env=env)
    assert manifest(target / src.relative_to("/")) == manifest(src)


def test_a_limited_backup_completes_and_restores(tmp_path: Path) -> None:
    tool = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    tool.run("init")
    src = source(tmp_path / "src")
    started = time.monotonic()
    result = tool.run("backup", str(src), "--limit-upload", "1MiB/s", "--json").json()
    elapsed = time.monotonic() - started
    assert result["upload_limit"] == 1024 * 1024
    assert result["bytes_added"] > 3_000_000
    print(f"uploaded {result['bytes_added']} bytes in {elapsed:.1f} s at a 1 MiB/s limit")
    restore_and_compare(tool, src, tmp_path / "out", tool.env())


def test_the_environment_sets_the_limit_and_a_bad_rate_is_a_usage_error(tmp_path: Path) -> None:
    tool = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    tool.run("init")
    src = source(tmp_path / "src")
    result = tool.run("backup", str(src), "--json", env=tool.env(CAIRN_LIMIT_UPLOAD="4 MiB/s"))
    assert result.json()["upload_limit"] == 4 * 1024 * 1024
    bad = tool.run("backup", str(src), "--limit-upload", "fast", "--json", check=False)
    assert bad.code == 2
    assert bad.json()["error"]["code"] == "CAIRN-E002"
    assert "not a size: 'fast'" in bad.json()["error"]["message"]
    unlimited = tool.run("backup", str(src), "--limit-upload", "0", "--json").json()
    assert unlimited["upload_limit"] is None, "0 means no limit"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


def test_a_limited_backup_to_a_server_completes_and_restores(
    server: RunningServer, tmp_path: Path
) -> None:
    token = server.tenant("limited")
    tool = Cairn(server.location("limited"), cache=tmp_path / "cache")
    env = tool.env(CAIRN_TOKEN=token, XDG_CONFIG_HOME=str(tmp_path / "config"))
    tool.run("init", env=env)
    src = source(tmp_path / "src")
    result = tool.run("backup", str(src), "--limit-upload", "2MiB/s", "--json", env=env).json()
    assert result["upload_limit"] == 2 * 1024 * 1024
    restore_and_compare(tool, src, tmp_path / "out", env)
