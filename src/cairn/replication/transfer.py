"""Sending one object from the server's storage to a target, verified at both ends (design
17.4, 17.6): hashed at the source before it is sent, its size checked on the target after, and
every `read_back_every`-th object read back and hashed there.

Whether the target holds an object already is asked before the save (a stat), except where the
save answers it in the same request: a target with `conditional_create` (S3's create-only PUT,
`If-None-Match: *`) refuses an existing name, and the backend then accepts it if the bytes are
the same (`AlreadyExists` otherwise). Objects after a cursor are new on the target but for the
few a cut run sent, so the stat was a request per object spent on the rare case."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import AlreadyExists, NotFound
from cairn.core.crashpoints import crashpoint
from cairn.crypto.hashing import object_name
from cairn.replication.errors import TargetCorrupt

READ_BACK_EVERY = 16
"""Every so many objects sent (and the first), one is read back whole from the target."""


MAX_PARALLEL = 8
"""At most so many objects in flight to one target (a backend's `connections` is less)."""


class Outcome(Enum):
    SENT = "sent"
    SKIPPED = "skipped"
    """The target holds it already (same name and size)."""
    DAMAGED = "damaged"
    """The server's bytes do not hash to the name: never sent."""
    GONE = "gone"
    """The server no longer holds it (removed after its entry was read)."""


def hashes_to_name(handle: Handle, data: bytes) -> bool:
    """Whether `data` is the object `handle` names. `config` has a fixed name, not a hash: it is
    sealed and checked by the client that opens it."""
    if handle.kind is ObjectKind.CONFIG:
        return True
    return object_name(data).hex == handle.name


@dataclass(slots=True)
class Sender:
    """Sends objects and counts what it did, for a run's or an audit's report."""

    read_back_every: int = READ_BACK_EVERY
    sent: int = 0
    bytes_sent: int = 0
    skipped: int = 0
    damaged: list[str] = field(default_factory=list)
    _verified: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send_all(
        self,
        source: Backend,
        target: Backend,
        handles: Sequence[Handle],
        sizes: Sequence[int],
        *,
        where: str,
    ) -> None:
        """Send objects of one kind, as many at once as the target has connections (their
        order within a kind does not matter; the caller waits for every one before the next
        kind, 17.4). The first failure is raised once every send has ended."""
        workers = min(len(handles), max(1, target.capabilities.connections), MAX_PARALLEL)
        if workers <= 1:
            for handle, size in zip(handles, sizes, strict=True):
                self.send(source, target, handle, size, where=where)
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="cairn-replicate") as pool:
            futures = [
                pool.submit(self.send, source, target, handle, size, where=where)
                for handle, size in zip(handles, sizes, strict=True)
            ]
        for future in futures:
            future.result()

    def send(
        self,
        source: Backend,
        target: Backend,
        handle: Handle,
        size: int,
        *,
        where: str,
        missing: bool = False,
    ) -> Outcome:
        """Send `handle` (`size` bytes at the source, -1 if unknown) unless the target holds it
        with that size; `missing` says a listing just showed it absent (no stat then). `where`
        names the tenant in reports."""
        if self._asks_first(target, missing) and self._already_there(target, handle, size):
            with self._lock:
                self.skipped += 1
            return Outcome.SKIPPED
        try:
            data = source.load(handle)
        except NotFound:
            return Outcome.GONE
        if not hashes_to_name(handle, data):
            with self._lock:
                self.damaged.append(f"{where}/{handle}")
            return Outcome.DAMAGED
        crashpoint("replication.save")
        try:
            target.save(handle, data)
        except AlreadyExists as exc:
            raise TargetCorrupt(
                f"{target.location()}: {handle} ({where}) holds other bytes than the server's: "
                "the target damaged it (an audit lists every such object)"
            ) from exc
        with self._lock:
            read_back = self._verified % self.read_back_every == 0
            self._verified += 1
        self._verify(target, handle, data, where, read_back=read_back)
        with self._lock:
            self.sent += 1
            self.bytes_sent += len(data)
        return Outcome.SENT

    @staticmethod
    def _asks_first(target: Backend, missing: bool) -> bool:
        """Whether to stat before saving (see the module docstring)."""
        return not missing and not target.capabilities.conditional_create

    def _already_there(self, target: Backend, handle: Handle, size: int) -> bool:
        try:
            held = target.stat(handle).size
        except NotFound:
            return False
        if size >= 0 and held != size:
            raise TargetCorrupt(
                f"{target.location()}: {handle} holds {held} bytes, the server's copy {size}: "
                "the target damaged it (an audit lists every such object)"
            )
        return True

    def _verify(
        self, target: Backend, handle: Handle, data: bytes, where: str, *, read_back: bool
    ) -> None:
        if target.capabilities.server_checksums and not read_back:
            return  # the storage checked the upload's checksum itself (S3 Content-MD5)
        held = target.stat(handle).size
        if held != len(data):
            raise TargetCorrupt(
                f"{target.location()}: {handle} was sent with {len(data)} bytes and holds {held}"
            )
        if read_back and target.load(handle) != data:
            raise TargetCorrupt(
                f"{target.location()}: {handle} ({where}) reads back other bytes than were sent"
            )
