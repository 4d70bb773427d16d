"""check: is every object intact, and does every snapshot's reference resolve?

Structure checks read every key, lock, index and deletion record, every pack trailer, every
snapshot and tree, and every reflist (named by a snapshot or not). With `read_data`, every
selected pack is read whole, re-hashed against its name, and every blob in it is opened,
decompressed and re-hashed against its chunk ID. Nothing is changed.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import BackendError, NotFound
from cairn.core.errors import CairnError
from cairn.core.ids import ChunkId, ObjectName
from cairn.crypto.hashing import verify_object
from cairn.format.lock import decode_lock
from cairn.format.pack import (
    BlobKind,
    PackEntry,
    parse_pack,
)
from cairn.format.tree import decode_tree
from cairn.repository.errors import ObjectMissing
from cairn.repository.keyring import read_key
from cairn.repository.masterindex import MasterIndex
from cairn.repository.packs import read_trailer
from cairn.repository.repository import Repository, add_condemned, read_deletion

UNINDEXED_SHOWN = 3
"""Past this many packs in no index, check says so in one line (a running backup leaves dozens)."""


@dataclass(frozen=True, slots=True)
class Subset:
    """Which packs `--read-data-subset` reads: bucket n of m, or a random fraction."""

    bucket: int = 1
    buckets: int = 1
    fraction: float | None = None

    def selects(self, name: ObjectName, rng: random.Random) -> bool:
        if self.fraction is not None:
            return rng.random() < self.fraction
        return int.from_bytes(name.raw[:8], "big") % self.buckets == self.bucket - 1


@dataclass(slots=True)
class CheckReport:
    """What check found; `errors` empty means the repository is consistent."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    snapshots: int = 0
    packs: int = 0
    blobs: int = 0
    trees: int = 0
    packs_read: int = 0
    bytes_read: int = 0
    missing_chunks: set[ChunkId] = field(default_factory=set)
    damaged_packs: set[ObjectName] = field(default_factory=set)


