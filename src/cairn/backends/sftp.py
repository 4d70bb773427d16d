"""A backend on an SSH server's SFTP subsystem (OpenSSH), with paramiko.

``sftp:user@host:/path`` (restic's form; a path without a leading slash is relative to the login
folder) and ``sftp://user@host:port/path`` (the path is absolute, as in any URL). The layout under
the path is the local backend's (docs/design.md section 2), so a folder copied with rsync opens
either way.

Trust and credentials, as OpenSSH's client has them: the host key must be in known_hosts
(``~/.ssh/known_hosts``, or the file `SftpCredentials.known_hosts` names); an unknown host, or a
key other than the one recorded, is `HostKeyUnknown` with the fingerprint, never trusted
silently. Logins try a key file (or the default ``~/.ssh/id_*`` keys), the SSH agent, and a
password, in that order.

Deviations and choices:

- ``save`` writes a temporary file in the target folder, checks its size, fsyncs it
  (``fsync@openssh.com``) and publishes it with the plain SFTP rename, which OpenSSH's server does
  with link() and unlink(): atomic, and it refuses to replace an object another writer published
  meanwhile (``posix-rename@openssh.com`` would replace it silently). A refused rename then
  compares the bytes: the same succeed, others raise AlreadyExists.
- Objects over `RESUMABLE_ABOVE` go up under a temporary name derived from their own (``.part-``
  + name): a save after a broken one finds the part, checks its last bytes against what it would
  send, sends only the rest from there, and reads the whole part back to verify it before the
  rename (capability ``resumable_writes``).
- Writes are pipelined by this module, not by paramiko: paramiko's pipelined file drops the error
  answers of writes still in flight when the file is closed, which would hide a full disk.
- A failed write on a full disk comes back as SFTP's generic "Failure"; ``statvfs@openssh.com``
  then tells StorageFull from other failures.
- Each of up to `CONNECTIONS` threads uses its own SSH connection from a small pool; a connection
  that failed is dropped, never reused.
"""

from __future__ import annotations

import base64
import errno
import getpass
import hashlib
import logging
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

import paramiko
from paramiko.sftp import CMD_DATA, CMD_EXTENDED, CMD_READ, CMD_STATUS, CMD_WRITE, SFTP_OK
from paramiko.sftp_client import SFTPClient

from cairn.backends.base import Capabilities, Handle, ObjectInfo, ObjectKind, exists_by_stat
from cairn.backends.contract import CONFIG_NAME, check_handle, read_span
from cairn.backends.errors import (
    AlreadyExists,
    BackendError,
    GarbledAnswer,
    HostKeyUnknown,
    ListingIncomplete,
    NotFound,
    PermissionDenied,
    StorageFull,
    StorageLoginRefused,
    TransientBackendError,
)
from cairn.core.ids import is_hex_name

CONNECTIONS = 4
RESUMABLE_ABOVE = 4 * 1024 * 1024
"""Objects larger than this go up under a name a later save finds again, to resume."""
TEMP_PREFIX = ".tmp-"
PART_PREFIX = ".part-"
FOLDER_MODE = 0o700
_BLOCK = 128 * 1024
"""Bytes per SFTP read or write request (OpenSSH's server takes up to 255 KiB)."""
_IN_FLIGHT = 64
_RESUME_CHECK = 1024 * 1024
"""How many bytes before the offset reached a resume reads back and compares."""
_TIMEOUT = 30.0
_FOLDER_KINDS = tuple(kind for kind in ObjectKind if kind is not ObjectKind.CONFIG)
_LAYOUT_NAMES = frozenset([CONFIG_NAME, *(kind.value for kind in _FOLDER_KINDS)])
_SHARDS = tuple(f"{i:02x}" for i in range(256))
# paramiko's transport thread logs each failure it raises (with a traceback) before this module
# translates it; unconfigured, Python would print that on stderr beside Cairn's own message.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

_SHORT = re.compile(r"^sftp:(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/@\[\]]+):(?P<path>.+)$")


