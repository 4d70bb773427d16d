"""The authorization matrix (RELIABILITY S5), generated from the one route table.

Every route of `cairn.server.routes.ROUTES`, for every object kind where the path has one, is
called with every kind of credential: none, a malformed header, a wrong secret, an unknown ID, a
revoked token, each role of another tenant, each role of the right tenant, and a server-admin
token. Allowed callers get a 2xx answer; everyone else 401, 403 or 404, and nothing changes on
the server. Another tenant's token gets exactly the answer a tenant that does not exist gets.

The rules themselves are pinned in EXPECTED_RULES: a route added to the table without an entry
here, or whose rule differs from it, fails the first test, so a route cannot slip in unreviewed.
"""

from __future__ import annotations

import hmac
import itertools
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import httpx
import pytest
from starlette.routing import Route

from cairn.format.lock import SESSION_SIZE, LockRecord, encode_lock
from cairn.server import auth
from cairn.server.app import create_app
from cairn.server.auth import Role, Throttle
from cairn.server.errors import Unauthenticated
from cairn.server.routes import ROUTES, RouteSpec, Scope
from tests.support.securitykit import (
    COPY,
    KINDS,
    TENANT_ROLES,
    Site,
    hex_name,
    make_site,
    picture,
)
from tests.support.serverfixture import RunningServer, running_server

OBJECT = "/v1/t/{tenant}/{kind}/{name}"
LIST = "/v1/t/{tenant}/{kind}/"
UPLOAD = "/v1/t/{tenant}/uploads/{kind}/{name}"
COPY_PATH = "/v1/t/{tenant}/c/{server}/{copy}"
COPY_OBJECT = COPY_PATH + "/{kind}/{name}"
COPY_LIST = COPY_PATH + "/{kind}/"
COPY_UPLOAD = COPY_PATH + "/uploads/{kind}/{name}"
READ = frozenset({Role.BACKUP, Role.RESTORE, Role.TENANT_ADMIN})
AREA_READ = READ | {Role.REPLICATION}
"""Design 17.14: a replication token reads its area's root (the target check lists it)."""
WRITE = frozenset({Role.BACKUP, Role.TENANT_ADMIN})
COPY_READ = frozenset({Role.RESTORE, Role.TENANT_ADMIN, Role.REPLICATION})
COPY_WRITE = frozenset({Role.TENANT_ADMIN, Role.REPLICATION})
ADMIN = (Scope.SERVER, frozenset({Role.SERVER_ADMIN}))
PUBLIC = (Scope.PUBLIC, frozenset[Role]())

