"""The OpenAPI 3.1 document of the route table (docs/wire-protocol.md is the prose).

Paths, methods and who may call them come from `routes.ROUTES`, so the document cannot drift from
the server; this module adds what a generator of requests (schemathesis) needs to reach past the
first refusal: the form of each path parameter, the request bodies, and the answers each route
gives. A route without an entry in ANSWERS is documented with a bare ``default`` answer, and the
security tests fail until it has one.
"""

from __future__ import annotations

from typing import Any

from cairn import __version__
from cairn.backends.base import ObjectKind
from cairn.server import jobresults as jr
from cairn.server.layouts import COPY_SEGMENT
from cairn.server.routes import ROUTES, RouteSpec, Scope
from cairn.server.tenants import MAX_QUOTA, TENANT_NAME

OBJECT = "/v1/t/{tenant}/{kind}/{name}"
UPLOAD = "/v1/t/{tenant}/uploads/{kind}/{name}"
CHUNKS = "/v1/t/{tenant}/chunks"

PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "tenant": {"type": "string", "pattern": f"^{TENANT_NAME.pattern}$"},
    "kind": {"type": "string", "enum": [kind.value for kind in ObjectKind]},
    "name": {"type": "string", "pattern": "^([0-9a-f]{64}|config)$"},
    "id": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
    "server": {"type": "string", "pattern": f"^{COPY_SEGMENT.pattern}$"},
    "copy": {"type": "string", "pattern": f"^{COPY_SEGMENT.pattern}$"},
}

_QUOTA = {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_QUOTA}
_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _json_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_SECONDS = {"type": "number", "minimum": 0, "maximum": jr.MAX_TIME_S}
_COUNT_FIELD = {"type": "integer", "minimum": 0, "maximum": jr.MAX_COUNT}
_JOB_REPORT = {
    "job": {"type": "string", "minLength": 1, "maxLength": jr.NAME_LIMIT},
    "host": {"type": "string", "minLength": 1, "maxLength": jr.HOST_LIMIT},
    "started": _SECONDS,
    "ended": _SECONDS,
    "outcome": {"type": "string", "enum": list(jr.OUTCOMES)},
    "snapshot": {"type": ["string", "null"], "pattern": f"^{jr.SNAPSHOT.pattern}$"},
    "files": _COUNT_FIELD,
    "bytes_added": _COUNT_FIELD,
    "error_code": {"type": ["string", "null"], "pattern": f"^{jr.ERROR_CODE.pattern}$"},
    "message": {"type": "string", "maxLength": jr.MESSAGE_LIMIT},
    "schedule": {"type": "string", "maxLength": jr.NAME_LIMIT},
    "next_due": {"type": ["number", "null"], "minimum": 0, "maximum": jr.MAX_TIME_S},
    "period": {"type": ["number", "null"], "minimum": 0.001, "maximum": jr.MAX_TIME_S},
}

REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", OBJECT): {"required": True, "content": _BYTES},
    ("PATCH", UPLOAD): {"required": True, "content": _BYTES},
    ("POST", CHUNKS): {
        "required": True,
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "maxLength": 4096 * 32}
            }
        },
        "description": "chunk IDs, 32 bytes each, concatenated: at most 4,096",
    },
    ("POST", "/v1/admin/tenants"): _json_body(
        {"name": PATH_PARAMETERS["tenant"], "quota": _QUOTA}, ["name"]
    ),
    ("PUT", "/v1/admin/tenants/{tenant}/quota"): _json_body({"quota": _QUOTA}, ["quota"]),
    ("POST", "/v1/t/{tenant}/jobs"): _json_body(
        _JOB_REPORT, ["job", "host", "started", "ended", "outcome"]
    ),
    ("POST", "/v1/admin/tenants/{tenant}/tokens"): _json_body(
        {
            "role": {
                "type": "string",
                "enum": ["backup", "restore", "tenant-admin", "replication"],
            },
            "label": {"type": "string", "maxLength": 200},
            "expires_s": {"type": "integer", "minimum": 1, "maximum": 9_999_999_999},
        },
        ["role"],
    ),
}

_COUNT = {"type": "string", "pattern": "^[0-9]{1,15}$"}
HEADER_PARAMETERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("GET", OBJECT): [
        {
            "name": "Range",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": "^bytes=[0-9]{1,15}-([0-9]{1,15})?$"},
        }
    ],
    ("PATCH", UPLOAD): [
        {"name": "Upload-Offset", "in": "header", "required": True, "schema": _COUNT},
        {"name": "Upload-Length", "in": "header", "required": True, "schema": _COUNT},
    ],
}

