"""A backend on a WebDAV share (RFC 4918), over httpx.

``webdav:https://[user@]host[:port]/path`` (``webdav:http://`` on loopback only, where a password
cannot be overheard). The layout is the local folder's (docs/design.md section 2): ``config``,
one folder per kind, packs in 256 shard folders made on first use (MKCOL: after a PUT refused
with 409 for a small body, before the PUT for a large one, which is not sent twice).

How each obligation of the Backend protocol is met with plain WebDAV methods:

- ``save`` PUTs the bytes to a temporary name in the target folder (``.tmp-<random>``), then
  MOVEs it to its name with ``Overwrite: F``. The MOVE is a rename on the server, so a reader sees
  the whole object or nothing. A 412 answer means the name exists: its bytes are compared, and
  differing ones are AlreadyExists. The server's 201 to the PUT is the acknowledgement; WebDAV has
  no portable way to ask for an fsync.
- ``load`` sends ``Range`` for a part of an object and checks the 206's Content-Range. A server
  that ignores Range (200, the whole object) still gives the right bytes, and from then on the
  backend's capabilities say ``ranged_reads=False``.
- ``list`` is PROPFIND ``Depth: 1`` per folder (``Depth: infinity`` is off on most servers).
  The multistatus XML is parsed with defusedxml (no entities, no DTD: a crafted answer cannot
  blow up memory) and is read up to `MAX_LISTING_BYTES`. A listing cut off or unparseable raises
  ListingIncomplete; an answer that is not a multistatus at all is GarbledAnswer. Temporary names
  are never listed; those older than `STALE_TEMP_AGE` (left by a killed upload) are deleted.
- No resumable writes: WebDAV has no portable partial PUT (Content-Range on PUT is forbidden by
  RFC 9110; SabreDAV's PATCH and Nextcloud's chunking are vendor extensions), so a broken upload
  is sent again whole (RetryingBackend retries it).

Authentication is basic or digest, whichever the server's first 401 asks for (digest first when
it offers both); basic is sent only after a challenge, never in advance.
"""

from __future__ import annotations

import contextlib
import secrets
import ssl
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import NoReturn
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeXml
import httpx
from defusedxml import DefusedXmlException

from cairn.backends.base import Capabilities, Handle, ObjectInfo, ObjectKind, exists_by_stat
from cairn.backends.contract import CONFIG_NAME, check_handle, read_span
from cairn.backends.errors import (
    AlreadyExists,
    BackendError,
    Busy,
    GarbledAnswer,
    ListingIncomplete,
    NotFound,
    PermissionDenied,
    StorageFull,
    StorageLoginRefused,
    StorageTlsFailed,
    TransientBackendError,
)
from cairn.backends.passwordfile import read_password_file
from cairn.core.addresses import is_loopback
from cairn.core.clock import SYSTEM_CLOCK, utc_now
from cairn.core.ids import is_hex_name

TEMP_PREFIX = ".tmp-"
STALE_TEMP_AGE = timedelta(hours=24)
"""A temporary object this old is the remains of a killed upload, not one under way."""
MAX_LISTING_BYTES = 128 * 1024 * 1024
"""A PROPFIND answer larger than this is refused (a folder of Cairn's holds ~400 bytes an entry)."""
DEFAULT_RETRY_AFTER = 2.0
MKCOL_FIRST_BYTES = 1024 * 1024
"""A body this large is not PUT into a folder this backend has not seen yet: the folder is made
first (MKCOL). A PUT into a shard folder not made yet is refused (409) only after its whole body
went up, so the first pack of each of the 256 shards went up twice; smaller bodies still try the
PUT first (one request where the folder exists)."""
_FOLDER_KINDS = tuple(kind for kind in ObjectKind if kind is not ObjectKind.CONFIG)
_LAYOUT_NAMES = frozenset([CONFIG_NAME, *(kind.value for kind in _FOLDER_KINDS)])
_SHARDS = frozenset(f"{i:02x}" for i in range(256))
_DAV = "{DAV:}"
_PROPFIND = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<d:propfind xmlns:d="DAV:"><d:prop>'
    b"<d:resourcetype/><d:getcontentlength/><d:getlastmodified/>"
    b"</d:prop></d:propfind>"
)
_QUOTA = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<d:propfind xmlns:d="DAV:"><d:prop><d:quota-available-bytes/></d:prop></d:propfind>'
)