@dataclass(frozen=True, slots=True)
class SftpAddress:
    """Where a repository lives on an SSH server."""

    host: str
    path: str
    user: str
    port: int = 22

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = self.path if self.path.startswith("/") else f"/~/{self.path}"
        return f"sftp://{self.user}@{host}:{self.port}{path}"

    @property
    def known_hosts_name(self) -> str:
        """The host's name in known_hosts: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_address(location: str) -> SftpAddress:
    """An `SftpAddress` from ``sftp:user@host:/path`` or ``sftp://user@host:port/path``."""
    if location.startswith("sftp://"):
        return _parse_url(location)
    match = _SHORT.match(location)
    if match is None:
        raise BackendError(
            f"invalid SFTP location {location!r}: use sftp:user@host:/path "
            "or sftp://user@host:port/path"
        )
    host = match["host"].strip("[]")
    return SftpAddress(host, _clean_path(match["path"], location), match["user"] or _local_user())


def _parse_url(location: str) -> SftpAddress:
    parts = urlsplit(location)
    try:
        port = parts.port or 22
    except ValueError as exc:
        raise BackendError(f"invalid port in the SFTP location {location!r}") from exc
    if parts.password is not None:
        raise BackendError(
            f"{parts.scheme}://…: a password does not belong in a location (it would show in "
            "messages and process lists); set CAIRN_SFTP_PASSWORD or CAIRN_SFTP_PASSWORD_FILE"
        )
    if not parts.hostname or not parts.path or parts.query or parts.fragment:
        raise BackendError(f"invalid SFTP location {location!r}: use sftp://user@host:port/path")
    user = unquote(parts.username) if parts.username else _local_user()
    return SftpAddress(parts.hostname, _clean_path(unquote(parts.path), location), user, port)


def _clean_path(path: str, location: str) -> str:
    clean = str(PurePosixPath(path))
    if ".." in PurePosixPath(path).parts or "\x00" in path:
        raise BackendError(f"invalid path in the SFTP location {location!r}")
    return clean


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError) as exc:
        raise BackendError("no user in the SFTP location, and no local user name") from exc


@dataclass(frozen=True, slots=True)
class SftpCredentials:
    """How to log in and whom to trust; None fields fall back to OpenSSH's defaults under
    ``~/.ssh`` (the CLI fills these from CAIRN_SFTP_KEY, CAIRN_SFTP_KNOWN_HOSTS,
    CAIRN_SFTP_PASSWORD and CAIRN_SFTP_PASSWORD_FILE)."""

    key_file: Path | None = None
    known_hosts: Path | None = None
    password: str | None = field(default=None, repr=False)
    agent: bool = True

    def known_hosts_path(self) -> Path:
        return self.known_hosts or Path("~/.ssh/known_hosts").expanduser()


@dataclass
class _Session:
    client: paramiko.SSHClient
    sftp: SFTPClient


