"""The object routes: list, stat, load (with a range), save and remove one tenant's objects.

Every storage call runs in a worker thread (the core is synchronous). The kind comes from a fixed
set and the name must be 64 hex digits (or ``config``), checked before any path is made. A saved
object must hash to its name, so a client cannot plant bytes under a name that promises others.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from cairn.backends.base import Backend, Handle, ObjectInfo, ObjectKind
from cairn.backends.contract import check_handle
from cairn.backends.errors import (
    AlreadyExists,
    BackendError,
    NotFound,
    StorageFull,
)
from cairn.core.clock import epoch_ms
from cairn.crypto.hashing import object_name
from cairn.server.auth import Role
from cairn.server.context import Call
from cairn.server.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NoSuchObject,
    Overloaded,
    ServerError,
    ServerFull,
    TooLarge,
)
from cairn.server.validate import check_upload

BACKUP_MAY_ADD = frozenset(
    {ObjectKind.PACK, ObjectKind.INDEX, ObjectKind.REFLIST, ObjectKind.SNAPSHOT, ObjectKind.LOCK}
)
_RANGE = re.compile(r"^bytes=(\d{1,15})-(\d{1,15})?$")
_KINDS = {kind.value: kind for kind in ObjectKind}
P = ParamSpec("P")
T = TypeVar("T")


def handle_of(call: Call) -> Handle:
    kind = _KINDS.get(call.request.path_params["kind"])
    name = call.request.path_params.get("name", "")
    if kind is None:
        raise NoSuchObject("no such object")
    handle = Handle(kind, name)
    try:
        check_handle(handle)
    except BackendError as exc:
        raise BadRequest(f"invalid object name for kind {kind.value}") from exc
    return handle


def kind_of(call: Call) -> ObjectKind:
    kind = _KINDS.get(call.request.path_params["kind"])
    if kind is None:
        raise NoSuchObject("no such object")
    return kind


async def list_objects(call: Call) -> Response:
    """NDJSON, one ``{"name", "size"}`` per line, then ``{"complete": true}``: a client that
    does not see the last line knows its listing is incomplete."""
    kind = kind_of(call)
    backend = call.backend()
    infos: list[ObjectInfo] = await run_in_threadpool(_list_all, backend, kind)
    call.audit("list", kind.value)

    async def lines() -> AsyncIterator[bytes]:
        batch: list[str] = []
        for info in infos:
            batch.append(json.dumps({"name": info.handle.name, "size": info.size}))
            if len(batch) == 512:
                yield ("\n".join(batch) + "\n").encode()
                batch = []
        batch.append(json.dumps({"complete": True, "count": len(infos)}))
        yield ("\n".join(batch) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _list_all(backend: Backend, kind: ObjectKind) -> list[ObjectInfo]:
    try:
        return list(backend.list(kind))
    except BackendError as exc:
        raise ServerError(f"the server's storage could not list {kind.value}: {exc}") from exc


async def stat_object(call: Call) -> Response:
    handle = handle_of(call)
    info = await run_in_threadpool(_storage, call.backend().stat, handle)
    return Response(headers={"content-length": str(info.size)})


async def load_object(call: Call) -> Response:
    handle = handle_of(call)
    backend = call.backend()
    wanted = call.request.headers.get("range")
    if wanted is None:
        data = await run_in_threadpool(_storage, backend.load, handle)
        call.audit("read", str(handle))
        return Response(data, media_type="application/octet-stream")
    match = _RANGE.match(wanted)
    if match is None:
        raise BadRequest("Range must be bytes=FIRST-LAST or bytes=FIRST-")
    info = await run_in_threadpool(_storage, backend.stat, handle)
    first = int(match[1])
    last = min(int(match[2]), info.size - 1) if match[2] else info.size - 1
    if first > last or first >= info.size:
        return Response(status_code=416, headers={"content-range": f"bytes */{info.size}"})
    data = await run_in_threadpool(_storage, backend.load, handle, first, last - first + 1)
    call.audit("read", f"{handle} {first}-{last}")
    return Response(
        data,
        status_code=206,
        media_type="application/octet-stream",
        headers={"content-range": f"bytes {first}-{last}/{info.size}"},
    )


async def save_object(call: Call) -> Response:
    handle = handle_of(call)
    check_writable(call, handle)
    if not call.services.uploads.acquire(blocking=False):
        raise Overloaded("the server is busy; retry in a moment", retry_after=2)
    try:
        data = await read_body(call, call.services.settings.max_object_bytes)
        return await store(call, handle, data)
    finally:
        call.services.uploads.release()


def check_writable(call: Call, handle: Handle) -> None:
    if call.who.role is Role.BACKUP and handle.kind not in BACKUP_MAY_ADD:
        raise Forbidden(f"a backup token may not write {handle.kind.value}")


def check_removable(call: Call, handle: Handle) -> None:
    """A backup token removes nothing, unless the server lets it remove the locks it saved
    itself (`--backup-releases-locks`: its own session's, at a renewal and at the end; design
    14.3). Another token's lock, even of the same tenant, always stays."""
    if call.who.role is not Role.BACKUP:
        return
    if not call.services.settings.backup_releases_locks:
        raise Forbidden(f"a backup token may not remove {handle.kind.value}")
    if handle.kind is not ObjectKind.LOCK:
        raise Forbidden(f"a backup token may not remove {handle.kind.value}")
    if call.services.lock_owners.owner(call.tenant.name, handle.name) != call.who.token_id:
        raise Forbidden("a backup token may remove only a lock it saved itself")