ANSWERS: dict[tuple[str, str], dict[int, str]] = {
    ("GET", "/v1/health"): {200: "the server is up"},
    ("GET", "/v1/openapi.json"): {200: "this document"},
    ("GET", "/v1/t/{tenant}/{kind}/"): {200: "NDJSON; the last line says the listing is complete"},
    ("HEAD", OBJECT): {200: "Content-Length is the size", 400: "not an object name"},
    ("GET", OBJECT): {
        200: "the bytes",
        206: "the range asked for",
        400: "not an object name, or a malformed Range",
        416: "the range starts past the end",
    },
    ("PUT", OBJECT): {
        200: "stored already, with these bytes",
        201: "stored",
        400: "a bad name, a body that does not hash to it, a length mismatch, a malformed object",
        409: "the name holds other bytes",
        413: "larger than the server accepts",
        503: "too many uploads at once; Retry-After",
        507: "the tenant's quota, or the server's disk, would be passed",
    },
    ("DELETE", OBJECT): {204: "removed", 400: "not an object name"},
    ("GET", "/v1/t/{tenant}/usage"): {200: "used and quota"},
    ("GET", "/v1/t/{tenant}/status"): {200: "usage, snapshots, retention, damage, job results"},
    ("POST", "/v1/t/{tenant}/jobs"): {
        201: "recorded",
        400: "a field missing, unknown, of the wrong type or out of bounds; too many jobs",
    },
    ("POST", CHUNKS): {
        200: "one 77-byte record per known chunk: ID, pack, kind (1 byte), offset (8), length "
        "(4), little-endian; unknown IDs are left out",
        400: "a body that is not whole 32-byte chunk IDs, or a length mismatch",
        413: "more than 4,096 chunk IDs",
        503: "the tenant's chunk table is being built (after a start); Retry-After",
    },
    ("HEAD", UPLOAD): {200: "Upload-Offset: the bytes held", 400: "not an object name"},
    ("PATCH", UPLOAD): {
        200: "the last part: stored already, with these bytes",
        201: "the last part: stored",
        204: "part held; Upload-Offset says how much",
        400: "a bad name or header, a part past Upload-Length, a malformed object",
        409: "the part does not start where the server stands, or the name holds other bytes",
        413: "larger than the server accepts",
        503: "too many uploads at once; Retry-After",
        507: "the tenant's quota, or the server's disk, would be passed",
    },
    ("GET", "/v1/admin/tenants"): {200: "every tenant"},
    ("POST", "/v1/admin/tenants"): {
        201: "made; the tenant-admin token is shown once",
        400: "not a valid name or quota",
        409: "the tenant exists",
    },
    ("PUT", "/v1/admin/tenants/{tenant}/quota"): {204: "set", 400: "not a valid quota"},
    ("POST", "/v1/admin/tenants/{tenant}/tokens"): {
        201: "issued; the secret is shown once",
        400: "not a valid role or label",
    },
    ("GET", "/v1/admin/tokens"): {200: "every token, no secrets"},
    ("DELETE", "/v1/admin/tokens/{id}"): {204: "revoked"},
    ("GET", "/v1/admin/audit"): {200: "the latest audit entries"},
    ("GET", "/v1/metrics"): {200: "Prometheus text format"},
}
"""What each route answers when the caller may call it (refusals of the rule come on top)."""

REFUSALS = {
    401: "no token, or an unknown, wrong or revoked one",
    403: "the token's role may not do this",
    404: "no such object or tenant, or another tenant's (one answer for all)",
    429: "too many failed logins from this address; Retry-After",
}

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in ROUTES:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Cairn server", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR},
        },
    }


def _described(spec: RouteSpec) -> tuple[str, str]:
    """The key of a route's description: a copy's routes are described as the tenant's own
    (design 17.14: the same requests on another repository of the tenant's area)."""
    return (spec.method, spec.path.replace("/c/{server}/{copy}", ""))


def _operation(spec: RouteSpec) -> dict[str, Any]:
    key = _described(spec)
    parameters = [
        {"name": part[1:-1], "in": "path", "required": True, "schema": PATH_PARAMETERS[part[1:-1]]}
        for part in spec.path.split("/")
        if part.startswith("{")
    ]
    operation: dict[str, Any] = {
        "summary": spec.summary,
        "parameters": parameters + HEADER_PARAMETERS.get(key, []),
        "responses": _responses(spec),
    }
    if key in REQUEST_BODIES:
        operation["requestBody"] = REQUEST_BODIES[key]
    if spec.rule.scope is not Scope.PUBLIC:
        operation["security"] = [{"token": []}]
    return operation


def _responses(spec: RouteSpec) -> dict[str, Any]:
    answers = dict(ANSWERS.get(_described(spec), {}))
    if spec.rule.scope is not Scope.PUBLIC:
        answers |= REFUSALS
    if "{" in spec.path:
        answers.setdefault(404, REFUSALS[404])
    responses: dict[str, Any] = {
        str(status): _response(description, status >= 400 and spec.method != "HEAD")
        for status, description in sorted(answers.items())
    }
    if _described(spec) not in ANSWERS:
        responses["default"] = {"description": "not described yet"}
    return responses


def _response(description: str, error: bool) -> dict[str, Any]:
    if not error:
        return {"description": description}
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}
