"""The Backend protocol: about ten byte-oriented methods and their contract."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

from cairn.backends.errors import BackendError, NotFound


class ObjectKind(Enum):
    """The folder an object lives in. A backend stores kinds separately and lists them apart."""

    CONFIG = "config"
    KEY = "keys"
    PACK = "packs"
    INDEX = "index"
    REFLIST = "reflists"
    SNAPSHOT = "snapshots"
    LOCK = "locks"
    DELETION = "deletions"


@dataclass(frozen=True, slots=True)
class Handle:
    """Names one object: its kind and its name (64 hex digits, or ``config``)."""

    kind: ObjectKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value}/{self.name}"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What ``stat`` and ``list`` report about an object."""

    handle: Handle
    size: int


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, as data, so callers adapt without type switches."""

    connections: int = 2
    """How many operations may usefully run at once."""
    local: bool = False
    """Range reads are cheap (no network round trip)."""
    chunk_query: bool = False
    """The storage says where chunks live (`ChunkQuerier`): a backup need not load the index."""
    ranged_reads: bool = True
    """`load` with an offset and length reads only those bytes (not the whole object)."""
    atomic_create: bool = True
    """`save` never shows a half-written object, by the protocol's own atomic put or by a
    temporary name and a rename."""
    resumable_writes: bool = False
    """A broken upload of a large object can go on from where it stopped (S3 multipart, SFTP or
    FTP append at an offset) instead of starting again."""
    conditional_create: bool = False
    """The storage can create an object only if absent, or swap it only if unchanged (S3
    If-None-Match / If-Match), so a writer can fence another without a lock."""
    server_checksums: bool = False
    """The storage checks a checksum of each upload itself (S3 Content-MD5, a WebDAV server's
    checksum header), on top of Cairn's own hash check."""


class Backend(Protocol):
    """A place that stores immutable named byte objects.

    Obligations of every implementation (checked by ``cairn.backends.testing``):

    - ``save`` is atomic: a concurrent or later ``load`` sees all of the bytes or none; after it
      returns, the object is durable (file and folder fsynced, or upload verified).
    - ``save`` of a name that exists with the same bytes succeeds; with different bytes it raises
      ``AlreadyExists``. Objects are never overwritten.
    - ``load`` returns exactly ``length`` bytes from ``offset`` (all of the rest when ``length`` is
      None) or raises; a short read is an error, never a silent truncation.
    - ``list`` yields every object of a kind exactly once and never a temporary file; if it cannot
      finish, it raises ``ListingIncomplete`` rather than stopping early.
    - ``remove`` of a missing object raises ``NotFound``.
    - Every method raises only ``cairn.backends.errors.BackendError`` subclasses.
    """

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do."""
        ...

    def location(self) -> str:
        """Where the backend stores data, for messages (never contains secrets)."""
        ...

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        """Store `data` under `handle`, atomically and durably."""
        ...

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Read an object, or the `length` bytes from `offset`."""
        ...

    def stat(self, handle: Handle) -> ObjectInfo:
        """Size of one object; raises NotFound."""
        ...

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        """Every object of `kind`, each once, in no particular order."""
        ...

    def remove(self, handle: Handle) -> None:
        """Delete one object durably; raises NotFound."""
        ...

    def exists(self, handle: Handle) -> bool:
        """True when the object exists."""
        ...

    def close(self) -> None:
        """Release connections and file descriptors."""
        ...


def exists_by_stat(backend: Backend, handle: Handle) -> bool:
    """`exists` for a backend whose `stat` is one cheap request (a file, a HEAD, an SFTP stat):
    the stat, with NotFound as False. The one definition the storage backends share, so they
    all agree that any other error is raised, not taken for "missing"."""
    try:
        backend.stat(handle)
    except NotFound:
        return False
    return True


ChunkAnswer = tuple[bytes, int, int, int]
"""Where one chunk lives, as the storage says: (pack name, blob kind, offset, length)."""


@runtime_checkable
class ChunkQuerier(Protocol):
    """A backend that answers where chunks live (a Cairn server's chunk query, design 14.11).

    Raw bytes and numbers only: backends know nothing of blobs; the repository layer makes
    locations of them. Its `capabilities.chunk_query` is True when the answers are real (a
    wrapper has the method whatever it wraps).
    """

    def query_chunks(self, ids: Sequence[bytes]) -> dict[bytes, ChunkAnswer]:
        """For each of `ids` the storage's indexes list, where it lives; unknown IDs are left
        out. Any number of IDs (sent in batches the storage accepts)."""
        ...


def forward_chunk_query(inner: Backend, ids: Sequence[bytes]) -> dict[bytes, ChunkAnswer]:
    """A wrapper's `query_chunks`: the wrapped backend's, or an error if it has none."""
    if not isinstance(inner, ChunkQuerier):
        raise BackendError(f"{inner.location()} cannot answer chunk queries")
    return inner.query_chunks(ids)
