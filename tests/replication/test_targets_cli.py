"""`cairn server target …` through the real `cairn` command (design 17.9-17.12): a target is
checked before it is saved, a bad one leaves nothing behind, every change is in the audit log,
and `status --json` carries the fields the operator watches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cairn.replication.db import ReplicationDb
from cairn.replication.model import Action
from cairn.server.app import open_services
from cairn.server.context import Settings
from tests.support.clitools import Cairn, Result

UNICODE_FOLDER = "offsite Zürich ☃ 東京"


def target_cmd(
    data: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> Result:
    cairn = Cairn(data)
    return cairn.run(
        "server", "target", *args, "--data", str(data), check=check, env=cairn.env(**(env or {}))
    )


def target_json(data: Path, *args: str) -> Any:
    parsed: Any = target_cmd(data, *args, "--json").json()
    return parsed


def audit_actions(data: Path) -> list[str]:
    entries = open_services(Settings(data=data)).audit.entries(1000)
    return [str(e["action"]) for e in reversed(entries)]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    open_services(Settings(data=folder))
    return folder


@pytest.fixture
def offsite(tmp_path: Path) -> Path:
    folder = tmp_path / UNICODE_FOLDER
    folder.mkdir()
    return folder


def test_a_good_unicode_folder_is_checked_then_saved(data: Path, offsite: Path) -> None:
    result = target_cmd(data, "add", "nas-1", str(offsite), "--priority", "10")
    for step in ("open", "connect", "probe"):
        assert f"  {step}" in result.out and "FAILED" not in result.out
    assert "target nas-1 added" in result.out
    assert list(offsite.iterdir()) == [], "the check leaves the folder as it found it"
    listed = target_json(data, "list")
    assert [(t["name"], t["location"], t["priority"]) for t in listed] == [
        ("nas-1", str(offsite), 10)
    ]
    assert audit_actions(data)[-1] == "add-target"
    again = target_cmd(data, "test", "nas-1", "--json").json()
    assert again["ok"] and [s["step"] for s in again["check"]] == ["open", "connect", "probe"]


def test_a_missing_folder_is_refused_with_e123_and_nothing_is_saved(
    data: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "unmounted share"
    result = target_cmd(data, "add", "nas", str(missing), check=False)
    assert result.code == 123 and "CAIRN-E123" in result.err, result.err
    assert "does not exist" in result.err and str(missing) in result.err
    assert not missing.exists(), "a target's folder is never made"
    assert target_json(data, "list") == []
    assert "add-target" not in audit_actions(data)


def test_bad_settings_and_names_are_e120_before_any_connection(data: Path, offsite: Path) -> None:
    cases = [
        ("Nas", []),
        ("nas", ["--schedule", "every fortnight"]),
        ("nas", ["--schedule", "61 * * * *"]),
        ("nas", ["--window", "25:00-06:00"]),
        ("nas", ["--limit-upload", "fast"]),
        ("nas", ["--backoff", "soon"]),
        ("nas", ["--since", "2026-01-01"]),  # only-new only
        ("nas", ["--tenant", "nobody"]),
        ("nas", ["--retries", "-1"]),
    ]
    for name, options in cases:
        result = target_cmd(data, "add", name, str(offsite), *options, check=False)
        assert result.code == 2 and "CAIRN-E120" in result.err, (options, result.err)
        assert "checking" not in result.out
    assert target_json(data, "list") == []


def test_the_data_folder_and_memory_cannot_be_targets(data: Path) -> None:
    for location in (str(data), str(data / "tenants"), "memory:"):
        result = target_cmd(data, "add", "self", location, check=False)
        assert result.code == 125 and "CAIRN-E125" in result.err, (location, result.err)
    assert target_json(data, "list") == []


def test_list_show_edit_pause_resume_remove(data: Path, offsite: Path, tmp_path: Path) -> None:
    target_cmd(data, "add", "nas", str(offsite), "--mode", "mirror", "--window", "22:00-06:00")
    duplicate = target_cmd(data, "add", "nas", str(offsite), check=False)
    assert duplicate.code == 122 and "CAIRN-E122" in duplicate.err
    shown = target_json(data, "show", "nas")
    assert shown["mode"] == "mirror" and shown["windows"] == ["22:00-06:00"]
    assert shown["schedule"] == "continuous" and shown["quarantine_s"] == 14 * 86400

    target_cmd(
        data, "edit", "nas", "--schedule", "every 15m", "--limit-upload", "5MiB/s",
        "--kind", "snapshots", "--kind", "index", "--max-delete-bytes", "2G",
    )  # fmt: skip
    shown = target_json(data, "show", "nas")
    assert shown["schedule"] == "every 15m" and shown["limit_bps"] == 5 * 2**20
    assert shown["filters"]["kinds"] == ["snapshots", "index"]
    assert shown["max_delete_bytes"] == 2 * 2**30 and shown["windows"] == ["22:00-06:00"]
    target_cmd(data, "edit", "nas", "--limit-upload", "none", "--kind", "all", "--window", "none")
    shown = target_json(data, "show", "nas")
    assert shown["limit_bps"] is None and shown["filters"]["kinds"] == [] and not shown["windows"]

    moved = tmp_path / "moved"
    refused = target_cmd(data, "edit", "nas", "--location", str(moved), check=False)
    assert refused.code == 123 and target_json(data, "show", "nas")["location"] == str(offsite)

    assert target_json(data, "pause", "nas")["paused"] is True
    assert target_json(data, "status", "nas")[0]["state"] == "paused"
    assert target_json(data, "resume", "nas")["paused"] is False
    target_cmd(data, "remove", "nas")
    assert target_json(data, "list") == []
    missing = target_cmd(data, "show", "nas", check=False)
    assert missing.code == 121 and "CAIRN-E121" in missing.err
    assert audit_actions(data)[-6:] == [
        "add-target", "edit-target", "edit-target", "pause-target", "resume-target",
        "remove-target",
    ]  # fmt: skip


def test_only_new_starts_at_the_journal_head_or_at_since(data: Path, offsite: Path) -> None:
    db = ReplicationDb(data / "replication.db")
    with db.write() as conn:
        for seq, at_ms in ((1, 1_700_000_000_000), (2, 1_800_000_000_000)):
            conn.execute(
                "INSERT INTO journal (seq, tenant_id, kind, name, size, action, at_ms) "
                "VALUES (?, 't', 'packs', ?, 100, ?, ?)",
                (seq, f"{seq:064x}", Action.ADD.value, at_ms),
            )
    target_cmd(data, "add", "fresh", str(offsite), "--mode", "only-new")
    target_cmd(data, "add", "dated", str(offsite), "--mode", "only-new", "--since", "2025-01-01")
    target_cmd(data, "add", "whole", str(offsite))
    status = {s["name"]: s for s in target_json(data, "status")}
    assert (status["fresh"]["cursor"], status["fresh"]["lag_objects"]) == (2, 0)
    assert (status["dated"]["cursor"], status["dated"]["lag_objects"]) == (1, 1)
    assert (status["whole"]["cursor"], status["whole"]["lag_objects"]) == (0, 2)
    assert target_json(data, "show", "dated")["since_seq"] == 2


def test_status_json_has_every_field(data: Path, offsite: Path) -> None:
    target_cmd(data, "add", "nas", str(offsite), "--schedule", "0 2 * * *")
    (status,) = target_json(data, "status")
    assert set(status) == {
        "name", "state", "lag_s", "lag_bytes", "lag_objects", "cursor", "head", "interval_s",
        "last_run_ms", "last_success_ms", "objects_sent", "bytes_sent", "failures", "retries",
        "last_error", "quarantine_objects", "quarantine_bytes",
    }  # fmt: skip
    assert status["state"] == "ok" and status["interval_s"] == 86400
    assert status["last_success_ms"] is None and status["failures"] == 0
    text = target_cmd(data, "status").out
    assert "nas" in text and "never" in text