class Checker:
    """Runs the checks against an open repository (whose index is loaded by `run`)."""

    def __init__(self, repo: Repository, on_pack: Callable[[int], None] | None = None) -> None:
        self._repo = repo
        self._report = CheckReport()
        self._lock = threading.Lock()
        self._on_pack = on_pack or (lambda _n: None)
        self._broken_trees: set[ChunkId] = set()
        self._listed_by: dict[ObjectName, ObjectName] = {}
        """Pack → an index that lists it, to name in a report."""

    def run(
        self, read_data: bool = False, subset: Subset | None = None, seed: int | None = None
    ) -> CheckReport:
        self._check_keys()
        self._check_locks()
        # Snapshots are listed before the indexes are read (reading goes snapshot -> index,
        # design 5.7): every index a listed snapshot relies on was durable before it (5.2), so
        # a backup that commits while check runs can never show up as a snapshot whose chunks
        # are missing.
        snapshots = self._list_snapshots()
        expected = self._load_indexes()
        index = self._repo.index
        pack_sizes = self._check_packs(expected)
        named = self._check_snapshots(index, snapshots)
        self._check_other_reflists(named)
        if read_data or subset is not None:
            rng = random.Random(seed)  # noqa: S311 - sampling, not secrecy
            chosen = [p for p in sorted(pack_sizes) if subset is None or subset.selects(p, rng)]
            self._read_packs(chosen)
        return self._report

    def _error(self, message: str) -> None:
        with self._lock:
            self._report.errors.append(message)

    # ---- keys and indexes ---------------------------------------------------------------

    def _check_keys(self) -> None:
        """Every key object is intact (a damaged one is some passphrase's lost way in)."""
        backend = self._repo.backend
        try:
            infos = list(backend.list(ObjectKind.KEY))
        except BackendError as exc:
            self._error(f"cannot list keys: {exc}")
            return
        for info in infos:
            name = ObjectName.from_hex(info.handle.name)
            try:
                record = read_key(backend, name)
            except ObjectMissing:
                continue  # removed since it was listed (`key remove`)
            except CairnError as exc:
                self._error(f"key {name.short()}: {exc}")
                continue
            if record.repo_id != self._repo.repo_id:
                self._report.warnings.append(
                    f"key {name.short()} belongs to another repository (left by an interrupted "
                    "init?); it opens nothing here"
                )

    def _check_locks(self) -> None:
        """Every lock object is intact: prune refuses to run while it cannot read one."""
        backend = self._repo.backend
        try:
            infos = list(backend.list(ObjectKind.LOCK))
        except BackendError as exc:
            self._error(f"cannot list locks: {exc}")
            return
        for info in infos:
            name = ObjectName.from_hex(info.handle.name)
            try:
                data = backend.load(info.handle)
            except NotFound:
                continue  # its session ended meanwhile
            except CairnError as exc:
                self._error(f"lock {name.short()}: {exc}")
                continue
            try:
                verify_object(name, data)
                decode_lock(data)
            except CairnError as exc:
                self._error(
                    f"lock {name.short()} is damaged ({exc}); prune refuses to run while it is "
                    "there: remove it once no backup that started before it is running"
                )

    def _load_indexes(self) -> dict[ObjectName, list[PackEntry]]:
        """Load every index into the repository's index; return what each lists per pack."""
        # Per pack, its entries in first-seen order (a dict as an ordered set): several indexes
        # may list the same pack after an interrupted run, and a list scan would be quadratic.
        expected: dict[ObjectName, dict[PackEntry, None]] = {}
        read: set[ObjectName] = set()
        while todo := [n for n in self._index_names() if n not in read]:
            gone = []
            for name in todo:
                read.add(name)
                try:
                    record = self._repo.read_index(name)
                except ObjectMissing:
                    gone.append(name)
                    continue
                except CairnError as exc:
                    self._error(f"index {name.short()}: {exc}")
                    continue
                self._repo.index.add_record(record)
                for pack, entries in record.packs.items():
                    expected.setdefault(pack, {}).update(dict.fromkeys(entries))
                    self._listed_by.setdefault(pack, name)
            if not gone:
                break
            # Gone since listed: superseded by a prune, which saves the new index before it
            # removes the old (design 13.3), so the next listing shows it. Still listed: damage.
            listed = set(self._index_names())
            for name in gone:
                if name in listed:
                    self._error(f"index {name.short()}: it is missing from storage")
        self._report.blobs = len(self._repo.index)
        self._load_deletions()
        return {pack: list(entries) for pack, entries in expected.items()}

    def _index_names(self) -> list[ObjectName]:
        try:
            return [
                ObjectName.from_hex(i.handle.name)
                for i in self._repo.backend.list(ObjectKind.INDEX)
            ]
        except BackendError as exc:
            self._error(f"cannot list indexes: {exc}")
            return []

    def _load_deletions(self) -> None:
        """Condemned packs stay readable until swept (design 13.4): a snapshot committed while a
        prune ran may use them."""
        try:
            infos = list(self._repo.backend.list(ObjectKind.DELETION))
        except BackendError as exc:
            self._error(f"cannot list deletion records: {exc}")
            return
        records = []
        for info in infos:
            try:
                records.append(read_deletion(self._repo.backend, info.handle))
            except ObjectMissing:
                continue  # swept since it was listed
            except CairnError as exc:
                self._error(f"deletion record {info.handle.name[:8]}: {exc}")
        if not records:
            return
        try:
            add_condemned(self._repo.index, records, self._repo.backend)
        except BackendError as exc:
            self._error(f"cannot list packs: {exc}")

    # ---- packs --------------------------------------------------------------------------

    def _check_packs(self, expected: dict[ObjectName, list[PackEntry]]) -> dict[ObjectName, int]:
        sizes: dict[ObjectName, int] = {}
        try:
            for info in self._repo.backend.list(ObjectKind.PACK):
                sizes[ObjectName.from_hex(info.handle.name)] = info.size
        except CairnError as exc:
            self._error(f"cannot list packs: {exc}")
            return sizes
        self._report.packs = len(sizes)
        for pack in sorted(expected.keys() - sizes.keys()):
            self._error(
                f"pack {pack.short()} is missing (index {self._listed_by[pack].short()} "
                f"lists {len(expected[pack])} blobs in it)"
            )
            self._report.damaged_packs.add(pack)
        condemned = self._repo.index.condemned_packs()
        self._warn_unindexed(sorted(sizes.keys() - expected.keys() - condemned))
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(
                pool.map(
                    lambda p: self._check_trailer(p, sizes[p], expected[p]),
                    sorted(expected.keys() & sizes.keys()),
                )
            )
        return sizes

    def _warn_unindexed(self, packs: list[ObjectName]) -> None:
        """Packs in no index: a backup running now indexes its packs every 64 packs or 30 s,
        so beside a running backup these are expected; many are said in one line."""
        why = (
            "a backup running now has not indexed it yet, or an interrupted run left it, "
            "or its index is lost; `cairn prune` deletes such packs once no backup runs"
        )
        if len(packs) > UNINDEXED_SHOWN:
            shown = ", ".join(p.short() for p in packs[:UNINDEXED_SHOWN])
            self._report.warnings.append(
                f"{len(packs)} packs are in no index ({shown}, ...): {why}"
            )
            return
        for pack in packs:
            self._report.warnings.append(f"pack {pack.short()} is in no index: {why}")

    def _check_trailer(self, pack: ObjectName, size: int, expected: list[PackEntry]) -> None:
        try:
            found = read_trailer(self._repo.backend, pack, size)
        except CairnError as exc:
            self._pack_damaged(pack, f"pack {pack.short()}: {exc}")
            return
        if sorted(found, key=_key) != sorted(expected, key=_key):
            self._pack_damaged(pack, f"pack {pack.short()}: its trailer disagrees with the index")

    def _pack_damaged(self, pack: ObjectName, message: str) -> None:
        self._error(message)
        with self._lock:
            self._report.damaged_packs.add(pack)

    # ---- snapshots and trees ------------------------------------------------------------

    def _list_snapshots(self) -> list[ObjectName]:
        try:
            return self._repo.snapshot_names()
        except CairnError as exc:
            self._error(f"cannot list snapshots: {exc}")
            return []

    def _check_snapshots(self, index: MasterIndex, names: list[ObjectName]) -> set[ObjectName]:
        """Check every snapshot, its reflists and trees; return the reflists they name."""
        named: set[ObjectName] = set()
        seen_trees: dict[ChunkId, set[ChunkId]] = {}
        for name in sorted(names):
            try:
                snap = self._repo.read_snapshot(name)
                named.update(snap.record.reflists)
                refs: set[ChunkId] = set()
                for reflist in snap.record.reflists:
                    refs.update(self._repo.read_reflist(reflist))
            except CairnError as exc:
                if isinstance(exc, ObjectMissing) and not self._still_listed(name):
                    continue  # forgotten since check listed it: no longer in the repository
                self._report.snapshots += 1
                self._error(f"snapshot {name.short()}: {exc}")
                continue
            self._report.snapshots += 1
            used = self._walk_tree(name, snap.body.tree, b"", index, seen_trees)
            if used != refs and not used & self._broken_trees:  # else `used` is partial
                self._error(
                    f"snapshot {name.short()}: its reflist lists "
                    f"{len(refs - used)} chunk(s) it does not use "
                    f"and misses {len(used - refs)} it uses"
                )
        return named

    def _check_other_reflists(self, named: set[ObjectName]) -> None:
        """Reflists no snapshot names (a prune condemned them, or a backup died before its
        snapshot) are read too: damage anywhere is damage to report."""
        try:
            infos = list(self._repo.backend.list(ObjectKind.REFLIST))
        except BackendError as exc:
            self._error(f"cannot list reflists: {exc}")
            return
        for info in infos:
            name = ObjectName.from_hex(info.handle.name)
            if name in named:
                continue
            try:
                self._repo.read_reflist(name)
            except ObjectMissing:
                continue  # swept since it was listed
            except CairnError as exc:
                self._error(f"reflist {name.short()}: {exc}")

    def _still_listed(self, name: ObjectName) -> bool:
        """Whether a snapshot that could not be loaded is still in the listing (damage) or left
        it since check listed it (a forget that ran meanwhile)."""
        try:
            return name in self._repo.snapshot_names()
        except CairnError:
            return True  # cannot tell: report it

    def _walk_tree(
        self,
        snap: ObjectName,
        tree_id: ChunkId,
        path: bytes,
        index: MasterIndex,
        seen: dict[ChunkId, set[ChunkId]],
    ) -> set[ChunkId]:
        """Every chunk ID reachable from `tree_id` (including it); errors are recorded."""
        if tree_id in seen:
            return seen[tree_id]
        used = {tree_id}
        seen[tree_id] = used
        if index.get(tree_id) is None:
            self._missing(snap, path or b"/", tree_id, "tree")
            self._broken_trees.add(tree_id)
            return used
        try:
            nodes = decode_tree(self._repo.fetch_blob(BlobKind.TREE, tree_id))
        except CairnError as exc:
            self._error(f"snapshot {snap.short()}: tree of {_show(path or b'/')}: {exc}")
            self._broken_trees.add(tree_id)
            return used
        self._report.trees += 1
        for node in nodes:
            child = path + b"/" + node.name
            for chunk_id in node.content:
                used.add(chunk_id)
                if index.get(chunk_id) is None:
                    self._missing(snap, child, chunk_id, "data")
            if node.subtree is not None:
                used |= self._walk_tree(snap, node.subtree, child, index, seen)
        return used

    def _missing(self, snap: ObjectName, path: bytes, chunk_id: ChunkId, what: str) -> None:
        self._error(
            f"snapshot {snap.short()}: {_show(path)}: {what} chunk {chunk_id.hex()[:8]} is missing"
        )
        with self._lock:
            self._report.missing_chunks.add(chunk_id)

    # ---- reading data -------------------------------------------------------------------

    def _read_packs(self, packs: list[ObjectName]) -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for size in pool.map(self._read_pack, packs):
                self._on_pack(size)

    def _read_pack(self, pack: ObjectName) -> int:
        try:
            data = self._repo.backend.load(Handle(ObjectKind.PACK, pack.hex))
            verify_object(pack, data)
            entries = parse_pack(data)
        except CairnError as exc:
            self._pack_damaged(pack, f"pack {pack.short()}: {exc}")
            return 0
        view = memoryview(data)
        for e in entries:
            try:
                self._repo.open_blob(e.kind, e.chunk_id, view[e.offset : e.offset + e.length])
            except CairnError as exc:
                self._pack_damaged(pack, f"pack {pack.short()}: blob {e.chunk_id.hex()[:8]}: {exc}")
        with self._lock:
            self._report.packs_read += 1
            self._report.bytes_read += len(data)
        return len(data)


def _key(e: PackEntry) -> tuple[int, bytes]:
    return (e.offset, e.chunk_id)


def _show(path: bytes) -> str:
    return path.decode(errors="replace")
