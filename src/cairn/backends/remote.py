"""A backend on a Cairn server, over the wire protocol (docs/wire-protocol.md), with httpx.

``cairns://host:port/tenant`` speaks TLS. The server's certificate is pinned on first use: its
SHA-256 fingerprint is written to the known-servers file, and every later connection verifies
against exactly that certificate, so a changed certificate is `CertificateMismatch`, never a
prompt. ``cairn://`` (no TLS) is accepted for loopback addresses only, where a token cannot be
overheard.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import ssl
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import httpx

from cairn.backends.base import (
    Capabilities,
    ChunkAnswer,
    Handle,
    ObjectInfo,
    ObjectKind,
    exists_by_stat,
)
from cairn.backends.contract import check_handle, read_span
from cairn.backends.errors import (
    AlreadyExists,
    AuthenticationFailed,
    BackendError,
    Busy,
    CertificateMismatch,
    KnownServersUnusable,
    ListingIncomplete,
    MalformedAnswer,
    NotFound,
    QuotaExceeded,
    RoleForbidden,
    ServerNotPrimary,
    ServerUnreachable,
    StaleEpochRefused,
    StorageFull,
    Throttled,
    TokenExpired,
    TransientBackendError,
)
from cairn.core.addresses import is_loopback

_KINDS = {kind.value: kind for kind in ObjectKind}
RESUMABLE_ABOVE = 16 * 1024 * 1024
"""Objects larger than this go up in parts that survive a broken connection."""
UPLOAD_PART = 8 * 1024 * 1024
CONNECT_TIMEOUT = 10.0
"""Seconds one attempt waits for a connection (TCP and the certificate fetch alike)."""
DEFAULT_RETRY_AFTER = 2.0
"""Seconds to wait after a 503 or 429 that names no Retry-After (a proxy's, say)."""
MAX_RETRY_AFTER = 300.0
CHUNK_QUERY_MAX = 4096
"""Chunk IDs per chunk query (the server refuses more with 413)."""
_CHUNK_ANSWER = struct.Struct("<32s32sBQI")
"""One record of a chunk query's answer: chunk ID, pack name, kind, offset, length."""


@dataclass(frozen=True, slots=True)
class ServerAddress:
    scheme: str
    host: str
    port: int
    tenant: str
    copy: str = ""
    """`<server-id>/<tenant-id>`: a copy another server replicated into the tenant, its area
    (design 17.14); '' for the tenant's own repository."""

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.scheme == 'cairns' else 'http'}://{host}:{self.port}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        copy = f"/{self.copy}" if self.copy else ""
        return f"{self.scheme}://{host}:{self.port}/{self.tenant}{copy}"

    @property
    def prefix(self) -> str:
        """The path of the repository's routes on the server (docs/wire-protocol.md)."""
        return f"/v1/t/{self.tenant}" + (f"/c/{self.copy}" if self.copy else "")


_COPY_SEGMENT = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def parse_address(location: str) -> ServerAddress:
    """``cairns://host[:port]/tenant`` (default port 8443) or ``cairn://`` on loopback; a
    copy replicated into the tenant adds ``/<server-id>/<tenant-id>`` (design 17.14)."""
    parts = urlsplit(location)
    tenant, _, copy = parts.path.strip("/").partition("/")
    if parts.scheme not in ("cairn", "cairns") or not parts.hostname or not tenant:
        raise BackendError(f"{location!r}: use cairns://HOST:PORT/TENANT")
    segments = copy.split("/") if copy else []
    valid_copy = len(segments) == 2 and all(_COPY_SEGMENT.fullmatch(s) for s in segments)
    if (copy and not valid_copy) or parts.query or parts.fragment or parts.username:
        raise BackendError(
            f"{location!r}: the path is one tenant name, or a tenant and a copy in it "
            "(TENANT/SERVER-ID/TENANT-ID), with nothing after it"
        )
    try:
        port = parts.port or 8443
    except ValueError as exc:
        raise BackendError(f"{location!r}: bad port") from exc
    address = ServerAddress(parts.scheme, parts.hostname, port, tenant, copy)
    if address.scheme == "cairn" and not is_loopback(address.host):
        raise BackendError(
            f"{location!r}: plain cairn:// is for loopback only; use cairns:// (TLS) for "
            "another machine"
        )
    return address


