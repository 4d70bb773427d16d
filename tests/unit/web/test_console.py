"""The console through Starlette's test client: password hashing, sessions, CSRF, the set-up
page, sign-in and sign-out, escaping, and what a tenant admin sees (design 18)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cairn.server.adminops import Actor
from cairn.server.app import create_app, open_services
from cairn.server.context import Services, Settings
from cairn.server.jobresults import JobResult
from cairn.server.users import (
    ConsoleRole,
    ConsoleUser,
    NoPassword,
    NoSuchUser,
    UserError,
    hash_password,
    password_matches,
)
from cairn.web.console import HEADERS, mount_console
from cairn.web.sessions import COOKIE, SessionStore

ACTOR = Actor("test")
PASSWORD = "correct horse battery staple"
MARKUP = "<script>alert(1)</script>"


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return open_services(Settings(data=tmp_path / "data"))


def client_of(services: Services) -> TestClient:
    return TestClient(mount_console(create_app(services), services), base_url="https://testserver")


def add(services: Services, name: str, role: ConsoleRole, tenant: str | None = None) -> None:
    services.admin.add_user(ACTOR, ConsoleUser(name, role, tenant), PASSWORD)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> int:
    token = csrf_of(client.get("/console/sign-in").text)
    answer = client.post(
        "/console/sign-in",
        data={"csrf": token, "name": name, "password": password},
        follow_redirects=False,
    )
    return answer.status_code


def report(services: Services, tenant: str, host: str, outcome: str) -> None:
    now = int(time.time() * 1000)
    result = JobResult("home", host, now - 1000, now, outcome, None, 1, 1, None, "it said so")
    services.jobs.record(tenant, result, "tok")


def test_passwords_are_argon2id_and_checked() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("$argon2id$")
    assert password_matches(stored, PASSWORD)
    assert not password_matches(stored, PASSWORD + "x")
    assert not password_matches("not a hash", PASSWORD)


def test_users_are_added_listed_removed_and_audited(services: Services) -> None:
    services.tenants.create("acme")
    add(services, "admin", ConsoleRole.SERVER_ADMIN)
    add(services, "ann", ConsoleRole.TENANT_ADMIN, "acme")
    assert [u.name for u in services.admin.users.list()] == ["admin", "ann"]
    assert services.admin.users.verify("ann", PASSWORD) is not None
    assert services.admin.users.verify("ann", "wrong") is None
    assert services.admin.users.verify("nobody", PASSWORD) is None
    services.admin.remove_user(ACTOR, "ann")
    actions = [r[0] for r in services.db.read().execute("SELECT action FROM audit")]
    assert actions.count("add-user") == 2 and "remove-user" in actions
    stored = services.db.read().execute("SELECT group_concat(target) FROM audit").fetchone()[0]
    assert PASSWORD not in stored


@pytest.mark.parametrize(
    ("user", "password", "error"),
    [
        (ConsoleUser("Bad Name", ConsoleRole.READ_ONLY, None), PASSWORD, UserError),
        (ConsoleUser("ann", ConsoleRole.TENANT_ADMIN, None), PASSWORD, UserError),
        (ConsoleUser("ann", ConsoleRole.READ_ONLY, "acme"), PASSWORD, UserError),
        (ConsoleUser("ann", ConsoleRole.TENANT_ADMIN, "nosuch"), PASSWORD, UserError),
        (ConsoleUser("ann", ConsoleRole.READ_ONLY, None), "", NoPassword),
    ],
)
def test_bad_users_are_refused(
    services: Services, user: ConsoleUser, password: str, error: type[Exception]
) -> None:
    services.tenants.create("acme")
    with pytest.raises(error):
        services.admin.add_user(ACTOR, user, password)
    assert services.admin.users.list() == []


def test_a_second_user_of_one_name_and_removing_none_are_refused(services: Services) -> None:
    add(services, "admin", ConsoleRole.SERVER_ADMIN)
    with pytest.raises(UserError):
        add(services, "admin", ConsoleRole.READ_ONLY)
    with pytest.raises(NoSuchUser):
        services.admin.remove_user(ACTOR, "nobody")


def test_sessions_expire_and_go_with_their_user(services: Services) -> None:
    add(services, "admin", ConsoleRole.SERVER_ADMIN)
    store = SessionStore(services.db, services.admin.users, services.clock)
    user = services.admin.users.get("admin")
    session = store.start(user)
    found = store.find(session.id)
    assert found is not None and found.user == user
    assert store.find(session.id + "x") is None
    assert found.csrf_matches(session.csrf) and not found.csrf_matches(None)
    with services.db.write() as conn:
        conn.execute("UPDATE console_sessions SET expires_ms = 1")
    assert store.find(session.id) is None
    again = store.start(user)
    services.admin.remove_user(ACTOR, "admin")
    assert store.find(again.id) is None


def test_unused_sign_in_forms_are_bounded(services: Services) -> None:
    store = SessionStore(services.db, services.admin.users, services.clock, max_anonymous=3)
    forms = [store.start(None) for _ in range(6)]
    assert [store.find(f.id) is not None for f in forms] == [False] * 3 + [True] * 3
    count = services.db.read().execute("SELECT COUNT(*) FROM console_sessions").fetchone()[0]
    assert count == 3


def test_the_console_stays_shut_until_a_server_admin_exists(services: Services) -> None:
    client = client_of(services)
    page = client.get("/console/")
    assert page.status_code == 503
    assert "cairn server user add admin --role server-admin" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    add(services, "admin", ConsoleRole.SERVER_ADMIN)
    assert client.get("/console/", follow_redirects=False).headers["location"] == (
        "/console/sign-in"
    )


def test_sign_in_dashboard_sign_out(services: Services) -> None:
    services.tenants.create("acme", 1000)
    report(services, "acme", MARKUP, "failure")
    add(services, "admin", ConsoleRole.SERVER_ADMIN)
    client = client_of(services)
    form = client.get("/console/sign-in")
    cookie = form.headers["set-cookie"]
    for part in ("HttpOnly", "Secure", "SameSite=strict", "Path=/console/"):
        assert part.lower() in cookie.lower()
    anonymous = client.cookies[COOKIE]
    assert sign_in(client, "admin") == 303
    assert client.cookies[COOKIE] != anonymous  # a new session ID on sign-in: no fixation
    page = client.get("/console/")
    assert page.status_code == 200
    for name, value in HEADERS.items():
        assert page.headers[name] == value
    assert MARKUP not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert 'class="outcome-failure staleness-' in page.text
    out = client.post(
        "/console/sign-out", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert out.status_code == 303
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_a_post_without_the_session_csrf_token_is_refused(services: Services) -> None:
    add(services, "admin", ConsoleRole.SERVER_ADMIN)
    client = client_of(services)
    assert sign_in(client, "admin") == 303
    for form in ({}, {"csrf": "forged"}):
        answer = client.post("/console/sign-out", data=form, follow_redirects=False)
        assert answer.status_code == 403 and "CAIRN-E154" in answer.text
    assert client.get("/console/").status_code == 200  # still signed in
    fresh = client_of(services)
    answer = fresh.post("/console/sign-in", data={"name": "admin", "password": PASSWORD})
    assert answer.status_code == 403


def test_wrong_passwords_are_refused_then_throttled(services: Services) -> None:
    add(services, "admin", ConsoleRole.SERVER_ADMIN)
    client = client_of(services)
    assert sign_in(client, "admin", "wrong") == 401
    assert sign_in(client, "nobody") == 401
    codes = [sign_in(client, "admin", "wrong") for _ in range(10)]
    assert codes[-1] == 429
    assert sign_in(client, "admin") == 429  # even the right password waits out the minute
    outcomes = [r[0] for r in services.db.read().execute("SELECT outcome FROM audit")]
    assert "CAIRN-E153" in outcomes


def test_a_tenant_admin_sees_only_their_tenant(services: Services) -> None:
    services.tenants.create("acme")
    services.tenants.create("beta")
    report(services, "acme", "acme-host", "success")
    report(services, "beta", "beta-host", "success")
    add(services, "admin", ConsoleRole.SERVER_ADMIN)
    add(services, "ann", ConsoleRole.TENANT_ADMIN, "acme")
    client = client_of(services)
    assert sign_in(client, "ann") == 303
    page = client.get("/console/").text
    assert "acme-host" in page and "beta-host" not in page and "beta" not in page
    assert "Replication targets" not in page
