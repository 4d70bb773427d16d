"""The Repository: open or create one, store and fetch blobs, commit and read snapshots."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import zstandard

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import BackendError, ForeignLocation, NotFound
from cairn.chunking.fastcdc import ChunkerParams, FastCDCChunker
from cairn.core.clock import Clock
from cairn.core.errors import CairnError, FormatError, IntegrityError
from cairn.core.ids import ChunkId, ObjectName
from cairn.crypto.aead import Opener, Sealer
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import KdfParams
from cairn.crypto.keys import MasterKey
from cairn.format.config import (
    ConfigRecord,
    RepoParams,
    decode_config,
    decode_params,
    encode_config,
    encode_params,
)
from cairn.format.deletion import DeletionRecord, decode_deletion
from cairn.format.index import IndexRecord, decode_index
from cairn.format.pack import BlobKind
from cairn.format.reflist import SALT_SIZE, decode_reflist, encode_reflist
from cairn.format.snapshot import (
    SnapshotBody,
    SnapshotRecord,
    decode_body,
    decode_snapshot,
    encode_body,
    encode_snapshot,
    group_material,
)
from cairn.repository.chunkindex import ChunkIndex
from cairn.repository.errors import (
    NotARepository,
    ObjectMissing,
    RepositoryExists,
    RepositoryNotFound,
)
from cairn.repository.keyring import make_key, save_key, unlock
from cairn.repository.locks import LeaseExpired, Session
from cairn.repository.masterindex import MasterIndex
from cairn.repository.objects import load_verified
from cairn.repository.packer import PackUploader, save_index
from cairn.repository.remoteindex import remote_index
from cairn.repository.treecache import BlobCache

AAD_PREFIX = b"cairn/1"
CONFIG_HANDLE = Handle(ObjectKind.CONFIG, "config")
COMPRESS_RAW = 0
COMPRESS_ZSTD = 1
MAX_DATA_BLOB = 16 * 1024 * 1024
MAX_TREE_BLOB = 256 * 1024 * 1024
RELIST_ATTEMPTS = 5
_VANISHED = object()  # an index that was listed, then removed before it could be read
"""How often load_index lists again when indexes vanish under it (a concurrent prune's swap)."""

DEFAULT_PARAMS = RepoParams(
    chunk_min=512 * 1024,
    chunk_avg=512 * 1024,
    chunk_max=4 * 1024 * 1024,
    pack_size=8 * 1024 * 1024,
    compression=3,
)

_KIND_LABEL = {BlobKind.DATA: b"data", BlobKind.TREE: b"tree"}


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """A snapshot as read back: its name, its outer record and its opened body."""

    name: ObjectName
    record: SnapshotRecord
    body: SnapshotBody


class Repository:
    """An open repository. Reading is thread-safe; writing goes through one PackUploader."""

    def __init__(
        self,
        backend: Backend,
        config: ConfigRecord,
        params: RepoParams,
        master: MasterKey,
        key_name: ObjectName,
        clock: Clock,
    ) -> None:
        self.backend = backend
        self.repo_id = config.repo_id
        self.config = config
        self.params = params
        self.master = master
        self.key_name = key_name
        self.clock = clock
        self.keys = master.subkeys()
        self.index = MasterIndex()
        self._chunk_index: ChunkIndex | None = None
        self._opener = Opener(self.keys.seal)
        self._sealer: Sealer | None = None
        self._uploader: PackUploader | None = None
        self._keep_unindexed: Callable[[IndexRecord], None] | None = None
        self._local = threading.local()
        self.session: Session | None = None
        self.damaged: list[str] = []
        """Objects `load_index` could not use (see there), for the caller to report."""
        self.tree_cache: BlobCache | None = None
        """Where `fetch_blob` keeps sealed tree blobs (design 14.12); None: no cache."""
        self._damaged_lock = threading.Lock()

    # ---- creating and opening -------------------------------------------------------------

    @classmethod
    def init(
        cls,
        backend: Backend,
        passphrase: bytes,
        clock: Clock,
        *,
        kdf: KdfParams,
        params: RepoParams = DEFAULT_PARAMS,
    ) -> Repository:
        """Create a repository: key object first, config last (config marks it complete)."""
        if backend.exists(CONFIG_HANDLE):
            raise RepositoryExists(f"a repository already exists at {backend.location()}")
        if _holds_data(backend):
            # A new config here would bury the old repository's data under a new master key.
            raise RepositoryExists(
                f"{backend.location()} holds a repository whose config is missing; "
                "refusing to create a new one over its data"
            )
        repo_id = os.urandom(16)
        master = MasterKey.generate()
        key_name = save_key(backend, make_key(master, repo_id, passphrase, kdf, clock))
        sealed = Sealer(master.subkeys().seal).seal(encode_params(params), _aad(repo_id, b"config"))
        config = ConfigRecord(repo_id, clock.now().isoformat(timespec="seconds"), sealed)
        backend.save(CONFIG_HANDLE, encode_config(config))
        return cls(backend, config, params, master, key_name, clock)

    @classmethod
    def open(
        cls,
        backend: Backend,
        passphrase: bytes,
        clock: Clock,
        config: ConfigRecord | None = None,
    ) -> Repository:
        """Open with a passphrase; raises RepositoryNotFound, NotARepository or WrongPassword.
        `config` is the one `read_config` returned, when the caller already read it."""
        if config is None:
            config = read_config(backend)
        master, key_name = unlock(backend, config.repo_id, passphrase)
        try:
            opened = Opener(master.subkeys().seal).open(
                config.sealed, _aad(config.repo_id, b"config")
            )
            params = decode_params(opened)
        except (IntegrityError, FormatError) as exc:
            raise NotARepository(
                f"the config at {backend.location()} fails authentication"
            ) from exc
        return cls(backend, config, params, master, key_name, clock)

    def chunker(self) -> FastCDCChunker:
        p = self.params
        return FastCDCChunker(
            ChunkerParams(p.chunk_min, p.chunk_avg, p.chunk_max), self.keys.chunker_seed
        )

    # ---- sealing ------------------------------------------------------------------------

    def sealer(self) -> Sealer:
        """This process's session: created on first write."""
        if self._sealer is None:
            self._sealer = Sealer(self.keys.seal)
        return self._sealer

    def seal_object(self, label: bytes, plaintext: bytes) -> bytes:
        return self.sealer().seal(plaintext, _aad(self.repo_id, label))

    def open_object(self, label: bytes, envelope: bytes) -> bytes:
        return self._opener.open(envelope, _aad(self.repo_id, label))

    # ---- the session ----------------------------------------------------------------------

    def begin_session(self, purpose: str) -> Session:
        """Save this process's lock (before the index is loaded: design 5.9) and keep it renewed."""
        session = Session(self.backend, self.clock, purpose, seal=self._seal_lock)
        session.acquire()
        self.session = session
        return session

    def _seal_lock(self, owner: bytes, session_id: bytes) -> bytes:
        return self.sealer().seal(owner, _aad(self.repo_id, b"lock") + session_id)

    def open_lock(self, sealed: bytes, session_id: bytes) -> bytes:
        return self._opener.open(sealed, _aad(self.repo_id, b"lock") + session_id)

    # ---- the index ----------------------------------------------------------------------

    @property
    def chunk_index(self) -> ChunkIndex:
        """What storing and fetching blobs consult: the loaded index, unless a backup chose
        another (`use_chunk_index`)."""
        return self._chunk_index if self._chunk_index is not None else self.index

    def use_chunk_index(self, index: ChunkIndex) -> None:
        """Store and fetch blobs through `index` instead of loading the whole index (a backup
        to a server: remoteindex.RemoteIndex). Before the first blob is stored."""
        assert self._uploader is None, "choose the index before start_writing()"
        self._chunk_index = index

    def use_server_chunk_query(self) -> bool:
        """Ask the server which chunks it holds instead of loading the whole index, when the
        storage answers chunk queries: a backup's memory stays bounded (design 14.11). False
        when it does not: the caller loads the index. Before the first blob is stored."""
        index = remote_index(self.backend)
        if index is None:
            return False
        self.use_chunk_index(index)
        return True

    def load_index(self, connections: int = 4) -> list[ObjectName]:
        """Read every index object into memory; returns their names.

        A damaged index or deletion record is skipped and described in `damaged`: damage stays
        confined to the snapshots whose chunks only it lists (they then fail with ObjectMissing),
        every other snapshot restores, and a backup stores such chunks again. Prune reads for
        itself and refuses on any of this (design 13.3); check reports it.

        A prune or repair may replace indexes meanwhile. It saves the new index before it removes
        the ones it supersedes, and a sweep indexes again what it keeps before it removes its
        record; so an index or deletion record that vanishes between the listing and the read
        has been replaced, and the listing is read again for what replaced it.
        """
        done: set[ObjectName] = set()
        for _ in range(RELIST_ATTEMPTS):
            names = [
                ObjectName.from_hex(i.handle.name) for i in self.backend.list(ObjectKind.INDEX)
            ]
            todo = [n for n in names if n not in done]
            with ThreadPoolExecutor(max_workers=connections) as pool:
                records = list(pool.map(self._read_index_if_present, todo))
            vanished = False
            for name, record in zip(todo, records, strict=True):
                if record is _VANISHED:
                    vanished = True
                    continue
                done.add(name)  # read, or damaged and described: either way not read again
                if isinstance(record, IndexRecord):
                    self.index.add_record(record)
            deletions = self._read_deletions_if_present()
            if deletions is not None and not vanished:
                if deletions:
                    add_condemned(self.index, deletions, self.backend)
                return names
        raise ObjectMissing(
            f"indexes kept vanishing while they were read ({RELIST_ATTEMPTS} listings); "
            "is a prune or repair running in a loop?"
        )

    def _read_index_if_present(self, name: ObjectName) -> IndexRecord | object | None:
        """The index; _VANISHED if it is gone; None (and a `damaged` entry) if it is damaged."""
        try:
            return self.read_index(name)
        except ObjectMissing:
            return _VANISHED
        except (FormatError, IntegrityError) as exc:
            self._note_damage(f"index {name.short()}: {exc}")
            return None

    def _read_deletions_if_present(self) -> list[DeletionRecord] | None:
        """Every readable deletion record; None if one vanished while being read."""
        found = []
        for deletion in self.backend.list(ObjectKind.DELETION):
            try:
                found.append(read_deletion(self.backend, deletion.handle))
            except ObjectMissing:
                return None
            except (FormatError, IntegrityError) as exc:
                self._note_damage(f"deletion record {deletion.handle.name[:8]}: {exc}")
        return found

    def _note_damage(self, message: str) -> None:
        with self._damaged_lock:
            if message not in self.damaged:
                self.damaged.append(message)

    def forget_missing_packs(self) -> list[ObjectName]:
        """Drop from the loaded index every pack that storage does not hold; return them.

        Then a backup stores the chunks that only such a pack held again, instead of
        deduplicating against lost data (the new snapshot is whole: restic#2571, kopia#3492),
        and readers take a chunk that another pack also holds from there. Listed after the
        index was loaded, so every pack it names had been stored; dropping is always safe (at
        worst a chunk is stored twice). Chunks only a missing pack held stay missing, and check
        reports the pack.
        """
        named = self.index.packs()
        if not named:
            return []  # nothing to drop: an initial backup need not list storage's packs
        listed = {ObjectName.from_hex(i.handle.name) for i in self.backend.list(ObjectKind.PACK)}
        missing = named - listed
        if missing:
            self.index.drop_packs(missing)
        return sorted(missing)

    def read_index(self, name: ObjectName) -> IndexRecord:
        return decode_index(self.load_verified(Handle(ObjectKind.INDEX, name.hex)))

    def load_verified(self, handle: Handle) -> bytes:
        """Load a whole object and check it hashes to its name."""
        return load_verified(self.backend, handle)

    # ---- blobs --------------------------------------------------------------------------

    def start_writing(self, connections: int = 2) -> None:
        if self._uploader is None:
            self._uploader = PackUploader(
                self.backend,
                self.chunk_index,
                pack_size=self.params.pack_size,
                connections=connections,
                clock=self.clock,
                session=self.session.id if self.session is not None else None,
                guard=self.session.confirm if self.session is not None else None,
            )

    def blob_id(self, kind: BlobKind, plaintext: bytes | memoryview) -> ChunkId:
        if kind is BlobKind.DATA:
            return self.keys.data_chunk_id(plaintext)
        return self.keys.tree_chunk_id(plaintext)

    def store_blob(
        self, kind: BlobKind, plaintext: bytes | memoryview, chunk_id: ChunkId | None = None
    ) -> tuple[ChunkId, int]:
        """Store a blob unless it is known; returns its ID and the bytes added (0: deduplicated)."""
        if chunk_id is None:
            chunk_id = self.blob_id(kind, plaintext)
        if not self.chunk_index.reserve(chunk_id):
            return chunk_id, 0
        sealed = self.sealer().seal(self._compress(plaintext), self._blob_aad(kind, chunk_id))
        assert self._uploader is not None, "start_writing() before storing blobs"
        self._uploader.add(chunk_id, kind, sealed)
        return chunk_id, len(sealed)

    def _compressor(self, level: int) -> zstandard.ZstdCompressor:
        cache: dict[int, zstandard.ZstdCompressor] | None = getattr(self._local, "zstd", None)
        if cache is None:
            cache = self._local.zstd = {}
        if level not in cache:
            cache[level] = zstandard.ZstdCompressor(level=level)
        return cache[level]

    def _compress(self, plaintext: bytes | memoryview) -> bytes:
        # zstd gives up on incompressible input at several GB/s, so every blob is tried whole:
        # judging by a sample missed chunks that start random and then repeat (disk images).
        level = self.params.compression
        if level and len(plaintext) >= 64:
            packed = self._compressor(level).compress(plaintext)
            if len(packed) < len(plaintext):
                return bytes((COMPRESS_ZSTD,)) + packed
        return bytes((COMPRESS_RAW,)) + bytes(plaintext)

    def _blob_aad(self, kind: BlobKind, chunk_id: ChunkId) -> bytes:
        return _aad(self.repo_id, _KIND_LABEL[kind]) + chunk_id

    def fetch_blob(self, kind: BlobKind, chunk_id: ChunkId) -> bytes:
        """Load, open, decompress and verify one blob; a tree blob from the tree cache if it
        holds one that opens (else it is fetched from its pack and kept there)."""
        cache = self.tree_cache if kind is BlobKind.TREE else None
        if cache is not None:
            cached = self._open_cached(cache, kind, chunk_id)
            if cached is not None:
                return cached
        location = self.chunk_index.get(chunk_id)
        if location is None:
            raise ObjectMissing(f"chunk {chunk_id.hex()[:8]} is in no index")
        if location.kind is not kind:
            raise IntegrityError(
                f"chunk {chunk_id.hex()[:8]} is a {location.kind.name}, not {kind.name}"
            )
        try:
            envelope = self.backend.load(
                Handle(ObjectKind.PACK, location.pack.hex), location.offset, location.length
            )
        except NotFound as exc:
            raise ObjectMissing(f"pack {location.pack.short()} is missing from storage") from exc
        plaintext = self.open_blob(kind, chunk_id, envelope)
        if cache is not None:
            cache.put(chunk_id, envelope)
        return plaintext

    def _open_cached(self, cache: BlobCache, kind: BlobKind, chunk_id: ChunkId) -> bytes | None:
        """The cached blob, opened and verified; None (the entry dropped) if it fails."""
        envelope = cache.get(chunk_id)
        if envelope is None:
            return None
        try:
            return self.open_blob(kind, chunk_id, envelope)
        except (IntegrityError, FormatError):
            cache.drop(chunk_id)
            return None

    def load_span(self, pack: ObjectName, offset: int, length: int) -> bytes:
        """Load `length` bytes of a pack from `offset`: several neighbouring blobs in one read."""
        try:
            return self.backend.load(Handle(ObjectKind.PACK, pack.hex), offset, length)
        except NotFound as exc:
            raise ObjectMissing(f"pack {pack.short()} is missing from storage") from exc

    def open_blob(self, kind: BlobKind, chunk_id: ChunkId, envelope: bytes | memoryview) -> bytes:
        """Open a sealed blob and check its plaintext hashes to its chunk ID."""
        framed = self._opener.open(envelope, self._blob_aad(kind, chunk_id))
        plaintext = self._decompress(kind, framed)
        if self.blob_id(kind, plaintext) != chunk_id:
            raise IntegrityError(f"chunk {chunk_id.hex()[:8]} holds bytes with another ID")
        return plaintext

    def _decompress(self, kind: BlobKind, framed: bytes) -> bytes:
        if not framed:
            raise FormatError("empty blob")
        if framed[0] == COMPRESS_RAW:
            return framed[1:]
        if framed[0] != COMPRESS_ZSTD:
            raise FormatError(f"unknown blob compression {framed[0]}")
        limit = MAX_DATA_BLOB if kind is BlobKind.DATA else MAX_TREE_BLOB
        try:
            out: bytes = self._decompressor().decompress(framed[1:], max_output_size=limit)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"blob does not decompress: {exc}") from exc
        return out

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        """One decompressor per thread: making one per blob costs more than small blobs do."""
        local = self._local
        decompressor: zstandard.ZstdDecompressor | None = getattr(local, "unzstd", None)
        if decompressor is None:
            decompressor = local.unzstd = zstandard.ZstdDecompressor()
        return decompressor

    def keep_unindexed_with(self, keep: Callable[[IndexRecord], None]) -> None:
        """Hand the packs this session stored but could not index, when it closes, to `keep`
        (the local cache: unindexed.UnindexedPacks), so that the next run can index them."""
        self._keep_unindexed = keep

    def index_stored_packs(self, record: IndexRecord) -> ObjectName:
        """Write an index object of packs on storage that no index names yet, as this session's
        own (prune leaves it alone while the session runs), under its guard."""
        guard = self.session.confirm if self.session is not None else None
        session = self.session.id if self.session is not None else None
        return save_index(self.backend, IndexRecord(packs=record.packs, session=session), guard)

    def raise_if_failed(self) -> None:
        """Raise the first storage error of a background upload, if any."""
        if self._uploader is not None:
            self._uploader.raise_if_failed()

    def flush(self) -> None:
        """Make every stored blob durable: packs, then their index."""
        if self._uploader is not None:
            self._uploader.flush()

    def upload_stats(self) -> tuple[int, int]:
        """(packs written, bytes written) by this session."""
        if self._uploader is None:
            return 0, 0
        return self._uploader.packs_written, self._uploader.bytes_written

    def close(self) -> None:
        if self._uploader is not None:
            uploader, self._uploader = self._uploader, None
            uploader.close()
            # A run that stops early (interrupted, failed): index the packs it stored, which
            # are durable, so that the next backup reuses them instead of uploading them again.
            try:
                uploader.write_index()
            except CairnError:  # the storage went away: the next run indexes them (14.13)
                if self._keep_unindexed is not None:
                    self._keep_unindexed(uploader.unindexed())
        if self.session is not None:
            self.session.release()
            self.session = None
        self.backend.close()

    # ---- snapshots ----------------------------------------------------------------------

    def commit_snapshot(self, body: SnapshotBody, refs: set[ChunkId]) -> ObjectName:
        """Flush data and index, write the reflist, then the snapshot object: the commit.

        Only while the session may commit, checked before and after the snapshot is saved; a
        snapshot saved when the session turned out stale is removed again (LeaseExpired).
        """
        self.flush()
        reflist = encode_reflist(refs, os.urandom(SALT_SIZE))
        reflist_name = object_name(reflist)
        self.backend.save(Handle(ObjectKind.REFLIST, reflist_name.hex), reflist)
        group = self.snapshot_group(body.host, body.paths)
        sealed = self.seal_object(b"snapshot", encode_body(replace(body, group=group)))
        data = encode_snapshot(SnapshotRecord(self.repo_id, [reflist_name], sealed, group))
        name = object_name(data)
        handle = Handle(ObjectKind.SNAPSHOT, name.hex)
        if self.session is not None:
            self.session.confirm()
        self.backend.save(handle, data)
        if self.session is not None:
            try:  # the process may have slept between the check and the save
                self.session.confirm()
            except LeaseExpired:
                with contextlib.suppress(BackendError):
                    self.backend.remove(handle)
                raise
        return name

    def snapshot_group(self, host: str, paths: list[str]) -> bytes:
        """The group ID of a snapshot of `host` and `paths` (design 3.6): equal for the snapshots
        `forget` groups together, opaque to the server that groups its retention by it."""
        return self.keys.snapshot_group(group_material(host, paths))

    def snapshot_names(self) -> list[ObjectName]:
        return [ObjectName.from_hex(i.handle.name) for i in self.backend.list(ObjectKind.SNAPSHOT)]

    def read_snapshot(self, name: ObjectName) -> StoredSnapshot:
        record = decode_snapshot(self.load_verified(Handle(ObjectKind.SNAPSHOT, name.hex)))
        if record.repo_id != self.repo_id:
            raise IntegrityError(f"snapshot {name.short()} belongs to another repository")
        body = decode_body(self.open_object(b"snapshot", record.sealed))
        if body.group != record.group:  # the plaintext group is not authenticated; its copy is
            raise IntegrityError(f"snapshot {name.short()} was relabelled: its group ID differs")
        return StoredSnapshot(name, record, body)

    def read_reflist(self, name: ObjectName) -> list[ChunkId]:
        return decode_reflist(self.load_verified(Handle(ObjectKind.REFLIST, name.hex)))


