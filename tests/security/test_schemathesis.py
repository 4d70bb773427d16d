"""schemathesis against the server's own OpenAPI document (RELIABILITY S4).

Every operation of ``/v1/openapi.json`` gets requests schemathesis generates from the document:
valid ones (for the tenant the token belongs to, with names that exist or that hash to the body,
so they reach past the first refusal) and invalid ones (every part of the request broken on
purpose, the token included), with a valid token of the right kind: tenant-admin for tenant
routes, server-admin for the admin API. Figures: 0 server errors (5xx), and every status answered
is one the document declares for that operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from cairn.server.auth import Role
from cairn.server.openapi import openapi_document
from cairn.server.routes import ROUTES, Scope
from tests.support.securitykit import Site, hex_name, make_site

CASES = [
    pytest.param(s.method, s.path, mode, id=f"{s.method} {s.path} {label}")
    for s in ROUTES
    for mode, label in ((GenerationMode.POSITIVE, "valid"), (GenerationMode.NEGATIVE, "invalid"))
    if mode is GenerationMode.POSITIVE or "{" in s.path or s.rule.scope is not Scope.PUBLIC
]  # a public route without parameters has nothing to get wrong


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    made = make_site(tmp_path_factory.mktemp("schemathesis"))
    with made.client:
        yield made


@pytest.fixture(scope="module")
def api(site: Site) -> Any:
    return schemathesis.openapi.from_asgi("/v1/openapi.json", site.client.app)


def test_every_operation_declares_its_answers() -> None:
    """A route added without its answers (openapi.ANSWERS) fails here, not in production."""
    document = openapi_document()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "default" not in operation["responses"], (method, path)
            for part in path.split("/"):
                if part.startswith("{"):
                    names = [p["name"] for p in operation["parameters"] if p["in"] == "path"]
                    assert part[1:-1] in names


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_server_errors(site: Site, api: Any, method: str, path: str, mode: Any) -> None:
    admin_api = path.startswith(("/v1/admin", "/v1/metrics"))
    role = (None, Role.SERVER_ADMIN) if admin_api else ("acme", Role.TENANT_ADMIN)
    headers = {"authorization": f"Bearer {site.token(*role)}"}
    valid = mode is GenerationMode.POSITIVE
    fixed = {"tenant": "acme"} if valid and "{tenant}" in path else None
    strategy = api[path][method].as_strategy(mode, path_parameters=fixed)
    statuses: list[int] = []

    @settings(
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        if valid:
            _aim(site, case)
        response = case.call(headers=headers)
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
        site.restore_objects()  # a permitted DELETE must not starve the next case

    check()
    print(f"{method} {path} {mode.value}: {len(statuses)} cases, statuses {sorted(set(statuses))}")
    assert statuses and max(statuses) < 500


def _aim(site: Site, case: Any) -> None:
    """Point a valid object request at something real: an existing object of its kind, or (for
    a PUT) the name its body hashes to, so it reaches the storage code."""
    params = case.path_parameters or {}
    kind, name = params.get("kind"), params.get("name")
    if kind is None or name is None or kind == "config":
        return
    if case.method == "PUT" and isinstance(case.body, bytes | str):
        body = case.body.encode() if isinstance(case.body, str) else case.body
        params["name"] = hex_name(body)
    elif name[0] in "01234567":  # about half of them: a name that exists
        params["name"] = site.objects[("acme", kind)][0]