@dataclass(frozen=True, slots=True)
class WebDavAddress:
    """A share's folder: its URL (no user, trailing slash) and the user named in the location."""

    url: str
    user: str | None

    @property
    def path(self) -> str:
        """The folder's path as the server names it, unquoted, without the trailing slash."""
        return unquote(urlsplit(self.url).path).rstrip("/")

    def __str__(self) -> str:
        return f"webdav:{self.url}"


@dataclass(frozen=True, slots=True)
class WebDavCredentials:
    """The user and password, and the CA file that signs the server's certificate (None: the
    system's trust store, which honours SSL_CERT_FILE)."""

    user: str | None
    password: str | None
    ca_file: str | None = None


def parse_location(location: str) -> WebDavAddress:
    """``webdav:https://[user@]host[:port]/path``; ``webdav:http://`` to loopback only."""
    url = location.removeprefix("webdav:")
    shown = repr(_without_password(location))
    usage = f"{shown}: use webdav:https://[USER@]HOST[:PORT]/PATH"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BackendError(f"{usage} ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackendError(usage)
    if parts.query or parts.fragment:
        raise BackendError(f"{shown}: a WebDAV location has no query or fragment")
    if parts.password is not None:
        raise BackendError(
            f"{shown}: never put the password in the location (it shows in process lists "
            "and shell history); set CAIRN_WEBDAV_PASSWORD or CAIRN_WEBDAV_PASSWORD_FILE"
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise BackendError(
            f"{shown}: plain http:// is accepted for loopback only (a password and the "
            "data would cross the network in the clear); use webdav:https://"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port is None else f"{host}:{port}"
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    user = unquote(parts.username) if parts.username else None
    return WebDavAddress(urlunsplit((parts.scheme, netloc, path, "", "")), user)


def _without_password(location: str) -> str:
    """`location` with any password between ``user:`` and ``@`` masked, for messages."""
    scheme, sep, rest = location.partition("://")
    if not sep:
        return location
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:***@{host}"
    return f"{scheme}{sep}{authority}{slash}{path}"


def webdav_credentials(
    address: WebDavAddress, environ: Mapping[str, str] | None = None
) -> WebDavCredentials:
    """The user (in the location, else CAIRN_WEBDAV_USER), the password (the first line of
    CAIRN_WEBDAV_PASSWORD_FILE, else CAIRN_WEBDAV_PASSWORD) and CAIRN_WEBDAV_CA, from the
    environment the caller passes (the CLI's)."""
    env = environ or {}
    password = env.get("CAIRN_WEBDAV_PASSWORD")
    if file := env.get("CAIRN_WEBDAV_PASSWORD_FILE"):
        password = read_password_file(file, "WebDAV", BackendError)
    user = address.user or env.get("CAIRN_WEBDAV_USER")
    return WebDavCredentials(user, password, env.get("CAIRN_WEBDAV_CA") or None)


class _ChallengedAuth(httpx.Auth):
    """Basic or digest, as the server's first 401 asks: nothing is sent before a challenge."""

    def __init__(self, user: str, password: str) -> None:
        self._basic = httpx.BasicAuth(user, password)
        self._digest = httpx.DigestAuth(user, password)
        self._chosen: httpx.Auth | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._chosen is not None:
            yield from self._chosen.auth_flow(request)
            return
        response = yield request
        if response.status_code != 401:
            return
        offered = " ".join(response.headers.get_list("www-authenticate")).lower()
        if "digest" in offered:
            self._chosen = self._digest
        elif "basic" in offered:
            self._chosen = self._basic
        else:
            return
        yield from self._chosen.auth_flow(request)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One member of a folder, as PROPFIND reports it."""

    name: str
    folder: bool
    size: int | None
    modified: datetime | None


class WebDavBackend:
    """Objects in one folder of a WebDAV share. The constructor creates nothing; see `create`."""

    def __init__(
        self,
        address: WebDavAddress,
        credentials: WebDavCredentials,
        connections: int = 4,
        timeout: float = 60.0,
    ) -> None:
        self._address = address
        self._connections = connections
        self._ranged = True
        self._user = credentials.user
        # httpcore 1.0.9's pool can close a connection it has just handed to a queued request
        # (encode/httpcore#1110): with more threads than connections, Apache's quick answers
        # made one request in ~200 fail with EBADF. Never more requests than connections, so
        # none ever waits in the pool.
        self._slots = threading.BoundedSemaphore(connections)
        self._folders: set[str] = set()
        """Folders this backend made or wrote into (a large PUT into one needs no MKCOL)."""
        auth = None
        if credentials.user is not None:
            auth = _ChallengedAuth(credentials.user, credentials.password or "")
        verify: ssl.SSLContext | bool = False
        if address.url.startswith("https:"):
            verify = ssl.create_default_context(cafile=credentials.ca_file)
        self._client = httpx.Client(
            auth=auth,
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=15.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers={"user-agent": "cairn"},
            trust_env=False,
        )

    @classmethod
    def create(cls, address: WebDavAddress, credentials: WebDavCredentials) -> WebDavBackend:
        """Make the folder and the kinds' folders, and return the backend. An empty folder or a
        Cairn layout is accepted; a folder holding anything else is refused."""
        backend = cls(address, credentials)
        try:
            backend._make_layout()
        except BaseException:
            backend.close()
            raise
        return backend

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            connections=self._connections,
            local=False,
            ranged_reads=self._ranged,
            atomic_create=True,
            resumable_writes=False,
            conditional_create=False,
            server_checksums=False,
        )

    def location(self) -> str:
        return str(self._address)

    # ---- the Backend protocol -----------------------------------------------------------

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        path = self._path(handle)
        body = bytes(data)
        folder = path.rpartition("/")[0]
        temp = f"{folder}/{TEMP_PREFIX}{secrets.token_hex(8)}".lstrip("/")
        try:
            self._put(temp, body, folder, handle)
            response = self._request(
                "MOVE",
                temp,
                headers={"destination": self._url(path), "overwrite": "F"},
            )
        except BaseException:
            self._discard(temp)
            raise
        if response.status_code in (200, 201, 204):
            return
        self._discard(temp)
        if response.status_code >= 500 and self._holds(handle, path, body):
            return  # two writers of one object: wsgidav answers the loser's MOVE with a 500
        if response.status_code != 412:
            self._fail(response, handle, "MOVE")
        if self._load_whole(handle, path) != body:
            raise AlreadyExists(f"{handle} exists on {self._address} with different bytes")

    def _holds(self, handle: Handle, path: str, body: bytes) -> bool:
        """Whether `path` now holds exactly `body` (a failed MOVE may have lost a race to a
        writer of the same object; then the save is done)."""
        try:
            return self._load_whole(handle, path) == body
        except BackendError:
            return False

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(handle)
        if offset == 0 and length is None:
            return self._load_whole(handle, path)
        if offset < 0 or (length is not None and length < 1):
            read_span(self.stat(handle).size, offset, length, handle)
            return b""
        last = "" if length is None else str(offset + length - 1)
        headers = {"range": f"bytes={offset}-{last}"}
        try:
            with (
                self._slots,
                self._client.stream("GET", self._url(path), headers=headers) as response,
            ):
                if response.status_code == 206:
                    return self._read_range(response, handle, offset, length)
                response.read()
        except httpx.HTTPError as exc:
            self._transport_error(exc, "GET", path)
        status = response.status_code
        if status == 200:  # the server ignored Range: the whole object came
            self._ranged = False
            count = read_span(len(response.content), offset, length, handle)
            return response.content[offset : offset + count]
        if status == 416:
            read_span(self.stat(handle).size, offset, length, handle)
            return b""
        self._fail(response, handle, "GET")

    def _read_range(
        self, response: httpx.Response, handle: Handle, offset: int, length: int | None
    ) -> bytes:
        """The body of a 206, read no further than the span asked for: a server that sends
        more (a crafted one) costs one byte of memory beyond it, not what it sends."""
        start, total = _content_range(response, self._address)
        count = read_span(total, offset, length, handle)
        parts: list[bytes] = []
        size = 0
        for part in response.iter_bytes():
            parts.append(part)
            size += len(part)
            if size > count:
                break
        body = b"".join(parts)
        if start != offset or len(body) != count:
            raise GarbledAnswer(
                f"{self._address} answered a read of {count} bytes at {offset} of {handle} with "
                f"{'more than ' if len(body) > count else ''}{len(body)} bytes at {start}"
            )
        return body

    def stat(self, handle: Handle) -> ObjectInfo:
        path = self._path(handle)
        response = self._request("HEAD", path)
        if response.status_code != 200:
            self._fail(response, handle, "HEAD")
        size = _int_or_none(response.headers.get("content-length"))
        if size is None:
            # Apache leaves Content-Length out of a HEAD of an empty file: ask PROPFIND.
            size = self._listed_size(handle, path)
        return ObjectInfo(handle, size)

    def _listed_size(self, handle: Handle, path: str) -> int:
        """The object's getcontentlength (PROPFIND Depth 0), for a HEAD answered without one."""
        response = self._request("PROPFIND", path, content=_PROPFIND, headers={"depth": "0"})
        if response.status_code != 207:
            self._fail(response, handle, "PROPFIND")
        root = _parse_multistatus(response.content, self._address)
        prop = next((_found_props(r) for r in root.iterfind(f"{_DAV}response")), None)
        size = _int_or_none(prop.findtext(f"{_DAV}getcontentlength") if prop is not None else None)
        if size is None:
            raise GarbledAnswer(f"{self._address} gave no size for {handle}")
        return size

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        if kind is ObjectKind.CONFIG:
            yield from self._list_config()
            return
        entries = self._members(kind.value, missing_ok=False)
        if kind is not ObjectKind.PACK:
            yield from self._objects(kind, kind.value, entries, "")
            return
        # Up to 256 shard folders, one PROPFIND each: as many at once as the backend has
        # connections, so a prune's listing costs ~256 / connections round trips.
        folders = [f"{kind.value}/{e.name}" for e in entries if e.folder and e.name in _SHARDS]
        with ThreadPoolExecutor(self._connections) as pool:
            listed = list(pool.map(lambda f: self._members(f, missing_ok=True), folders))
        for folder, members in zip(folders, listed, strict=True):
            yield from self._objects(kind, folder, members, folder.rpartition("/")[2])

    def remove(self, handle: Handle) -> None:
        path = self._path(handle)
        response = self._request("DELETE", path)
        if response.status_code not in (200, 204):
            self._fail(response, handle, "DELETE")

    def exists(self, handle: Handle) -> bool:
        return exists_by_stat(self, handle)

    def close(self) -> None:
        self._client.close()

    # ---- saving ---------------------------------------------------------------------------

    def _put(self, temp: str, body: bytes, folder: str, handle: Handle) -> None:
        if folder and len(body) >= MKCOL_FIRST_BYTES and folder not in self._folders:
            self._make_folder(folder)
        for attempt in range(2):
            response = self._request("PUT", temp, content=body)
            if response.status_code in (200, 201, 204):
                self._folders.add(folder)
                return
            if response.status_code == 409 and attempt == 0 and folder:
                self._make_folder(folder)  # a shard folder made on first use
                continue
            if response.status_code >= 500 and response.status_code != 507:
                self._check_space(folder, len(body))
            self._fail(response, handle, "PUT")

    def _check_space(self, folder: str, needed: int) -> None:
        """After a server error on PUT: StorageFull when the share says it has no room (RFC
        4331 quota-available-bytes), since many servers answer a full disk with a bare 500."""
        try:
            response = self._request(
                "PROPFIND", folder + "/", content=_QUOTA, headers={"depth": "0"}
            )
            root = _parse_multistatus(response.content, self._address)
            text = root.findtext(f".//{_DAV}quota-available-bytes")
            available = int(text) if text is not None and text.strip() else None
        except (BackendError, ValueError):
            return
        if available is not None and available < needed:
            raise StorageFull(f"{self._address} is full: {available} bytes free, {needed} needed")

    def _discard(self, temp: str) -> None:
        """Delete a temporary object if it is there; a failure leaves it to the stale sweep."""
        with contextlib.suppress(httpx.HTTPError), self._slots:
            self._client.request("DELETE", self._url(temp))

    def _make_folder(self, folder: str) -> None:
        response = self._request("MKCOL", folder + "/")
        if response.status_code in (200, 201):
            self._folders.add(folder)
            return
        # Made meanwhile by another save: 405 says so; some servers (wsgidav) answer 500 when
        # two MKCOLs race, so any refusal is checked against the folder's existence.
        if response.status_code not in (401, 403) and self._is_folder(folder):
            self._folders.add(folder)
            return
        self._fail(response, None, "MKCOL", folder)

    def _is_folder(self, folder: str) -> bool:
        response = self._request(
            "PROPFIND", folder + "/", content=_PROPFIND, headers={"depth": "0"}
        )
        return response.status_code == 207

    def _make_layout(self) -> None:
        try:
            entries = self._members("", missing_ok=False)
        except NotFound:
            self._make_root()
            entries = []
        foreign = [
            e.name
            for e in entries
            if e.name not in _LAYOUT_NAMES and not e.name.startswith(TEMP_PREFIX)
        ]
        if foreign:
            raise BackendError(
                f"refusing to create a repository in {self._address}: the folder is not empty "
                f"and does not hold a Cairn repository (found {sorted(foreign)[0]!r})"
            )
        present = {e.name for e in entries if e.folder}
        for kind in _FOLDER_KINDS:
            if kind.value not in present:
                self._make_folder(kind.value)

    def _make_root(self) -> None:
        """MKCOL the location's folder, and the folders above it that are missing."""
        base = urlsplit(self._address.url)
        segments = [s for s in base.path.split("/") if s]
        missing: list[str] = []
        while segments:
            url = urlunsplit((base.scheme, base.netloc, "/" + "/".join(segments) + "/", "", ""))
            response = self._request("MKCOL", url)
            if response.status_code in (200, 201, 405):
                break
            if response.status_code != 409:
                self._fail(response, None, "MKCOL", url)
            missing.append(url)
            segments.pop()
        for url in reversed(missing):
            response = self._request("MKCOL", url)
            if response.status_code not in (200, 201, 405):
                self._fail(response, None, "MKCOL", url)

    # ---- loading and listing -------------------------------------------------------------

    def _load_whole(self, handle: Handle, path: str) -> bytes:
        response = self._request("GET", path)
        if response.status_code != 200:
            self._fail(response, handle, "GET")
        return response.content

    def _list_config(self) -> Iterator[ObjectInfo]:
        handle = Handle(ObjectKind.CONFIG, CONFIG_NAME)
        try:
            info = self.stat(handle)
        except NotFound:
            return
        except BackendError as exc:
            raise ListingIncomplete(f"cannot list {self._address}: {exc}") from exc
        yield info

    def _objects(
        self, kind: ObjectKind, folder: str, entries: Sequence[_Entry], prefix: str
    ) -> Iterator[ObjectInfo]:
        stale = utc_now(SYSTEM_CLOCK) - STALE_TEMP_AGE
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                if not entry.folder and entry.modified is not None and entry.modified < stale:
                    self._discard(f"{folder}/{entry.name}")
                continue
            if entry.folder or not is_hex_name(entry.name) or not entry.name.startswith(prefix):
                continue
            if entry.size is None:
                raise GarbledAnswer(f"{self._address} listed {folder}/{entry.name} without a size")
            yield ObjectInfo(Handle(kind, entry.name), entry.size)

    def _members(self, folder: str, missing_ok: bool) -> Sequence[_Entry]:
        """The members of `folder` (PROPFIND Depth 1). A folder gone is [] when `missing_ok`,
        else NotFound; an answer cut off or unreadable raises ListingIncomplete."""
        url = f"{folder}/" if folder else ""
        where = f"{self._address}{url}"
        try:
            with (
                self._slots,
                self._client.stream(
                    "PROPFIND",
                    self._url(url),
                    content=_PROPFIND,
                    headers={"depth": "1", "content-type": 'application/xml; charset="utf-8"'},
                ) as response,
            ):
                if response.status_code != 207:
                    response.read()
                    if response.status_code == 404 and missing_ok:
                        return []
                    self._fail(response, None, "PROPFIND", url)
                try:
                    body = _read_capped(response, where)
                except httpx.HTTPError as exc:
                    raise ListingIncomplete(f"the listing of {where} broke off: {exc}") from exc
        except httpx.HTTPError as exc:
            self._transport_error(exc, "PROPFIND", url)
        root = _parse_multistatus(body, self._address, listing=where)
        return _entries(root, self._address.path + "/" + folder if folder else self._address.path)

    # ---- requests and their errors -------------------------------------------------------

    def _path(self, handle: Handle) -> str:
        check_handle(handle)
        if handle.kind is ObjectKind.CONFIG:
            return CONFIG_NAME
        if handle.kind is ObjectKind.PACK:
            return f"{handle.kind.value}/{handle.name[:2]}/{handle.name}"
        return f"{handle.kind.value}/{handle.name}"

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self._address.url + quote(path)

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            with self._slots:
                return self._client.request(method, self._url(path), **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            self._transport_error(exc, method, path)

    def _transport_error(self, exc: httpx.HTTPError, method: str, path: str) -> NoReturn:
        where = f"{self._address}{path}"
        if isinstance(exc, httpx.ConnectError) and _is_tls_failure(exc):
            raise StorageTlsFailed(
                f"TLS with {self._address} failed: {_tls_reason(exc)}. If the server's "
                "certificate is signed by your own CA, name its PEM file in CAIRN_WEBDAV_CA"
            ) from exc
        if isinstance(exc, httpx.RemoteProtocolError) and "illegal" in str(exc).lower():
            raise GarbledAnswer(f"{self._address} does not answer in HTTP ({exc})") from exc
        if isinstance(exc, httpx.TimeoutException):
            raise TransientBackendError(f"{method} {where}: no answer in time") from exc
        raise TransientBackendError(f"{method} {where} failed: {exc}") from exc

    def _fail(
        self, response: httpx.Response, handle: Handle | None, method: str, path: str = ""
    ) -> NoReturn:
        status = response.status_code
        what = f"{handle}" if handle is not None else f"{self._address}{path}"
        if status == 401:
            raise StorageLoginRefused(
                f"{self._address} refused the login"
                f"{' of ' + repr(self._user) if self._user else ' (no user given)'}: check "
                "CAIRN_WEBDAV_USER (or the user in the location) and CAIRN_WEBDAV_PASSWORD"
            )
        if status == 403:
            raise PermissionDenied(f"{self._address} forbids {method} of {what}")
        if status == 404:
            raise NotFound(f"{what} not found on {self._address}")
        if status in (405, 501) and method in ("PROPFIND", "MKCOL", "MOVE"):
            raise GarbledAnswer(
                f"{self._address} does not speak WebDAV (it answers {method} with {status}): "
                "check the location's path"
            )
        if status == 507:
            raise StorageFull(f"{self._address} has no space left (HTTP 507 to {method})")
        if status in (429, 503):
            raise Busy(
                f"{self._address} is busy (HTTP {status})",
                _retry_after(response.headers.get("retry-after")),
            )
        if status in (408, 423) or status >= 500:
            raise TransientBackendError(f"{method} {what} on {self._address}: HTTP {status}")
        if 200 <= status < 300:
            raise GarbledAnswer(
                f"{self._address} answered {method} of {what} with HTTP {status}, which no "
                "WebDAV server answers (a proxy or a web page in the way?)"
            )
        raise BackendError(f"{method} {what} on {self._address}: HTTP {status}")


def _read_capped(response: httpx.Response, where: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    for part in response.iter_bytes():
        size += len(part)
        if size > MAX_LISTING_BYTES:
            raise GarbledAnswer(
                f"the listing of {where} is larger than {MAX_LISTING_BYTES} bytes: refused"
            )
        parts.append(part)
    return b"".join(parts)


def _parse_multistatus(body: bytes, address: WebDavAddress, listing: str | None = None) -> Element:
    try:
        root: Element = SafeXml.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise GarbledAnswer(f"{address} sent XML with a DTD or entities: refused ({exc})") from exc
    except ParseError as exc:
        if listing is not None and body.lstrip().startswith(b"<"):
            raise ListingIncomplete(f"the listing of {listing} is cut off or garbled") from exc
        raise GarbledAnswer(f"{address} answered PROPFIND with something not XML") from exc
    if root.tag != f"{_DAV}multistatus":
        raise GarbledAnswer(f"{address} answered PROPFIND with {root.tag}, not a multistatus")
    return root


def _entries(root: Element, folder: str) -> list[_Entry]:
    """The members of `folder` (an unquoted path without trailing slash) in a multistatus;
    the folder itself, and anything not directly in it, are left out."""
    entries = []
    for response in root.iterfind(f"{_DAV}response"):
        href = response.findtext(f"{_DAV}href")
        if href is None:
            continue
        path = unquote(urlsplit(href.strip()).path).rstrip("/")
        parent, _, name = path.rpartition("/")
        if parent != folder or not name:
            continue
        prop = _found_props(response)
        size_text = prop.findtext(f"{_DAV}getcontentlength") if prop is not None else None
        entries.append(
            _Entry(
                name=name,
                folder=prop is not None
                and prop.find(f"{_DAV}resourcetype/{_DAV}collection") is not None,
                size=_int_or_none(size_text),
                modified=_date_or_none(
                    prop.findtext(f"{_DAV}getlastmodified") if prop is not None else None
                ),
            )
        )
    return entries


def _found_props(response: Element) -> Element | None:
    for propstat in response.iterfind(f"{_DAV}propstat"):
        status = propstat.findtext(f"{_DAV}status") or ""
        if " 200 " in f"{status} ":
            return propstat.find(f"{_DAV}prop")
    return None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None and text.strip() else None
    except ValueError:
        return None


def _date_or_none(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None


def _content_range(response: httpx.Response, address: WebDavAddress) -> tuple[int, int]:
    """(first byte, object size) of a 206's ``Content-Range: bytes a-b/total``."""
    text = response.headers.get("content-range", "")
    try:
        unit, _, spec = text.partition(" ")
        span, _, total = spec.partition("/")
        start = span.partition("-")[0]
        if unit != "bytes":
            raise ValueError(text)
        return int(start), int(total)
    except ValueError as exc:
        raise GarbledAnswer(f"{address} sent a 206 with Content-Range {text!r}") from exc


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in str(exc)


def _tls_reason(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return str(exc)
