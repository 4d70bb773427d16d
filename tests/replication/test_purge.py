"""Purges (design 17.5, 17.14): `cairn server target purge NAME` deletes a mirror target's
deletions that waited out the quarantine, past the threshold that stopped the runs, and only
with `--yes`; `cairn server removed purge` frees what a receiving server moved aside, only what
is older than the delay, and only with `--yes`. Both audited. Two real `cairn server serve`
processes (the sender and a receiving Cairn server), the real CLI and engine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cairn.core.clock import FrozenClock
from cairn.replication.layout import TargetLayouts, target_opener
from cairn.replication.model import RunReport
from cairn.replication.targets import TargetStore
from tests.integration.test_cli_server import Client, admin, tree
from tests.replication.support import Engine
from tests.support.clitools import Cairn
from tests.support.serverfixture import RunningServer, running_server

AREA = "site-a"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "receiver") as server:
        yield server


@pytest.fixture
def primary(
    receiver: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningServer]:
    """The sending server, and its environment: a replication token of the area."""
    admin(receiver, "tenant", "add", AREA, "--quota", "200M")
    token = str(admin(receiver, "token", "add", AREA, "--role", "replication")["token"])
    monkeypatch.setenv("CAIRN_TOKEN", token)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "sender-home"))
    with running_server(tmp_path / "primary") as server:
        yield server


def run_on(engine: Engine, day: int) -> RunReport:
    """One run of the registered target with the engine's clock on that day of December."""
    engine.clock = FrozenClock(datetime(2026, 12, day, tzinfo=UTC))
    engine.__post_init__()  # the replicator takes the new clock
    target = TargetStore(engine.db, engine.clock).get("offsite")
    layouts = TargetLayouts(target.location, engine.server_id, target_opener(target))
    try:
        return engine.replicator.run(target, layouts)
    finally:
        layouts.close()


def cli(server: RunningServer, *args: str) -> Any:
    return Cairn(server.data).run("server", *args, "--data", str(server.data), "--json").json()


def actions(server: RunningServer) -> list[str]:
    rows = server.services().db.read().execute("SELECT action FROM audit ORDER BY seq")
    return [str(row[0]) for row in rows]


def test_a_mirror_purge_then_the_receivers_purge(
    primary: RunningServer, receiver: RunningServer, tmp_path: Path
) -> None:
    location = receiver.location(AREA)
    cli(primary, "target", "add", "offsite", location, "--mode", "mirror")
    cli(primary, "target", "edit", "offsite", "--quarantine", "1d", "--max-delete-count", "0")
    cli(primary, "target", "pause", "offsite")  # the test runs it, with its clock; serve not
    token = str(admin(primary, "tenant", "add", "alpha")["admin_token"])
    machine = Client(primary, "alpha", tmp_path / "home", token)
    machine.run("init")
    source = tree(tmp_path / "src", 1, size=50_000)
    for n in range(3):
        (source / f"day-{n}.txt").write_text(f"day {n}\n" * 300)
        machine.run("backup", str(source))
    engine = Engine(primary.data)
    assert run_on(engine, 5).error is None
    area_id = receiver.services().tenants.get(AREA).id
    copy = Path(area_id, engine.server_id, engine.tenant_id("alpha"), "snapshots")
    live, aside = receiver.data / "copies" / copy, receiver.data / "removed" / copy

    def snapshots(folder: Path) -> int:
        return sum(path.is_file() for path in folder.rglob("*")) if folder.exists() else 0

    machine.run("forget", "--keep-last", "2", "--group-by", "")
    assert run_on(engine, 5).quarantined == 1  # due on December 6: before today
    machine.run("forget", "--keep-last", "1", "--group-by", "")
    stopped = run_on(engine, 20)  # one more quarantined, due December 21: not yet
    assert stopped.error is not None and "CAIRN-E131" in stopped.error, stopped
    assert (snapshots(live), snapshots(aside)) == (3, 0)

    dry = cli(primary, "target", "purge", "offsite")
    assert dry["dry_run"] and len(dry["due"]) == 1 and dry["deleted"] == 0, dry
    assert dry["due"][0]["object"].startswith("snapshots/")
    assert (snapshots(live), snapshots(aside)) == (3, 0), "a dry run deletes nothing"
    done = cli(primary, "target", "purge", "offsite", "--yes")
    assert done["deleted"] == 1, done
    assert (snapshots(live), snapshots(aside)) == (2, 1), "the receiver moved it aside"
    assert "purge-target" in actions(primary)
    again = cli(primary, "target", "purge", "offsite")
    assert again["due"] == [], "the deletion still in quarantine stays there"

    used = _used(receiver)
    assert cli(receiver, "removed", "purge")["objects"] == [], "moved aside less than 14 days ago"
    listed = cli(receiver, "removed", "purge", AREA, "--older-than", "0s")
    assert [row["object"].split("/")[0] for row in listed["objects"]] == ["snapshots"]
    assert listed["deleted"] == 0 and snapshots(aside) == 1, "a dry run deletes nothing"
    purged = cli(receiver, "removed", "purge", AREA, "--older-than", "0s", "--yes")
    assert purged["deleted"] == 1 and snapshots(aside) == 0, purged
    assert _used(receiver) == used - purged["objects"][0]["size"]
    assert "purge-removed" in actions(receiver)
    assert cli(receiver, "removed", "purge", "--older-than", "0s")["objects"] == []


def _used(server: RunningServer) -> int:
    return int(next(t for t in admin(server, "tenant", "list") if t["name"] == AREA)["used"])