EXPECTED_RULES: dict[tuple[str, str], tuple[Scope, frozenset[Role]]] = {
    ("GET", "/v1/health"): PUBLIC,
    ("GET", "/v1/openapi.json"): PUBLIC,
    ("GET", LIST): (Scope.TENANT, AREA_READ),
    ("HEAD", OBJECT): (Scope.TENANT, AREA_READ),
    ("GET", OBJECT): (Scope.TENANT, AREA_READ),
    ("PUT", OBJECT): (Scope.TENANT, WRITE),
    ("DELETE", OBJECT): (Scope.TENANT, WRITE),
    ("GET", "/v1/t/{tenant}/usage"): (Scope.TENANT, AREA_READ),
    ("GET", "/v1/t/{tenant}/status"): (Scope.TENANT, READ),
    ("POST", "/v1/t/{tenant}/jobs"): (Scope.TENANT, READ),  # every role: agents hold backup
    ("POST", "/v1/t/{tenant}/chunks"): (Scope.TENANT, READ),
    ("HEAD", UPLOAD): (Scope.TENANT, WRITE),
    ("PATCH", UPLOAD): (Scope.TENANT, WRITE),
    ("GET", COPY_LIST): (Scope.TENANT, COPY_READ),
    ("HEAD", COPY_UPLOAD): (Scope.TENANT, COPY_WRITE),
    ("PATCH", COPY_UPLOAD): (Scope.TENANT, COPY_WRITE),
    ("HEAD", COPY_OBJECT): (Scope.TENANT, COPY_READ),
    ("GET", COPY_OBJECT): (Scope.TENANT, COPY_READ),
    ("PUT", COPY_OBJECT): (Scope.TENANT, COPY_WRITE),
    ("DELETE", COPY_OBJECT): (Scope.TENANT, COPY_WRITE),
    ("GET", "/v1/metrics"): ADMIN,
    ("GET", "/v1/admin/tenants"): ADMIN,
    ("POST", "/v1/admin/tenants"): ADMIN,
    ("PUT", "/v1/admin/tenants/{tenant}/quota"): ADMIN,
    ("POST", "/v1/admin/tenants/{tenant}/tokens"): ADMIN,
    ("GET", "/v1/admin/tokens"): ADMIN,
    ("DELETE", "/v1/admin/tokens/{id}"): ADMIN,
    ("GET", "/v1/admin/audit"): ADMIN,
}
BACKUP_MAY_PUT = frozenset({"packs", "index", "reflists", "snapshots", "locks"})
"""Design 14.3: a backup token adds data, indexes, reflists, snapshots and locks, nothing else."""
WRITES_OF_A_KIND = frozenset({("PUT", OBJECT), ("HEAD", UPLOAD), ("PATCH", UPLOAD)})
"""The routes where BACKUP_MAY_PUT decides what a backup token may do."""
REMOVE = ("DELETE", OBJECT)
"""A backup token may remove only a lock it saved itself, which no object of the matrix is (see
test_a_backup_token_removes_only_the_locks_it_saved)."""

NOT_AUTHENTICATED = (
    "no header",
    "basic scheme",
    "bearer without token",
    "malformed token",
    "wrong secret",
    "unknown id",
    "revoked",
)
OTHER_TENANT = tuple(f"beta {role.value}" for role in TENANT_ROLES)
RIGHT_TENANT = tuple(f"acme {role.value}" for role in TENANT_ROLES)
CREDENTIALS = (*NOT_AUTHENTICATED, *OTHER_TENANT, *RIGHT_TENANT, "server-admin")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


_serial = itertools.count()


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _in(copy: bool) -> str:
    """The path between the tenant and the object: '' or a copy in its area (design 17.14)."""
    return "/c/{}/{}".format(*COPY) if copy else ""


def _object_call(method: str, copy: bool = False) -> Callable[[Site, str, str], Call]:
    def build(site: Site, tenant: str, kind: str) -> Call:
        name, data = site.objects[("acme", kind)]
        body = data if method == "PUT" else b""
        return Call(method, f"/v1/t/{tenant}{_in(copy)}/{kind}/{name}", body)

    return build


def _upload_call(method: str, copy: bool = False) -> Callable[[Site, str, str], Call]:
    def build(site: Site, tenant: str, kind: str) -> Call:
        name, data = site.objects[("acme", kind)]
        path = f"/v1/t/{tenant}{_in(copy)}/uploads/{kind}/{name}"
        if method == "HEAD":
            return Call("HEAD", path)
        headers = (("upload-offset", "0"), ("upload-length", str(len(data))))
        return Call("PATCH", path, data, headers)  # the whole object in one part

    return build


def _revocable(site: Site, tenant: str, kind: str) -> Call:
    throwaway = site.services.tokens.issue(Role.RESTORE, "acme")
    return Call("DELETE", f"/v1/admin/tokens/{throwaway.id}")


