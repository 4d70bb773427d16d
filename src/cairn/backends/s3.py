"""A backend in an S3-compatible bucket (AWS, Ceph RGW, SeaweedFS, MinIO, Wasabi, Backblaze), with
boto3.

``s3:https://host[:port]/bucket[/prefix]`` names the endpoint, the bucket and a folder in it;
``s3:http://`` is accepted for loopback addresses only, where no one can read the keys' signatures
or change the bytes on the way. Credentials come from where every AWS tool finds them
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, the
default profile files); a custom CA from AWS_CA_BUNDLE.

Objects are laid out as ``PREFIX/config`` and ``PREFIX/KIND/NAME``. An S3 PUT is atomic: a
listing never shows a half-written object, and a multipart upload shows nothing until it is
completed. A save sends ``If-None-Match: *`` so the server itself refuses to replace an object
(AWS since 2024, Ceph RGW, SeaweedFS since 2025); an answer of 412 is then compared with what is
stored (same bytes: done; other bytes: AlreadyExists). A server that does not implement the
header (501) is remembered and answered with HEAD + compare instead; one that silently ignores it
is caught by the capability probe (backends/probe.py).

Objects larger than `multipart_above` go up in parts of `part_size` bytes. A save first looks for
an unfinished upload of the same object (a broken earlier attempt, in this process or another):
it keeps the parts the server already holds whose MD5 matches our bytes, sends only the rest, and
aborts every other stale upload of that object. Every request carries Content-MD5, so the server
checks each body it stores (``server_checksums``); botocore's own default checksums (since 1.36)
are switched off because many S3-compatible servers refuse them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import botocore.exceptions
import botocore.loaders
import botocore.session
import urllib3.exceptions
from botocore.config import Config
from botocore.parsers import ResponseParserError

from cairn.backends.base import Capabilities, Handle, ObjectInfo, ObjectKind, exists_by_stat
from cairn.backends.contract import CONFIG_NAME, check_handle, read_span
from cairn.backends.errors import (
    AlreadyExists,
    BackendError,
    Busy,
    ContainerMissing,
    GarbledAnswer,
    ListingIncomplete,
    NotFound,
    PermissionDenied,
    StorageFull,
    StorageLoginRefused,
    StorageTlsFailed,
    TransientBackendError,
)
from cairn.core.addresses import is_loopback
from cairn.core.clock import SYSTEM_CLOCK, utc_now
from cairn.core.crashpoints import crashpoint
from cairn.core.ids import is_hex_name

T = TypeVar("T")

MULTIPART_ABOVE = 16 * 1024 * 1024
"""Objects larger than this go up in a multipart upload, which a retry can resume."""
PART_SIZE = 8 * 1024 * 1024
"""Bytes per part (S3 wants at least 5 MiB for every part but the last)."""
DEFAULT_REGION = "us-east-1"
ABANDONED_AFTER_S = 24 * 3600.0
"""Unfinished multipart uploads older than this are aborted when a backend is opened."""
_LOGIN_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "InvalidSecurity",
    }
)
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "403"})
_FULL_CODES = frozenset(
    {"QuotaExceeded", "InsufficientStorage", "XMinioStorageFull", "StorageFull", "507"}
)
_BUSY_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"})
_TRANSIENT_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "RequestTimeout", "500", "502", "503", "504"}
)
_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_FULL_HINTS = ("no free volumes", "volume full", "not enough space", "no space left")


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where a repository lives in S3: the endpoint URL, the bucket and the prefix in it."""

    endpoint: str
    bucket: str
    prefix: str

    def __str__(self) -> str:
        tail = f"/{self.prefix}" if self.prefix else ""
        return f"s3:{self.endpoint}/{self.bucket}{tail}"

    def key(self, handle: Handle) -> str:
        name = CONFIG_NAME if handle.kind is ObjectKind.CONFIG else f"{handle.kind.value}/"
        base = f"{self.prefix}/" if self.prefix else ""
        return base + (name if handle.kind is ObjectKind.CONFIG else name + handle.name)

    def folder(self, kind: ObjectKind) -> str:
        base = f"{self.prefix}/" if self.prefix else ""
        return base + (CONFIG_NAME if kind is ObjectKind.CONFIG else f"{kind.value}/")

    def within(self, subfolder: str) -> S3Location:
        """The same bucket, with `subfolder` appended to the prefix (a server's tenant)."""
        prefix = f"{self.prefix}/{subfolder}" if self.prefix else subfolder
        return S3Location(self.endpoint, self.bucket, prefix)