async def store(call: Call, handle: Handle, data: bytes) -> Response:
    """Check `data` (its hash, and for backup tokens its form) and save it: 201 new, 200 known."""
    if handle.kind is not ObjectKind.CONFIG and object_name(data).hex != handle.name:
        exists = await run_in_threadpool(call.backend().exists, handle)
        if exists:  # other bytes under an existing name: what every backend calls a conflict
            raise Conflict("an object of that name exists with other bytes")
        raise BadRequest("the body does not hash to the object's name")
    if call.who.role is Role.BACKUP:
        now_ms = epoch_ms(call.services.clock)
        await run_in_threadpool(check_upload, call.backend(), handle, data, now_ms)
    created = await run_in_threadpool(_save, call, handle, data)
    call.audit("write", str(handle))
    if created:
        call.services.metrics.bytes_in.inc(len(data))
    return Response(status_code=201 if created else 200)


def _save(call: Call, handle: Handle, data: bytes) -> bool:
    """Save unless the object exists with these bytes; True when it was new. The tenant's
    storage stack charges a new object to the quota (or refuses it) and keeps the chunk table."""
    backend = call.backend()
    try:
        size = backend.stat(handle).size
    except NotFound:
        size = None
    if size is not None:
        if handle.kind is ObjectKind.CONFIG or size != len(data):
            _storage(backend.save, handle, data)  # Conflict unless it holds the same bytes
        return False  # a hashed name with its size promises the same bytes: nothing to write
    _storage(backend.save, handle, data)
    if call.copy is not None:  # a copy follows its source: no retention, no sessions here
        return True
    if handle.kind is ObjectKind.SNAPSHOT:
        call.services.arrivals.record(call.tenant.name, handle.name, len(data), call.who.token_id)
    if handle.kind is ObjectKind.LOCK:
        call.services.lock_owners.record(call.tenant.name, handle.name, call.who.token_id)
    return True


async def remove_object(call: Call) -> Response:
    handle = handle_of(call)
    backend = call.backend()
    owners = call.services.lock_owners

    def remove() -> None:
        check_removable(call, handle)  # a database read: off the event loop
        if call.copy is not None and call.who.role is Role.REPLICATION:
            _storage(move_aside, call, handle)
            return
        _storage(backend.remove, handle)  # the stack refunds the usage and drops chunk rows
        if handle.kind is ObjectKind.LOCK and call.copy is None:
            owners.drop(call.tenant.name, [handle.name])

    await run_in_threadpool(remove)
    call.audit("delete", str(handle))
    return Response(status_code=204)


def move_aside(call: Call, handle: Handle) -> None:
    """A replication token's removal in a copy (design 17.14): a lock goes (a session's, never
    data); anything else moves to the copy's removed layout and stays on the area's quota, so
    no replication token can destroy what a copy holds."""
    if call.copy is None:
        raise ValueError("only a copy's objects are moved aside")
    tenants = call.services.tenants
    if handle.kind is ObjectKind.LOCK:
        call.backend().remove(handle)
        return
    live = tenants.copy_backend(call.tenant, *call.copy)
    removed = tenants.copy_backend(call.tenant, *call.copy, folder="removed")
    data = live.load(handle)
    if not removed.exists(handle):
        removed.save(handle, data)
    server, copy = call.copy
    tenants.moved.record(call.tenant.name, server, copy, handle.kind.value, handle.name, len(data))
    live.remove(handle)  # raw: the bytes are still on the server's disk, on the same quota


async def read_body(call: Call, limit: int) -> bytes:
    """The whole body, which must match its Content-Length and be at most `limit` bytes."""
    declared = call.request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise BadRequest("a Content-Length header is required")
    length = int(declared)
    if length > limit:
        raise TooLarge(f"objects are limited to {limit} bytes; this one has {length}")
    parts: list[bytes] = []
    received = 0
    try:
        async for part in call.request.stream():
            received += len(part)
            if received > length:
                raise BadRequest("the body is longer than its Content-Length")
            parts.append(part)
    except ClientDisconnect as exc:  # nobody hears the answer; it must not count as a failure
        raise BadRequest("the client went away before its body was whole") from exc
    if received != length:
        raise BadRequest(f"the body has {received} bytes, its Content-Length says {length}")
    return b"".join(parts)


def _storage(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call a backend method, turning storage errors into the answers the client expects."""
    try:
        return fn(*args, **kwargs)
    except NotFound as exc:
        raise NoSuchObject("no such object") from exc
    except AlreadyExists as exc:
        raise Conflict("an object of that name exists with other bytes") from exc
    except StorageFull as exc:
        raise ServerFull("the server's storage is full; nothing was written") from exc
    except BackendError as exc:
        raise ServerError(f"the server's storage failed: {exc}") from exc
