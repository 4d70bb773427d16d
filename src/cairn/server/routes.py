"""The one route table. Every route names who may call it; `guard` enforces that before the
handler runs, and the authorization tests are generated from this table (a route without a rule
cannot be declared).

Tenant routes take the tenant from the path and answer 404 — the same answer as for a missing
object — when the token belongs to another tenant or the tenant does not exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cairn.failover.errors import NotPrimaryNow, StaleEpochWrite
from cairn.server import admin, chunks, jobs, objects, uploads
from cairn.server.auth import Principal, Role
from cairn.server.context import Call, Services
from cairn.server.errors import (
    BadRequest,
    Forbidden,
    NoSuchObject,
    NotPrimary,
    ServerError,
    StaleEpoch,
    TokenExpired,
    TokenRevoked,
    Unauthenticated,
)
from cairn.server.layouts import COPY_SEGMENT
from cairn.server.metrics import log_request

Handler = Callable[[Call], Awaitable[Response]]


class Scope(Enum):
    PUBLIC = "public"
    """No token: health and the protocol description."""
    TENANT = "tenant"
    """A token of the tenant named in the path, with one of the roles."""
    SERVER = "server"
    """A server-admin token."""


@dataclass(frozen=True, slots=True)
class Rule:
    scope: Scope
    roles: frozenset[Role] = frozenset()


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    rule: Rule
    summary: str


READERS = frozenset({Role.BACKUP, Role.RESTORE, Role.TENANT_ADMIN})
WRITERS = frozenset({Role.BACKUP, Role.TENANT_ADMIN})
ADMINS = frozenset({Role.TENANT_ADMIN})
AREA_READERS = READERS | {Role.REPLICATION}
"""Who may read a tenant's own repository: a replication token reads the root of its area (the
target check lists it, design 17.14), and writes only in copies."""
COPY_READERS = frozenset({Role.RESTORE, Role.TENANT_ADMIN, Role.REPLICATION})
COPY_WRITERS = frozenset({Role.TENANT_ADMIN, Role.REPLICATION})
PUBLIC = Rule(Scope.PUBLIC)
SERVER = Rule(Scope.SERVER, frozenset({Role.SERVER_ADMIN}))
OBJECT = "/v1/t/{tenant}/{kind}/{name}"
COPY = "/v1/t/{tenant}/c/{server}/{copy}"
"""A copy another server replicates into the tenant, its area (design 17.14)."""

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/v1/health", admin.health, PUBLIC, "is the server up"),
    RouteSpec("GET", "/v1/openapi.json", admin.openapi, PUBLIC, "this protocol as OpenAPI"),
    RouteSpec(
        "GET",
        "/v1/t/{tenant}/{kind}/",
        objects.list_objects,
        Rule(Scope.TENANT, AREA_READERS),
        "list the objects of one kind (NDJSON, last line says complete)",
    ),
    RouteSpec("HEAD", OBJECT, objects.stat_object, Rule(Scope.TENANT, AREA_READERS), "object size"),
    RouteSpec(
        "GET",
        OBJECT,
        objects.load_object,
        Rule(Scope.TENANT, AREA_READERS),
        "object bytes, or a range of them",
    ),
    RouteSpec(
        "PUT",
        OBJECT,
        objects.save_object,
        Rule(Scope.TENANT, WRITERS),
        "store an object (it must hash to its name); never overwrites",
    ),
    RouteSpec(
        "DELETE",
        OBJECT,
        objects.remove_object,
        Rule(Scope.TENANT, WRITERS),
        "remove an object (a backup token: only a lock it saved)",
    ),
    RouteSpec(
        "GET",
        "/v1/t/{tenant}/usage",
        admin.tenant_usage,
        Rule(Scope.TENANT, AREA_READERS),
        "the tenant's usage and quota",
    ),
    RouteSpec(
        "POST",
        "/v1/t/{tenant}/chunks",
        chunks.query_chunks,
        Rule(Scope.TENANT, READERS),
        "where the tenant's indexes hold these chunks (up to 4,096 IDs)",
    ),
    RouteSpec(
        "HEAD",
        "/v1/t/{tenant}/uploads/{kind}/{name}",
        uploads.upload_offset,
        Rule(Scope.TENANT, WRITERS),
        "how much of a resumable upload the server holds",
    ),
    RouteSpec(
        "PATCH",
        "/v1/t/{tenant}/uploads/{kind}/{name}",
        uploads.upload_part,
        Rule(Scope.TENANT, WRITERS),
        "append a part to a resumable upload; the last one stores it",
    ),
    RouteSpec(
        "GET",
        COPY + "/{kind}/",
        objects.list_objects,
        Rule(Scope.TENANT, COPY_READERS),
        "list the objects of one kind in a copy (design 17.14)",
    ),
    RouteSpec(
        "HEAD",
        COPY + "/uploads/{kind}/{name}",
        uploads.upload_offset,
        Rule(Scope.TENANT, COPY_WRITERS),
        "how much of a resumable upload into a copy the server holds",
    ),
    RouteSpec(
        "PATCH",
        COPY + "/uploads/{kind}/{name}",
        uploads.upload_part,
        Rule(Scope.TENANT, COPY_WRITERS),
        "append a part to a resumable upload into a copy",
    ),
    RouteSpec(
        "HEAD",
        COPY + "/{kind}/{name}",
        objects.stat_object,
        Rule(Scope.TENANT, COPY_READERS),
        "object size in a copy",
    ),
    RouteSpec(
        "GET",
        COPY + "/{kind}/{name}",
        objects.load_object,
        Rule(Scope.TENANT, COPY_READERS),
        "object bytes in a copy, or a range of them",
    ),
    RouteSpec(
        "PUT",
        COPY + "/{kind}/{name}",
        objects.save_object,
        Rule(Scope.TENANT, COPY_WRITERS),
        "store an object in a copy (it must hash to its name); never overwrites",
    ),
    RouteSpec(
        "DELETE",
        COPY + "/{kind}/{name}",
        objects.remove_object,
        Rule(Scope.TENANT, COPY_WRITERS),
        "remove an object of a copy (a replication token's removal moves it aside)",
    ),
    RouteSpec("GET", "/v1/admin/tenants", admin.list_tenants, SERVER, "every tenant, with usage"),
    RouteSpec("POST", "/v1/admin/tenants", admin.create_tenant, SERVER, "create a tenant"),
    RouteSpec("PUT", "/v1/admin/tenants/{tenant}/quota", admin.set_quota, SERVER, "set a quota"),
    RouteSpec(
        "POST",
        "/v1/admin/tenants/{tenant}/tokens",
        admin.create_token,
        SERVER,
        "issue a token (shown once)",
    ),
    RouteSpec("GET", "/v1/admin/tokens", admin.list_tokens, SERVER, "every token (no secrets)"),
    RouteSpec("DELETE", "/v1/admin/tokens/{id}", admin.revoke_token, SERVER, "revoke a token"),
    RouteSpec("GET", "/v1/admin/audit", admin.audit_entries, SERVER, "the latest audit entries"),
    RouteSpec("GET", "/v1/metrics", admin.metrics, SERVER, "Prometheus metrics"),
    RouteSpec(
        "GET",
        "/v1/t/{tenant}/status",
        admin.tenant_status,
        Rule(Scope.TENANT, READERS),
        "usage, quota, snapshots, retention, damage found by scrubs, job results",
    ),
    RouteSpec(
        "POST",
        "/v1/t/{tenant}/jobs",
        jobs.report_job,
        Rule(Scope.TENANT, READERS),  # every role: a backup token is what an agent holds
        "report one run's result (agents)",
    ),
)


def guard(spec: RouteSpec, services: Services) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for `spec`: authenticate, authorise, resolve, call, answer."""

    async def endpoint(request: Request) -> Response:
        started = services.clock.monotonic()
        address = request.client.host if request.client is not None else "-"
        who = "-"
        head = request.method == "HEAD"
        try:
            if spec.rule.scope is not Scope.PUBLIC and services.audit.failure is not None:
                await _write_audit(services)  # still failing: refuse what could not be recorded
            call = _authorised_call(spec, request, services, address)
            who = call.principal.token_id if call.principal is not None else "-"
            if writes(spec):
                fence(services, request)
            response = await spec.handler(call)
            if writes(spec) and response.status_code < 400:
                fence(services, request)  # the deadline passed meanwhile: not answered as done
        except ServerError as exc:
            if isinstance(exc, Unauthenticated | Forbidden | NoSuchObject | StaleEpoch):
                services.audit.append(who, None, spec.method, request.url.path, exc.code, address)
            response = error_response(exc, head=head)
        if spec.rule.scope is not Scope.PUBLIC and not services.audit.written():
            try:
                await _write_audit(services)
            except ServerError as exc:  # done, but not recorded: not answered as done
                response = error_response(exc, head=head)
        elapsed = services.clock.monotonic() - started
        services.metrics.observe(spec.path, spec.method, response.status_code, elapsed)
        log_request(
            spec.method, spec.path, request.url.path, response.status_code, elapsed, who, address
        )
        return response

    return endpoint


