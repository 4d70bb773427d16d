"""check --repair: rebuild the index from what the packs hold (design 13.5).

The packs are the truth: each describes its own blobs in its trailer. Repair reads every pack's
trailer (and the whole pack where the trailer is unreadable, disagrees with the index, or
`read_data` asks for it), then writes one index that lists exactly the readable blobs, superseding
every index it read. A damaged pack's intact blobs are copied into a new pack first, then the
damaged pack is removed; a damaged deletion record is removed (the packs it condemned are indexed
again, so nothing is lost and a later prune condemns them anew); a missing or damaged reflist is
rebuilt from its snapshot's trees. Snapshots are never deleted: those that still reference missing
chunks are reported, and the next backup stores those chunks again because no index lists them.

A run that finds nothing to change writes nothing, so a second run is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import BackendError, NotFound
from cairn.core.crashpoints import crashpoint
from cairn.core.errors import CairnError
from cairn.core.ids import ChunkId, ObjectName
from cairn.crypto.hashing import object_name, verify_object
from cairn.format.index import IndexRecord, encode_index
from cairn.format.pack import BlobKind, PackEntry, build_pack, parse_pack
from cairn.format.reflist import SALT_SIZE, encode_reflist
from cairn.format.snapshot import encode_snapshot
from cairn.format.tree import decode_tree
from cairn.repository.locks import exclusive_holder, now_ms, running_sessions
from cairn.repository.masterindex import MasterIndex
from cairn.repository.packs import read_trailer
from cairn.repository.repository import Repository, StoredSnapshot, read_deletion


class RepairRefused(CairnError):
    """Repair cannot trust what it read, or another prune or repair runs: it changes nothing."""


@dataclass(slots=True)
class RepairResult:
    packs: int = 0
    packs_read: int = 0
    """Packs read whole (all of them with read_data, else only the suspicious ones)."""
    blobs_indexed: int = 0
    packs_added: int = 0
    """Packs on storage that no index listed, now indexed."""
    packs_dropped: int = 0
    """Packs an index listed that are missing from storage."""
    damaged_packs: int = 0
    salvaged_blobs: int = 0
    lost_blobs: int = 0
    indexes_replaced: int = 0
    records_removed: int = 0
    reflists_rebuilt: int = 0
    changed: bool = False
    notes: list[str] = field(default_factory=list)
    """What repair saw and could not mend (for the user to read)."""


@dataclass(slots=True)
class _View:
    indexes: list[ObjectName] = field(default_factory=list)
    damaged_indexes: int = 0
    indexed: dict[ObjectName, dict[PackEntry, None]] = field(default_factory=dict)
    damaged_records: list[ObjectName] = field(default_factory=list)
    condemned: set[ObjectName] = field(default_factory=set)
    packs: dict[ObjectName, int] = field(default_factory=dict)
    running: set[ObjectName] = field(default_factory=set)
    """Packs in the indexes of running sessions: not surveyed, their indexes kept."""


@dataclass(slots=True)
class _Survey:
    target: dict[ObjectName, list[PackEntry]] = field(default_factory=dict)
    damaged: dict[ObjectName, list[tuple[PackEntry, bytes]]] = field(default_factory=dict)
    """Damaged pack → its blobs that still open and verify (with their sealed bytes)."""


class Repairer:
    """One repair run over an open repository holding a session of purpose ``repair``."""

    def __init__(self, repo: Repository, log: Callable[[str], None] | None = None) -> None:
        self._repo = repo
        self._backend = repo.backend
        self._log = log or (lambda _m: None)
        self._result = RepairResult()

    def run(self, read_data: bool = False) -> RepairResult:
        self._refuse_if_another_runs()
        view = self._read()
        survey = self._survey(view, read_data)
        index = survey.target
        if self._needs_new_index(view, survey):
            self._result.changed = True
            index = self._write(view, survey)
        self._mend_reflists(index)
        return self._result

    # ---- reading ------------------------------------------------------------------------

    def _refuse_if_another_runs(self) -> None:
        session = self._repo.session
        own = session.id if session is not None else None
        try:
            holder = exclusive_holder(
                self._backend, own, now_ms(self._repo.clock), self._repo.open_lock
            )
        except (BackendError, CairnError) as exc:
            raise RepairRefused(f"cannot read the locks, so nothing is changed: {exc}") from exc
        if holder is not None:
            raise RepairRefused(
                f"a {holder} is running (its lock is live); repair changes nothing meanwhile"
            )

    def _read(self) -> _View:
        """Indexes and deletion records (damaged ones noted), and a complete pack listing."""
        view = _View()
        session = self._repo.session
        try:
            index_infos = list(self._backend.list(ObjectKind.INDEX))
            record_infos = list(self._backend.list(ObjectKind.DELETION))
            view.packs = {
                ObjectName.from_hex(i.handle.name): i.size
                for i in self._backend.list(ObjectKind.PACK)
            }
        except BackendError as exc:
            raise RepairRefused(
                f"cannot list the repository completely, so nothing is changed: {exc}"
            ) from exc
        try:  # after the index listing, so it has the lock of every index's writer
            running = running_sessions(
                self._backend,
                session.id if session is not None else None,
                now_ms(self._repo.clock),
                self._repo.open_lock,
            )
        except (BackendError, CairnError) as exc:
            raise RepairRefused(f"cannot read the locks, so nothing is changed: {exc}") from exc
        for info in index_infos:
            name = ObjectName.from_hex(info.handle.name)
            try:
                record = self._repo.read_index(name)
            except CairnError as exc:
                self._note(f"index {name.short()} is damaged ({exc}): it is replaced")
                view.indexes.append(name)
                view.damaged_indexes += 1
                continue
            if record.session is not None and record.session in running:
                view.running.update(record.packs)  # a running backup's: left to it
                continue
            view.indexes.append(name)
            for pack, entries in record.packs.items():
                view.indexed.setdefault(pack, {}).update(dict.fromkeys(entries))
        for info in record_infos:
            name = ObjectName.from_hex(info.handle.name)
            try:
                view.condemned.update(read_deletion(self._backend, info.handle).packs)
            except CairnError as exc:
                self._note(f"deletion record {name.short()} is damaged ({exc}): it is removed")
                view.damaged_records.append(name)
        return view

    def _survey(self, view: _View, read_data: bool) -> _Survey:
        """Decide, pack by pack, which blobs the new index lists."""
        survey = _Survey()
        self._result.packs = len(view.packs)
        for pack, size in sorted(view.packs.items()):
            listed = list(view.indexed.get(pack, {}))
            if pack in view.running and not listed:
                continue  # a running backup's, listed by its own index
            if pack in view.condemned and not listed:
                continue  # condemned by a readable record: the sweep's to decide
            entries = self._trailer(pack, size)
            if entries is not None and not read_data and _same(entries, listed):
                survey.target[pack] = entries
                continue
            self._read_whole(pack, listed, survey)
        for pack in sorted(view.indexed.keys() - view.packs.keys()):
            self._note(f"pack {pack.short()} is indexed but missing: its blobs leave the index")
            self._result.packs_dropped += 1
        return survey

    def _trailer(self, pack: ObjectName, size: int) -> list[PackEntry] | None:
        try:
            return read_trailer(self._backend, pack, size)
        except (BackendError, CairnError):
            return None  # read whole, which tells what is wrong

    def _read_whole(self, pack: ObjectName, listed: list[PackEntry], survey: _Survey) -> None:
        try:
            data = self._load_twice(pack)
        except NotFound:
            return  # removed since the listing (by a prune's sweep): nothing to index
        except BackendError as exc:
            self._note(f"pack {pack.short()} cannot be read ({exc}): left as it is")
            if listed:
                survey.target[pack] = listed
            return
        self._result.packs_read += 1
        intact = True
        try:
            verify_object(pack, data)
            entries = parse_pack(data)
        except CairnError as exc:
            self._note(f"pack {pack.short()} is damaged: {exc}")
            intact = False
            entries = _salvageable_entries(data, listed)
        good: list[tuple[PackEntry, bytes]] = []
        for e in entries:
            sealed = data[e.offset : e.offset + e.length]
            try:
                self._repo.open_blob(e.kind, e.chunk_id, sealed)
            except CairnError:
                intact = False
                continue
            good.append((e, sealed))
        if intact:
            survey.target[pack] = entries
            return
        survey.damaged[pack] = good
        known = {e.chunk_id for e in entries} | {e.chunk_id for e in listed}
        self._result.lost_blobs += len(known) - len(good)

    def _load_twice(self, pack: ObjectName) -> bytes:
        """The pack's bytes, read twice: damage on storage reads the same both times; bytes
        that change between reads are a failing disk or link, and repair then stops."""
        handle = Handle(ObjectKind.PACK, pack.hex)
        data = self._backend.load(handle)
        if object_name(data) == pack:
            return data
        if self._backend.load(handle) != data:
            raise RepairRefused(
                f"pack {pack.short()} reads differently each time: the storage is failing; "
                "repair changes nothing until it reads consistently"
            )
        return data

    def _needs_new_index(self, view: _View, survey: _Survey) -> bool:
        if view.damaged_indexes or view.damaged_records or survey.damaged:
            return True
        if survey.target.keys() != view.indexed.keys():
            return True  # packs gone from storage, or packs no index listed
        return any(
            not _same(entries, list(view.indexed[p])) for p, entries in survey.target.items()
        )

    # ---- writing ------------------------------------------------------------------------

    def _write(self, view: _View, survey: _Survey) -> dict[ObjectName, list[PackEntry]]:
        """Save the salvage pack and the new index, then remove what it replaces; returns what
        the new index lists (the salvage pack included)."""
        result = self._result
        new_index = IndexRecord(supersedes=list(view.indexes))
        salvage = [blob for blobs in survey.damaged.values() for blob in blobs]
        if salvage:
            self._save_salvage_pack(salvage, new_index)
        new_index.packs.update(survey.target)
        result.packs_added = len(survey.target.keys() - view.indexed.keys())
        result.blobs_indexed = new_index.blob_count()
        crashpoint("repair.index.save")
        self._save(ObjectKind.INDEX, encode_index(new_index))
        for index in view.indexes:
            crashpoint("repair.index.remove")
            self._remove(ObjectKind.INDEX, index)
        result.indexes_replaced = len(view.indexes)
        for record in view.damaged_records:
            crashpoint("repair.record.remove")
            self._remove(ObjectKind.DELETION, record)
        result.records_removed = len(view.damaged_records)
        for pack in sorted(survey.damaged):
            crashpoint("repair.pack.remove")
            self._remove(ObjectKind.PACK, pack)
        result.damaged_packs = len(survey.damaged)
        result.salvaged_blobs = len(salvage)
        return new_index.packs

    def _save_salvage_pack(self, blobs: list[tuple[PackEntry, bytes]], index: IndexRecord) -> None:
        shuffled = list(blobs)
        secrets.SystemRandom().shuffle(shuffled)
        data, entries = build_pack([(e.chunk_id, e.kind, sealed) for e, sealed in shuffled])
        crashpoint("repair.salvage.save")
        index.packs[self._save(ObjectKind.PACK, data)] = entries

    def _save(self, kind: ObjectKind, data: bytes) -> ObjectName:
        if self._repo.session is not None:
            self._repo.session.check_lease()
        name = object_name(data)
        self._backend.save(Handle(kind, name.hex), data)
        return name

    def _remove(self, kind: ObjectKind, name: ObjectName) -> None:
        if self._repo.session is not None:
            self._repo.session.check_lease()
        with contextlib.suppress(NotFound):  # an interrupted run, or a sweep, got there first
            self._backend.remove(Handle(kind, name.hex))

    # ---- reflists -----------------------------------------------------------------------

    def _mend_reflists(self, target: dict[ObjectName, list[PackEntry]]) -> None:
        """Rebuild each missing or damaged reflist from its snapshot's trees, if they are whole."""
        repo = self._repo
        repo.index = MasterIndex()  # the index just written, and nothing else
        for pack, entries in target.items():
            repo.index.add_pack(pack, entries)
        try:
            names = repo.snapshot_names()
        except BackendError as exc:
            self._note(f"cannot list snapshots, so no reflist is checked: {exc}")
            return
        whole: dict[bytes, ObjectName] = {}  # sealed body → a snapshot whose reflists read
        broken: list[StoredSnapshot] = []
        for name in sorted(names):
            try:
                stored = repo.read_snapshot(name)
            except CairnError as exc:
                self._note(f"snapshot {name.short()} cannot be read ({exc}): left as it is")
                continue
            if all(self._readable(r) for r in stored.record.reflists):
                whole.setdefault(stored.record.sealed, name)
            else:
                broken.append(stored)
        for stored in broken:
            twin = whole.get(stored.record.sealed)
            if twin is not None:  # an interrupted repair already rewrote it
                crashpoint("repair.snapshot.remove")
                self._remove(ObjectKind.SNAPSHOT, stored.name)
                continue
            self._rewrite_snapshot(stored)

    def _readable(self, reflist: ObjectName) -> bool:
        try:
            self._repo.read_reflist(reflist)
        except CairnError:
            return False
        return True

    def _rewrite_snapshot(self, stored: StoredSnapshot) -> None:
        """A reflist of `stored` is lost: write one again from its trees (a new salt, so a new
        name) and the snapshot record naming it, then remove the old record. The sealed body is
        the same, so the snapshot is the same; only its ID changes."""
        used = self._reachable(stored.body.tree)
        if used is None:
            self._note(
                f"snapshot {stored.name.short()}: a reflist is missing or damaged and cannot be "
                "rebuilt (its trees are incomplete); prune refuses until it is forgotten"
            )
            return
        crashpoint("repair.reflist.save")
        reflist = self._save(ObjectKind.REFLIST, encode_reflist(used, os.urandom(SALT_SIZE)))
        record = replace(stored.record, reflists=[reflist])  # its group too
        crashpoint("repair.snapshot.save")
        new_name = self._save(ObjectKind.SNAPSHOT, encode_snapshot(record))
        crashpoint("repair.snapshot.remove")
        self._remove(ObjectKind.SNAPSHOT, stored.name)
        self._note(
            f"snapshot {stored.name.short()} lost its reflist: rebuilt from its trees, "
            f"the snapshot is now {new_name.short()}"
        )
        self._result.reflists_rebuilt += 1
        self._result.changed = True

    def _reachable(self, root: ChunkId) -> set[ChunkId] | None:
        """Every chunk ID a tree reaches, or None when any tree of it cannot be read."""
        used: set[ChunkId] = set()
        stack = [root]
        while stack:
            tree_id = stack.pop()
            if tree_id in used:
                continue
            used.add(tree_id)
            try:
                nodes = decode_tree(self._repo.fetch_blob(BlobKind.TREE, tree_id))
            except CairnError:
                return None
            for node in nodes:
                used.update(node.content)
                if node.subtree is not None:
                    stack.append(node.subtree)
        return used

    def _note(self, message: str) -> None:
        self._result.notes.append(message)
        self._log(message)


def _same(a: list[PackEntry], b: list[PackEntry]) -> bool:
    return set(a) == set(b)


def _salvageable_entries(data: bytes, listed: list[PackEntry]) -> list[PackEntry]:
    """Where the blobs of a damaged pack may be: its own trailer if it still decodes, else the
    entries an index listed for it. Each blob is then proven by opening it."""
    with contextlib.suppress(CairnError):
        return parse_pack(data)
    return [e for e in listed if e.offset + e.length <= len(data)]
