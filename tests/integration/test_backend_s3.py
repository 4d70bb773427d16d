"""The real `cairn` command against a real SeaweedFS S3 gateway: the issue's done-when, the
errors a user meets, resumed multipart uploads and broken connections."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clitools import Cairn, manifest
from test_cli_roundtrip import make_tree

from storageservers import S3_BUCKET, SeaweedS3


def s3_cairn(seaweed: SeaweedS3, tmp_path: Path, location: str | None = None) -> Cairn:
    return Cairn(location or seaweed.location(prefix=seaweed.fresh_prefix()), cache=tmp_path / "c")


def run_env(seaweed: SeaweedS3, tool: Cairn, **extra: str) -> dict[str, str]:
    return tool.env(**seaweed.env(**extra))


def test_init_backup_restore_check_forget_prune_key(seaweed: SeaweedS3, tmp_path: Path) -> None:
    tool = s3_cairn(seaweed, tmp_path)
    env = run_env(seaweed, tool)
    tool.run("init", env=env)
    src = make_tree(tmp_path)
    before = manifest(src)
    first = tool.run("backup", str(src), "--json", env=env).json()
    assert first["errors"] == []
    (src / "docs" / "notes.txt").write_text("changed\n")
    tool.run("backup", str(src), env=env)
    tool.run("restore", "latest", "--target", str(tmp_path / "out"), env=env)
    restored = manifest(tmp_path / "out" / src.relative_to("/"))
    assert restored == manifest(src)
    tool.run("restore", first["snapshot_id"], "--target", str(tmp_path / "old"), env=env)
    assert manifest(tmp_path / "old" / src.relative_to("/")) == before
    tool.run("check", "--read-data", env=env)
    tool.run("forget", "--keep-last", "1", env=env)
    assert len(tool.run("snapshots", "--json", env=env).json()) == 1
    tool.run("prune", "--max-unused", "0", env=env)
    tool.run("check", "--read-data", env=env)
    new_password = tmp_path / "new-pass"
    new_password.write_text("battery staple\n")
    tool.run("key", "add", "--new-password-file", str(new_password), env=env)
    other = Cairn(tool.repo, password="battery staple", cache=tmp_path / "c2")
    other.run("restore", "latest", "--target", str(tmp_path / "again"), env=run_env(seaweed, other))
    assert manifest(tmp_path / "again" / src.relative_to("/")) == manifest(src)
    keys = seaweed.keys(S3_BUCKET, str(tool.repo).rsplit("/", 1)[1] + "/")
    assert any("/packs/" in key for key in keys) and any(k.endswith("/config") for k in keys)