class KnownServers:
    """Pinned certificates, one ``host:port fingerprint`` line each (like ssh's known_hosts)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def get(self, address: ServerAddress) -> str | None:
        key = f"{address.host}:{address.port}"
        try:
            lines = self._path.read_text().splitlines()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KnownServersUnusable(
                f"cannot read the known-servers file {self._path}: {exc.strerror or exc}"
            ) from exc
        for line in lines:
            host, _, fingerprint = line.partition(" ")
            if host == key:
                return fingerprint.strip()
        return None

    def add(self, address: ServerAddress, fingerprint: str) -> None:
        with self._lock:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with self._path.open("a") as out:
                    out.write(f"{address.host}:{address.port} {fingerprint}\n")
            except OSError as exc:
                raise KnownServersUnusable(
                    f"cannot pin {address.host}:{address.port}'s certificate in the "
                    f"known-servers file {self._path}: {exc.strerror or exc}"
                ) from exc

    @property
    def path(self) -> Path:
        return self._path


def fetch_certificate(address: ServerAddress, timeout: float = 10.0) -> str:
    """The PEM certificate the server shows (read without trusting it: for pinning)."""
    try:
        return ssl.get_server_certificate((address.host, address.port), timeout=timeout)
    except (OSError, ssl.SSLError) as exc:
        raise ServerUnreachable(f"cannot reach {address}: {exc}") from exc


def pem_fingerprint(pem: str) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def pinned_context(
    address: ServerAddress,
    known: KnownServers | None,
    expected: str | None,
    record: bool = True,
    timeout: float = 10.0,
) -> ssl.SSLContext:
    """A TLS context that trusts exactly the certificate pinned for `address` (`expected`, else
    the known-servers file's; with none, the one shown now, written down when `record`)."""
    pinned = known.get(address) if known is not None else None
    pem = fetch_certificate(address, timeout)
    shown = pem_fingerprint(pem)
    wanted = expected or pinned
    if wanted is not None and shown != wanted.lower().replace(":", ""):
        if expected:
            where = "required by CAIRN_SERVER_FINGERPRINT"
            fix = "set CAIRN_SERVER_FINGERPRINT to the new fingerprint"
        else:
            where = f"pinned in {known.path if known is not None else 'known_servers'}"
            fix = "remove its line from that file and connect again"
        raise CertificateMismatch(
            f"{address.host}:{address.port} shows certificate {shown}, not {wanted} "
            f"({where}): the server changed its certificate, or someone is in between. "
            f"If the server's certificate was replaced on purpose, {fix}"
        )
    if pinned is None and known is not None and record:
        known.add(address, shown)
    context = ssl.create_default_context(cadata=pem)
    context.check_hostname = False  # the pin names the one certificate to accept
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a pinned leaf is its own anchor
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def check_health(
    address: ServerAddress, known: KnownServers | None, expected: str | None, timeout: float
) -> None:
    """Return when the server answers `GET /v1/health` within `timeout`; else ServerUnreachable
    (or CertificateMismatch when it shows another certificate than the pinned one). No token is
    sent, and a certificate seen for the first time is not written down."""
    verify: ssl.SSLContext | bool = False
    if address.scheme == "cairns":
        verify = pinned_context(address, known, expected, record=False, timeout=timeout)
    try:
        response = httpx.get(
            f"{address.base_url}/v1/health",
            verify=verify,
            timeout=timeout,
            headers={"user-agent": "cairn"},
        )
    except httpx.HTTPError as exc:
        raise ServerUnreachable(f"cannot reach {address}: {exc}") from exc
    if response.status_code != 200:
        raise ServerUnreachable(f"{address} answers its health check with {response.status_code}")


class RemoteBackend:
    """Objects of one tenant on a Cairn server."""

    def __init__(
        self,
        address: ServerAddress,
        token: str,
        known: KnownServers | None = None,
        expected_fingerprint: str | None = None,
        connections: int = 8,
        timeout: float = 60.0,
    ) -> None:
        self._address = address
        self._token = token
        self._known = known
        self._expected = expected_fingerprint
        self._connections = connections
        self._timeout = timeout
        self._http: httpx.Client | None = None
        self._connecting = threading.Lock()
        self._prefix = address.prefix
        self._refusal: AuthenticationFailed | None = None
        """The server's first refusal of the token: every later call raises it again, unsent."""

    @property
    def capabilities(self) -> Capabilities:
        # A copy answers no chunk query (design 17.14): it is restored from, never backed up to
        chunk_query = not self._address.copy
        return Capabilities(connections=self._connections, local=False, chunk_query=chunk_query)

    def _client(self) -> httpx.Client:
        """The HTTP client, made at the first request: the certificate is fetched (and pinned)
        then, so a server that is not up yet fails that request with ServerUnreachable, which a
        retrying wrapper retries like any other (design 14.9), instead of failing at once."""
        with self._connecting:
            if self._http is None:
                verify: ssl.SSLContext | bool = False
                if self._address.scheme == "cairns":
                    verify = pinned_context(
                        self._address, self._known, self._expected, timeout=CONNECT_TIMEOUT
                    )
                self._http = httpx.Client(
                    base_url=self._address.base_url,
                    headers={"authorization": f"Bearer {self._token}", "user-agent": "cairn"},
                    verify=verify,
                    timeout=httpx.Timeout(self._timeout, connect=CONNECT_TIMEOUT),
                    limits=httpx.Limits(
                        max_connections=self._connections,
                        max_keepalive_connections=self._connections,
                    ),
                )
            return self._http

    def location(self) -> str:
        return str(self._address)

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        check_handle(handle)
        body = bytes(data)
        if len(body) > RESUMABLE_ABOVE:
            self._save_resumable(handle, body)
            return
        response = self._request("PUT", self._url(handle), content=body)
        if response.status_code not in (200, 201):
            self._fail(response, handle)

    def _save_resumable(self, handle: Handle, body: bytes) -> None:
        """In parts, from wherever the server's copy stands: a save retried after a broken
        connection sends only what the server does not have yet."""
        url = f"{self._prefix}/uploads/{handle.kind.value}/{handle.name}"
        response = self._request("HEAD", url)
        if response.status_code != 200:
            self._fail(response, handle)
        offset = int(response.headers["upload-offset"])
        while True:
            headers = {"upload-offset": str(offset), "upload-length": str(len(body))}
            part = body[offset : offset + UPLOAD_PART]
            response = self._request("PATCH", url, content=part, headers=headers)
            if response.status_code in (200, 201):
                return
            if response.status_code == 204:
                offset = int(response.headers["upload-offset"])
            elif response.status_code == 409 and _detail(response, "offset") is not None:
                offset = int(str(_detail(response, "offset")))
            else:
                self._fail(response, handle)

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        check_handle(handle)
        if offset == 0 and length is None:
            response = self._request("GET", self._url(handle))
            if response.status_code != 200:
                self._fail(response, handle)
            return response.content
        if offset < 0 or (length is not None and length < 1):
            return self._load_checked(handle, offset, length)
        # One request, no HEAD first: the answer's Content-Range says the object's size
        last = "" if length is None else str(offset + length - 1)
        response = self._request(
            "GET", self._url(handle), headers={"range": f"bytes={offset}-{last}"}
        )
        if response.status_code not in (206, 416):
            self._fail(response, handle)
        count = read_span(_range_total(response, handle), offset, length, handle)
        if count == 0:
            return b""
        if response.status_code != 206 or len(response.content) != count:
            raise BackendError(f"short read of {handle}: got {len(response.content)} of {count}")
        return response.content

    def _load_checked(self, handle: Handle, offset: int, length: int | None) -> bytes:
        """A span the server cannot be asked for (negative, empty): judged against the size."""
        read_span(self.stat(handle).size, offset, length, handle)
        return b""

    def stat(self, handle: Handle) -> ObjectInfo:
        check_handle(handle)
        response = self._request("HEAD", self._url(handle))
        if response.status_code != 200:
            self._fail(response, handle)
        return ObjectInfo(handle, int(response.headers["content-length"]))

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        infos: list[ObjectInfo] = []
        complete = False
        self._raise_if_refused()
        try:
            with self._client().stream("GET", f"{self._prefix}/{kind.value}/") as response:
                if response.status_code != 200:
                    response.read()
                    self._fail(response, None)
                for line in response.iter_lines():
                    if not line:
                        continue
                    item = json.loads(line)
                    if "complete" in item:
                        complete = item["complete"] is True
                        break
                    infos.append(ObjectInfo(Handle(kind, str(item["name"])), int(item["size"])))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing listed yet: retry
            raise ServerUnreachable(f"cannot reach {self._address}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise ListingIncomplete(
                f"listing {kind.value} on {self._address} broke: {exc}"
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ListingIncomplete(f"the server sent a malformed listing of {kind.value}") from exc
        if not complete:
            raise ListingIncomplete(f"the listing of {kind.value} on {self._address} ended early")
        yield from infos

    def remove(self, handle: Handle) -> None:
        check_handle(handle)
        response = self._request("DELETE", self._url(handle))
        if response.status_code != 204:
            self._fail(response, handle)

    def query_chunks(self, ids: Sequence[bytes]) -> dict[bytes, ChunkAnswer]:
        """Ask the server where the tenant's indexes hold `ids` (design 14.11), 4,096 at a time;
        no IDs is one empty query (it answers 404 on a server that has no chunk query)."""
        found: dict[bytes, ChunkAnswer] = {}
        for start in range(0, max(len(ids), 1), CHUNK_QUERY_MAX):
            part = ids[start : start + CHUNK_QUERY_MAX]
            response = self._request(
                "POST",
                f"{self._prefix}/chunks",
                content=b"".join(part),
                headers={"content-type": "application/octet-stream"},
            )
            if response.status_code != 200:
                self._fail(response, None)
            body = response.content
            if len(body) % _CHUNK_ANSWER.size:
                raise MalformedAnswer(
                    f"{self._address} answered a chunk query with {len(body)} bytes, not whole "
                    f"{_CHUNK_ANSWER.size}-byte records"
                )
            asked = set(part)
            for chunk, pack, kind, offset, length in _CHUNK_ANSWER.iter_unpack(body):
                if chunk in asked:
                    found[chunk] = (pack, kind, offset, length)
        return found

    def exists(self, handle: Handle) -> bool:
        return exists_by_stat(self, handle)

    def post_json(self, path: str, body: object) -> object:
        """POST `body` as JSON to the tenant's `path` (like ``jobs``); the answer's JSON. For the
        small tenant routes beside the objects, with the same client, token and pinning."""
        response = self._request("POST", f"{self._prefix}/{path}", json=body)
        if response.status_code not in (200, 201):
            self._fail(response, None)
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(f"{self._address} answered {path} with malformed JSON") from exc

    def close(self) -> None:
        with self._connecting:
            if self._http is not None:
                self._http.close()

    def _url(self, handle: Handle) -> str:
        return f"{self._prefix}/{handle.kind.value}/{handle.name}"

    def _request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        self._raise_if_refused()
        try:
            return self._client().request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(f"{self._address} did not answer in time ({exc})") from exc
        except httpx.TransportError as exc:
            if isinstance(exc.__cause__, ssl.SSLCertVerificationError) or "CERTIFICATE" in str(exc):
                raise CertificateMismatch(
                    f"{self._address}: the server's certificate does not match the pinned one"
                ) from exc
            raise ServerUnreachable(f"cannot reach {self._address}: {exc}") from exc

    def _raise_if_refused(self) -> None:
        """Send nothing once the server refused the token: it stays refused (revoked, expired),
        and every request more from the upload threads would count against this address at the
        server's throttle, blocking the other machines behind it (design 14.3)."""
        refusal = self._refusal
        if refusal is not None:
            raise type(refusal)(str(refusal))  # a new exception: threads raise it at once

    def _refuse(self, refusal: AuthenticationFailed) -> NoReturn:
        self._refusal = self._refusal or refusal
        raise refusal

    def _fail(self, response: httpx.Response, handle: Handle | None) -> NoReturn:
        status = response.status_code
        message = _message(response) or f"HTTP {status}"
        what = f"{handle}: " if handle is not None else ""
        if status == 404:
            raise NotFound(f"{what}not found on {self._address}")
        if status == 409:
            if _code(response) == "CAIRN-E164":
                raise StaleEpochRefused(f"{what}{message}")
            raise AlreadyExists(f"{what}{message}")
        if status == 401:
            if _code(response) == "CAIRN-E075":
                self._refuse(TokenExpired(f"{self._address}: {message}"))
            self._refuse(AuthenticationFailed(f"{self._address}: {message}"))
        if status == 403:
            raise RoleForbidden(f"{what}{message}")
        if status == 429:
            raise Throttled(f"{self._address}: {message}", _retry_after(response))
        if status == 503:
            if _code(response) == "CAIRN-E163":
                raise ServerNotPrimary(f"{what}{message}", _retry_after(response))
            raise Busy(f"{what}{message}", _retry_after(response))
        if status == 507:
            code = _code(response)
            if code == "CAIRN-E065":
                raise QuotaExceeded(message)
            raise StorageFull(f"the server's storage is full: {message}")
        if status in (500, 502, 504):
            raise TransientBackendError(f"{what}{message}")
        raise BackendError(f"{what}{message}")


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return str(response.headers.get("x-cairn-code", ""))


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return str(response.headers.get("x-cairn-code", ""))


def _retry_after(response: httpx.Response) -> float:
    """Retry-After in seconds (the server sends seconds; a date or garbage means the default)."""
    try:
        seconds = float(response.headers.get("retry-after", DEFAULT_RETRY_AFTER))
    except ValueError:
        return DEFAULT_RETRY_AFTER
    if math.isnan(seconds):
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _detail(response: httpx.Response, key: str) -> object:
    try:
        return response.json()["error"].get(key)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _range_total(response: httpx.Response, handle: Handle) -> int:
    """The object's size from a Content-Range of `bytes FIRST-LAST/SIZE` or `bytes */SIZE`."""
    header = response.headers.get("content-range", "")
    _, _, total = header.rpartition("/")
    if not total.isdigit():
        raise BackendError(f"the server's answer for {handle} has no usable Content-Range")
    return int(total)
