"""The bad-input corpus (RELIABILITY S4) against a real server: TLS, uvicorn, its own process.

Hundreds of requests that a client library would refuse to send or would tidy up, written as raw
bytes: path traversal in every encoding, NUL, odd Unicode, very long names, bad kinds and names,
oversized and malformed bodies, Content-Length that lies, bad Range headers, huge headers,
malformed JSON and nesting bombs to the admin routes, wrong methods, protocol garbage, and clients
that send their request slowly or never finish it.

The figures: 0 answers with a 5xx status, 0 tracebacks in the server's log, the server healthy
afterwards, and 0 files or folders touched outside the attacked tenant's root (the data folder
but that root and the database, and a sentinel folder beside the data folder, are pictured before
and after), with nothing in the tenant's root but its repository layout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from cairn.server.auth import Role
from tests.support.securitykit import (
    RawAnswer,
    Site,
    hex_name,
    make_site,
    picture,
    raw_exchange,
    strays,
)
from tests.support.serverfixture import RunningServer, running_server

CLIENT_TIMEOUT = 2
"""Seconds the corpus server gives a client to send a request's head, or the next part of its
body (`cairn server serve --client-timeout`)."""
MAX_OBJECT = 1 << 20
STORED = b"a stored object of the attacked tenant\n" * 100
STORED_NAME = hex_name(STORED)


@dataclass(frozen=True)
class Case:
    category: str
    request: bytes
    may_close: bool = False
    """The server may close without an answer (an unfinished request, protocol garbage)."""
    never_ok: bool = False
    """A 2xx answer would be a failure (a traversal or a bad name accepted)."""


@dataclass
class Target:
    port: int
    tenant_root: Path
    admin: str
    owner: str
    outside: str
    """A path outside the tenant's root (the sentinel's secret file), absolute."""


def request(
    method: str,
    target: bytes | str,
    token: str | None,
    *,
    body: bytes = b"",
    headers: tuple[bytes | str, ...] = (),
    length: bytes | str | None = "auto",
) -> bytes:
    lines = [f"{method} ".encode() + _bytes(target) + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}".encode())
    lines.append(b"Connection: close")
    lines.extend(_bytes(h) for h in headers)
    if length == "auto":
        if body or method in ("PUT", "POST"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
    elif length is not None:
        lines.append(b"Content-Length: " + _bytes(length))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _bytes(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8")


HEX = "ab" * 32


def traversal_names(outside: str) -> list[str]:
    """Object names (already as they go on the wire) that try to leave the tenant's root."""
    absolute = quote(outside, safe="")
    return [
        "..",
        "../..",
        "../../../../../../etc/passwd",
        "..%2f..%2f..%2f..%2fsentinel%2fsecret",
        "..%2F..%2F..%2F..%2F..%2Fsentinel%2Fsecret",
        "%2e%2e",
        "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fsentinel%2fsecret",
        "%2E%2E%2F%2E%2E%2F",
        "%252e%252e%252f%252e%252e%252fsentinel",
        "..%252f..%252f..%252fsentinel%252fsecret",
        "%25252e%25252e",
        ".%2e",
        "%2e.",
        "..%5c..%5c..%5csentinel%5csecret",
        "..\\..\\..\\sentinel\\secret",
        "%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afsentinel",
        "%c0%ae%c0%ae",
        "%e0%80%ae%e0%80%ae%e0%80%af",
        "%f0%80%80%ae%f0%80%80%ae",
        "%c1%9c%c1%9c",
        "%c0%2e%c0%2e%c0%2f",
        "%uff0e%uff0e%u2215",
        "%ef%bc%8e%ef%bc%8e%ef%bc%8f",  # fullwidth ．．／
        "%e2%80%a4%e2%80%a4%e2%81%84",  # one-dot leaders and a fraction slash
        "%e2%80%8f" + HEX,  # a right-to-left mark before a valid-looking name
        HEX + "%e2%80%ae",  # a right-to-left override after it
        "%e2%80%8b" + HEX[1:],  # a zero-width space
        HEX.upper(),
        HEX[:63],
        HEX + "0",
        "0x" + HEX[2:],
        HEX + "%00",
        HEX + "%00.pack",
        "%00",
        "%00" + HEX[3:],
        HEX + "%0a",
        HEX + "%0d%0a",
        HEX + "%20",
        HEX[:32] + "%2f" + HEX[32:],
        HEX[:2] + "%2f" + HEX,
        ".",
        "...",
        "....%2f%2f",
        "..;",
        "..%3b%2f..%3b%2f",
        "con",
        "nul",
        "~",
        "~root",
        "config",
        "config%2f..",
        "*",
        absolute,
        "%2f" + absolute,
        "sentinel",
        "a" * 300,
        "%2e%2e%2f" * 300,
        "x" * 4000,
    ]


