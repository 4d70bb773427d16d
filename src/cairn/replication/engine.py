"""One replication run for one target (design 17.4, 17.5): the journal's entries after the
target's cursor become objects sent (hashed at the source, verified on the target), in an order
that keeps the target a repository after every cut, and, for a mirror, quarantined deletions.

The engine never opens an object: it moves sealed, content-named bytes and checks them by
re-hashing, so it needs no client's key (the package's import contract).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Protocol

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import BackendError, NotFound
from cairn.core.clock import Clock, epoch_ms
from cairn.core.crashpoints import crashpoint
from cairn.core.errors import CairnError
from cairn.replication.audit import run_audit
from cairn.replication.db import ReplicationDb
from cairn.replication.errors import (
    MassDeletionRefused,
    ReplicationError,
    SourceLooksEmpty,
    describe,
)
from cairn.replication.journal import UNJOURNALLED, Journal
from cairn.replication.model import Action, AuditReport, JournalEntry, Mode, RunReport, Target
from cairn.replication.transfer import Sender

BATCH = 1000
"""Journal entries taken at a time; the cursor moves after each batch."""

SEND_ORDER: tuple[ObjectKind, ...] = (
    ObjectKind.CONFIG,
    ObjectKind.KEY,
    ObjectKind.PACK,
    ObjectKind.INDEX,
    ObjectKind.REFLIST,
    ObjectKind.SNAPSHOT,
    ObjectKind.DELETION,
)
"""Data before what references it (section 5), so a cut leaves a repository (17.4)."""

DELETE_ORDER: tuple[ObjectKind, ...] = (
    ObjectKind.SNAPSHOT,
    ObjectKind.REFLIST,
    ObjectKind.INDEX,
    ObjectKind.DELETION,
    ObjectKind.KEY,
    ObjectKind.PACK,
)
"""The referencing objects first, packs last; `config` is never deleted (17.5)."""

ALWAYS_SENT = frozenset({ObjectKind.CONFIG, ObjectKind.KEY})
"""A copy without these opens with no passphrase: they pass every filter but the tenants'."""

CONFIG = Handle(ObjectKind.CONFIG, "config")


class SourceStorage(Protocol):
    """What the engine reads on the server: its tenants and each one's raw storage."""

    def tenant_ids(self) -> list[str]: ...

    def tenant_name(self, tenant_id: str) -> str | None:
        """The tenant's name; None for a tenant the server no longer has."""
        ...

    def open(self, tenant_id: str) -> Backend:
        """The tenant's raw backend, only read from."""
        ...


class TargetStorage(Protocol):
    """One target's backend per tenant (`layout.TargetLayouts`)."""

    def open(self, tenant_id: str) -> Backend: ...