CALLS: dict[tuple[str, str], Callable[[Site, str, str], Call]] = {
    ("GET", "/v1/health"): lambda site, tenant, kind: Call("GET", "/v1/health"),
    ("GET", "/v1/openapi.json"): lambda site, tenant, kind: Call("GET", "/v1/openapi.json"),
    ("GET", LIST): lambda site, tenant, kind: Call("GET", f"/v1/t/{tenant}/{kind}/"),
    ("HEAD", OBJECT): _object_call("HEAD"),
    ("GET", OBJECT): _object_call("GET"),
    ("PUT", OBJECT): _object_call("PUT"),
    ("DELETE", OBJECT): _object_call("DELETE"),
    ("GET", "/v1/t/{tenant}/usage"): lambda site, tenant, kind: Call(
        "GET", f"/v1/t/{tenant}/usage"
    ),
    ("GET", "/v1/t/{tenant}/status"): lambda site, tenant, kind: Call(
        "GET", f"/v1/t/{tenant}/status"
    ),
    ("POST", "/v1/t/{tenant}/jobs"): lambda site, tenant, kind: Call(
        "POST",
        f"/v1/t/{tenant}/jobs",
        _json({"job": "home", "host": "pc", "started": 1.0, "ended": 2.0, "outcome": "success"}),
    ),
    ("POST", "/v1/t/{tenant}/chunks"): lambda site, tenant, kind: Call(
        "POST", f"/v1/t/{tenant}/chunks", bytes(range(32)) * 2
    ),
    ("HEAD", UPLOAD): _upload_call("HEAD"),
    ("PATCH", UPLOAD): _upload_call("PATCH"),
    ("GET", COPY_LIST): lambda site, tenant, kind: Call(
        "GET", f"/v1/t/{tenant}{_in(True)}/{kind}/"
    ),
    ("HEAD", COPY_UPLOAD): _upload_call("HEAD", copy=True),
    ("PATCH", COPY_UPLOAD): _upload_call("PATCH", copy=True),
    ("HEAD", COPY_OBJECT): _object_call("HEAD", copy=True),
    ("GET", COPY_OBJECT): _object_call("GET", copy=True),
    ("PUT", COPY_OBJECT): _object_call("PUT", copy=True),
    ("DELETE", COPY_OBJECT): _object_call("DELETE", copy=True),
    ("GET", "/v1/metrics"): lambda site, tenant, kind: Call("GET", "/v1/metrics"),
    ("GET", "/v1/admin/tenants"): lambda site, tenant, kind: Call("GET", "/v1/admin/tenants"),
    ("POST", "/v1/admin/tenants"): lambda site, tenant, kind: Call(
        "POST", "/v1/admin/tenants", _json({"name": f"new-{next(_serial)}", "quota": None})
    ),
    ("PUT", "/v1/admin/tenants/{tenant}/quota"): lambda site, tenant, kind: Call(
        "PUT", "/v1/admin/tenants/acme/quota", _json({"quota": None})
    ),
    ("POST", "/v1/admin/tenants/{tenant}/tokens"): lambda site, tenant, kind: Call(
        "POST", "/v1/admin/tenants/acme/tokens", _json({"role": "restore", "label": "matrix"})
    ),
    ("GET", "/v1/admin/tokens"): lambda site, tenant, kind: Call("GET", "/v1/admin/tokens"),
    ("DELETE", "/v1/admin/tokens/{id}"): _revocable,
    ("GET", "/v1/admin/audit"): lambda site, tenant, kind: Call("GET", "/v1/admin/audit"),
}
"""How to make a valid call of each route (for `tenant`, and `kind` where the path has one)."""


def _cases() -> Iterator[Any]:
    for spec in ROUTES:
        kinds = KINDS if "{kind}" in spec.path else ("-",)
        for kind, credential in itertools.product(kinds, CREDENTIALS):
            label = f"{spec.method} {spec.path} {kind} {credential}"
            yield pytest.param(spec, kind, credential, id=label)