def build_corpus(t: Target) -> list[Case]:
    cases: list[Case] = []
    names = traversal_names(t.outside)
    kinds = ("packs", "config", "keys", "snapshots")
    for name, kind in itertools.product(names, kinds):
        path = f"/v1/t/acme/{kind}/{name}"
        valid = (kind, name) == ("config", "config")  # the one real name in the list
        cases.append(Case("traversal name", request("GET", path, t.owner), never_ok=not valid))
        if kind in ("packs", "config"):
            for method in ("HEAD", "DELETE"):
                probe = request(method, path, t.owner)
                cases.append(Case("traversal name", probe, never_ok=not valid))
            put = request("PUT", path, t.owner, body=b"planted by the corpus\n")
            cases.append(Case("traversal name", put, never_ok=not valid))
    for bad in (*names[:30], "ACME", "acme%00", "acme%2f..", "acme%2f..%2fbeta", "%61cme%2f.."):
        cases.append(Case("traversal tenant", request("GET", f"/v1/t/{bad}/packs/", t.owner)))
        put = request("PUT", f"/v1/t/{bad}/packs/{STORED_NAME}", t.owner, body=STORED)
        cases.append(Case("traversal tenant", put, never_ok=True))
        cases.append(Case("traversal tenant", request("GET", f"/v1/t/{bad}/usage", t.owner)))
    bad_kinds = (
        *names[:30],
        "PACKS",
        "pack",
        "packs.",
        "packs%00",
        "tenants",
        "tls",
        "server.db",
        "",
        "packs%2fab",
        "%70acks%2f..",
    )
    for kind in bad_kinds:
        cases.append(Case("bad kind", request("GET", f"/v1/t/acme/{kind}/", t.owner)))
        put = request("PUT", f"/v1/t/acme/{kind}/{STORED_NAME}", t.owner, body=STORED)
        cases.append(Case("bad kind", put, never_ok=True))
    for raw in (
        b"/v1/t/acme/packs/" + HEX.encode() + b"\x00",
        b"/v1/t/acme/packs/\x00/../../sentinel",
        b"/v1/t/acme/packs/\xef\xbc\x8e\xef\xbc\x8e",
        b"/v1/t/acme/packs/\xc0\xae\xc0\xae",
        b"/v1/t/acme/packs/\xff\xfe",
        b"/v1/t/acme/packs/../../../../sentinel/secret",
        b"/v1/t/acme/../../../../sentinel/secret",
        b"/v1/t/acme/packs/..\\..\\sentinel",
        b"//etc/passwd",
        b"/v1/t/acme/packs//etc/passwd",
        b"http://127.0.0.1/v1/t/acme/packs/../../../etc/passwd",
        b"/v1/t/acme/packs/" + HEX.encode() + b"?../../x",
        b"/v1/t/acme/packs/" + HEX.encode() + b"#../../x",
        b"/v1/t/acme/packs/" + HEX.encode() + b"\t",
        b"/v1/t/acme/packs/" + HEX.encode() + b" extra",
        b"*",
        b"",
    ):
        for method in ("GET", "PUT"):
            body = b"planted" if method == "PUT" else b""
            cases.append(
                Case("raw path", request(method, raw, t.owner, body=body), True, never_ok=True)
            )
    cases.extend(_body_cases(t))
    cases.extend(_range_cases(t))
    cases.extend(_header_cases(t))
    cases.extend(_json_cases(t))
    cases.extend(_method_cases(t))
    cases.extend(_protocol_cases(t))
    return cases


