"""The journal and the engine's rules on small in-process storage (the engine's logic, fast):
what is journalled, which entries a target takes (filters, only-new, locks), the sending order,
and the audit's repairs. Source and targets are real backends (memory and local folders)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.local import LocalBackend
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import FrozenClock
from cairn.crypto.hashing import object_name
from cairn.replication.db import ReplicationDb
from cairn.replication.engine import Replicator
from cairn.replication.journal import Journal, JournalBackend
from cairn.replication.layout import TargetLayouts, server_id
from cairn.replication.model import Action, Filters, Mode, Target


class Tenants:
    """Two tenants' storage, each journalled as the server's stack journals it."""

    def __init__(self, journal: Journal) -> None:
        self.raw = {"t1": MemoryBackend(), "t2": MemoryBackend()}
        self.names = {"t1": "one", "t2": "two"}
        self.journal = journal

    def tenant_ids(self) -> list[str]:
        return sorted(self.raw)

    def tenant_name(self, tenant_id: str) -> str | None:
        return self.names.get(tenant_id)

    def open(self, tenant_id: str) -> Backend:
        return self.raw[tenant_id]

    def stack(self, tenant_id: str, token: str = "") -> Backend:
        return JournalBackend(self.raw[tenant_id], self.journal, tenant_id, token)


def put(backend: Backend, kind: ObjectKind, data: bytes) -> Handle:
    handle = Handle(kind, "config" if kind is ObjectKind.CONFIG else object_name(data).hex)
    backend.save(handle, data)
    return handle


def setup(tmp_path: Path) -> tuple[ReplicationDb, Tenants, Replicator]:
    db = ReplicationDb(tmp_path / "replication.db")
    clock = FrozenClock(datetime(2026, 12, 7, tzinfo=UTC))
    tenants = Tenants(Journal(db, clock))
    return db, tenants, Replicator(db, tenants, server_id(tmp_path), clock)


def register(db: ReplicationDb, target: Target) -> Target:
    with db.write() as conn:
        conn.execute(
            "INSERT INTO targets (name, spec, created_ms) VALUES (?, '{}', 0)", (target.name,)
        )
    return target


def test_saves_and_removals_are_journalled_with_the_token_and_locks_never(tmp_path: Path) -> None:
    _, tenants, _ = setup(tmp_path)
    stack = tenants.stack("t1", token="tok1")
    pack = put(stack, ObjectKind.PACK, b"pack bytes")
    put(stack, ObjectKind.LOCK, b"a lock")
    stack.remove(pack)
    entries = tenants.journal.entries_after(0)
    assert [(e.kind, e.action, e.size, e.token) for e in entries] == [
        (ObjectKind.PACK, Action.ADD, 10, "tok1"),
        (ObjectKind.PACK, Action.REMOVE, 10, "tok1"),
    ]
    assert tenants.journal.head() == entries[-1].seq
    assert server_id(tmp_path) == server_id(tmp_path) and len(server_id(tmp_path)) == 32


def test_filters_and_only_new_still_send_config_and_keys(tmp_path: Path) -> None:
    db, tenants, replicator = setup(tmp_path)
    one, two = tenants.stack("t1", "old-machine"), tenants.stack("t2")
    put(one, ObjectKind.CONFIG, b"config of one")
    key = put(one, ObjectKind.KEY, b"key of one")
    old = put(one, ObjectKind.PACK, b"before the target")
    put(two, ObjectKind.CONFIG, b"config of two")
    since = tenants.journal.head()
    new = put(tenants.stack("t1", "new-machine"), ObjectKind.PACK, b"after the target")
    other = put(one, ObjectKind.PACK, b"after, other machine")

    target = register(
        db,
        Target(
            "new",
            str(tmp_path / "t"),
            Mode.ONLY_NEW,
            since_seq=since,
            filters=Filters(tenants=("one",), tokens=("new-machine",)),
        ),
    )
    layouts = TargetLayouts(str(tmp_path / "t"), replicator.server_id)
    report = replicator.run(target, layouts)
    assert report.error is None and report.cursor == tenants.journal.head()
    copy = layouts.open("t1")
    held = {info.handle for kind in ObjectKind for info in copy.list(kind)}
    assert held == {Handle(ObjectKind.CONFIG, "config"), key, new}
    assert old not in held and other not in held
    assert not (tmp_path / "t" / replicator.server_id / "t2").exists(), "tenant filter"

    audit = replicator.audit(target, layouts)
    assert (audit.objects_sent, audit.extra_on_target, audit.error) == (0, [], None)


def test_the_audit_sends_what_the_journal_missed_and_reports_drift(tmp_path: Path) -> None:
    db, tenants, replicator = setup(tmp_path)
    put(tenants.stack("t1"), ObjectKind.CONFIG, b"config")
    target = register(db, Target("audited", str(tmp_path / "t")))
    layouts = TargetLayouts(str(tmp_path / "t"), replicator.server_id)
    assert replicator.run(target, layouts).objects_sent == 1
    unjournalled = put(tenants.raw["t1"], ObjectKind.INDEX, b"saved, then the server died")
    stray = put(layouts.open("t1"), ObjectKind.SNAPSHOT, b"only on the target")
    copy = layouts.open("t1")
    assert isinstance(copy, LocalBackend)

    audit = replicator.audit(target, layouts)
    assert audit.objects_sent == 1 and copy.exists(unjournalled)
    assert audit.extra_on_target == [f"t1/snapshots/{stray.name}"]
    assert copy.exists(stray), "the audit never deletes"


def test_every_replication_code_is_documented() -> None:
    from cairn.replication import errors

    documented = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    codes = [errors.MassDeletionRefused.code, errors.TargetCorrupt.code]
    codes += [errors.SourceLooksEmpty.code, errors.DAMAGED_AT_SOURCE]
    for code in codes:
        assert f"| {code} |" in documented, code
