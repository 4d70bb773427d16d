"""Sessions and their locks: no exclusive lock, no stale lock that needs a human (design 13.1).

A writing session saves its lock before it loads the index, renews it while it runs (a new lock
object, then the old one removed) and removes it at the end. Anyone may read when a lock ends; only
the session itself decides that its lease is too old to commit.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import BackendError, NotFound
from cairn.core.clock import Clock
from cairn.core.crashpoints import crashpoint
from cairn.core.errors import CairnError, FormatError, IntegrityError
from cairn.core.ids import ObjectName
from cairn.crypto.hashing import object_name
from cairn.format.lock import (
    LockOwner,
    LockRecord,
    decode_lock,
    decode_owner,
    encode_lock,
    encode_owner,
)
from cairn.repository.errors import ObjectMissing
from cairn.repository.objects import load_verified

LEASE_MS = 10 * 60 * 1000
SKEW_MS = 5 * 60 * 1000
"""A lock counts as ended this long after its expiry by the reader's clock (clock skew margin)."""

_FENCED = (
    "this session's lock was removed by a prune that judged the session ended (a machine "
    f"asleep, or clocks that disagree by more than {SKEW_MS // 60_000} minutes: check this "
    "machine's time); it does not commit, the data stored so far stays for the next run"
)

Sealer = Callable[[bytes, bytes], bytes]
"""(plaintext, session) → envelope: seals a lock's owner; None in a keyless process."""
Opener = Callable[[bytes, bytes], bytes]


class LeaseExpired(CairnError):
    """This session's lease ran out (or could not be renewed): it must not commit."""


@dataclass(frozen=True, slots=True)
class StoredLock:
    name: ObjectName
    record: LockRecord


def now_ms(clock: Clock) -> int:
    return int(clock.now().timestamp() * 1000)


def read_locks(backend: Backend) -> list[StoredLock]:
    """Every lock on storage. A listing that cannot finish raises; a lock that vanished while
    being read has ended and is skipped; an unreadable one raises (nobody can say it ended)."""
    locks = []
    for info in backend.list(ObjectKind.LOCK):
        try:
            data = load_verified(backend, info.handle)
        except ObjectMissing:
            continue
        locks.append(StoredLock(ObjectName.from_hex(info.handle.name), decode_lock(data)))
    return locks


EXCLUSIVE_PURPOSES = frozenset({"prune", "repair"})
"""Sessions that rewrite the index; only one of them runs at a time."""


def exclusive_holder(
    backend: Backend, own: bytes | None, now: int, opener: Opener | None
) -> str | None:
    """The purpose of another live session that rewrites the index, or None."""
    for lock in read_locks(backend):
        record = lock.record
        if record.session == own or record.purpose not in EXCLUSIVE_PURPOSES:
            continue
        if not has_ended(record, now, opener):
            return record.purpose
    return None


def running_sessions(
    backend: Backend, own: bytes | None, now: int, opener: Opener | None
) -> set[bytes]:
    """The sessions whose lock has not ended, `own` excepted."""
    return {
        lock.record.session
        for lock in read_locks(backend)
        if lock.record.session != own and not has_ended(lock.record, now, opener)
    }


def has_ended(lock: LockRecord, now: int, opener: Opener | None = None) -> bool:
    """True when the session behind `lock` can no longer commit or use what it read.

    Expired by more than the skew margin on the reader's clock; or, for a reader holding the keys,
    owned by a process on this machine (same boot) that is gone.
    """
    if now > lock.expires_ms + SKEW_MS:
        return True
    if opener is None:
        return False
    try:
        owner = decode_owner(opener(lock.sealed, lock.session))
    except (FormatError, IntegrityError):
        return False
    here = this_process()
    if owner.host != here.host or owner.boot != here.boot:
        return False
    return not _process_alive(owner.pid, owner.start)