def read_deletion(backend: Backend, handle: Handle) -> DeletionRecord:
    """Load, verify and decode a deletion record."""
    return decode_deletion(load_verified(backend, handle))


def add_condemned(index: MasterIndex, records: list[DeletionRecord], backend: Backend) -> None:
    """Make the packs of deletion records readable as a fallback, those still on storage only:
    a sweep that was interrupted deleted some, and a chunk may have a copy in another record's
    pack (listed after the records were read, so a pack deleted meanwhile is left out)."""
    stored = {ObjectName.from_hex(i.handle.name) for i in backend.list(ObjectKind.PACK)}
    for record in records:
        index.add_condemned({p: e for p, e in record.packs.items() if p in stored})


def read_config(backend: Backend) -> ConfigRecord:
    """The config record; RepositoryNotFound where nothing is (a missing or empty folder),
    NotARepository where something else is (other files, a file, a damaged config)."""
    try:
        data = backend.load(CONFIG_HANDLE)
    except ForeignLocation as exc:
        raise NotARepository(f"no Cairn repository: {exc}") from exc
    except NotFound as exc:
        if _holds_data(backend):
            raise NotARepository(
                f"the config of the repository at {backend.location()} is missing, though "
                "the location holds its data: restore the config from a copy"
            ) from exc
        raise RepositoryNotFound(
            f"no repository at {backend.location()} (create one with `cairn init`)"
        ) from exc
    try:
        return decode_config(data)
    except FormatError as exc:
        raise NotARepository(
            f"{backend.location()} does not hold a Cairn repository config"
        ) from exc


def _holds_data(backend: Backend) -> bool:
    """True when the location holds snapshots, indexes or packs (key objects alone are what an
    interrupted init leaves, and init may then run again)."""
    for kind in (ObjectKind.SNAPSHOT, ObjectKind.INDEX, ObjectKind.PACK):
        try:
            if next(iter(backend.list(kind)), None) is not None:
                return True
        except BackendError:
            continue  # no such folder: nothing there
    return False


def _aad(repo_id: bytes, label: bytes) -> bytes:
    return AAD_PREFIX + repo_id + label
