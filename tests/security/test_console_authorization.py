"""The authorization matrix for the console's routes (RELIABILITY S5, design 18.3), generated
from `cairn.web.console.CONSOLE_ROUTES` as test_authorization.py is from the server's table.

The rules are pinned in EXPECTED_RULES: a console route added without an entry here fails the
first test. Every route is then called with every kind of credential: no cookie, a forged
session ID, an anonymous (sign-in form) session, a session of each role, and the session of a
user removed since. A signed-in route sends everyone without a signed-in session to the sign-in
page; a POST without a session's CSRF token is refused (403); nothing else is refused.
"""

from __future__ import annotations

import itertools
import re

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from cairn.server.adminops import Actor
from cairn.server.app import create_app, open_services
from cairn.server.context import Services, Settings
from cairn.server.routes import ROUTES
from cairn.server.users import ConsoleRole, ConsoleUser
from cairn.web.console import ANYONE, CONSOLE_ROUTES, EVERY_ROLE, ConsoleRoute, mount_console
from cairn.web.sessions import COOKIE

PASSWORD = "a console password"
EXPECTED_RULES: dict[tuple[str, str], frozenset[ConsoleRole] | None] = {
    ("GET", "/console/"): EVERY_ROLE,
    ("GET", "/console/tenants/{name}"): EVERY_ROLE,
    ("GET", "/console/alerts"): EVERY_ROLE,
    ("GET", "/console/audit"): EVERY_ROLE,
    ("GET", "/console/sign-in"): ANYONE,
    ("POST", "/console/sign-in"): ANYONE,
    ("POST", "/console/sign-out"): EVERY_ROLE,
    ("GET", "/console/console.css"): ANYONE,
    ("GET", "/console/language"): ANYONE,
}
_GONE = itertools.count()
SIGNED_IN = tuple(f"session of a {role.value}" for role in ConsoleRole)
NOT_SIGNED_IN = ("no cookie", "forged session", "anonymous session", "removed user's session")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Services:
    services = open_services(Settings(data=tmp_path_factory.mktemp("console") / "data"))
    services.tenants.create("acme")
    services.tenants.create("globex")
    for role in ConsoleRole:
        tenant = "acme" if role is ConsoleRole.TENANT_ADMIN else None
        services.admin.add_user(Actor("test"), ConsoleUser(_name(role), role, tenant), PASSWORD)
    return services


def _name(role: ConsoleRole) -> str:
    return role.value.replace("-", "")


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def _client(services: Services, credential: str) -> tuple[TestClient, str | None]:
    """A browser holding `credential`, and the CSRF token of its session (None: no session)."""
    client = TestClient(
        mount_console(create_app(services), services), base_url="https://testserver"
    )
    if credential == "no cookie":
        return client, None
    if credential == "forged session":
        client.cookies.set(COOKIE, "A" * 43)
        return client, "forged"
    token = _csrf(client.get("/console/sign-in").text)
    if credential == "anonymous session":
        return client, token
    removed = credential == "removed user's session"
    name = f"gone-{next(_GONE)}" if removed else credential.rsplit(" ", 1)[1].replace("-", "")
    if removed:
        services.admin.add_user(
            Actor("test"), ConsoleUser(name, ConsoleRole.READ_ONLY, None), PASSWORD
        )
    signed = client.post(
        "/console/sign-in",
        data={"csrf": token, "name": name, "password": PASSWORD},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    token = _csrf(client.get("/console/").text)
    if removed:
        services.admin.remove_user(Actor("test"), name)
    return client, token


def test_every_console_route_declares_the_expected_rule() -> None:
    declared = {(r.method, r.path): r.roles for r in CONSOLE_ROUTES}
    assert declared == EXPECTED_RULES, "a console route was added or its rule changed: review it"


def test_serve_serves_exactly_the_two_route_tables(services: Services) -> None:
    """What serve runs (the server's app with the console mounted) has no route outside the
    tables, so every route passes through a guard."""
    app = mount_console(create_app(services), services)
    served = [(r.path, r.methods) for r in app.routes if isinstance(r, Route)]
    pairs = [(s.path, s.method) for s in ROUTES] + [(r.path, r.method) for r in CONSOLE_ROUTES]
    declared = [
        (path, {method} | ({"HEAD"} if method == "GET" else set())) for path, method in pairs
    ]
    assert served == declared
    assert len(app.routes) == len(ROUTES) + len(CONSOLE_ROUTES)


@pytest.mark.parametrize("credential", NOT_SIGNED_IN + SIGNED_IN)
@pytest.mark.parametrize("spec", CONSOLE_ROUTES, ids=lambda s: f"{s.method} {s.path}")
def test_console_matrix(services: Services, spec: ConsoleRoute, credential: str) -> None:
    client, csrf = _client(services, credential)
    signed_in = credential in SIGNED_IN
    form = {"csrf": csrf or "", "name": "nobody", "password": "wrong"}
    path = spec.path.format(name="acme")  # the tenant admins' own tenant
    if spec.method == "GET":
        answer = client.get(path, follow_redirects=False)
    else:
        answer = client.post(path, data=form, follow_redirects=False)
    assert answer.headers["x-frame-options"] == "DENY"
    if spec.roles is not ANYONE and not signed_in:
        assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in"
    elif spec.method == "POST" and credential in (
        "no cookie",
        "forged session",
        "removed user's session",
    ):
        assert answer.status_code == 403 and "CAIRN-E154" in answer.text
    elif spec.path == "/console/sign-in" and spec.method == "POST":
        assert answer.status_code == 401  # admitted, and the wrong password refused
    else:
        assert answer.status_code in (200, 303), answer.text


TENANT_PAGES = [r for r in CONSOLE_ROUTES if "{name}" in r.path]


@pytest.mark.parametrize("spec", TENANT_PAGES, ids=lambda s: f"{s.method} {s.path}")
@pytest.mark.parametrize("credential", SIGNED_IN)
def test_a_tenant_admin_sees_only_their_tenant(
    services: Services, spec: ConsoleRoute, credential: str
) -> None:
    """Every route that names a tenant: a tenant admin of acme gets globex's page as if it did
    not exist (404, CAIRN-E155, the same as a tenant that does not exist); the server's roles
    get it."""
    client, _ = _client(services, credential)
    other = client.get(spec.path.format(name="globex"), follow_redirects=False)
    missing = client.get(spec.path.format(name="nonesuch"), follow_redirects=False)
    assert missing.status_code == 404 and "CAIRN-E155" in missing.text
    if credential == "session of a tenant-admin":
        assert other.status_code == 404 and "CAIRN-E155" in other.text
        # word for word the answer for a tenant that does not exist
        assert other.text.replace("globex", "X") == missing.text.replace("nonesuch", "X")
    else:
        assert other.status_code == 200 and "Tenant globex" in other.text