class SftpBackend:
    """Objects as files under one folder of an SSH server. The constructor connects nothing;
    see `create` for a new repository."""

    def __init__(self, address: SftpAddress, credentials: SftpCredentials | None = None) -> None:
        self._address = address
        self._credentials = credentials or SftpCredentials()
        self._root = PurePosixPath(address.path)
        self._idle: list[_Session] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(CONNECTIONS)

    @classmethod
    def create(
        cls, address: SftpAddress, credentials: SftpCredentials | None = None
    ) -> SftpBackend:
        """Make the root and the layout's folders, and return the backend. An existing empty
        folder or an existing Cairn layout is accepted; any other folder is refused."""
        backend = cls(address, credentials)
        backend._make_layout()
        return backend

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            connections=CONNECTIONS,
            ranged_reads=True,
            atomic_create=True,
            resumable_writes=True,
            conditional_create=False,
            server_checksums=False,
        )

    def location(self) -> str:
        return str(self._address)

    # ---- the Backend protocol ------------------------------------------------------------

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        path = self._path(handle)
        view = memoryview(data).cast("B")
        with self._session() as sftp:
            if len(view) > RESUMABLE_ABOVE:
                temp = path.with_name(PART_PREFIX + path.name)
                try:
                    self._upload_resuming(sftp, temp, view)
                except NotFound as exc:
                    # The part vanished under this save: a concurrent save of the same object
                    # published it. Then the object must be there, with these bytes.
                    if _stat_or_none(sftp, path) is None:
                        raise TransientBackendError(f"{temp} vanished") from exc
                    self._check_same(sftp, path, view)
                    return
            else:
                temp = path.with_name(TEMP_PREFIX + secrets.token_hex(8))
                self._upload(sftp, temp, view, 0, create=True)
            self._publish(sftp, temp, path, view)

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(handle)
        with self._session() as sftp, _translated("read", path), sftp.open(str(path), "r") as f:
            count = read_span(f.stat().st_size or 0, offset, length, handle)
            if count == 0:
                return b""
            data = _pipelined_read(sftp, _handle_of(f), offset, count)
        if len(data) != count:
            raise TransientBackendError(
                f"short read of {path}: got {len(data)} of {count} bytes at offset {offset}"
            )
        return data

    def stat(self, handle: Handle) -> ObjectInfo:
        path = self._path(handle)
        with self._session() as sftp, _translated("stat", path):
            return ObjectInfo(handle, sftp.stat(str(path)).st_size or 0)

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        # Collected whole before the first is yielded: a listing that breaks off raises
        # ListingIncomplete, never looks like a shorter one.
        with self._session() as sftp:
            try:
                infos = _list_kind(sftp, self._root, kind)
            except NotFound as exc:
                raise ListingIncomplete(f"cannot list {kind.value} on {self._address}") from exc
            except TransientBackendError as exc:
                raise ListingIncomplete(
                    f"listing {kind.value} on {self._address} broke: {exc}"
                ) from exc
        yield from infos

    def remove(self, handle: Handle) -> None:
        path = self._path(handle)
        with self._session() as sftp, _translated("remove", path):
            sftp.remove(str(path))

    def exists(self, handle: Handle) -> bool:
        return exists_by_stat(self, handle)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for session in idle:
            session.client.close()

    # ---- saving ---------------------------------------------------------------------------

    def _upload_resuming(self, sftp: SFTPClient, temp: PurePosixPath, data: memoryview) -> None:
        """Send `data` to `temp`, going on from the offset a broken save reached when its
        last bytes there are the ones this save would send."""
        try:
            reached = sftp.stat(str(temp)).st_size or 0
        except FileNotFoundError:
            reached = None
        except OSError as exc:
            _raise_translated(exc, "stat", temp)
        if (
            reached is not None
            and 0 < reached <= len(data)
            and _tail_matches(sftp, temp, data, reached)
        ):
            self._upload(sftp, temp, data, reached, create=False)
            if _read_back(sftp, temp, len(data)) == data:
                return
            # Bytes before the tail differ (another program wrote there): send it all again.
        with suppress(OSError):
            sftp.remove(str(temp))
        self._upload(sftp, temp, data, 0, create=True)

    def _upload(
        self, sftp: SFTPClient, temp: PurePosixPath, data: memoryview, start: int, create: bool
    ) -> None:
        """Write data[start:] at its offsets into `temp`, fsync it, and check its size."""
        mode = "+x" if create else "+"
        try:
            # A part missing on resume is NotFound (a concurrent save published it); a folder
            # missing when creating is the layout's fault.
            with _translated(
                "open a temporary file in", temp.parent, BackendError if create else NotFound
            ):
                f = sftp.open(str(temp), mode)
        except BackendError as exc:
            if create and _stat_or_none(sftp, temp) is not None:
                # A concurrent save of the same large object made its part first: try again,
                # to go on with that part.
                raise TransientBackendError(f"another save of {temp} is under way") from exc
            raise
        try:
            with _translated("write", temp):
                failure = _pipelined_write(sftp, _handle_of(f), data, start)
                if failure is None:
                    _fsync(sftp, _handle_of(f))
                size = f.stat().st_size  # of this file, even if a concurrent save renamed it
        finally:
            with suppress(OSError, EOFError, paramiko.SSHException):
                f.close()
        if failure is not None or size != len(data):
            self._write_failed(sftp, temp, len(data) - (size or 0), failure or "short file")

    def _write_failed(
        self, sftp: SFTPClient, temp: PurePosixPath, missing: int, why: str
    ) -> NoReturn:
        free = _free_bytes(sftp, temp.parent)
        if not temp.name.startswith(PART_PREFIX):
            with suppress(OSError, EOFError, paramiko.SSHException):
                sftp.remove(str(temp))
        if free is not None and free < max(missing, 1) + 64 * 1024:
            raise StorageFull(
                f"no space left on {self._address} ({free} bytes free, {missing} more needed)"
            )
        raise BackendError(f"cannot write {temp} on {self._address}: {why}")

    def _publish(
        self, sftp: SFTPClient, temp: PurePosixPath, path: PurePosixPath, data: memoryview
    ) -> None:
        """Rename without replacing; an existing object must hold the same bytes."""
        try:
            sftp.rename(str(temp), str(path))
        except FileNotFoundError as exc:
            # Another save of the same object (its part shared with this one) published it.
            try:
                self._check_same(sftp, path, data)
            except NotFound:
                raise TransientBackendError(f"{temp} vanished before it was published") from exc
            return
        except PermissionError as exc:
            _raise_translated(exc, "publish", path)
        except OSError as exc:
            if not _is_sftp_status(exc):
                _raise_translated(exc, "publish", path)
            self._check_same(sftp, path, data)
            with suppress(OSError):
                sftp.remove(str(temp))
        _fsync_folder(sftp, path.parent)

    def _check_same(self, sftp: SFTPClient, path: PurePosixPath, data: memoryview) -> None:
        with _translated("read", path), sftp.open(str(path), "r") as f:
            size = f.stat().st_size
            same = size == len(data) and (
                size == 0 or _pipelined_read(sftp, _handle_of(f), 0, size) == data
            )
        if not same:
            raise AlreadyExists(f"{path} exists on {self._address} with different bytes")

    # ---- listing and layout ---------------------------------------------------------------

    def _make_layout(self) -> None:
        with self._session() as sftp:
            self._check_creatable(sftp)
            self._mkdir(sftp, self._root, parents=True)
            for kind in _FOLDER_KINDS:
                self._mkdir(sftp, self._root / kind.value)
            packs = self._root / ObjectKind.PACK.value
            present = {e.filename for e in _scan(sftp, packs)}
            for shard in _SHARDS:
                if shard not in present:
                    self._mkdir(sftp, packs / shard)

    def _check_creatable(self, sftp: SFTPClient) -> None:
        try:
            entries = sftp.listdir(str(self._root))
        except FileNotFoundError:
            return
        except OSError as exc:
            _raise_translated(exc, "read", self._root)
        foreign = [e for e in entries if e not in _LAYOUT_NAMES and not e.startswith(".")]
        if foreign:
            raise BackendError(
                f"refusing to create a repository in {self._address}: the folder is not empty "
                f"and does not hold a Cairn repository (found {sorted(foreign)[0]!r})"
            )

    def _mkdir(self, sftp: SFTPClient, path: PurePosixPath, parents: bool = False) -> None:
        if parents and path.parent != path:
            with suppress(NotFound):
                if _is_dir(_stat_or_none(sftp, path)):
                    return
            if _stat_or_none(sftp, path.parent) is None:
                self._mkdir(sftp, path.parent, parents=True)
        try:
            sftp.mkdir(str(path), FOLDER_MODE)
        except OSError as exc:
            if _is_dir(_stat_or_none(sftp, path)):
                return  # made already (or by another process meanwhile)
            _raise_translated(exc, "create the folder", path, missing=BackendError)

    # ---- connections ----------------------------------------------------------------------

    def _path(self, handle: Handle) -> PurePosixPath:
        check_handle(handle)
        if handle.kind is ObjectKind.CONFIG:
            return self._root / CONFIG_NAME
        if handle.kind is ObjectKind.PACK:
            return self._root / str(handle.kind.value) / handle.name[:2] / handle.name
        return self._root / str(handle.kind.value) / handle.name

    @contextmanager
    def _session(self) -> Iterator[SFTPClient]:
        """An SFTP session of the pool for one call; dropped if the call failed in transport."""
        with self._slots:
            with self._lock:
                session = self._idle.pop() if self._idle else None
            if session is None or not _alive(session):
                if session is not None:
                    session.client.close()
                session = self._connect()
            healthy = False
            try:
                yield session.sftp
                healthy = True
            except (TransientBackendError, ListingIncomplete):
                raise
            except BackendError as exc:
                # paramiko says "Socket is closed" as it says an SFTP failure (a plain OSError):
                # whatever failed on a connection that is gone is worth a retry.
                if isinstance(exc.__cause__, _TRANSPORT_ERRORS) or not _alive(session):
                    raise TransientBackendError(f"{exc} (the connection broke)") from exc.__cause__
                healthy = True
                raise
            except (OSError, EOFError, paramiko.SSHException) as exc:
                # Whatever a step let through untranslated: the connection broke under it.
                raise TransientBackendError(
                    f"the connection to {self._address} broke: {exc or type(exc).__name__}"
                ) from exc
            finally:
                if healthy and _alive(session):
                    with self._lock:
                        self._idle.append(session)
                else:
                    session.client.close()

    def _connect(self) -> _Session:
        return connect(self._address, self._credentials)


