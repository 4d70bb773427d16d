"""What the server checks in an object a backup token uploads, beyond its hash.

A backup token is the credential ransomware on a client holds, so its uploads are held to what a
real Cairn client writes, in the order it writes it (design section 5): a pack whose trailer
decodes; an index, reflist or lock that decodes, an index naming only packs already stored; a
snapshot of this tenant's repository whose reflists are already stored. Garbage is refused with
400 instead of waiting on storage to block garbage collection or confuse `check`. What the server
cannot check (sealed contents) a client's `check` still does. Tenant-admin tokens are trusted
with their whole tenant and are not held to this.
"""

from __future__ import annotations

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.contract import CONFIG_NAME
from cairn.backends.errors import BackendError
from cairn.core.errors import CairnError
from cairn.format.config import decode_config
from cairn.format.index import decode_index
from cairn.format.lock import LockRecord, decode_lock
from cairn.format.pack import parse_pack
from cairn.format.reflist import decode_reflist
from cairn.format.snapshot import decode_snapshot
from cairn.repository.locks import EXCLUSIVE_PURPOSES, LEASE_MS
from cairn.server.errors import BadRequest, Forbidden, ServerError

LOCK_REACH_MS = LEASE_MS + 24 * 3600 * 1000
"""How far past the server's now a backup's lock may expire: a lease, and a day for the client's
clock to be ahead of the server's."""


def check_upload(backend: Backend, handle: Handle, data: bytes, now_ms: int) -> None:
    """Raise BadRequest unless `data` is a well-formed object of its kind, in write order;
    `now_ms` is the server's time (how far a lock may reach)."""
    try:
        _check(backend, handle, data, now_ms)
    except BackendError as exc:
        raise BadRequest(f"cannot check {handle.kind.value} against storage: {exc}") from exc
    except CairnError as exc:
        if isinstance(exc, ServerError):  # already an answer (400, or 403 for a role)
            raise
        raise BadRequest(f"not a valid {handle.kind.value} object: {exc}") from exc


def _check(backend: Backend, handle: Handle, data: bytes, now_ms: int) -> None:
    kind = handle.kind
    if kind is ObjectKind.PACK:
        parse_pack(data)
    elif kind is ObjectKind.INDEX:
        for pack in decode_index(data).packs:
            _require(backend, Handle(ObjectKind.PACK, pack.hex), "a pack it names")
    elif kind is ObjectKind.REFLIST:
        decode_reflist(data)
    elif kind is ObjectKind.LOCK:
        _check_lock(decode_lock(data), now_ms)
    elif kind is ObjectKind.SNAPSHOT:
        record = decode_snapshot(data)
        config = decode_config(backend.load(Handle(ObjectKind.CONFIG, CONFIG_NAME)))
        if record.repo_id != config.repo_id:
            raise BadRequest("the snapshot belongs to another repository")
        for reflist in record.reflists:
            _require(backend, Handle(ObjectKind.REFLIST, reflist.hex), "its reflist")


def _check_lock(lock: LockRecord, now_ms: int) -> None:
    """A backup's lock: never one that stops prune and repair (a backup token cannot run them),
    and never one that lasts past LOCK_REACH_MS on the server's clock. Else one request from a
    stolen backup token would stop garbage collection, and so free space, for good."""
    if lock.purpose in EXCLUSIVE_PURPOSES:  # a role refusal: the client says so (CAIRN-E062)
        raise Forbidden(f"a backup token may not {lock.purpose}")
    if lock.expires_ms > now_ms + LOCK_REACH_MS:
        raise BadRequest("the lock lasts too long: renew a lease instead of taking a long one")


def _require(backend: Backend, handle: Handle, what: str) -> None:
    if not backend.exists(handle):
        raise BadRequest(f"{what} ({handle}) is not stored: objects must arrive in write order")