class Session:
    """This process's lock on a repository."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        purpose: str,
        seal: Sealer | None = None,
        lease_ms: int = LEASE_MS,
    ) -> None:
        self.id = os.urandom(16)
        self.purpose = purpose
        self._backend = backend
        self._clock = clock
        self._seal = seal
        self._lease_ms = lease_ms
        self._current: ObjectName | None = None
        self._saved_ms = 0
        self._saved_mono = 0.0
        self._expires_ms = 0
        self._fenced = False
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> ObjectName | None:
        return self._current

    @property
    def failure(self) -> BaseException | None:
        """The renewal error that ended this session's right to commit, if any."""
        return self._failure

    def acquire(self, renew_in_background: bool = True) -> None:
        """Save the first lock; from then on the lock is renewed every quarter lease."""
        self.renew()
        if renew_in_background:
            self._thread = threading.Thread(target=self._renew_loop, name="lock", daemon=True)
            self._thread.start()

    def renew(self) -> None:
        """Save a lock with a fresh expiry, then remove the previous one."""
        with self._lock:
            created = max(self._now(), self._saved_ms + 1)  # a new name for every lock object
            mono = self._clock.monotonic()
            owner = encode_owner(this_process())
            sealed = self._seal(owner, self.id) if self._seal is not None else b""
            record = LockRecord(self.id, self.purpose, created, created + self._lease_ms, sealed)
            data = encode_lock(record)
            name = object_name(data)
            crashpoint("lock.save")
            self._backend.save(Handle(ObjectKind.LOCK, name.hex), data)
            previous, self._current = self._current, name
            self._saved_ms, self._saved_mono = created, mono
            self._expires_ms = record.expires_ms
            if previous is not None:
                self._remove(previous)

    def _now(self) -> int:
        """This machine's time in ms, but never less than the monotonic clock says has passed
        since the lock was saved: a wall clock set back must not make a lease look fresh."""
        wall = now_ms(self._clock)
        if self._current is None:
            return wall
        passed = int((self._clock.monotonic() - self._saved_mono) * 1000)
        return max(wall, self._saved_ms + passed)

    def check_lease(self) -> None:
        """Raise LeaseExpired unless this session may still commit, by its own clock."""
        if self._failure is not None:
            raise LeaseExpired(
                f"the repository lock could not be renewed ({self._failure}); "
                "nothing was committed, the data stored so far stays for the next run"
            )
        if self._fenced:
            raise LeaseExpired(_FENCED)
        if self._now() >= self._expires_ms:
            raise LeaseExpired(
                "this session's lease ran out (was the machine asleep?); a prune may have "
                "removed data it relied on, so it does not commit; run it again"
            )

    def confirm(self) -> None:
        """check_lease, and make sure this session's lock is still on storage: a prune that
        judged the session ended (by its own clock, which may disagree with ours) removed the
        lock before acting on that judgement. Called just before and just after a commit."""
        with self._lock:
            self.check_lease()
            current = self._current
            if current is None or not self._backend.exists(Handle(ObjectKind.LOCK, current.hex)):
                self._fenced = True
                raise LeaseExpired(_FENCED)

    def release(self) -> None:
        """Stop renewing and remove the lock (a failure here is harmless: the lock expires)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._current is not None:
                self._remove(self._current)
                self._current = None

    def _remove(self, name: ObjectName) -> None:
        crashpoint("lock.remove")
        try:
            self._backend.remove(Handle(ObjectKind.LOCK, name.hex))
        except NotFound:  # not by us: a prune judged this session ended
            self._fenced = True
        except BackendError:  # it expires by itself; prune removes it
            pass

    def _renew_loop(self) -> None:
        interval = self._lease_ms / 4000
        while not self._stop.wait(interval):
            try:
                self.renew()
            except BackendError as exc:  # check_lease refuses the commit once the lease ends
                self._failure = self._failure or exc


def this_process() -> LockOwner:
    return LockOwner(socket.gethostname(), _boot_id(), os.getpid(), _start_ticks(os.getpid()))


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int:
    """The process's start time in clock ticks since boot, 0 if unknown (tells a reused pid
    apart from the process that saved the lock)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat.rpartition(b")")[2].split()
    return int(fields[19]) if len(fields) > 19 else 0


def _process_alive(pid: int, start: int) -> bool:
    if not os.path.exists(f"/proc/{pid}"):
        return False
    return start == 0 or _start_ticks(pid) in (0, start)
