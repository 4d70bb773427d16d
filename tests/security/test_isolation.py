"""Tenant isolation (RELIABILITY S6): read, write, list, delete, existence probe, usage and
dedup across tenants, with every role.

`beta`'s tokens (each role) and a server-admin token aim every tenant route at `acme`: each
answer must be byte for byte the answer for a tenant that does not exist, must name nothing of
acme's, and must leave acme as it was. Deduplication is strictly per tenant: beta uploading an
object acme holds takes exactly the path of an object nobody holds (same answer, same storage
calls, on beta's storage only), is charged to beta, and is stored as beta's own file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.format.index import decode_index
from cairn.server.auth import Role
from tests.support.securitykit import (
    KINDS,
    TENANT_ROLES,
    Site,
    hex_name,
    make_site,
    real_repository,
)
from tests.support.serverfixture import running_server


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = make_site(tmp_path)
    with made.client:
        yield made


def _requests(site: Site, tenant: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every tenant route, aimed at `tenant`, naming objects acme really holds."""
    yield "GET", f"/v1/t/{tenant}/usage", {}
    yield "GET", f"/v1/t/{tenant}/status", {}
    report = b'{"job": "j", "host": "h", "started": 1, "ended": 2, "outcome": "failure"}'
    yield "POST", f"/v1/t/{tenant}/jobs", {"content": report}
    yield "POST", f"/v1/t/{tenant}/chunks", {"content": acme_chunk_ids(site)}
    for kind in KINDS:
        name, data = site.objects[("acme", kind)]
        other = hex_name(b"nobody holds this " + kind.encode())
        yield "GET", f"/v1/t/{tenant}/{kind}/", {}
        for target in (name, other):  # an existence probe must not tell these apart
            yield "HEAD", f"/v1/t/{tenant}/{kind}/{target}", {}
            yield "GET", f"/v1/t/{tenant}/{kind}/{target}", {}
            yield "GET", f"/v1/t/{tenant}/{kind}/{target}", {"headers": {"range": "bytes=0-3"}}
            yield "DELETE", f"/v1/t/{tenant}/{kind}/{target}", {}
            yield "HEAD", f"/v1/t/{tenant}/uploads/{kind}/{target}", {}
        yield "PUT", f"/v1/t/{tenant}/{kind}/{name}", {"content": data}  # the same bytes
        yield "PUT", f"/v1/t/{tenant}/{kind}/{name}", {"content": b"other bytes"}
        upload = {"upload-offset": "0", "upload-length": str(len(data))}
        yield "PATCH", f"/v1/t/{tenant}/uploads/{kind}/{name}", {"content": data, "headers": upload}


def acme_chunk_ids(site: Site) -> bytes:
    """The chunk IDs acme's index lists, concatenated: a chunk query for all of them."""
    _, data = site.objects[("acme", "index")]
    record = decode_index(data)
    return b"".join(e.chunk_id for entries in record.packs.values() for e in entries)


def _acme(site: Site) -> tuple[object, ...]:
    tenant = site.services.tenants.get("acme")
    root = site.services.settings.data / "tenants" / tenant.id
    files = {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in root.rglob("*")
        if p.is_file()
    }
    partial = site.services.settings.data / "partial" / tenant.id
    return tenant, files, sorted(partial.rglob("*")) if partial.exists() else []


def _leaks(site: Site, answer: Any) -> list[str]:
    acme = site.services.tenants.get("acme")
    secrets = [acme.id, *(name for (t, _), (name, _) in site.objects.items() if t == "acme")]
    text = answer.content.decode("latin-1") + repr(answer.headers)
    return [s for s in secrets if s != "config" and s in text]


@pytest.mark.parametrize(
    ("tenant", "role"),
    [*(("beta", role) for role in TENANT_ROLES), (None, Role.SERVER_ADMIN)],
    ids=[*(f"beta {role.value}" for role in TENANT_ROLES), "server-admin"],
)
def test_nothing_of_another_tenant_is_readable_writable_or_probeable(
    site: Site, tenant: str | None, role: Role
) -> None:
    headers = {"authorization": f"Bearer {site.token(tenant, role)}"}
    before = _acme(site)
    count = 0
    for (method, path, extra), (_, nowhere, _) in zip(
        _requests(site, "acme"), _requests(site, "nosuch"), strict=True
    ):
        call_headers = {**headers, **extra.get("headers", {})}
        content = extra.get("content")
        there = site.client.request(method, path, headers=call_headers, content=content)
        elsewhere = site.client.request(method, nowhere, headers=call_headers, content=content)
        assert there.status_code == elsewhere.status_code == 404, (method, path)
        assert there.content == elsewhere.content, (method, path)
        assert {k: v for k, v in there.headers.items() if k != "date"} == {
            k: v for k, v in elsewhere.headers.items() if k != "date"
        }
        assert _leaks(site, there) == []
        count += 1
    assert _acme(site) == before
    assert count == 4 + len(KINDS) * (1 + 2 * 5 + 3)


