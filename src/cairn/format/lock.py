"""Lock objects: one running session and its lease; times readable without keys (design 13.1)."""

from __future__ import annotations

from dataclasses import dataclass

from cairn.format.codec import packb, unpackb
from cairn.format.fields import get_bytes, get_int, get_str, require_map, require_version

LOCK_VERSION = 1
SESSION_SIZE = 16
MAX_TIME_MS = 2**53


@dataclass(frozen=True, slots=True)
class LockRecord:
    """A session's announcement: who (sealed), what for, and until when it may commit."""

    session: bytes
    purpose: str
    created_ms: int
    expires_ms: int
    sealed: bytes


def encode_lock(record: LockRecord) -> bytes:
    return packb(
        {
            "v": LOCK_VERSION,
            "session": record.session,
            "purpose": record.purpose,
            "created": record.created_ms,
            "expires": record.expires_ms,
            "sealed": record.sealed,
        }
    )


def decode_lock(data: bytes) -> LockRecord:
    obj = require_map(unpackb(data), "lock")
    require_version(obj, "lock", LOCK_VERSION)
    return LockRecord(
        session=get_bytes(obj, "session", SESSION_SIZE),
        purpose=get_str(obj, "purpose"),
        created_ms=get_int(obj, "created", 0, MAX_TIME_MS),
        expires_ms=get_int(obj, "expires", 0, MAX_TIME_MS),
        sealed=get_bytes(obj, "sealed"),
    )


@dataclass(frozen=True, slots=True)
class LockOwner:
    """The sealed part of a lock: which process on which machine holds it."""

    host: str
    boot: str
    pid: int
    start: int


def encode_owner(owner: LockOwner) -> bytes:
    return packb({"host": owner.host, "boot": owner.boot, "pid": owner.pid, "start": owner.start})


def decode_owner(data: bytes) -> LockOwner:
    obj = require_map(unpackb(data), "lock owner")
    return LockOwner(
        host=get_str(obj, "host"),
        boot=get_str(obj, "boot"),
        pid=get_int(obj, "pid", 0, 2**31),
        start=get_int(obj, "start"),
    )