_SHARD_SET = frozenset(_SHARDS)
_TRANSPORT_ERRORS = (paramiko.SSHException, EOFError, ConnectionError, TimeoutError)


def connect(address: SftpAddress, credentials: SftpCredentials) -> _Session:
    """Log in to `address` and open its SFTP subsystem, checking the host key first."""
    client = paramiko.SSHClient()
    known = credentials.known_hosts_path()
    try:
        client.load_host_keys(str(known))
    except FileNotFoundError:
        pass
    except (OSError, paramiko.SSHException) as exc:
        raise HostKeyUnknown(f"cannot read the known hosts file {known}: {exc}") from exc
    client.set_missing_host_key_policy(_RefuseUnknown(address, known))
    key = credentials.key_file
    try:
        client.connect(
            address.host,
            address.port,
            username=address.user,
            key_filename=str(key) if key else None,
            password=credentials.password,
            allow_agent=credentials.agent,
            look_for_keys=key is None,
            timeout=_TIMEOUT,
            banner_timeout=_TIMEOUT,
            auth_timeout=_TIMEOUT,
        )
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(15)
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(_TIMEOUT * 4)  # type: ignore[union-attr]
    except BaseException as exc:
        client.close()
        _raise_connect_error(exc, address, credentials, known)
    return _Session(client, sftp)


