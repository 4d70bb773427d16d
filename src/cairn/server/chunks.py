"""The chunk query: which of these chunks does the tenant hold, and where (design 14.11).

``POST /v1/t/{tenant}/chunks`` with a body of up to 4,096 chunk IDs, concatenated (32 bytes
each), answers ``application/octet-stream``: one 77-byte record per ID the tenant's indexes list
in a stored pack (chunk ID 32, pack name 32, kind 1, offset 8 and length 4, little-endian);
unknown IDs are left out. Any role that may read the tenant may ask; the answer comes from that
tenant's chunk table only (chunktable.py). While that table is first built after a start (a large
tenant after an upgrade), 503 with Retry-After: the client waits, as for any busy server.
"""

from __future__ import annotations

import struct

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cairn.backends.errors import BackendError
from cairn.core.ids import ID_SIZE
from cairn.server.chunktable import TableBuilding
from cairn.server.context import Call
from cairn.server.errors import BadRequest, Overloaded, ServerError, TooLarge
from cairn.server.objects import read_body

MAX_IDS = 4096
RECORD = struct.Struct(f"<{ID_SIZE}s{ID_SIZE}sBQI")
"""One answer: chunk ID, pack name, kind, offset, length."""
BUILDING_RETRY_S = 5
"""Retry-After while a tenant's chunk table is built (503)."""


async def query_chunks(call: Call) -> Response:
    declared = call.request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_IDS * ID_SIZE:
        raise TooLarge(
            f"a chunk query holds at most {MAX_IDS} chunk IDs ({MAX_IDS * ID_SIZE} bytes); "
            f"this one has {declared} bytes"
        )
    body = await read_body(call, MAX_IDS * ID_SIZE)
    if len(body) % ID_SIZE:
        raise BadRequest(
            f"the body must be whole {ID_SIZE}-byte chunk IDs; it has {len(body)} bytes"
        )
    ids = [body[i : i + ID_SIZE] for i in range(0, len(body), ID_SIZE)]
    table = call.services.chunks
    try:
        found = await run_in_threadpool(table.lookup, call.tenant.name, call.backend(), ids)
    except TableBuilding as exc:  # the client waits and asks again (Retry-After)
        raise Overloaded(f"{exc}; retry in a moment", retry_after=BUILDING_RETRY_S) from exc
    except BackendError as exc:  # the listing or an index object could not be read
        raise ServerError(f"the server's storage failed: {exc}") from exc
    call.audit("query", f"chunks: {len(ids)} asked, {len(found)} known")
    return Response(
        b"".join(RECORD.pack(*entry) for entry in found), media_type="application/octet-stream"
    )