READ_ONLY_POSTS = frozenset({"/v1/t/{tenant}/chunks"})
"""POST routes that only read (the chunk query): a standby answers them."""
EPOCH_HEADER = "cairn-epoch"


def writes(spec: RouteSpec) -> bool:
    """Whether a route changes anything: these are fenced on a server of a pair (design 19.4)."""
    return spec.method in ("PUT", "PATCH", "DELETE", "POST") and spec.path not in READ_ONLY_POSTS


def fence(services: Services, request: Request) -> None:
    """Refuse a write unless this server is the primary now, under the epoch the request carries
    (`Cairn-Epoch`, when it carries one): NotPrimary (503, retry) or StaleEpoch (409)."""
    holder = services.standby
    if holder is None:
        return
    sent = request.headers.get(EPOCH_HEADER)
    try:
        epoch = None if sent is None else int(sent)
    except ValueError:
        raise BadRequest(f"Cairn-Epoch: {sent!r} is not a whole number") from None
    try:
        holder.check_write(epoch)
    except StaleEpochWrite as exc:
        raise StaleEpoch(str(exc), epoch=holder.epoch) from None
    except NotPrimaryNow as exc:
        retry = max(1, round(holder.settings.ttl_s / 3))
        raise NotPrimary(str(exc), epoch=holder.epoch, retry_after=retry) from None