def _authorization(site: Site, credential: str) -> str | None:
    acme_admin = site.token("acme", Role.TENANT_ADMIN)
    token_id = acme_admin.split("_")[1]
    tokens = {
        "no header": None,
        "basic scheme": "Basic YWNtZTpzZWNyZXQ=",
        "bearer without token": "Bearer ",
        "malformed token": "Bearer cairn_zz_" + "0" * 64,
        "wrong secret": f"Bearer cairn_{token_id}_{'7' * 64}",
        "unknown id": f"Bearer cairn_{'0' * 12}_{acme_admin.split('_')[2]}",
        "revoked": f"Bearer {site.revoked}",
        "server-admin": f"Bearer {site.token(None, Role.SERVER_ADMIN)}",
    }
    for tenant, role in itertools.product(("acme", "beta"), TENANT_ROLES):
        tokens[f"{tenant} {role.value}"] = f"Bearer {site.token(tenant, role)}"
    return tokens[credential]


def expected_status(spec: RouteSpec, kind: str, credential: str) -> int | None:
    """None where the call is allowed (a 2xx answer), else the refusal's status."""
    scope, roles = EXPECTED_RULES[(spec.method, spec.path)]
    if scope is Scope.PUBLIC:
        return None
    if credential in NOT_AUTHENTICATED:
        return 401
    if scope is Scope.SERVER:
        return None if credential == "server-admin" else 403
    if credential in OTHER_TENANT or credential == "server-admin":
        return 404  # exactly the answer for a tenant that does not exist
    role = Role(credential.removeprefix("acme "))
    if role not in roles:
        return 403
    if (spec.method, spec.path) == REMOVE and role is Role.BACKUP:
        return 403
    if (spec.method, spec.path) in WRITES_OF_A_KIND and role is Role.BACKUP:
        return None if kind in BACKUP_MAY_PUT else 403
    return None


def send(site: Site, call: Call, authorization: str | None) -> Any:
    headers = dict(call.headers)
    if authorization is not None:
        headers["authorization"] = authorization
    return site.client.request(call.method, call.path, content=call.body, headers=headers)


def server_state(site: Site) -> tuple[object, ...]:
    """What a refused call must leave as it was: tenants, quotas, usage, tokens, every file."""
    db: sqlite3.Connection = site.services.db.read()
    tenants = db.execute("SELECT name, id, quota, used FROM tenants ORDER BY name").fetchall()
    tokens = db.execute("SELECT id, tenant, role, revoked_ms FROM tokens ORDER BY id").fetchall()
    root = site.services.settings.data  # tenants/ and partial/ (resumable uploads)
    files = picture(root, set(root.glob("server.db*")))
    contents = {
        name: blake3.blake3((root / name).read_bytes()).hexdigest()
        for name, (mode, _, _) in files.items()
        if stat.S_ISREG(mode)
    }
    return tenants, tokens, files, contents


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    made = make_site(tmp_path_factory.mktemp("matrix"))
    with made.client:
        yield made


def test_every_route_declares_the_expected_rule() -> None:
    declared = {(s.method, s.path): (s.rule.scope, s.rule.roles) for s in ROUTES}
    assert declared == EXPECTED_RULES, "a route was added or its rule changed: review it here"
    assert set(CALLS) == set(EXPECTED_RULES), "declare how the matrix calls every route"


def test_the_app_serves_exactly_the_route_table(site: Site) -> None:
    """Every endpoint of the app is a route of the table, wrapped by guard(): no way around it."""
    app = create_app(site.services)
    served = [(r.path, r.methods) for r in app.routes if isinstance(r, Route)]
    declared = [
        (s.path, {s.method} | ({"HEAD"} if s.method == "GET" else set())) for s in ROUTES
    ]  # Starlette answers HEAD wherever GET is allowed, through the same guard
    assert served == declared
    assert len(app.routes) == len(ROUTES)