def _body_cases(t: Target) -> Iterator[Case]:
    new = b"a new object for the body cases\n" * 10
    path = f"/v1/t/acme/packs/{hex_name(new)}"

    def put(length: bytes | str | None, body: bytes, may_close: bool = False, *extra: str) -> Case:
        return Case(
            "body",
            request("PUT", path, t.owner, body=body, length=length, headers=extra),
            may_close,
            never_ok=True,
        )

    yield put(str(MAX_OBJECT + 1), b"")  # refused from the header alone
    yield put(str(10**30), b"")
    yield put("99999999999999999999999999999999999999999", b"x")
    yield Case(
        "body",
        request(
            "PUT",
            f"/v1/t/acme/packs/{hex_name(b'y' * (MAX_OBJECT + 1))}",
            t.owner,
            body=b"y" * (MAX_OBJECT + 1),
        ),
        never_ok=True,
    )
    yield put(str(len(new) - 1), new)  # shorter than the body
    yield put("1", new)
    yield put("0", new)
    yield put(str(len(new) + 50), new, True)  # longer: the server waits, then cuts it off
    yield put(str(len(new) * 3), new[:5], True)
    for bad in (
        "-1",
        "-0",
        "abc",
        "1e3",
        "0x10",
        " 10",
        "10 ",
        "+10",
        "1_0",
        "",
        "١٠",
        "10, 10",
        "1.0",
        "NaN",
        "\u00b2",
    ):
        yield put(bad, new, True)
    yield put(None, new, True, f"Content-Length: {len(new)}", "Content-Length: 3")
    yield put(None, new, True, "Transfer-Encoding: chunked")
    chunked = f"{len(new):x}\r\n".encode() + new + b"\r\n0\r\n\r\n"
    yield put(None, chunked, True, "Transfer-Encoding: chunked")
    yield put(str(len(chunked)), chunked, True, "Transfer-Encoding: chunked")
    yield put(None, b"zz\r\nnonsense\r\n", True, "Transfer-Encoding: chunked")
    yield put(None, b"ffffffffffffffffffff\r\nx\r\n", True, "Transfer-Encoding: chunked")
    yield put(str(len(new)), new, True, "Transfer-Encoding: gzip")
    yield put(str(len(new)), new, True, "Transfer-Encoding: chunked, identity")
    yield put(None, new, True)  # no length at all
    for header in ("Expect: 100-continue", "Content-Encoding: gzip", "Content-Type: text/html"):
        valid = request("PUT", path, t.owner, body=new, headers=(header,))  # a valid upload
        yield Case("body", valid)
    yield put(str(len(STORED)), b"\x00" * len(STORED))  # garbage under the wrong name
    yield Case(  # other bytes under the stored object's name
        "body",
        request("PUT", f"/v1/t/acme/packs/{STORED_NAME}", t.owner, body=b"\x00" * len(STORED)),
        never_ok=True,
    )
    yield Case(
        "body",
        request("PUT", "/v1/t/acme/config/config", t.owner, body=b"x" * 10, length="2"),
        True,
        never_ok=True,
    )


def _range_cases(t: Target) -> Iterator[Case]:
    path = f"/v1/t/acme/packs/{STORED_NAME}"
    for wanted in (
        "bytes=",
        "bytes=a-b",
        "bytes=5-1",
        "bytes=-5",
        "bytes=0-0,2-3",
        "bytes=99999999999999999999-",
        "bytes=999999999999999-",
        "bytes=100000-",
        f"bytes={len(STORED)}-",
        "bytes=0-18446744073709551616",
        "bytes= 0-1",
        "bytes=0--1",
        "bytes=-0",
        "bytes=--",
        "items=0-1",
        "bytes=0-1\x0b",
        "bytes=١-٢",
        "bytes=0-1 " + "9" * 10000,
        "bytes=" + "0" * 20 + "-1",
    ):
        yield Case("range", request("GET", path, t.owner, headers=(b"Range: " + _bytes(wanted),)))
    yield Case("range", request("GET", path, t.owner, headers=("Range: bytes=0-1",) * 50))
    yield Case(
        "range",
        request("GET", "/v1/t/acme/packs/" + "0" * 64, t.owner, headers=("Range: bytes=0-1",)),
    )