def test_the_answer_is_decided_before_the_tenant_is_looked_up(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Structurally: a token of beta on acme's path and on a missing tenant's path take the same
    steps (no tenant lookup, no storage), so not even timing can tell acme exists."""
    calls: list[str] = []
    tenants = site.services.tenants
    for method in ("get", "backend", "all"):
        real = getattr(tenants, method)

        def counting(*args: Any, _name: str = method, _real: Any = real, **kw: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kw)

        monkeypatch.setattr(tenants, method, counting)
    name, _ = site.objects[("acme", "packs")]
    headers = {"authorization": f"Bearer {site.token('beta', Role.BACKUP)}"}
    steps = {}
    for tenant in ("acme", "nosuch"):
        calls.clear()
        answer = site.client.get(f"/v1/t/{tenant}/packs/{name}", headers=headers)
        assert answer.status_code == 404
        steps[tenant] = list(calls)
    assert steps["acme"] == steps["nosuch"] == []


def test_a_listing_and_the_usage_show_only_the_callers_tenant(site: Site) -> None:
    for role in TENANT_ROLES:
        headers = {"authorization": f"Bearer {site.token('beta', role)}"}
        for kind in KINDS:
            lines = site.client.get(f"/v1/t/beta/{kind}/", headers=headers).text.splitlines()
            names = [line for line in lines if '"name"' in line]
            assert [site.objects[("beta", kind)][0] in n for n in names] == [True] * len(names)
            if kind != "config":  # the one name every repository shares
                assert not any(site.objects[("acme", kind)][0] in line for line in lines)
        usage = site.client.get("/v1/t/beta/usage", headers=headers).json()
        assert usage["tenant"] == "beta"
        assert usage["used"] == site.services.tenants.get("beta").used


def test_a_chunk_query_answers_from_the_callers_tenant_only(site: Site) -> None:
    """The dedup oracle: beta asking about acme's chunks learns nothing, whatever its role;
    acme asking about them learns where they are."""
    asked = acme_chunk_ids(site)
    assert len(asked) >= 64

    def ask(tenant: str, role: Role) -> Any:
        """The answer once the tenant's chunk table is built (503 + Retry-After until then)."""
        headers = {"authorization": f"Bearer {site.token(tenant, role)}"}
        deadline = time.monotonic() + 60
        while True:
            answer = site.client.post(f"/v1/t/{tenant}/chunks", content=asked, headers=headers)
            if answer.status_code != 503 or time.monotonic() > deadline:
                return answer
            time.sleep(0.1)

    for role in (Role.BACKUP, Role.RESTORE, Role.TENANT_ADMIN):  # a replication token: 403
        answer = ask("beta", role)
        assert answer.status_code == 200 and answer.content == b""
    answer = ask("acme", Role.RESTORE)
    assert answer.status_code == 200
    assert len(answer.content) == 77 * (len(asked) // 32)


class Recorder:
    """A tenant's backend that writes down every call: (tenant id, method)."""

    def __init__(self, inner: Any, tenant_id: str, log: list[tuple[str, str]]) -> None:
        self._inner, self._tenant_id, self._log = inner, tenant_id, log

    def __getattr__(self, method: str) -> Any:
        attribute = getattr(self._inner, method)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kw: Any) -> Any:
            self._log.append((self._tenant_id, method))
            return attribute(*args, **kw)

        return call


def test_dedup_is_strictly_per_tenant(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """beta uploading acme's pack: the answer and the storage calls of an object nobody holds,
    on beta's storage only; charged to beta; a file of beta's own."""
    services = site.services
    log: list[tuple[str, str]] = []
    real_backend = services.tenants.backend
    monkeypatch.setattr(
        services.tenants,
        "backend",
        lambda tenant: Recorder(real_backend(tenant), tenant.id, log),
    )
    acme, beta = services.tenants.get("acme"), services.tenants.get("beta")
    held_by_acme = site.objects[("acme", "packs")]
    nobodys = real_repository("a third repository")["packs"][0]
    assert not real_backend(beta).exists(Handle(ObjectKind.PACK, held_by_acme[0]))
    for role in (Role.BACKUP, Role.TENANT_ADMIN):
        headers = {"authorization": f"Bearer {site.token('beta', role)}"}
        paths = {}
        for label, (name, data) in (("acme's", held_by_acme), ("nobody's", nobodys)):
            for stored in (real_backend(beta),):  # start each from "beta does not hold it"
                handle = Handle(ObjectKind.PACK, name)
                if stored.exists(handle):
                    stored.remove(handle)
                services.tenants.recount(services.tenants.get("beta"))
            used_before = services.tenants.get("beta").used
            log.clear()
            answer = site.client.put(f"/v1/t/beta/packs/{name}", content=data, headers=headers)
            paths[label] = (answer.status_code, answer.content, list(log))
            assert services.tenants.get("beta").used == used_before + len(data)
        assert paths["acme's"] == paths["nobody's"]
        assert paths["acme's"][0] == 201
        assert {tenant for tenant, _ in paths["acme's"][2]} == {beta.id}
    assert services.tenants.get("acme").used == acme.used
    root = services.settings.data / "tenants"
    name = held_by_acme[0]
    theirs = os.stat(root / acme.id / "packs" / name[:2] / name)
    ours = os.stat(root / beta.id / "packs" / name[:2] / name)
    assert theirs.st_ino != ours.st_ino and theirs.st_nlink == ours.st_nlink == 1


def test_dedup_is_per_tenant_on_the_real_server(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as server:
        owners = {name: server.tenant(name) for name in ("acme", "beta")}
        data = os.urandom(10_000)
        path = f"/v1/t/{{}}/packs/{hex_name(data)}"
        with httpx.Client(base_url=server.url, verify=False) as client:
            statuses = []
            for name in ("acme", "beta", "beta"):
                headers = {"authorization": f"Bearer {owners[name]}"}
                statuses.append(
                    client.put(path.format(name), content=data, headers=headers).status_code
                )
            usage = {
                name: client.get(
                    f"/v1/t/{name}/usage", headers={"authorization": f"Bearer {token}"}
                ).json()["used"]
                for name, token in owners.items()
            }
    assert statuses == [201, 201, 200]  # new for acme, new for beta, then beta's own copy
    assert usage == {"acme": len(data), "beta": len(data)}