def _raise_connect_error(
    exc: BaseException, address: SftpAddress, credentials: SftpCredentials, known: Path
) -> NoReturn:
    if isinstance(exc, BackendError):
        raise exc
    if isinstance(exc, paramiko.BadHostKeyException):
        raise HostKeyUnknown(_changed_key_message(address, known, exc)) from exc
    if isinstance(exc, paramiko.AuthenticationException):
        tried = _tried(credentials)
        raise StorageLoginRefused(
            f"{address.user}@{address.host}:{address.port} refused the login as "
            f"{address.user!r} (tried: {tried})"
        ) from exc
    if isinstance(exc, FileNotFoundError) and credentials.key_file is not None:
        raise StorageLoginRefused(f"cannot read the SSH key {credentials.key_file}") from exc
    if isinstance(exc, paramiko.SSHException) and "Indecipherable protocol" in str(exc):
        raise GarbledAnswer(
            f"{address.host}:{address.port} does not speak SSH ({exc}); check the address"
        ) from exc
    if isinstance(exc, paramiko.SSHException) and "unable to parse key file" in str(exc).lower():
        raise StorageLoginRefused(f"cannot use the SSH key {credentials.key_file}: {exc}") from exc
    if isinstance(exc, (*_TRANSPORT_ERRORS, OSError)):
        raise TransientBackendError(
            f"cannot reach {address.host}:{address.port} over SSH: {exc or type(exc).__name__}"
        ) from exc
    raise exc


