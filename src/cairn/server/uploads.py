"""Resumable uploads of large objects: the part already received survives a broken connection.

``HEAD /v1/t/{tenant}/uploads/{kind}/{name}`` answers ``Upload-Offset``: how many bytes of that
object the server holds (0 when none). ``PATCH`` the same path with ``Upload-Offset`` (where this
part starts) and ``Upload-Length`` (the whole object's size) appends the part; a part that does
not start at the server's offset is 409 with the right offset. When the last byte arrives, the
object is checked and saved exactly as a PUT would (objects.store), and the partial file removed.

Partial files live outside the tenant's layout (``partial/<tenant id>/``), so they are never
listed as objects; the janitor removes those untouched for a day (janitor.remove_stale_parts).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cairn.server.context import Call
from cairn.server.errors import BadRequest, Conflict, Overloaded, TooLarge
from cairn.server.objects import check_writable, handle_of, read_body, store

PART_LIMIT = 16 * 1024 * 1024


def _partial(call: Call) -> Path:
    handle = handle_of(call)
    folder = call.services.settings.data / "partial" / call.tenant.id
    # A copy's parts beside the area's own, so they count on the area's quota together;
    # the copy's segments have no dot (design 17.14), so names cannot collide.
    prefix = "c.{}.{}.".format(*call.copy) if call.copy is not None else ""
    return folder / f"{prefix}{handle.kind.value}.{handle.name}"


async def upload_offset(call: Call) -> Response:
    check_writable(call, handle_of(call))
    path = _partial(call)
    size = path.stat().st_size if path.exists() else 0
    return Response(headers={"upload-offset": str(size)})


async def upload_part(call: Call) -> Response:
    handle = handle_of(call)
    check_writable(call, handle)
    offset, total = _header(call, "upload-offset"), _header(call, "upload-length")
    limit = call.services.settings.max_object_bytes
    if total > limit:
        raise TooLarge(f"objects are limited to {limit} bytes; this one has {total}")
    elsewhere = _held_elsewhere(_partial(call))  # parts of the tenant's other uploads
    call.services.storage.admit(call.tenant, total, elsewhere)
    if not call.services.uploads.acquire(blocking=False):
        raise Overloaded("the server is busy; retry in a moment", retry_after=2)
    try:
        part = await read_body(call, PART_LIMIT)
        path = _partial(call)
        held = await run_in_threadpool(_append, path, offset, total, part)
        if held < total:
            return Response(status_code=204, headers={"upload-offset": str(held)})
        data = await run_in_threadpool(path.read_bytes)
        try:
            return await store(call, handle, data)
        finally:
            path.unlink(missing_ok=True)  # stored, or refused for good: start again from 0
    finally:
        call.services.uploads.release()


def _held_elsewhere(own: Path) -> int:
    """Bytes of the tenant's other unfinished uploads: on the server's disk, so on its quota
    (or partial uploads that are never finished would store without limit)."""
    held = 0
    with contextlib.suppress(FileNotFoundError):
        for path in own.parent.iterdir():
            if path != own:
                with contextlib.suppress(FileNotFoundError):  # finished meanwhile
                    held += path.stat().st_size
    return held


def _append(path: Path, offset: int, total: int, part: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    held = path.stat().st_size if path.exists() else 0
    if offset != held:
        raise Conflict(f"this upload continues at offset {held}", offset=held)
    if held + len(part) > total:
        raise BadRequest("the part goes past Upload-Length")
    with path.open("ab") as out:
        out.write(part)
    return held + len(part)


def _header(call: Call, name: str) -> int:
    value = call.request.headers.get(name, "")
    if not value.isdigit() or len(value) > 15:
        raise BadRequest(f"{name} must be a byte count")
    return int(value)