@pytest.mark.parametrize(("spec", "kind", "credential"), list(_cases()))
def test_matrix(site: Site, spec: RouteSpec, kind: str, credential: str) -> None:
    build = CALLS[(spec.method, spec.path)]
    call = build(site, "acme", kind if kind != "-" else "packs")
    authorization = _authorization(site, credential)
    want = expected_status(spec, kind, credential)
    before = server_state(site) if want is not None else None
    answer = send(site, call, authorization)
    if want is None:
        assert 200 <= answer.status_code < 300, answer.text
        site.restore_objects()
        return
    assert answer.status_code == want, answer.text
    assert server_state(site) == before, "a refused call changed the server"
    code = {401: "CAIRN-E061", 403: "CAIRN-E062", 404: "CAIRN-E034"}[want]
    if spec.method == "HEAD":
        assert answer.headers["x-cairn-code"] == code and answer.content == b""
    else:
        assert answer.json()["error"]["code"] == code
    if want == 401:
        assert answer.headers["www-authenticate"] == 'Bearer realm="cairn"'
    if want == 404:
        nowhere = send(site, build(site, "nosuch", kind if kind != "-" else "packs"), authorization)
        assert (nowhere.status_code, nowhere.content) == (answer.status_code, answer.content)
        assert _headers(nowhere) == _headers(answer)
        if spec.method != "HEAD":
            assert answer.json() == {"error": {"code": "CAIRN-E034", "message": "no such object"}}


def _headers(answer: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k != "date"}


def test_the_matrix_covers_every_route_and_credential() -> None:
    cases = list(_cases())
    routes = {(spec.method, spec.path) for spec, _, _ in (c.values for c in cases)}
    assert routes == set(EXPECTED_RULES)
    assert len(cases) == sum(
        (len(KINDS) if "{kind}" in s.path else 1) * len(CREDENTIALS) for s in ROUTES
    )


def _fresh_lock() -> tuple[str, bytes]:
    now = int(time.time() * 1000)
    lock = encode_lock(LockRecord(os.urandom(SESSION_SIZE), "backup", now, now + 600_000, b""))
    return hex_name(lock), lock


def test_a_backup_token_removes_nothing_by_default(tmp_path: Path) -> None:
    """Design 14.3: not even the lock it saved itself, unless the server is told to allow it."""
    site = make_site(tmp_path)
    mine = {"authorization": f"Bearer {site.token('acme', Role.BACKUP)}"}
    with site.client as client:
        own_name, own = _fresh_lock()
        assert client.put(f"/v1/t/acme/locks/{own_name}", content=own, headers=mine).status_code
        refused = client.delete(f"/v1/t/acme/locks/{own_name}", headers=mine)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "CAIRN-E062"
        assert client.head(f"/v1/t/acme/locks/{own_name}", headers=mine).status_code == 200


def test_a_backup_token_removes_only_the_locks_it_saved(tmp_path: Path) -> None:
    """With --backup-releases-locks (design 14.3): its own session's lock, at a renewal and at
    the end; nothing else."""
    site = make_site(tmp_path, releases_locks=True)
    mine = {"authorization": f"Bearer {site.token('acme', Role.BACKUP)}"}
    other = {"authorization": f"Bearer {site.services.tokens.issue(Role.BACKUP, 'acme')}"}
    reader = {"authorization": f"Bearer {site.token('acme', Role.RESTORE)}"}
    with site.client as client:
        own_name, own = _fresh_lock()
        others_name, others = _fresh_lock()
        assert client.put(f"/v1/t/acme/locks/{own_name}", content=own, headers=mine).status_code
        assert client.put(f"/v1/t/acme/locks/{others_name}", content=others, headers=other)
        # sending the bytes of another token's lock again does not make them its own
        again = client.put(f"/v1/t/acme/locks/{others_name}", content=others, headers=mine)
        assert again.status_code == 200
        pack_name, _ = site.objects[("acme", "packs")]
        site_lock, _ = site.objects[("acme", "locks")]  # saved by no token of the server
        for path, headers in (
            (f"/locks/{own_name}", other),
            (f"/locks/{own_name}", reader),
            (f"/locks/{others_name}", mine),
            (f"/locks/{site_lock}", mine),
            (f"/packs/{pack_name}", mine),
        ):
            refused = client.delete(f"/v1/t/acme{path}", headers=headers)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["error"]["code"] == "CAIRN-E062"
        assert client.delete(f"/v1/t/acme/locks/{own_name}", headers=mine).status_code == 204
        assert client.head(f"/v1/t/acme/locks/{own_name}", headers=mine).status_code == 404
        assert client.delete(f"/v1/t/acme/locks/{others_name}", headers=other).status_code == 204
        assert site.services.lock_owners.names("acme") == set()
    audit = site.services.db.read().execute("SELECT target FROM audit WHERE action = 'delete'")
    assert {target for (target,) in audit} == {f"locks/{own_name}", f"locks/{others_name}"}