def _header_cases(t: Target) -> Iterator[Case]:
    path = "/v1/t/acme/usage"
    yield Case("headers", request("GET", path, t.owner, headers=("X-Big: " + "x" * 100_000,)), True)
    yield Case("headers", request("GET", path, t.owner, headers=("X-Big: " + "x" * 15_000,)), True)
    many = tuple(f"X-Many-{i}: {'y' * 100}" for i in range(1000))
    yield Case("headers", request("GET", path, t.owner, headers=many), True)
    yield Case("headers", request("GET", path, "cairn_" + "a" * 100_000), True)
    yield Case("headers", request("GET", path, None, headers=("Authorization: " + "B" * 8000,)))
    yield Case(
        "headers",
        request(
            "GET",
            path,
            t.owner,
            headers=(
                "X-Fold: a",
                " folded",
            ),
        ),
        True,
    )
    yield Case("headers", request("GET", path, t.owner, headers=("No colon here",)), True)
    yield Case("headers", request("GET", path, t.owner, headers=("Bad Name: x",)), True)
    yield Case("headers", request("GET", path, t.owner, headers=(b"X-Bin: \x00\x01\x7f",)), True)
    yield Case("headers", request("GET", path, t.owner, headers=(b"X-Utf8: \xc3\xa9\xe2\x80\xae",)))
    yield Case("headers", request("GET", path, t.owner, headers=("Host: evil.example",)), True)
    yield Case(
        "headers",
        request("GET", path, None, headers=(f"Authorization: Bearer {t.owner}",) * 2),
    )
    yield Case(
        "headers", request("GET", path, None, headers=(f"Authorization: bearer  {t.owner} ",))
    )
    yield Case(
        "headers", request("GET", path, None, headers=("Authorization: Bearer\t" + t.owner,))
    )


def _json_cases(t: Target) -> Iterator[Case]:
    bodies: list[bytes] = [
        b"",
        b"{",
        b"[]",
        b"null",
        b'"x"',
        b"1",
        b"{}",
        b'{"name": 1}',
        b'{"name": null, "quota": null}',
        b'{"name": "ok-but", "quota": "10"}',
        b'{"name": "bad\\n", "quota": null}',
        b'{"name": "..", "quota": null}',
        b'{"name": "../../sentinel", "quota": null}',
        b'{"name": "a\\u0000b", "quota": null}',
        b'{"name": "\\ud800", "quota": null}',
        b'{"name": "' + b"n" * 1000 + b'", "quota": null}',
        b'{"name": "big-quota", "quota": 100000000000000000000000000000}',
        b'{"name": "float-quota", "quota": 1.5}',
        b'{"name": "inf-quota", "quota": 1e999}',
        b'{"name": "nan-quota", "quota": NaN}',
        b'{"name": "neg-quota", "quota": -1}',
        b'{"name": "bool-quota", "quota": true}',
        b'{"name": "dup", "name": "..", "quota": null}',
        b"\xff\xfe{\x00}\x00",
        b"\xef\xbb\xbf{}",
        b"{" + b'"a":' * 1 + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"[" * 30_000 + b"]" * 30_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b'{"quota": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        b" " * 70_000 + b"{}",
        b'{"label": "' + b"z" * 2_000_000 + b'"}',
    ]
    for body in bodies:
        yield Case("json", request("POST", "/v1/admin/tenants", t.admin, body=body), never_ok=True)
        put = request("PUT", "/v1/admin/tenants/acme/quota", t.admin, body=body)
        yield Case("json", put, never_ok=not _sets_no_quota(body))
    for body in (
        b'{"role": []}',
        b'{"role": {}}',
        b'{"role": null}',
        b'{"role": "server-admin"}',
        b'{"role": "root"}',
        b'{"role": "backup", "label": 5}',
        b'{"role": "backup", "label": "' + b"l" * 500 + b'"}',
        b"[" * 50_000,
    ):
        post = request("POST", "/v1/admin/tenants/acme/tokens", t.admin, body=body)
        yield Case("json", post, never_ok=True)
    for tenant in ("nosuch", "..%2f..", "%00", "acme%2f..%2fbeta"):
        body = b'{"quota": 5}'
        yield Case("json", request("PUT", f"/v1/admin/tenants/{tenant}/quota", t.admin, body=body))
        body = b'{"role": "backup"}'
        yield Case(
            "json",
            request("POST", f"/v1/admin/tenants/{tenant}/tokens", t.admin, body=body),
            never_ok=True,
        )
    for token_id in ("..", "%00", "x" * 5000, "%2e%2e%2f", "000000000000"):
        yield Case("json", request("DELETE", f"/v1/admin/tokens/{token_id}", t.admin))


