"""Health, the protocol description, a tenant's usage, and the server-admin API (whose changes
are made, and audited, by server/adminops.py)."""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from cairn import __version__
from cairn.core.clock import epoch_ms
from cairn.server.auth import Role
from cairn.server.context import Call
from cairn.server.errors import BadRequest

JSON_LIMIT = 64 * 1024


async def health(call: Call) -> Response:
    """503 while the audit log cannot be written: the server refuses every operation then."""
    failure = call.services.audit.failure
    if failure is not None:
        failing = {"status": "failing", "version": __version__, "audit": "cannot be written"}
        return JSONResponse(failing, status_code=503)
    body: dict[str, object] = {"status": "ok", "version": __version__}
    holder = call.services.standby
    if holder is not None:  # one of a pair: its role and epoch (design 19.6)
        body["standby"] = holder.status()
    return JSONResponse(body)


async def openapi(call: Call) -> Response:
    from_table = call.request.app.state.openapi  # built once from the route table by app.py
    return JSONResponse(from_table)


async def tenant_usage(call: Call) -> Response:
    tenant = call.services.tenants.get(call.tenant.name)
    return JSONResponse({"tenant": tenant.name, "used": tenant.used, "quota": tenant.quota})


async def list_tenants(call: Call) -> Response:
    tenants = await run_in_threadpool(call.services.tenants.all)
    return JSONResponse([{"name": t.name, "used": t.used, "quota": t.quota} for t in tenants])


async def create_tenant(call: Call) -> Response:
    body = await read_json(call)
    name = body.get("name")
    quota = body.get("quota")
    if not isinstance(name, str) or not (quota is None or isinstance(quota, int)):
        raise BadRequest('send {"name": "...", "quota": bytes or null}')
    admin = call.services.admin
    tenant, token = await run_in_threadpool(admin.create_tenant, call.actor, name, quota)
    return JSONResponse(
        {"name": tenant.name, "quota": tenant.quota, "admin_token": str(token)}, status_code=201
    )


async def set_quota(call: Call) -> Response:
    body = await read_json(call)
    quota = body.get("quota")
    if not (quota is None or (isinstance(quota, int) and quota >= 0)):
        raise BadRequest('send {"quota": bytes or null}')
    name = call.request.path_params["tenant"]
    await run_in_threadpool(call.services.admin.set_quota, call.actor, name, quota)
    return Response(status_code=204)


async def create_token(call: Call) -> Response:
    body = await read_json(call)
    try:
        role = Role(body.get("role"))
    except ValueError as exc:
        raise BadRequest("role must be backup, restore, tenant-admin or replication") from exc
    if role is Role.SERVER_ADMIN:
        raise BadRequest("server-admin tokens are made with `cairn server token add` only")
    label = body.get("label", "")
    if not isinstance(label, str) or len(label) > 200 or not label.isprintable():
        raise BadRequest("label must be printable text of at most 200 characters")
    expires_s = body.get("expires_s")
    if expires_s is not None and (
        not isinstance(expires_s, int) or isinstance(expires_s, bool) or not 0 < expires_s < 10**10
    ):
        raise BadRequest("expires_s must be a positive whole number of seconds")
    expires_ms = None if expires_s is None else epoch_ms(call.services.clock) + expires_s * 1000
    tenant = call.request.path_params["tenant"]
    admin = call.services.admin
    token = await run_in_threadpool(admin.issue_token, call.actor, role, tenant, label, expires_ms)
    return JSONResponse(
        {
            "id": token.id,
            "role": role.value,
            "tenant": tenant,
            "token": str(token),
            "expires_ms": expires_ms,
        },
        status_code=201,
    )


async def list_tokens(call: Call) -> Response:
    return JSONResponse(await run_in_threadpool(call.services.tokens.list))


async def revoke_token(call: Call) -> Response:
    token_id = call.request.path_params["id"]
    await run_in_threadpool(call.services.admin.revoke_token, call.actor, token_id)
    return Response(status_code=204)


async def audit_entries(call: Call) -> Response:
    return JSONResponse(await run_in_threadpool(call.services.audit.entries, 200))


async def read_json(call: Call) -> dict[str, Any]:
    raw = await _small_body(call)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: a nesting bomb like [[[[...
        raise BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


async def _small_body(call: Call) -> bytes:
    """The body, refused as soon as it passes JSON_LIMIT (never read whole into memory first)."""
    parts: list[bytes] = []
    size = 0
    try:
        async for part in call.request.stream():
            size += len(part)
            if size > JSON_LIMIT:
                raise BadRequest("the JSON body is too large")
            parts.append(part)
    except ClientDisconnect as exc:
        raise BadRequest("the client went away before its request was whole") from exc
    return b"".join(parts)


async def metrics(call: Call) -> Response:
    body = await run_in_threadpool(call.services.metrics.exposition)
    return Response(body, media_type="text/plain; version=0.0.4")


async def tenant_status(call: Call) -> Response:
    def gather() -> dict[str, Any]:
        services = call.services
        now_ms = epoch_ms(services.clock)
        tenant = services.tenants.get(call.tenant.name)
        policy = services.tenants.retention(tenant.name)
        arrivals = services.arrivals.of(tenant.name)
        return {
            "tenant": tenant.name,
            "used": tenant.used,
            "quota": tenant.quota,
            "snapshots": len(arrivals),
            "last_arrival_ms": max((a.received_ms for a in arrivals.values()), default=None),
            "retention": policy.describe() if policy is not None else None,
            "damage": services.janitor.damage(tenant.name),
            "jobs": [job.as_json(now_ms) for job in services.jobs.latest(tenant.name)],
        }

    return JSONResponse(await run_in_threadpool(gather))