def _tried(credentials: SftpCredentials) -> str:
    tried = [f"the key {credentials.key_file}" if credentials.key_file else "the keys in ~/.ssh"]
    if credentials.agent:
        tried.append("the SSH agent")
    if credentials.password is not None:
        tried.append("the password")
    return ", ".join(tried)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's fingerprint of a public key: ``SHA256:`` and unpadded base64."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Unknown hosts are an error that says what to check and add, never trusted."""

    def __init__(self, address: SftpAddress, known: Path) -> None:
        self._address = address
        self._known = known

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        name = self._address.known_hosts_name
        port = f"-p {self._address.port} " if self._address.port != 22 else ""
        raise HostKeyUnknown(
            f"the SSH host key of {name} is not in {self._known}: it shows "
            f"{key.get_name()} {fingerprint(key)}. Check that fingerprint with the server's "
            f"administrator (`ssh-keygen -lf` on its host key), then add the key to known_hosts, "
            f"e.g. `ssh-keyscan {port}{self._address.host} >> {self._known}`, or this line:\n"
            f"{name} {key.get_name()} {key.get_base64()}"
        )


def _changed_key_message(
    address: SftpAddress, known: Path, exc: paramiko.BadHostKeyException
) -> str:
    name = address.known_hosts_name
    return (
        f"WARNING: THE SSH HOST KEY OF {name} HAS CHANGED. {known} holds "
        f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}, the server shows "
        f"{exc.key.get_name()} {fingerprint(exc.key)}. Someone may be intercepting the "
        f"connection, or the server was reinstalled; Cairn will not connect. If the change is "
        f"expected, check the new fingerprint with the server's administrator, remove the old "
        f"entry (`ssh-keygen -R '{name}' -f {known}`) and add the new key."
    )


def _alive(session: _Session) -> bool:
    transport = session.client.get_transport()
    channel = session.sftp.get_channel()
    return (
        transport is not None
        and transport.is_active()
        and channel is not None
        and not channel.closed
    )


# ---- SFTP requests paramiko's public API does not make -------------------------------------


_INT64: Any = getattr(paramiko.sftp_client, "int64")  # noqa: B009  not in the stubs
"""paramiko's marker type for a 64-bit request field (a file offset)."""


class _Raw:
    """paramiko's request layer, which its public API (and its type stubs) leave out: the SFTP
    extensions and the checked pipelined writes need it. Pinned by paramiko's major version."""

    def __init__(self, sftp: SFTPClient) -> None:
        self._sftp: Any = sftp

    def request(self, kind: int, *args: object) -> tuple[int | None, paramiko.Message | None]:
        answer: tuple[int | None, paramiko.Message | None] = self._sftp._request(kind, *args)
        return answer

    def async_request(self, answers: object, kind: int, *args: object) -> int:
        number: int = self._sftp._async_request(answers, kind, *args)
        return number

    def read_response(self) -> None:
        self._sftp._read_response()


def _handle_of(f: paramiko.SFTPFile) -> bytes:
    handle: Any = f.handle  # bytes at run time; the stubs say otherwise
    return bytes(handle)


class _WriteAnswers:
    """Counts the answers to pipelined writes and keeps the first failure (paramiko hands an
    answer to the object its request named)."""

    def __init__(self) -> None:
        self.received = 0
        self.failure: str | None = None

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self.received += 1
        if self.failure is not None:
            return
        if t != CMD_STATUS:
            self.failure = f"unexpected answer {t} to a write"
            return
        code = msg.get_int()
        if code != SFTP_OK:
            self.failure = msg.get_text() or f"status {code}"