# Verification costs the same for known and unknown IDs (structurally: no clock involved)


def test_known_and_unknown_token_ids_cost_the_same(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every presented token, valid or not, costs one database lookup, one BLAKE3 hash and one
    constant-time comparison of two 32-byte digests: nothing a clock could tell apart."""
    hashes: list[int] = []
    compared: list[tuple[int, int]] = []
    statements: list[str] = []
    real_hash, real_compare = auth._hash, hmac.compare_digest

    def counting_hash(secret: str) -> bytes:
        hashes.append(len(secret))
        return real_hash(secret)

    def counting_compare(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real_compare(a, b)

    monkeypatch.setattr(auth, "_hash", counting_hash)
    monkeypatch.setattr(hmac, "compare_digest", counting_compare)
    connection = site.services.db.read()
    connection.set_trace_callback(statements.append)
    valid = site.token("acme", Role.BACKUP)
    token_id, secret = valid.split("_")[1:]
    presented = {
        "valid": valid,
        "wrong secret": f"cairn_{token_id}_{'5' * 64}",
        "unknown id": f"cairn_{'0' * 12}_{secret}",
        "revoked": site.revoked,
        "malformed": "cairn_short",
        "empty": "",
    }
    costs = {}
    try:
        for label, token in presented.items():
            hashes.clear()
            compared.clear()
            statements.clear()
            try:
                site.services.tokens.verify(token)
            except Unauthenticated:
                assert label != "valid"
            costs[label] = (list(hashes), list(compared), len(statements))
    finally:
        connection.set_trace_callback(None)
    assert costs["valid"][0] == [64] and costs["valid"][1] == [(32, 32)]
    assert costs["valid"][2] == 1
    for label in ("wrong secret", "unknown id", "revoked"):
        assert costs[label] == costs["valid"], label
    for label in ("malformed", "empty"):  # the secret is "" then: hashing it is no cheaper path
        assert (len(costs[label][0]), costs[label][1:]) == (1, costs["valid"][1:]), label


# Throttling after repeated failures


def test_repeated_failures_are_throttled_with_retry_after(tmp_path: Path) -> None:
    site = make_site(tmp_path, address="203.0.113.9")
    site.services.throttle = Throttle(limit=10, window_s=60)
    bad = {"authorization": "Bearer cairn_000000000000_" + "1" * 64}
    good = {"authorization": f"Bearer {site.token('acme', Role.RESTORE)}"}
    with site.client as client:
        assert client.get("/v1/t/acme/usage", headers=good).status_code == 200
        for _ in range(10):
            assert client.get("/v1/t/acme/usage", headers=bad).status_code == 401
        refused = client.get("/v1/t/acme/usage", headers=bad)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "CAIRN-E064"
        assert 1 <= int(refused.headers["retry-after"]) <= 61
        # while throttled, even a good token from that address waits: no oracle for guessing
        assert client.get("/v1/t/acme/usage", headers=good).status_code == 429
        assert client.head("/v1/t/acme/packs/" + "0" * 64, headers=good).status_code == 429
        assert client.get("/v1/health").status_code == 200  # public routes need no token
    other = make_site(tmp_path / "other", address="198.51.100.4")
    other.services.throttle = site.services.throttle  # the same server, another address
    with other.client as client:
        good = {"authorization": f"Bearer {other.token('acme', Role.RESTORE)}"}
        assert client.get("/v1/t/acme/usage", headers=good).status_code == 200


def test_the_throttle_forgets_failures_once_the_window_passes(tmp_path: Path) -> None:
    site = make_site(tmp_path, address="203.0.113.10")
    site.services.throttle = Throttle(limit=3, window_s=0.5)
    bad = {"authorization": "Bearer nonsense"}
    with site.client as client:
        for _ in range(3):
            assert client.get("/v1/admin/tokens", headers=bad).status_code == 401
        assert client.get("/v1/admin/tokens", headers=bad).status_code == 429
        time.sleep(0.6)  # the window is the server's rule; waiting longer is only safer
        good = {"authorization": f"Bearer {site.token(None, Role.SERVER_ADMIN)}"}
        assert client.get("/v1/admin/tokens", headers=good).status_code == 200


# The same rules on the real server (TLS, uvicorn, a separate process)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("authz-server")) as running:
        yield running


def _client(server: RunningServer, token: str | None, source: str) -> httpx.Client:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    transport = httpx.HTTPTransport(verify=False, local_address=source)
    return httpx.Client(base_url=server.url, headers=headers, transport=transport)


def test_the_real_server_applies_the_same_rules(server: RunningServer) -> None:
    server.tenant("acme")
    server.tenant("beta")
    data = b"an object of acme's"
    name = blake3.blake3(data).hexdigest()
    acme_admin = server.token("acme", Role.TENANT_ADMIN)
    with _client(server, acme_admin, "127.0.0.21") as owner:
        assert owner.put(f"/v1/t/acme/packs/{name}", content=data).status_code == 201
    backup = server.token("acme", Role.BACKUP)
    with _client(server, backup, "127.0.0.21") as client:
        assert client.delete(f"/v1/t/acme/packs/{name}").status_code == 403
        assert client.get(f"/v1/t/acme/packs/{name}").content == data
    for role in (*TENANT_ROLES, Role.SERVER_ADMIN):
        tenant = None if role is Role.SERVER_ADMIN else "beta"
        with _client(server, server.token(tenant, role), "127.0.0.22") as stranger:
            for method, path in (
                ("GET", f"/packs/{name}"),
                ("HEAD", f"/packs/{name}"),
                ("PUT", f"/packs/{name}"),
                ("DELETE", f"/packs/{name}"),
                ("GET", "/packs/"),
                ("GET", "/usage"),
            ):
                body = data if method == "PUT" else None
                there = stranger.request(method, f"/v1/t/acme{path}", content=body)
                nowhere = stranger.request(method, f"/v1/t/nosuch{path}", content=body)
                assert there.status_code == nowhere.status_code == 404, (role, method, path)
                assert there.content == nowhere.content
                assert _headers(there) == _headers(nowhere)
    revoked = server.services().tokens.issue(Role.TENANT_ADMIN, "acme")
    server.services().tokens.revoke(revoked.id)
    with _client(server, str(revoked), "127.0.0.23") as client:
        assert client.get("/v1/t/acme/usage").status_code == 401
    with _client(server, None, "127.0.0.23") as client:
        assert client.get("/v1/admin/tenants").status_code == 401
        assert client.get("/v1/health").status_code == 200


def test_the_real_server_throttles_one_address_not_the_others(server: RunningServer) -> None:
    server.tenant("throttled")
    good = server.token("throttled", Role.RESTORE)
    with _client(server, "cairn_000000000000_" + "2" * 64, "127.0.0.31") as attacker:
        statuses = [attacker.get("/v1/t/throttled/usage").status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]
    with _client(server, good, "127.0.0.31") as same_address:
        refused = same_address.get("/v1/t/throttled/usage")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    with _client(server, good, "127.0.0.32") as elsewhere:
        assert elsewhere.get("/v1/t/throttled/usage").status_code == 200