async def _write_audit(services: Services) -> None:
    """Write every pending audit entry before answering (server/audit.py); why not becomes the
    answer: 507 for a full disk, 500 for anything else."""
    try:
        await run_in_threadpool(services.audit.write_through)
    except ServerError:
        raise
    except Exception as exc:
        raise ServerError("the server cannot write its audit log; see its log") from exc


def _authorised_call(spec: RouteSpec, request: Request, services: Services, address: str) -> Call:
    if spec.rule.scope is Scope.PUBLIC:
        return Call(request, services, None, None, address)
    principal = _authenticate(request, services, address)
    if principal.role not in spec.rule.roles:
        if spec.rule.scope is Scope.TENANT and principal.tenant != request.path_params["tenant"]:
            raise NoSuchObject("no such object")  # another tenant's path: as if it did not exist
        raise Forbidden(_role_refusal(principal.role, spec))
    if spec.rule.scope is Scope.SERVER:
        return Call(request, services, principal, None, address)
    name = request.path_params["tenant"]
    if principal.tenant != name:
        raise NoSuchObject("no such object")
    tenant = services.tenants.get(name)
    copy = _copy_of(request)
    if copy is not None and principal.role is Role.REPLICATION:
        if writes(spec):
            fence(services, request)  # before the copy is bound or made: a standby makes none
        services.tenants.senders.claim(tenant.name, copy[0], principal.token_id)
        services.tenants.make_copy(tenant, *copy)  # its first request makes it (design 17.14)
    return Call(request, services, principal, tenant, address, copy)


def _copy_of(request: Request) -> tuple[str, str] | None:
    """The copy a request on `COPY` routes names (design 17.14). Its segments become folder
    names, so they are checked first; one that fails is 404, as a path that names nothing."""
    server, copy = request.path_params.get("server"), request.path_params.get("copy")
    if server is None or copy is None:
        return None
    if not (COPY_SEGMENT.fullmatch(server) and COPY_SEGMENT.fullmatch(copy)):
        raise NoSuchObject("no such object")
    return (server, copy)


def _role_refusal(role: Role, spec: RouteSpec) -> str:
    """What a 403 for a role says: the role, the request, and the roles that may make it (not
    the route's summary, which describes what the route does with a request it accepts)."""
    allowed = " or ".join(sorted(r.value for r in spec.rule.roles))
    verb = _VERBS.get(spec.method, "this request")
    return (
        f"the token's role ({role.value}) does not allow {verb} ({spec.method} {spec.path}): "
        f"that needs a {allowed} token"
    )


_VERBS = {
    "GET": "reading",
    "HEAD": "reading",
    "PUT": "writing",
    "POST": "writing",
    "DELETE": "removing",
}


def _authenticate(request: Request, services: Services, address: str) -> Principal:
    services.throttle.check(address)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authentication failed: send Authorization: Bearer <token>")
        return services.tokens.verify(token.strip())
    except (TokenExpired, TokenRevoked):
        raise  # a known token in the wrong state is its holder's problem, not a guess (14.3)
    except Unauthenticated:
        services.throttle.failed(address)
        raise


def error_response(exc: ServerError, head: bool = False) -> Response:
    headers = {}
    if "retry_after" in exc.details:
        headers["retry-after"] = str(exc.details["retry_after"])
    if exc.status == 401:
        headers["www-authenticate"] = 'Bearer realm="cairn"'
    if head:
        return Response(status_code=exc.status, headers={**headers, "x-cairn-code": exc.code})
    return JSONResponse({"error": exc.body()}, status_code=exc.status, headers=headers)