def _pipelined_write(sftp: SFTPClient, handle: bytes, data: memoryview, start: int) -> str | None:
    """Write data[start:] at its offsets with up to `_IN_FLIGHT` requests unanswered;
    return the first failure the server reported, or None."""
    answers = _WriteAnswers()
    raw = _Raw(sftp)
    sent = 0
    for offset in range(start, len(data), _BLOCK):
        chunk = bytes(data[offset : offset + _BLOCK])
        raw.async_request(answers, CMD_WRITE, handle, _INT64(offset), chunk)
        sent += 1
        while sent - answers.received > _IN_FLIGHT:
            raw.read_response()
        if answers.failure is not None:
            break
    while answers.received < sent:
        raw.read_response()
    return answers.failure


class _ReadAnswers:
    """Puts the answers to pipelined reads in place in one buffer; notes what came short."""

    def __init__(self, base: int, count: int) -> None:
        self.base = base
        self.buffer = bytearray(count)
        self.pending: dict[int, tuple[int, int]] = {}
        self.rest: list[tuple[int, int]] = []
        self.failure: str | None = None

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        offset, length = self.pending.pop(num)
        if t == CMD_DATA:
            data = msg.get_string()
            start = offset - self.base
            self.buffer[start : start + len(data)] = data
            if 0 < len(data) < length:  # a server may answer less than asked: ask again
                self.rest.append((offset + len(data), length - len(data)))
            elif not data:
                self.failure = self.failure or "the file ended early"
        elif t == CMD_STATUS:
            code, text = msg.get_int(), msg.get_text()
            self.failure = self.failure or (text or f"status {code}")
        else:
            self.failure = self.failure or f"unexpected answer {t} to a read"


def _pipelined_read(sftp: SFTPClient, handle: bytes, offset: int, count: int) -> bytes:
    """`count` bytes from `offset` with up to `_IN_FLIGHT` reads unanswered (paramiko's
    readv joins its pieces into bytes one by one: quadratic for a pack). A file that ends early
    is a short read: TransientBackendError, from the caller's length check."""
    answers = _ReadAnswers(offset, count)
    raw = _Raw(sftp)
    answers.rest = [
        (start, min(_BLOCK, offset + count - start))
        for start in range(offset, offset + count, _BLOCK)
    ]
    answers.rest.reverse()
    while answers.failure is None and (answers.rest or answers.pending):
        while answers.rest and len(answers.pending) < _IN_FLIGHT:
            start, length = answers.rest.pop()
            number = raw.async_request(answers, CMD_READ, handle, _INT64(start), length)
            answers.pending[number] = (start, length)
        raw.read_response()
    while answers.pending:
        raw.read_response()
    if answers.failure is not None:
        raise EOFError(answers.failure)
    return bytes(answers.buffer)


def _fsync(sftp: SFTPClient, handle: bytes) -> None:
    """fsync@openssh.com on an open file; servers without the extension are left alone."""
    try:
        _Raw(sftp).request(CMD_EXTENDED, "fsync@openssh.com", handle)
    except OSError as exc:
        if not _is_sftp_status(exc):
            raise


def _fsync_folder(sftp: SFTPClient, folder: PurePosixPath) -> None:
    """Make a rename durable where the server lets a folder be opened and fsynced (OpenSSH's
    does on Linux); elsewhere it is as durable as the server makes it."""
    try:
        with sftp.open(str(folder), "r") as f:
            _fsync(sftp, _handle_of(f))
    except OSError as exc:
        # A server that refuses (a status answer) leaves it at that; a broken connection is
        # an error, so the save is retried and fsyncs the folder then.
        if not (_is_sftp_status(exc) or isinstance(exc, (FileNotFoundError, PermissionError))):
            raise


def _free_bytes(sftp: SFTPClient, folder: PurePosixPath) -> int | None:
    """Bytes free for an unprivileged user under `folder` (statvfs@openssh.com), or None."""
    try:
        _t, msg = _Raw(sftp).request(CMD_EXTENDED, "statvfs@openssh.com", str(folder))
        if msg is None:
            return None
        _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
    except (OSError, EOFError, paramiko.SSHException):
        return None
    return int(frsize * bavail)


