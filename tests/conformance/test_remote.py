"""RemoteBackend passes the conformance suite against a real server over TLS."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.remote import (
    RESUMABLE_ABOVE,
    UPLOAD_PART,
    KnownServers,
    RemoteBackend,
    parse_address,
)
from cairn.backends.testing.conformance import BackendConformance, object_name
from tests.support.serverfixture import RunningServer, running_server

_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


class TestRemoteBackend(BackendConformance):
    @pytest.fixture
    def backend(self, server: RunningServer, tmp_path: Path) -> Iterator[Backend]:
        name = f"t{next(_names)}"
        token = server.tenant(name)
        known = KnownServers(tmp_path / "known_servers")
        backend = RemoteBackend(parse_address(server.location(name)), token, known)
        yield backend
        backend.close()


def test_a_large_upload_resumes_where_it_broke(server: RunningServer, tmp_path: Path) -> None:
    token = server.tenant("resumed")
    data = os.urandom(RESUMABLE_ABOVE + UPLOAD_PART + 12345)
    handle = Handle(ObjectKind.PACK, object_name(data))
    url = f"{server.url}/v1/t/resumed/uploads/packs/{handle.name}"
    auth = {"authorization": f"Bearer {token}"}
    with httpx.Client(verify=False) as http:
        first = http.patch(  # one part arrives, then the connection "breaks"
            url,
            content=data[:UPLOAD_PART],
            headers={**auth, "upload-offset": "0", "upload-length": str(len(data))},
        )
        assert first.status_code == 204 and first.headers["upload-offset"] == str(UPLOAD_PART)
        assert http.head(url, headers=auth).headers["upload-offset"] == str(UPLOAD_PART)
    sent: list[int] = []
    backend = RemoteBackend(
        parse_address(server.location("resumed")), token, KnownServers(tmp_path / "k")
    )
    client = backend._client()  # made at the first request; made here to count its requests
    original = client.request

    def counting(method: str, url: str, **kwargs: object) -> httpx.Response:
        if method == "PATCH":
            sent.append(len(kwargs["content"]))  # type: ignore[arg-type]
        return original(method, url, **kwargs)  # type: ignore[arg-type]

    client.request = counting  # type: ignore[method-assign, assignment]
    backend.save(handle, data)
    assert sum(sent) == len(data) - UPLOAD_PART, "only what the server lacked was sent again"
    assert backend.load(handle) == data
    with httpx.Client(verify=False) as http:
        assert http.head(url, headers=auth).headers["upload-offset"] == "0"
    backend.close()