class Replicator:
    """Runs replication for targets: `run` takes the journal after a cursor, `audit` compares
    listings. One run per target at a time (the scheduler's promise)."""

    def __init__(
        self,
        db: ReplicationDb,
        source: SourceStorage,
        server_id: str,
        clock: Clock,
        *,
        batch: int = BATCH,
    ) -> None:
        self._db = db
        self._journal = Journal(db, clock)
        self._source = source
        self.server_id = server_id
        self._clock = clock
        self._batch = batch

    # ---- the cursor (17.4: the engine's; the scheduler records the runs) ----

    def cursor(self, target: str) -> int:
        """The sequence `target` has taken everything up to (0 if it never ran)."""
        row = self._db.read().execute("SELECT seq FROM cursors WHERE target = ?", (target,))
        found = row.fetchone()
        return int(found[0]) if found else 0

    def _move_cursor(self, target: str, seq: int) -> None:
        crashpoint("replication.cursor")
        try:
            with self._db.write() as conn:
                conn.execute(
                    "INSERT INTO cursors (target, seq, updated_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT (target) DO UPDATE SET seq = excluded.seq, "
                    "updated_ms = excluded.updated_ms",
                    (target, seq, epoch_ms(self._clock)),
                )
        except sqlite3.IntegrityError as exc:
            raise ReplicationError(f"no target {target!r} is registered") from exc

    # ---- a run ----

    def run(
        self, target: Target, layouts: TargetStorage, *, cursor: int | None = None
    ) -> RunReport:
        """One run: entries after `cursor` (by default the stored one) sent, the cursor moved
        and stored after each batch, due deletions done (mirror). Errors end the run and are
        in the report, never raised. The caller records the run (the scheduler, in `runs`)."""
        report = RunReport(target=target.name, started_ms=epoch_ms(self._clock))
        report.cursor = self.cursor(target.name) if cursor is None else cursor
        try:
            if self._journal.head() > report.cursor:
                self._take_journal(target, layouts, report)
            if target.mode is Mode.MIRROR and self._due(target):
                self._delete_due(target, layouts, report)
        except (CairnError, OSError) as exc:
            report.error = describe(exc)
        report.ended_ms = epoch_ms(self._clock)
        return report

    def _take_journal(self, target: Target, layouts: TargetStorage, report: RunReport) -> None:
        names: dict[str, str | None] = {}
        sender = Sender()
        try:
            while entries := self._journal.entries_after(report.cursor, self._batch):
                taken = [e for e in entries if self._takes(target, e, names)]
                self._take_batch(target, layouts, latest_per_object(taken), sender, report)
                self._move_cursor(target.name, entries[-1].seq)
                report.cursor = entries[-1].seq
        finally:
            report.objects_sent += sender.sent
            report.bytes_sent += sender.bytes_sent
            report.objects_skipped += sender.skipped
            report.damaged_at_source += sender.damaged  # CAIRN-E134: not an error, a finding

    def _takes(self, target: Target, entry: JournalEntry, names: dict[str, str | None]) -> bool:
        """Whether `target` takes `entry` (17.5); the cursor passes it either way."""
        filters = target.filters
        if entry.kind in UNJOURNALLED:
            return False
        if entry.action is Action.REMOVE and target.mode is not Mode.MIRROR:
            return False
        if filters.tenants:
            if entry.tenant_id not in names:
                names[entry.tenant_id] = self._source.tenant_name(entry.tenant_id)
            if names[entry.tenant_id] not in filters.tenants:
                return False
        if entry.kind in ALWAYS_SENT:
            return True
        if target.mode is Mode.ONLY_NEW and entry.seq <= target.since_seq:
            return False
        if filters.kinds and entry.kind not in filters.kinds:
            return False
        return not filters.tokens or entry.token in filters.tokens

    def _take_batch(
        self,
        target: Target,
        layouts: TargetStorage,
        entries: Sequence[JournalEntry],
        sender: Sender,
        report: RunReport,
    ) -> None:
        for tenant_id, items in group_by_tenant(entries).items():
            adds = [e for e in items if e.action is Action.ADD]
            if adds:
                if target.mode is Mode.MIRROR:
                    for entry in adds:
                        self._release(target, entry)
                source, dest = self._source.open(tenant_id), layouts.open(tenant_id)
                for kind in SEND_ORDER:
                    handles = [Handle(e.kind, e.name) for e in adds if e.kind is kind]
                    sizes = [e.size for e in adds if e.kind is kind]
                    sender.send_all(source, dest, handles, sizes, where=tenant_id)
            removals = [e for e in items if e.action is Action.REMOVE and e.kind in DELETE_ORDER]
            report.quarantined += self._quarantine(target, removals)

    # ---- mirror: quarantine and due deletions (17.5) ----

    def _release(self, target: Target, entry: JournalEntry) -> None:
        """A saved object is no longer a pending deletion (saved again after a removal)."""
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM quarantine WHERE target = ? AND tenant_id = ? AND kind = ? "
                "AND name = ?",
                (target.name, entry.tenant_id, entry.kind.value, entry.name),
            )

    def _quarantine(self, target: Target, removals: Sequence[JournalEntry]) -> int:
        if not removals:
            return 0
        crashpoint("replication.quarantine")
        now = epoch_ms(self._clock)
        due = now + target.quarantine_s * 1000
        with self._db.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO quarantine "
                "(target, tenant_id, kind, name, size, removed_ms, due_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (target.name, e.tenant_id, e.kind.value, e.name, max(e.size, 0), now, due)
                    for e in removals
                ],
            )
        return len(removals)

    def _due(self, target: Target) -> list[tuple[str, ObjectKind, str, int]]:
        rows = self._db.read().execute(
            "SELECT tenant_id, kind, name, size FROM quarantine WHERE target = ? AND due_ms <= ?",
            (target.name, epoch_ms(self._clock)),
        )
        return [(row[0], ObjectKind(row[1]), row[2], row[3]) for row in rows]

    def due_deletions(self, target: Target) -> list[tuple[str, ObjectKind, str, int]]:
        """The quarantined deletions of `target` whose delay is over, as (tenant ID, kind,
        name, size): what its next run deletes, or `purge` now."""
        return self._due(target)

    def purge(self, target: Target, layouts: TargetStorage) -> RunReport:
        """The due deletions done now, past the target's deletion threshold: the operator saw
        them (`cairn server target purge NAME`, a dry run first) and confirmed. Only what
        waited out the quarantine delay goes; a tenant whose storage has no config still
        deletes nothing (17.5). Errors are in the report, as a run's."""
        report = RunReport(target=target.name, started_ms=epoch_ms(self._clock))
        report.cursor = self.cursor(target.name)
        try:
            if self._due(target):
                self._delete_due(target, layouts, report, threshold=False)
        except (CairnError, OSError) as exc:
            report.error = describe(exc)
        report.ended_ms = epoch_ms(self._clock)
        return report

    def _delete_due(
        self, target: Target, layouts: TargetStorage, report: RunReport, threshold: bool = True
    ) -> None:
        due = self._due(target)
        count, size = len(due), sum(row[3] for row in due)
        over = count > target.max_delete_count or size > target.max_delete_bytes
        if threshold and over:
            raise MassDeletionRefused(
                f"target {target.name}: {count} deletions ({size} bytes) are due, more than its "
                f"threshold ({target.max_delete_count} objects, {target.max_delete_bytes} "
                "bytes): nothing was deleted; raise the threshold if the server meant them"
            )
        empty: list[str] = []
        for tenant_id, handles in group_handles(due).items():
            source = self._source.open(tenant_id)
            if not source.exists(CONFIG):
                empty.append(tenant_id)
                continue
            dest = layouts.open(tenant_id)
            for handle in sorted(handles, key=lambda h: DELETE_ORDER.index(h.kind)):
                if not source.exists(handle):
                    # NotFound: done already (a run cut after the removal, before the row went)
                    crashpoint("replication.remove")
                    with contextlib.suppress(NotFound):
                        dest.remove(handle)
                    report.deletions += 1
                self._forget(target, tenant_id, handle)
        if empty:
            raise SourceLooksEmpty(
                f"the server's storage of tenant(s) {', '.join(empty)} has no config: no "
                f"deletion from it reaches target {target.name} (an unmounted or emptied data "
                "folder?)"
            )

    def _forget(self, target: Target, tenant_id: str, handle: Handle) -> None:
        crashpoint("replication.forget")
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM quarantine WHERE target = ? AND tenant_id = ? AND kind = ? "
                "AND name = ?",
                (target.name, tenant_id, handle.kind.value, handle.name),
            )

    # ---- the audit (17.7) ----

    def audit(
        self, target: Target, layouts: TargetStorage, *, read_data: bool = False
    ) -> AuditReport:
        """Compare each tenant's listings at the source and on the target, send what is
        missing, report the rest. Never deletes. `read_data` also reads and hashes every copy
        on the target (a flipped byte keeps the size a listing shows)."""
        report = AuditReport(target=target.name, started_ms=epoch_ms(self._clock))
        wanted = self._wanted(target)
        try:
            for tenant_id in self._source.tenant_ids():
                name = self._source.tenant_name(tenant_id)
                if target.filters.tenants and name not in target.filters.tenants:
                    continue
                run_audit(
                    self._source.open(tenant_id),
                    layouts.open(tenant_id),
                    tenant_id,
                    report,
                    kinds=self._audited_kinds(target),
                    wanted=None if wanted is None else wanted.get(tenant_id, set()),
                    read_data=read_data,
                )
        except (BackendError, ReplicationError, OSError) as exc:
            report.error = describe(exc)
        report.ended_ms = epoch_ms(self._clock)
        return report

    def _audited_kinds(self, target: Target) -> tuple[ObjectKind, ...]:
        kinds = target.filters.kinds
        return tuple(k for k in SEND_ORDER if not kinds or k in kinds or k in ALWAYS_SENT)

    def _wanted(self, target: Target) -> dict[str, set[Handle]] | None:
        """For a target that takes only some entries (only-new, a token filter), the objects
        its entries name; None when it takes every object the source lists."""
        if target.mode is not Mode.ONLY_NEW and not target.filters.tokens:
            return None
        wanted: dict[str, set[Handle]] = {}
        names: dict[str, str | None] = {}
        seq = 0
        while entries := self._journal.entries_after(seq, 10 * self._batch):
            for entry in entries:
                if entry.action is Action.ADD and self._takes(target, entry, names):
                    handle = Handle(entry.kind, entry.name)
                    wanted.setdefault(entry.tenant_id, set()).add(handle)
            seq = entries[-1].seq
        return wanted


def latest_per_object(entries: Iterable[JournalEntry]) -> list[JournalEntry]:
    """Each object's last entry, in journal order: a save then a removal is a removal."""
    latest: dict[tuple[str, ObjectKind, str], JournalEntry] = {}
    for entry in entries:
        key = (entry.tenant_id, entry.kind, entry.name)
        latest.pop(key, None)
        latest[key] = entry
    return list(latest.values())


def group_by_tenant(entries: Iterable[JournalEntry]) -> dict[str, list[JournalEntry]]:
    groups: dict[str, list[JournalEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.tenant_id, []).append(entry)
    return groups


def group_handles(rows: Iterable[tuple[str, ObjectKind, str, int]]) -> dict[str, list[Handle]]:
    groups: dict[str, list[Handle]] = {}
    for tenant_id, kind, name, _ in rows:
        groups.setdefault(tenant_id, []).append(Handle(kind, name))
    return groups