def _read_back(sftp: SFTPClient, temp: PurePosixPath, size: int) -> bytes:
    """The whole of `temp`: a resumed upload is verified whole before it is published."""
    with _translated("read", temp), sftp.open(str(temp), "r") as f:
        return _pipelined_read(sftp, _handle_of(f), 0, size) if size else b""


def _tail_matches(sftp: SFTPClient, temp: PurePosixPath, data: memoryview, reached: int) -> bool:
    start = max(0, reached - _RESUME_CHECK)
    with _translated("read", temp), sftp.open(str(temp), "r") as f:
        tail = _pipelined_read(sftp, _handle_of(f), start, reached - start)
    return tail == data[start:reached]


def _list_kind(sftp: SFTPClient, root: PurePosixPath, kind: ObjectKind) -> list[ObjectInfo]:
    if kind is ObjectKind.CONFIG:
        attrs = _stat_or_none(sftp, root / CONFIG_NAME)
        return [] if attrs is None else [ObjectInfo(Handle(kind, CONFIG_NAME), attrs.st_size or 0)]
    folder = root / kind.value
    if kind is not ObjectKind.PACK:
        return _list_folder(sftp, kind, folder, "")
    infos: list[ObjectInfo] = []
    for entry in _scan(sftp, folder):
        if entry.filename in _SHARD_SET and _is_dir(entry):
            infos += _list_folder(sftp, kind, folder / entry.filename, entry.filename)
    return infos


def _list_folder(
    sftp: SFTPClient, kind: ObjectKind, folder: PurePosixPath, prefix: str
) -> list[ObjectInfo]:
    """Objects in `folder`: valid names only, so never a temporary or partial file."""
    return [
        ObjectInfo(Handle(kind, entry.filename), entry.st_size or 0)
        for entry in _scan(sftp, folder)
        if is_hex_name(entry.filename) and entry.filename.startswith(prefix) and not _is_dir(entry)
    ]


def _scan(sftp: SFTPClient, folder: PurePosixPath) -> list[paramiko.SFTPAttributes]:
    with _translated("list", folder):
        return sftp.listdir_attr(str(folder))


def _stat_or_none(sftp: SFTPClient, path: PurePosixPath) -> paramiko.SFTPAttributes | None:
    try:
        return sftp.stat(str(path))
    except FileNotFoundError:
        return None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        _raise_translated(exc, "stat", path)


def _is_dir(entry: paramiko.SFTPAttributes | None) -> bool:
    return entry is not None and entry.st_mode is not None and stat.S_ISDIR(entry.st_mode)


def _is_sftp_status(exc: OSError) -> bool:
    """True for an SFTP status answer paramiko raised as a plain OSError (no errno)."""
    return type(exc) is OSError and exc.errno is None and str(exc) != "Socket is closed"


@contextmanager
def _translated(
    action: str, path: PurePosixPath, missing: type[BackendError] = NotFound
) -> Iterator[None]:
    try:
        yield
    except BackendError:
        raise
    except (OSError, EOFError, paramiko.SSHException) as exc:
        _raise_translated(exc, action, path, missing)


def _raise_translated(
    exc: BaseException, action: str, path: PurePosixPath, missing: type[BackendError] = NotFound
) -> NoReturn:
    if isinstance(exc, FileNotFoundError):
        raise missing(f"cannot {action} {path}: not found") from exc
    if isinstance(exc, PermissionError):
        raise PermissionDenied(f"cannot {action} {path}: permission denied") from exc
    if isinstance(exc, OSError) and _is_sftp_status(exc):
        raise BackendError(f"cannot {action} {path}: the server said {exc}") from exc
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise StorageFull(f"cannot {action} {path}: no space left") from exc
    raise TransientBackendError(f"cannot {action} {path}: the connection broke ({exc!r})") from exc
