"""Locks and leases: renewed, released, recovered without a human; a stale session can't commit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from cairn.backends.errors import TransientBackendError
from cairn.backends.memory import MemoryBackend
from cairn.core.clock import FrozenClock
from cairn.format.lock import LockOwner, encode_owner
from cairn.repository.locks import (
    LEASE_MS,
    SKEW_MS,
    LeaseExpired,
    Session,
    has_ended,
    now_ms,
    read_locks,
    this_process,
)


def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 24, 12, 0, tzinfo=UTC))


def identity(plaintext: bytes, _session: bytes) -> bytes:
    return plaintext


def test_a_session_saves_renews_and_removes_its_lock() -> None:
    backend, c = MemoryBackend(), clock()
    session = Session(backend, c, "backup")
    session.acquire(renew_in_background=False)
    [lock] = read_locks(backend)
    assert lock.record.session == session.id
    assert lock.record.expires_ms == now_ms(c) + LEASE_MS
    c.advance(60)
    session.renew()
    [renewed] = read_locks(backend)
    assert renewed.name != lock.name, "a renewal is a new object; the old one is gone"
    assert renewed.record.expires_ms == now_ms(c) + LEASE_MS
    session.release()
    assert read_locks(backend) == []


def test_a_session_past_its_lease_cannot_commit() -> None:
    backend, c = MemoryBackend(), clock()
    session = Session(backend, c, "backup")
    session.acquire(renew_in_background=False)
    session.check_lease()
    c.advance(LEASE_MS / 1000 + 1)  # the laptop slept
    with pytest.raises(LeaseExpired, match="lease ran out"):
        session.check_lease()


def test_an_expired_lock_ends_after_the_skew_margin() -> None:
    backend, c = MemoryBackend(), clock()
    Session(backend, c, "backup").acquire(renew_in_background=False)
    [lock] = read_locks(backend)
    c.advance((LEASE_MS + SKEW_MS) / 1000 - 1)
    assert not has_ended(lock.record, now_ms(c))
    c.advance(2)
    assert has_ended(lock.record, now_ms(c))


def test_a_killed_process_lock_ends_at_once_for_a_reader_on_the_same_machine() -> None:
    backend, c = MemoryBackend(), clock()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    here = this_process()
    dead = LockOwner(here.host, here.boot, child.pid, 12345)
    session = Session(backend, c, "backup", seal=lambda _p, _s: encode_owner(dead))
    session.acquire(renew_in_background=False)
    [lock] = read_locks(backend)
    assert has_ended(lock.record, now_ms(c), opener=identity)
    assert not has_ended(lock.record, now_ms(c)), "a keyless reader waits for the lease"


def test_a_live_process_lock_has_not_ended() -> None:
    backend, c = MemoryBackend(), clock()
    Session(backend, c, "backup", seal=identity).acquire(renew_in_background=False)
    [lock] = read_locks(backend)
    assert not has_ended(lock.record, now_ms(c), opener=identity)


def test_a_lock_of_another_machine_waits_for_its_lease() -> None:
    backend, c = MemoryBackend(), clock()
    other = LockOwner("elsewhere", "boot", os.getpid(), 1)
    Session(backend, c, "backup", seal=lambda _p, _s: encode_owner(other)).acquire(
        renew_in_background=False
    )
    [lock] = read_locks(backend)
    assert not has_ended(lock.record, now_ms(c), opener=identity)


def test_a_failed_renewal_stops_the_commit() -> None:
    class Failing(MemoryBackend):
        fail = False

        def save(self, handle, data):
            if self.fail:
                raise TransientBackendError("down")
            super().save(handle, data)

    backend, c = Failing(), clock()
    session = Session(backend, c, "backup", lease_ms=40)
    session.acquire()  # renews every 10 ms in the background
    backend.fail = True
    deadline = time.monotonic() + 10
    while session.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(LeaseExpired, match="could not be renewed"):
        session.check_lease()
    session.release()