def _sets_no_quota(body: bytes) -> bool:
    """True for a body that validly clears a quota (`{"quota": null}` or no quota at all)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(parsed, dict) and parsed.get("quota") is None


def _method_cases(t: Target) -> Iterator[Case]:
    paths = (
        "/v1/health",
        "/v1/openapi.json",
        "/v1/t/acme/packs/",
        f"/v1/t/acme/packs/{STORED_NAME}",
        "/v1/t/acme/usage",
        "/v1/admin/tenants",
        "/v1/admin/tokens",
    )
    methods = ("POST", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "MOVE", "get", "GETT")
    for path, method in itertools.product(paths, methods):
        yield Case("method", request(method, path, t.owner), never_ok=True)
    yield Case("method", request("DELETE", "/v1/t/acme/packs/", t.owner), never_ok=True)
    yield Case("method", request("PUT", "/v1/t/acme/usage", t.owner, body=b"{}"), never_ok=True)


def _protocol_cases(t: Target) -> Iterator[Case]:
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        b"GET /v1/health HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /v1/health HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /v1/health HTTP/1.0\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /v1/health\r\n\r\n",
        b"GET\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"GET /v1/health HTTP/1.1\nHost: x\nConnection: close\n\n",
        b"GET  /v1/health  HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        bytes(range(256)) * 4,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, close\r\n\r\n",
        # two requests in one: the second tries to climb out
        request("GET", "/v1/health", None).replace(b"Connection: close\r\n", b"")
        + request("PUT", "/v1/t/acme/packs/..%2f..%2f..%2fsentinel%2fx", t.owner, body=b"x"),
    ):
        yield Case("protocol", raw, may_close=True, never_ok=False)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Target]]:
    base = tmp_path_factory.mktemp("corpus")
    sentinel = base / "sentinel"
    (sentinel / "etc").mkdir(parents=True)
    (sentinel / "secret").write_text("must stay as it is\n")
    (sentinel / "etc" / "passwd").write_text("root:x:0:0\n")
    extra = ("--max-object", "1M", "--client-timeout", str(CLIENT_TIMEOUT))
    with running_server(base / "data", True, *extra) as server:
        owner = server.tenant("acme")
        server.tenant("beta")
        tenant_root = base / "data" / "tenants" / server.services().tenants.get("acme").id
        target = Target(
            server.port,
            tenant_root,
            server.token(None, Role.SERVER_ADMIN),
            owner,
            str(sentinel / "secret"),
        )
        with httpx.Client(verify=False, base_url=server.url) as client:
            headers = {"authorization": f"Bearer {owner}"}
            stored = client.put(f"/v1/t/acme/packs/{STORED_NAME}", content=STORED, headers=headers)
            assert stored.status_code == 201
        yield server, target


def test_the_corpus_finds_no_server_error_and_touches_nothing_outside_the_tenant(
    attacked: tuple[RunningServer, Target],
) -> None:
    server, target = attacked
    data = server.data
    sentinel = Path(target.outside).parent
    own = {target.tenant_root, data / "partial" / target.tenant_root.name}  # resumable uploads
    skip = (
        own
        | {data / "server.log"}
        | set(data.glob("server.db*"))
        | set(data.glob("replication.db*"))
    )
    before = picture(data, skip), picture(sentinel, set())
    corpus = build_corpus(target)
    answers: list[tuple[Case, RawAnswer]] = []
    for number, case in enumerate(corpus):
        source = f"127.2.{number // 200}.{number % 200 + 1}"  # each its own throttle identity
        answer = raw_exchange(target.port, case.request, source=source, timeout=CLIENT_TIMEOUT * 10)
        answers.append((case, answer))
    statuses = Counter(answer.status for _, answer in answers)
    print(f"\ncorpus: {len(corpus)} requests; statuses {dict(sorted(statuses.items(), key=str))}")

    assert len(corpus) >= 200
    assert [(c.category, c.request[:120]) for c, a in answers if a.timed_out] == []
    assert [a.head for _, a in answers if a.status is not None and a.status >= 500] == []
    assert [c.request[:120] for c, a in answers if a.status and 300 <= a.status < 400] == []
    assert [
        (c.category, c.request[:120]) for c, a in answers if a.status is None and not c.may_close
    ] == []
    accepted = [
        (c.category, c.request[:160], a.status)
        for c, a in answers
        if c.never_ok and a.status is not None and 200 <= a.status < 300
    ]
    assert accepted == []
    log = server.log()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
    assert (picture(data, skip), picture(sentinel, set())) == before
    assert strays(target.tenant_root) == []
    _assert_healthy(server, target)


def _assert_healthy(server: RunningServer, target: Target) -> None:
    with httpx.Client(verify=False, base_url=server.url) as client:
        assert client.get("/v1/health").status_code == 200
        headers = {"authorization": f"Bearer {target.owner}"}
        data = b"after the corpus\n"
        path = f"/v1/t/acme/packs/{hex_name(data)}"
        assert client.put(path, content=data, headers=headers).status_code in (200, 201)
        assert client.get(path, headers=headers).content == data
        assert client.get(f"/v1/t/acme/packs/{STORED_NAME}", headers=headers).content == STORED


# Slow clients: cut off by the server's client timeout, not held forever


def _connect(port: int, source: str) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock)


def _dribble(sock: ssl.SSLSocket, data: bytes, pause: float, limit: float) -> bool:
    """Send `data` a byte at a time, `pause` seconds apart; True once the server has closed the
    connection, False if `limit` seconds passed with the connection still open."""
    started = time.monotonic()
    for byte in itertools.cycle(data):
        if time.monotonic() - started > limit:
            return False
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return True
        sock.settimeout(pause)
        try:
            sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            pass
        return True  # the server answered or closed before the request was whole: cut off
    return False


@pytest.mark.parametrize(
    "opening",
    [
        pytest.param(b"", id="a connection that never speaks"),
        pytest.param(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n", id="headers a byte at a time"),
        pytest.param("body a byte at a time", id="a body a byte at a time"),
        pytest.param("body that stops", id="a body that stops short"),
    ],
)
def test_slow_clients_are_cut_off(attacked: tuple[RunningServer, Target], opening: object) -> None:
    server, target = attacked
    data = b"slowly\n" * 100
    sock = _connect(target.port, "127.3.0.1")
    with sock:
        if opening == b"":
            sock.settimeout(CLIENT_TIMEOUT * 15)
            try:
                closed = sock.recv(1) == b""
            except TimeoutError:
                closed = False
            assert closed, "an idle connection was never closed"
            return
        if isinstance(opening, bytes):
            assert _dribble(sock, b"X-Slow: still coming\r\n", 0.5, CLIENT_TIMEOUT * 15)
            return
        head = request("PUT", f"/v1/t/acme/packs/{hex_name(data)}", target.owner, body=data)
        head = head[: len(head) - len(data)]
        sock.sendall(head + data[:3])
        if opening == "body that stops":
            sock.settimeout(CLIENT_TIMEOUT * 15)
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                answer = None
            assert answer is not None, "an unfinished body held the connection"
            assert not answer.startswith(b"HTTP/1.1 2")
            return
        assert _dribble(sock, data[3:], CLIENT_TIMEOUT * 1.5, CLIENT_TIMEOUT * 15)
    _assert_healthy(server, target)


def test_a_slow_upload_gives_its_slot_back(tmp_path: Path) -> None:
    """With one upload slot, a client that stalls mid-body is cut off and the next upload runs."""
    extra = ("--max-uploads", "1", "--client-timeout", str(CLIENT_TIMEOUT))
    with running_server(tmp_path / "data", True, *extra) as server:
        owner = server.tenant("acme")
        data = b"stalled upload\n" * 50
        sock = _connect(server.port, "127.3.0.2")
        with sock:
            full = request("PUT", f"/v1/t/acme/packs/{hex_name(data)}", owner, body=data)
            sock.sendall(full[:-10])
            sock.settimeout(CLIENT_TIMEOUT * 15)
            assert sock.recv(4096) is not None  # cut off (closed, or an error answer)
        with httpx.Client(verify=False, base_url=server.url) as client:
            headers = {"authorization": f"Bearer {owner}"}
            other = b"the next upload\n"
            put = client.put(f"/v1/t/acme/packs/{hex_name(other)}", content=other, headers=headers)
            assert put.status_code == 201
        assert "Traceback" not in server.log()


# Regressions, in-process: each of these once answered 500 (or worse) before its fix


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = make_site(tmp_path)
    with made.client:
        yield made


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/v1/admin/tenants", b"[" * 30_000 + b"]" * 30_000, id="array bomb"),
        pytest.param(
            "/v1/admin/tenants", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, id="object bomb"
        ),
        pytest.param("/v1/admin/tenants/acme/tokens", b"[" * 50_000, id="unclosed bomb"),
        pytest.param(
            "/v1/admin/tenants",
            b'{"name": "huge", "quota": 1' + b"0" * 30 + b"}",
            id="quota past SQLite's integers",
        ),
        pytest.param("/v1/admin/tenants", b'{"name": "yes", "quota": true}', id="quota true"),
        pytest.param(
            "/v1/admin/tenants",
            b'{"name": "line\\n", "quota": null}',
            id="name with a trailing newline",
        ),
        pytest.param(
            "/v1/admin/tenants/acme/tokens",
            b'{"role": "backup", "label": "\\ud800"}',
            id="label with a lone surrogate",
        ),
        pytest.param(
            "/v1/admin/tenants/acme/tokens",
            b'{"role": "backup", "label": "a\\nb"}',
            id="label with a newline",
        ),
        pytest.param("/v1/admin/tenants", b" " * (64 * 1024 + 1), id="JSON over the limit"),
    ],
)
def test_admin_json_that_once_failed_is_a_bad_request(site: Site, path: str, body: bytes) -> None:
    admin = {"authorization": f"Bearer {site.token(None, Role.SERVER_ADMIN)}"}
    tenants = site.services.tenants.all()
    answer = site.client.post(path, content=body, headers=admin)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "CAIRN-E068"
    assert site.services.tenants.all() == tenants


def test_a_quota_past_sqlite_integers_is_a_bad_request(site: Site) -> None:
    admin = {"authorization": f"Bearer {site.token(None, Role.SERVER_ADMIN)}"}
    for quota in (10**30, 2**63, True, -1):
        answer = site.client.put(
            "/v1/admin/tenants/acme/quota", json={"quota": quota}, headers=admin
        )
        assert answer.status_code == 400, (quota, answer.text)
    assert (
        site.client.put(
            "/v1/admin/tenants/acme/quota", json={"quota": 2**63 - 1}, headers=admin
        ).status_code
        == 204
    )


@pytest.mark.parametrize("path", ["/v1/t/acme/packs", "/v1/t/acme/usage/", "/v1/health/"])
def test_a_path_with_a_slash_too_many_or_few_is_a_404_not_a_redirect(site: Site, path: str) -> None:
    owner = {"authorization": f"Bearer {site.token('acme', Role.TENANT_ADMIN)}", "host": "evil"}
    answer = site.client.get(path, headers=owner, follow_redirects=False)
    assert answer.status_code == 404 and "location" not in answer.headers


@pytest.mark.parametrize("path", ["/v1/t/acme/packs/" + hex_name(b"abc"), "/v1/admin/tenants"])
def test_a_client_gone_mid_body_is_not_a_server_error(site: Site, path: str) -> None:
    """The connection drops after part of the body: no 500, no traceback, the slot is back."""
    method = "PUT" if "/t/" in path else "POST"
    role = (None, Role.SERVER_ADMIN) if method == "POST" else ("acme", Role.TENANT_ADMIN)
    token = site.token(*role).encode()
    incoming = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, object]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", b"Bearer " + token), (b"content-length", b"3")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8443),
    }

    async def receive() -> Any:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    async def call() -> None:
        await site.client.app(scope, receive, send)  # raises if the application failed

    asyncio.run(call())
    assert sent[0]["status"] == 400
    assert site.services.uploads.acquire(blocking=False)  # the upload slot was given back
    site.services.uploads.release()


def test_the_real_server_refuses_nesting_bombs_and_huge_numbers(
    attacked: tuple[RunningServer, Target],
) -> None:
    """The admin JSON routes answer 400 to what once made them fail with 500."""
    server, target = attacked
    headers = {"authorization": f"Bearer {target.admin}"}
    with httpx.Client(verify=False, base_url=server.url, headers=headers) as client:
        for body in (
            b"[" * 30_000 + b"]" * 30_000,
            json.dumps({"name": "huge", "quota": 10**30}).encode(),
            json.dumps({"name": "yes", "quota": True}).encode(),
            json.dumps({"name": "line\n", "quota": None}).encode(),
        ):
            answer = client.post("/v1/admin/tenants", content=body)
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["code"] == "CAIRN-E068"
        answer = client.put("/v1/admin/tenants/acme/quota", json={"quota": 10**30})
        assert answer.status_code == 400
        assert [t["name"] for t in client.get("/v1/admin/tenants").json()] == ["acme", "beta"]
