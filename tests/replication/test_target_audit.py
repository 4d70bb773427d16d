"""The audit (design 17.7) as an operator runs it, `cairn server target audit NAME`, and as
`serve` runs it (the scheduler's first pass, then daily): a copy that lost an object gets it
back; a copy whose storage truncated an object is reported (CAIRN-E132) and left alone; the
audit log records each audit."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import FrozenClock
from cairn.replication.db import ReplicationDb
from cairn.replication.engine import TargetStorage
from cairn.replication.layout import server_id
from cairn.replication.model import AuditReport, RunReport, Target
from cairn.replication.scheduler import Scheduler
from cairn.replication.targets import TargetStore
from tests.integration.test_cli_server import Client, admin, tree
from tests.replication.test_serve_replicates import wait_for_copies
from tests.support.clitools import Cairn
from tests.support.serverfixture import RunningServer, running_server


def audits(server: RunningServer) -> list[str]:
    """The outcomes of the target audits in the server's audit log."""
    entries = server.services().audit.entries(500)
    return [str(e["outcome"]) for e in entries if e["action"] == "audit-target"]


def wait_until(condition: Callable[[], object], what: str, deadline_s: float = 120.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, f"{what} did not happen"
        time.sleep(0.2)


def test_target_audit_sends_what_a_copy_lost_and_reports_what_it_damaged(tmp_path: Path) -> None:
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    with running_server(tmp_path / "data") as server:
        token = str(admin(server, "tenant", "add", "alpha")["admin_token"])
        machine = Client(server, "alpha", tmp_path / "home", token)
        machine.run("init")
        machine.run("backup", str(tree(tmp_path / "src", 7, size=80_000)))
        admin(server, "target", "add", "nas", str(offsite))
        tenant_id = server.services().tenants.get("alpha").id
        copy = offsite / server_id(server.data) / tenant_id
        wait_for_copies(server, {"nas": str(copy)}, str(server.data / "tenants" / tenant_id))
        wait_until(lambda: audits(server), "serve's first audit of the new target")
        assert audits(server) == ["ok"], "a whole copy: no drift"

        snapshot = next((copy / "snapshots").iterdir())
        snapshot.unlink()
        healed = admin(server, "target", "audit", "nas")
        assert healed["objects_sent"] == 1 and healed["mismatched_on_target"] == [], healed
        assert snapshot.is_file(), "the lost snapshot was sent again"

        pack = next(p for p in (copy / "packs").rglob("*") if p.is_file())
        pack.write_bytes(pack.read_bytes()[:-100])
        tool = Cairn(server.data)
        damaged = tool.run(
            "server", "target", "audit", "nas", "--data", str(server.data), check=False
        )
        assert damaged.code == 132 and "CAIRN-E132" in damaged.err, damaged.err
        assert pack.stat().st_size > 0, "a damaged copy is reported, never removed"

        assert sorted(audits(server)) == ["drift", "ok", "ok"], "serve's, then the two here"


class Runs:
    """A runner that has nothing to send and an auditor that counts its audits."""

    def __init__(self) -> None:
        self.audits: list[str] = []

    def run(self, target: Target, layouts: TargetStorage, *, cursor: int) -> RunReport:
        return RunReport(target=target.name, started_ms=0, cursor=cursor)

    def audit(self, target: Target, layouts: TargetStorage) -> AuditReport:
        self.audits.append(target.name)
        layouts.open("t1").save(Handle(ObjectKind.KEY, "0" * 64), b"k")
        return AuditReport(target=target.name, started_ms=0, objects_sent=1)


class Copies:
    def open(self, tenant_id: str) -> MemoryBackend:
        return MemoryBackend()


def test_serve_audits_each_target_on_its_first_pass_then_daily(tmp_path: Path) -> None:
    clock = FrozenClock(datetime(2026, 12, 7, 12, tzinfo=UTC))
    db = ReplicationDb(tmp_path / "replication.db")
    store = TargetStore(db, clock)
    store.add(Target(name="nas", location=str(tmp_path)))
    store.add(Target(name="paused", location=str(tmp_path), paused=True))
    runs, recorded = Runs(), list[AuditReport]()
    scheduler = Scheduler(
        db, store, runs, lambda t: Copies(), clock, auditor=runs, on_audit=recorded.append
    )
    scheduler.tick()
    assert runs.audits == ["nas"], "the first pass audits every target but the paused"
    scheduler.tick()
    clock.advance(23 * 3600)
    scheduler.tick()
    assert runs.audits == ["nas"], "then not again within the day"
    clock.advance(3600)
    scheduler.tick()
    assert runs.audits == ["nas", "nas"] and [r.objects_sent for r in recorded] == [1, 1]