def parse_location(location: str) -> S3Location:
    """``s3:https://host[:port]/bucket[/prefix]``, or ``s3:http://`` to a loopback address."""
    url = location.removeprefix("s3:")
    parts = urlsplit(url)
    usage = "use s3:https://HOST[:PORT]/BUCKET[/PREFIX]"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackendError(f"{location!r}: {usage}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BackendError(
            f"{location!r}: {usage} (keys go in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or "
            "a profile, never in the location)"
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise BackendError(
            f"{location!r}: plain s3:http:// is for loopback only, where no one else can read "
            "or change the traffic; use s3:https:// for another machine"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise BackendError(f"{location!r}: bad port") from exc
    bucket, _, prefix = parts.path.strip("/").partition("/")
    if not bucket:
        raise BackendError(f"{location!r}: no bucket; {usage}")
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise BackendError(f"{location!r}: the prefix has an empty, '.' or '..' part")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    endpoint = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    return S3Location(endpoint, bucket, prefix)


_loader: botocore.loaders.Loader | None = None
_loader_guard = threading.Lock()


def _models() -> botocore.loaders.Loader:
    """One loader of botocore's service models for the process: each new session would parse
    the S3 model and endpoint rules again (0.25 s, a fifth of a small replication run); the
    credentials are still resolved afresh for every client."""
    global _loader
    with _loader_guard:
        if _loader is None:
            _loader = botocore.loaders.create_loader()
        return _loader


def s3_client(
    endpoint: str, connections: int, timeout: float, environ: Mapping[str, str] | None = None
) -> Any:
    """A boto3 S3 client for `endpoint`: path-style addresses (S3-compatible servers rarely have
    wildcard DNS), checksums only when an operation requires them, no retries of its own (the
    RetryingBackend above retries once, for every backend alike).

    Bodies are not SHA-256 signed: over https botocore already leaves them unsigned when
    Content-MD5 is sent (ours always is), and over http (loopback only) it would hash every byte
    a second time for no protection the MD5 the server checks does not give (a fifth of the
    client's CPU per byte, measured: docs/performance.md)."""
    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=connections,
        connect_timeout=15,
        read_timeout=timeout,
        user_agent_extra="cairn",
    )
    try:
        session = _session(environ)
        region = session.get_config_variable("region") or DEFAULT_REGION
        verify = environ.get("AWS_CA_BUNDLE") or None if environ is not None else None
        return session.create_client(
            "s3", endpoint_url=endpoint, region_name=region, config=config, verify=verify
        )
    except botocore.exceptions.BotoCoreError as exc:
        raise StorageLoginRefused(f"cannot set up S3 credentials for {endpoint}: {exc}") from exc


def _session(environ: Mapping[str, str] | None) -> botocore.session.Session:
    """A botocore session with the process's shared models, its credentials resolved from the
    process's environment, or from `environ` when given (a replication target's own
    credentials, design 17.9): its keys, profile, profile files and region over what botocore
    would find by itself."""
    session = botocore.session.get_session()
    session.register_component("data_loader", _models())
    if environ is None:
        return session
    for variable, setting in (
        ("AWS_SHARED_CREDENTIALS_FILE", "credentials_file"),
        ("AWS_CONFIG_FILE", "config_file"),
        ("AWS_PROFILE", "profile"),
        ("AWS_DEFAULT_REGION", "region"),
        ("AWS_REGION", "region"),
    ):
        if environ.get(variable):
            session.set_config_variable(setting, environ[variable])
    if environ.get("AWS_ACCESS_KEY_ID") or environ.get("AWS_SECRET_ACCESS_KEY"):
        session.set_credentials(
            environ.get("AWS_ACCESS_KEY_ID", ""),
            environ.get("AWS_SECRET_ACCESS_KEY", ""),
            environ.get("AWS_SESSION_TOKEN") or None,
        )
    return session


class S3Backend:
    """Objects of one repository under a prefix of an S3 bucket."""

    def __init__(
        self,
        where: S3Location,
        client: Any | None = None,
        connections: int = 8,
        timeout: float = 60.0,
        multipart_above: int = MULTIPART_ABOVE,
        part_size: int = PART_SIZE,
        conditional: bool = True,
        page_size: int = 1000,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._where = where
        self._connections = connections
        self._client = (
            client
            if client is not None
            else s3_client(where.endpoint, connections, timeout, environ)
        )
        self._multipart_above = multipart_above
        self._part_size = part_size
        self._conditional = conditional
        self._page_size = page_size

    @classmethod
    def open(cls, where: S3Location, **options: Any) -> S3Backend:
        """A backend for `where`, after one listing request that proves the bucket exists and the
        credentials work (so a wrong key or bucket is named before any work starts)."""
        backend = cls(where, **options)
        try:
            page = backend._call(
                lambda: backend._client.list_objects_v2(
                    Bucket=where.bucket, Prefix=where.folder(ObjectKind.CONFIG), MaxKeys=1
                ),
                None,
            )
        except NotFound as exc:  # a missing bucket is NoSuchBucket; a bare 404 is no S3 server
            backend.close()
            raise GarbledAnswer(
                f"{where.endpoint} answered a bucket listing with a bare 404: is it an S3 server?"
            ) from exc
        except BackendError:
            backend.close()
            raise
        if "Name" not in page and "KeyCount" not in page:
            backend.close()
            raise GarbledAnswer(
                f"{where.endpoint} answered a bucket listing with something that is not S3 (a web "
                "page, a proxy?): check the address"
            )
        backend.abort_abandoned_uploads()
        return backend

    def abort_abandoned_uploads(self, older_than: float = ABANDONED_AFTER_S) -> int:
        """Abort the unfinished multipart uploads under the prefix that the server says started
        more than `older_than` seconds ago (against this machine's clock: a day's margin covers
        any skew). A process that died mid-upload left them; when its object's bytes are never
        sent again (a repository seals each new pack afresh), nothing resumes them, yet the store
        keeps and bills their parts. Best effort: a key without the right to list or abort
        uploads changes nothing. Returns how many were aborted."""
        prefix = f"{self._where.prefix}/" if self._where.prefix else ""
        try:
            page = self._call(
                lambda: self._client.list_multipart_uploads(
                    Bucket=self._where.bucket, Prefix=prefix
                ),
                None,
            )
            now = utc_now(SYSTEM_CLOCK)
            old = [
                (str(u["Key"]), str(u["UploadId"]))
                for u in page.get("Uploads", [])
                if isinstance(u.get("Initiated"), datetime)
                and (now - u["Initiated"]).total_seconds() > older_than
            ]
            for key, upload_id in old:
                self._abort(key, upload_id)
        except BackendError:
            return 0
        return len(old)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            connections=self._connections,
            local=False,
            ranged_reads=True,
            atomic_create=True,
            resumable_writes=True,
            conditional_create=self._conditional,
            server_checksums=True,
        )

    def location(self) -> str:
        return str(self._where)

    @property
    def where(self) -> S3Location:
        return self._where

    # ---- save ---------------------------------------------------------------------------

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        check_handle(handle)
        body = bytes(data)
        if len(body) > self._multipart_above:
            self._save_multipart(handle, body)
        else:
            self._put(handle, body)

    def _put(self, handle: Handle, body: bytes) -> None:
        key = self._where.key(handle)
        if not self._conditional and self._same_as_stored(handle, body):
            return
        extra = {"IfNoneMatch": "*"} if self._conditional else {}
        crashpoint("s3.save.put")
        try:
            self._call(
                lambda: self._client.put_object(
                    Bucket=self._where.bucket,
                    Key=key,
                    Body=body,
                    ContentMD5=_md5_b64(body),
                    **extra,
                ),
                handle,
            )
        except _Precondition:
            if not self._same_as_stored(handle, body):
                raise AlreadyExists(f"{handle} exists on {self._where} with other bytes") from None
        except _NotImplementedHeader:
            self._conditional = False
            self._put(handle, body)

    def _same_as_stored(self, handle: Handle, body: bytes) -> bool:
        """True when the stored object holds exactly `body`; False when it is missing; raise
        AlreadyExists when it holds other bytes."""
        try:
            size = self.stat(handle).size
        except NotFound:
            return False
        if size != len(body) or self.load(handle) != body:
            raise AlreadyExists(f"{handle} exists on {self._where} with other bytes")
        return True

    def _save_multipart(self, handle: Handle, body: bytes) -> None:
        if self._same_as_stored(handle, body):
            return
        key = self._where.key(handle)
        parts = [body[at : at + self._part_size] for at in range(0, len(body), self._part_size)]
        upload_id, held = self._resume_or_start(key, parts)
        etags: list[dict[str, Any]] = []
        for number, part in enumerate(parts, start=1):
            etag = held.get(number)
            if etag is None:
                etag = self._upload_part(handle, key, upload_id, number, part)
            etags.append({"PartNumber": number, "ETag": etag})
        self._complete(handle, key, upload_id, etags, body)

    def _resume_or_start(self, key: str, parts: list[bytes]) -> tuple[str, dict[int, str]]:
        """An unfinished upload of `key` to go on with, and its parts whose bytes match ours (by
        number); every other unfinished upload of `key` is aborted. None found: a new upload."""
        stale = self._stale_uploads(key)
        resumed: tuple[str, dict[int, str]] | None = None
        for upload_id in stale:
            if resumed is None:
                held = self._matching_parts(key, upload_id, parts)
                if held:
                    resumed = (upload_id, held)
                    continue
            self._abort(key, upload_id)
        if resumed is not None:
            return resumed
        created = self._call(
            lambda: self._client.create_multipart_upload(Bucket=self._where.bucket, Key=key),
            None,
        )
        return str(created["UploadId"]), {}

    def _stale_uploads(self, key: str) -> list[str]:
        """IDs of the unfinished uploads of exactly `key`, newest first."""
        found: list[tuple[str, str]] = []
        options: dict[str, Any] = {"Bucket": self._where.bucket, "Prefix": key}
        while True:
            page = self._call(lambda: self._client.list_multipart_uploads(**options), None)
            for upload in page.get("Uploads", []):
                if upload.get("Key") == key:
                    found.append((str(upload.get("Initiated", "")), str(upload["UploadId"])))
            if not page.get("IsTruncated"):
                break
            options["KeyMarker"] = page.get("NextKeyMarker", "")
            options["UploadIdMarker"] = page.get("NextUploadIdMarker", "")
        return [upload_id for _, upload_id in sorted(found, reverse=True)]

    def _matching_parts(self, key: str, upload_id: str, parts: list[bytes]) -> dict[int, str]:
        held: dict[int, str] = {}
        options: dict[str, Any] = {"Bucket": self._where.bucket, "Key": key, "UploadId": upload_id}
        while True:
            try:
                page = self._call(lambda: self._client.list_parts(**options), None)
            except NotFound:
                return {}
            for part in page.get("Parts", []):
                number, etag = int(part["PartNumber"]), str(part["ETag"])
                if 1 <= number <= len(parts) and _same_etag(etag, parts[number - 1]):
                    held[number] = etag
            if not page.get("IsTruncated"):
                return held
            options["PartNumberMarker"] = page.get("NextPartNumberMarker", 0)

    def _upload_part(
        self, handle: Handle, key: str, upload_id: str, number: int, part: bytes
    ) -> str:
        crashpoint("s3.save.upload_part")
        answer = self._call(
            lambda: self._client.upload_part(
                Bucket=self._where.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part,
                ContentMD5=_md5_b64(part),
            ),
            handle,
        )
        return str(answer["ETag"])

    def _complete(
        self, handle: Handle, key: str, upload_id: str, etags: list[dict[str, Any]], body: bytes
    ) -> None:
        extra = {"IfNoneMatch": "*"} if self._conditional else {}
        crashpoint("s3.save.complete")
        try:
            self._call(
                lambda: self._client.complete_multipart_upload(
                    Bucket=self._where.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": etags},
                    **extra,
                ),
                handle,
            )
        except (_Precondition, NotFound):
            # Another writer published the object first (412), or completed or aborted this
            # upload meanwhile (NoSuchUpload): what is stored now decides.
            self._abort(key, upload_id)
            if not self._same_as_stored(handle, body):
                raise TransientBackendError(
                    f"the upload of {handle} to {self._where} was aborted by another writer"
                ) from None
            return
        except _NotImplementedHeader:
            self._conditional = False
            self._complete(handle, key, upload_id, etags, body)
            return
        if self.stat(handle).size != len(body):
            raise TransientBackendError(
                f"{handle} on {self._where} has the wrong size after upload"
            )

    def _abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(
                lambda: self._client.abort_multipart_upload(
                    Bucket=self._where.bucket, Key=key, UploadId=upload_id
                ),
                None,
            )

    # ---- load, stat, list, remove -------------------------------------------------------

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        check_handle(handle)
        if offset < 0 or (length is not None and length <= 0):
            read_span(self.stat(handle).size, offset, length, handle)
            return b""
        options: dict[str, Any] = {"Bucket": self._where.bucket, "Key": self._where.key(handle)}
        ranged = offset > 0 or length is not None
        if ranged:
            last = "" if length is None else str(offset + length - 1)
            options["Range"] = f"bytes={offset}-{last}"
        try:
            answer = self._call(lambda: self._client.get_object(**options), handle)
        except _RangeNotSatisfiable:
            read_span(self.stat(handle).size, offset, length, handle)
            return b""
        data = self._call(lambda: answer["Body"].read(), handle)
        if not ranged:
            expected = int(answer.get("ContentLength", len(data)))
        else:
            total = _range_total(str(answer.get("ContentRange", "")), handle)
            expected = read_span(total, offset, length, handle)
        if len(data) != expected:
            raise TransientBackendError(
                f"short read of {handle} from {self._where}: got {len(data)} of {expected} bytes"
            )
        return bytes(data)

    def stat(self, handle: Handle) -> ObjectInfo:
        check_handle(handle)
        answer = self._call(
            lambda: self._client.head_object(
                Bucket=self._where.bucket, Key=self._where.key(handle)
            ),
            handle,
        )
        return ObjectInfo(handle, int(answer["ContentLength"]))

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        """Every page is fetched before the first object is yielded: a page that fails makes
        the whole listing ListingIncomplete, never a shorter one."""
        folder = self._where.folder(kind)
        infos: list[ObjectInfo] = []
        options: dict[str, Any] = {
            "Bucket": self._where.bucket,
            "Prefix": folder,
            "MaxKeys": self._page_size,
        }
        while True:
            page = self._list_page(kind, options)
            for item in page.get("Contents", []):
                info = _listed(kind, folder, item)
                if info is not None:
                    infos.append(info)
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
            if not token:
                raise ListingIncomplete(
                    f"the listing of {kind.value} on {self._where} was cut short without a way on"
                )
            options["ContinuationToken"] = token
        yield from infos

    def _list_page(self, kind: ObjectKind, options: dict[str, Any]) -> Any:
        try:
            return self._call(lambda: self._client.list_objects_v2(**options), None)
        except (ContainerMissing, StorageLoginRefused, PermissionDenied):
            raise
        except BackendError as exc:
            raise ListingIncomplete(
                f"listing {kind.value} on {self._where} broke off: {exc}"
            ) from exc

    def remove(self, handle: Handle) -> None:
        # S3 answers a DELETE of a missing key with success; the contract wants NotFound.
        self.stat(handle)
        crashpoint("s3.remove.delete")
        self._call(
            lambda: self._client.delete_object(
                Bucket=self._where.bucket, Key=self._where.key(handle)
            ),
            handle,
        )

    def exists(self, handle: Handle) -> bool:
        return exists_by_stat(self, handle)

    def close(self) -> None:
        self._client.close()

    # ---- errors: translated once, here ---------------------------------------------------

    def _call(self, operation: Callable[[], T], handle: Handle | None) -> T:
        try:
            return operation()
        except botocore.exceptions.ClientError as exc:
            self._client_error(exc, handle)
        except botocore.exceptions.SSLError as exc:
            raise StorageTlsFailed(f"TLS with {self._where.endpoint} failed: {exc}") from exc
        except (
            botocore.exceptions.NoCredentialsError,
            botocore.exceptions.PartialCredentialsError,
            botocore.exceptions.ProfileNotFound,
        ) as exc:
            raise StorageLoginRefused(
                f"no usable S3 credentials for {self._where}: {exc} (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            ) from exc
        except ResponseParserError as exc:
            raise GarbledAnswer(
                f"{self._where.endpoint} answered something that is not S3: {exc}"
            ) from exc
        except (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError) as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in type(exc).__name__:
                raise StorageTlsFailed(f"TLS with {self._where.endpoint} failed: {exc}") from exc
            raise TransientBackendError(f"cannot reach {self._where.endpoint}: {exc}") from exc
        except (botocore.exceptions.BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientBackendError(f"S3 request to {self._where} failed: {exc}") from exc

    def _client_error(
        self, exc: botocore.exceptions.ClientError, handle: Handle | None
    ) -> NoReturn:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        message = str(error.get("Message", "")) or code or f"HTTP {status}"
        what = f"{handle}: " if handle is not None else ""
        where = self._where
        if code == "NoSuchBucket":
            raise ContainerMissing(
                f"the bucket {where.bucket!r} does not exist at {where.endpoint}"
            ) from exc
        if code == "NoSuchUpload":
            raise NotFound(f"{what}the multipart upload is gone from {where}") from exc
        if code in _MISSING_CODES or status == 404:
            raise NotFound(f"{what}not found on {where}") from exc
        if code == "PreconditionFailed" or status == 412:
            raise _Precondition(message) from exc
        if code == "InvalidRange" or status == 416:
            raise _RangeNotSatisfiable(message) from exc
        if code == "NotImplemented" or status == 501:
            raise _NotImplementedHeader(message) from exc
        if code in _LOGIN_CODES:
            raise StorageLoginRefused(
                f"{where.endpoint} refused the access key ({code}: {message}); check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile"
            ) from exc
        if code in _DENIED_CODES or status == 403:
            raise PermissionDenied(f"{what}{where} denies this operation ({message})") from exc
        if code in _FULL_CODES or status == 507 or _says_full(message):
            raise StorageFull(f"the storage at {where} is full or over quota: {message}") from exc
        if code in _BUSY_CODES or status == 429:
            raise Busy(f"{where.endpoint} asks to slow down ({message})", 2.0) from exc
        if code in _TRANSIENT_CODES or status >= 500:
            raise TransientBackendError(f"{what}{where.endpoint} failed: {message}") from exc
        if not code or code.isdigit():
            raise GarbledAnswer(
                f"{where.endpoint} answered HTTP {status} without an S3 error: is it an S3 server?"
            ) from exc
        raise BackendError(f"{what}{where}: {code}: {message}") from exc


class _Precondition(BackendError):
    """412: the conditional write found the object there (handled inside save)."""


class _RangeNotSatisfiable(BackendError):
    """416: the range starts at or past the end (handled inside load)."""


class _NotImplementedHeader(BackendError):
    """501: the server does not implement a conditional header (handled inside save)."""


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _same_etag(etag: str, part: bytes) -> bool:
    return etag.strip('"').lower() == hashlib.md5(part, usedforsecurity=False).hexdigest()


def _says_full(message: str) -> bool:
    lowered = message.lower()
    return any(hint in lowered for hint in _FULL_HINTS)


def _range_total(header: str, handle: Handle) -> int:
    """The object's size from a Content-Range of ``bytes FIRST-LAST/SIZE``."""
    _, _, total = header.rpartition("/")
    if not total.isdigit():
        raise GarbledAnswer(f"the answer for {handle} has no usable Content-Range ({header!r})")
    return int(total)


def _listed(kind: ObjectKind, folder: str, item: Any) -> ObjectInfo | None:
    """The object a listing entry names, or None for a key that is not one of ours."""
    key = str(item.get("Key", ""))
    if kind is ObjectKind.CONFIG:
        name = CONFIG_NAME if key == folder else ""
    else:
        name = key.removeprefix(folder) if key.startswith(folder) else ""
        name = name if is_hex_name(name) else ""
    if not name:
        return None
    return ObjectInfo(Handle(kind, name), int(item.get("Size", 0)))
