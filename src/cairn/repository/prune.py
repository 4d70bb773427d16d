"""prune: sweep what earlier prunes condemned, then mark, repack, swap and condemn (design 13.3-4).

Needs no keys: reflists, indexes, pack trailers, locks and deletion records are plaintext, and
sealed blobs are copied between packs without being opened. Nothing is deleted in the run that
decided it could go, and nothing is deleted on a view that could not be read completely.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import BackendError, NotFound
from cairn.core.clock import Clock
from cairn.core.crashpoints import crashpoint
from cairn.core.errors import CairnError
from cairn.core.ids import ChunkId, ObjectName
from cairn.crypto.hashing import object_name
from cairn.format.deletion import DeletionRecord, encode_deletion
from cairn.format.index import IndexRecord, decode_index, encode_index
from cairn.format.pack import PackEntry, build_pack
from cairn.format.reflist import decode_reflist
from cairn.format.snapshot import decode_snapshot
from cairn.repository.locks import (
    EXCLUSIVE_PURPOSES,
    Opener,
    Session,
    StoredLock,
    has_ended,
    now_ms,
    read_locks,
    running_sessions,
)
from cairn.repository.objects import load_verified
from cairn.repository.packs import read_trailer
from cairn.repository.repository import read_deletion


class PruneRefused(CairnError):
    """Prune could not read the repository completely, so it deletes nothing."""


class PruneRunning(CairnError):
    """Another prune holds a live lock."""


@dataclass(frozen=True, slots=True)
class PruneOptions:
    max_unused: float = 0.05
    """Repack partly used packs while more than this share of the stored bytes is unused."""
    max_repack_bytes: int | None = None
    grace_ms: int = 0
    """A deletion record is swept only when at least this old (on this process's clock)."""
    dry_run: bool = False


@dataclass(slots=True)
class PruneResult:
    swept_packs: int = 0
    swept_bytes: int = 0
    swept_reflists: int = 0
    kept_packs: int = 0
    """Condemned packs not deleted: indexed again, or needed by a snapshot committed since."""
    records_waiting: int = 0
    """Deletion records left for a later prune: a session that could use them still runs."""
    condemned_packs: int = 0
    condemned_bytes: int = 0
    condemned_reflists: int = 0
    repacked_packs: int = 0
    repacked_bytes: int = 0
    new_packs: int = 0
    stored_bytes: int = 0
    unused_bytes: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _View:
    """Everything prune reads before it decides, read completely or not at all."""

    live: set[ChunkId] = field(default_factory=set)
    named_reflists: set[ObjectName] = field(default_factory=set)
    reflists: set[ObjectName] = field(default_factory=set)
    indexes: list[ObjectName] = field(default_factory=list)
    indexed: dict[ObjectName, list[PackEntry]] = field(default_factory=dict)
    records: dict[ObjectName, DeletionRecord] = field(default_factory=dict)
    packs: dict[ObjectName, int] = field(default_factory=dict)
    running: set[ObjectName] = field(default_factory=set)
    """Packs in the indexes of sessions still running: neither condemned nor repacked, and
    their indexes are not merged (their snapshot may not be committed yet)."""


@dataclass(slots=True)
class _Plan:
    keep: dict[ObjectName, list[PackEntry]] = field(default_factory=dict)
    condemn: dict[ObjectName, list[PackEntry]] = field(default_factory=dict)
    repack: list[ObjectName] = field(default_factory=list)
    live_location: dict[ChunkId, ObjectName] = field(default_factory=dict)
    reflists: list[ObjectName] = field(default_factory=list)


class Pruner:
    """One prune run over a backend, as `session` (already acquired unless dry_run)."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        session: Session | None,
        pack_size: int,
        opener: Opener | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._backend = backend
        self._clock = clock
        self._session = session
        self._pack_size = pack_size
        self._opener = opener
        self._log = log or (lambda _m: None)
        self._result = PruneResult()

    def run(self, options: PruneOptions) -> PruneResult:
        self._refuse_if_another_prune(options.dry_run)
        view = self._read()
        if view.records:
            self._sweep(view, options)
            view = self._read()
        plan = self._mark(view, options)
        if not options.dry_run and (plan.condemn or plan.reflists):
            self._repack_swap_condemn(view, plan)
        return self._result

    # ---- reading ------------------------------------------------------------------------

    def _refuse_if_another_prune(self, dry_run: bool) -> None:
        """Refuse while another prune runs; remove the locks of sessions that have ended."""
        own = self._session.id if self._session is not None else None
        now = now_ms(self._clock)
        ended = []
        for lock in self._read_locks():
            record = lock.record
            if record.session == own:
                continue
            if has_ended(record, now, self._opener):
                ended.append(lock.name)
            elif record.purpose in EXCLUSIVE_PURPOSES:
                raise PruneRunning(
                    f"a {record.purpose} is running (its lock is live); this prune does nothing"
                )
        if not dry_run:
            for name in ended:
                crashpoint("prune.lock.remove")
                self._remove(ObjectKind.LOCK, name)

    def _read_locks(self) -> list[StoredLock]:
        try:
            return read_locks(self._backend)
        except (BackendError, CairnError) as exc:
            raise PruneRefused(f"cannot read the locks, so nothing is deleted: {exc}") from exc

    def _read(self) -> _View:
        try:
            return self._read_view()
        except (BackendError, CairnError) as exc:
            raise PruneRefused(
                f"cannot read the repository completely, so nothing is deleted: {exc}"
            ) from exc

    def _read_view(self) -> _View:
        view = _View()
        backend = self._backend
        for info in backend.list(ObjectKind.SNAPSHOT):
            snapshot = decode_snapshot(load_verified(backend, info.handle))
            view.named_reflists.update(snapshot.reflists)
        view.reflists = {
            ObjectName.from_hex(i.handle.name) for i in backend.list(ObjectKind.REFLIST)
        }
        for reflist in view.named_reflists:
            if reflist not in view.reflists:
                raise PruneRefused(
                    f"a snapshot names reflist {reflist.short()}, which is missing: "
                    "run `cairn check`; prune deletes nothing while references are unknown"
                )
            handle = Handle(ObjectKind.REFLIST, reflist.hex)
            view.live.update(decode_reflist(load_verified(backend, handle)))
        indexes = [
            (
                ObjectName.from_hex(info.handle.name),
                decode_index(load_verified(backend, info.handle)),
            )
            for info in backend.list(ObjectKind.INDEX)
        ]
        running = self._running_sessions()  # after the listing: it has every writer's lock
        for name, index in indexes:
            if index.session is not None and index.session in running:
                view.running.update(index.packs)  # a running backup's: left alone this time
            else:
                view.indexes.append(name)
            for pack, entries in index.packs.items():
                view.indexed.setdefault(pack, entries)
        for info in backend.list(ObjectKind.DELETION):
            view.records[ObjectName.from_hex(info.handle.name)] = read_deletion(
                backend, info.handle
            )
        view.packs = {
            ObjectName.from_hex(i.handle.name): i.size for i in backend.list(ObjectKind.PACK)
        }
        return view

    def _running_sessions(self) -> set[bytes]:
        """Sessions with a lock that has not ended, this prune's own excepted."""
        own = self._session.id if self._session is not None else None
        try:
            return running_sessions(self._backend, own, now_ms(self._clock), self._opener)
        except (BackendError, CairnError) as exc:
            raise PruneRefused(f"cannot read the locks, so nothing is deleted: {exc}") from exc

    # ---- sweeping -----------------------------------------------------------------------

    def _sweep(self, view: _View, options: PruneOptions) -> None:
        # Every lock still on storage counts: the ended ones were removed before the view was
        # read, which stops their sessions from committing (Session.confirm). Judging a lock
        # ended here without removing it could sweep under a session whose clock disagrees.
        now = now_ms(self._clock)
        live_sessions = {
            lock.record.session
            for lock in self._read_locks()
            if not (options.dry_run and has_ended(lock.record, now, self._opener))
        }
        waiting = {
            name
            for name, record in view.records.items()
            # Only a grace compares two machines' clocks (the record's time is its writer's):
            # without one, a record dated in this machine's future must not wait for it.
            if live_sessions.intersection(record.sessions)
            or (options.grace_ms and now - record.created_ms < options.grace_ms)
        }
        self._result.records_waiting = len(waiting)
        # A pack can be in two records (condemned unindexed, indexed by its backup after all,
        # condemned again by a later swap): the later record may wait for sessions that loaded
        # that index, so what a waiting record names stays.
        protected = {pack for name in waiting for pack in view.records[name].packs}
        available = {e.chunk_id for entries in view.indexed.values() for e in entries}
        for name, record in sorted(view.records.items()):
            if name not in waiting and not options.dry_run:
                self._sweep_record(view, name, record, available, protected)

    def _sweep_record(
        self,
        view: _View,
        name: ObjectName,
        record: DeletionRecord,
        available: set[ChunkId],
        protected: set[ObjectName],
    ) -> None:
        resurrect = IndexRecord()
        doomed: list[ObjectName] = []
        for pack, entries in sorted(record.packs.items()):
            if pack in view.indexed:
                self._result.kept_packs += 1
            elif pack not in view.packs:
                continue  # an interrupted sweep deleted it: never index it again
            elif any(e.chunk_id in view.live and e.chunk_id not in available for e in entries):
                resurrect.packs[pack] = entries
                available.update(e.chunk_id for e in entries)
                self._result.kept_packs += 1
            elif pack in protected:
                self._result.kept_packs += 1
            else:
                doomed.append(pack)
        if resurrect.packs:
            self._log(
                f"{len(resurrect.packs)} packs set aside earlier are used by a snapshot made "
                "since: kept, and indexed again"
            )
            crashpoint("prune.sweep.resurrect")
            self._save(ObjectKind.INDEX, encode_index(resurrect))
            view.indexed.update(resurrect.packs)
        for pack in doomed:
            crashpoint("prune.sweep.pack")
            self._remove(ObjectKind.PACK, pack)
            self._result.swept_packs += 1
            self._result.swept_bytes += view.packs.get(pack, 0)
        for reflist in record.reflists:
            if reflist not in view.named_reflists and reflist in view.reflists:
                crashpoint("prune.sweep.reflist")
                self._remove(ObjectKind.REFLIST, reflist)
                self._result.swept_reflists += 1
        crashpoint("prune.sweep.record")
        self._remove(ObjectKind.DELETION, name)

    # ---- marking ------------------------------------------------------------------------

    def _mark(self, view: _View, options: PruneOptions) -> _Plan:
        plan = _Plan()
        condemned_already = {p for r in view.records.values() for p in r.packs}
        dead_bytes: dict[ObjectName, int] = {}
        for pack, entries in sorted(view.indexed.items()):
            if pack in view.running:
                continue
            if pack not in view.packs:
                self._result.warnings.append(
                    f"pack {pack.short()} is indexed but missing: its blobs leave the index "
                    "(the next backup stores them again)"
                )
                continue
            dead = 0
            for e in entries:
                if e.chunk_id in view.live and e.chunk_id not in plan.live_location:
                    plan.live_location[e.chunk_id] = pack
                else:
                    dead += e.length
            dead_bytes[pack] = dead
            plan.keep[pack] = entries
        for pack, entries in list(plan.keep.items()):
            if all(plan.live_location.get(e.chunk_id) != pack for e in entries):
                plan.condemn[pack] = plan.keep.pop(pack)
        for pack in sorted(view.packs.keys() - view.indexed.keys() - condemned_already):
            plan.condemn[pack] = self._trailer_or_empty(pack, view.packs[pack])
        stored = sum(view.packs.values())
        unused = sum(dead_bytes[p] for p in plan.keep) + sum(
            view.packs.get(p, 0) for p in plan.condemn
        )
        self._choose_repacks(view, plan, dead_bytes, stored, unused, options)
        plan.reflists = sorted(
            view.reflists
            - view.named_reflists
            - {r for rec in view.records.values() for r in rec.reflists}
        )
        result = self._result
        result.stored_bytes = stored
        result.unused_bytes = unused
        result.condemned_packs = len(plan.condemn) + len(plan.repack)
        result.condemned_bytes = sum(view.packs.get(p, 0) for p in plan.condemn)
        result.condemned_reflists = len(plan.reflists)
        return plan

    def _choose_repacks(
        self,
        view: _View,
        plan: _Plan,
        dead_bytes: dict[ObjectName, int],
        stored: int,
        unused: int,
        options: PruneOptions,
    ) -> None:
        wasteful = sorted((p for p in plan.keep if dead_bytes[p]), key=lambda p: -dead_bytes[p])
        budget = options.max_repack_bytes
        for pack in wasteful:
            free_after = unused - sum(view.packs[p] for p in plan.condemn)
            if free_after <= options.max_unused * stored:
                break
            size = view.packs[pack]
            if budget is not None and size > budget:
                break
            if budget is not None:
                budget -= size
            plan.repack.append(pack)
            unused -= dead_bytes[pack]
        self._result.repacked_packs = len(plan.repack)
        self._result.repacked_bytes = sum(view.packs[p] for p in plan.repack)

    def _trailer_or_empty(self, pack: ObjectName, size: int) -> list[PackEntry]:
        try:
            return read_trailer(self._backend, pack, size)
        except NotFound:
            return []
        except (BackendError, CairnError) as exc:
            self._result.warnings.append(f"unindexed pack {pack.short()} is unreadable: {exc}")
            return []

    # ---- writing ------------------------------------------------------------------------

    def _repack_swap_condemn(self, view: _View, plan: _Plan) -> None:
        new_index = IndexRecord(supersedes=list(view.indexes))
        for pack in plan.repack:
            plan.condemn[pack] = plan.keep.pop(pack)
        self._copy_live_blobs(view, plan, new_index)
        new_index.packs.update(plan.keep)
        crashpoint("prune.index.save")
        self._save(ObjectKind.INDEX, encode_index(new_index))
        for index in view.indexes:
            crashpoint("prune.index.remove")
            self._remove(ObjectKind.INDEX, index)
        sessions = [lock.record.session for lock in self._read_locks()]
        record = DeletionRecord(
            created_ms=now_ms(self._clock),
            sessions=sessions,
            packs=plan.condemn,
            reflists=plan.reflists,
        )
        crashpoint("prune.record.save")
        self._save(ObjectKind.DELETION, encode_deletion(record))

    def _copy_live_blobs(self, view: _View, plan: _Plan, index: IndexRecord) -> None:
        """Copy the live blobs of the packs to repack into new packs, one pack in memory."""
        pending: list[tuple[ChunkId, PackEntry, bytes]] = []
        pending_size = 0
        for pack in plan.repack:
            handle = Handle(ObjectKind.PACK, pack.hex)
            data = load_verified(self._backend, handle)
            for e in plan.condemn[pack]:
                if plan.live_location.get(e.chunk_id) == pack:
                    pending.append((e.chunk_id, e, data[e.offset : e.offset + e.length]))
                    pending_size += e.length
                    if pending_size >= self._pack_size:
                        self._write_pack(pending, index)
                        pending, pending_size = [], 0
        if pending:
            self._write_pack(pending, index)

    def _write_pack(
        self, blobs: list[tuple[ChunkId, PackEntry, bytes]], index: IndexRecord
    ) -> None:
        secrets.SystemRandom().shuffle(blobs)
        data, entries = build_pack([(cid, e.kind, sealed) for cid, e, sealed in blobs])
        crashpoint("prune.repack.save")
        name = self._save(ObjectKind.PACK, data)
        index.packs[name] = entries
        self._result.new_packs += 1

    def _save(self, kind: ObjectKind, data: bytes) -> ObjectName:
        if self._session is not None:
            self._session.check_lease()
        name = object_name(data)
        self._backend.save(Handle(kind, name.hex), data)
        return name

    def _remove(self, kind: ObjectKind, name: ObjectName) -> None:
        if self._session is not None:
            self._session.check_lease()
        with contextlib.suppress(NotFound):  # an earlier, interrupted run got there first
            self._backend.remove(Handle(kind, name.hex))
