"""A backend on an FTP server (``ftp://user@host:port/path``) or FTPS (``ftps://``: explicit TLS,
AUTH TLS, data connections protected with PROT P), passive mode, with the standard library's
ftplib (docs/design.md says why).

The password never appears in the location: it comes from CAIRN_FTP_PASSWORD_FILE or
CAIRN_FTP_PASSWORD (read by the caller, passed in), and is never printed. CAIRN_FTP_CA names a
PEM file of certificates to trust for ftps:// besides the system's (a self-signed server).

Layout: as a local repository's (``config``, ``keys/``, ``packs/xx/`` …), so a copy of the
folder is a local repository. Writes go to a temporary name in the target's folder and are
renamed (RNFR/RNTO) into place; listings show only valid object names, never a temporary one.

One FTP control connection carries one command at a time, so the backend keeps a small pool of
connections; ``capabilities.connections`` is its size.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import queue
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

from cairn.backends.base import Capabilities, Handle, ObjectInfo, ObjectKind, exists_by_stat
from cairn.backends.contract import CONFIG_NAME, check_handle, read_span
from cairn.backends.errors import (
    AlreadyExists,
    BackendError,
    ForeignLocation,
    FtpSetupError,
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
from cairn.core.ids import is_hex_name

T = TypeVar("T")

POOL_SIZE = 4
"""Connections kept open at most (and `capabilities.connections`)."""
TIMEOUT = 30.0
"""Seconds any one socket operation may take before the connection counts as broken."""
RESUMABLE_ABOVE = 8 * 1024 * 1024
"""Objects larger than this go up under a fixed temporary name (``NAME.partial``), so a save
that broke off goes on from the size the server holds instead of starting again."""
BLOCK = 256 * 1024
PARTIAL_SUFFIX = ".partial"
_LAYOUT = {kind.value for kind in ObjectKind if kind is not ObjectKind.CONFIG} | {CONFIG_NAME}


@dataclass(frozen=True, slots=True)
class FtpLocation:
    """Where an FTP repository lives; holds no secret."""

    tls: bool
    host: str
    port: int
    user: str
    path: str
    """The repository's folder, absolute, without a trailing slash ("" for the user's root)."""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'ftps' if self.tls else 'ftp'}://{self.user}@{host}:{self.port}{self.path}/"


def parse_ftp_location(location: str) -> FtpLocation:
    """``ftp://user@host[:port]/path`` or ``ftps://…`` (port 21 by default). A password in the
    location is refused: it would show in process lists, shell history and messages."""
    parts = urlsplit(location)
    if parts.scheme not in ("ftp", "ftps") or not parts.hostname:
        raise FtpSetupError(f"{location!r}: use ftp://USER@HOST:PORT/PATH or ftps://…")
    if parts.password is not None:
        raise FtpSetupError(
            "an FTP location must not hold the password (it would show in process lists and "
            "messages): give it in CAIRN_FTP_PASSWORD_FILE or CAIRN_FTP_PASSWORD"
        )
    if parts.query or parts.fragment:
        raise FtpSetupError(f"{_without_secret(location)!r}: no query or fragment is allowed")
    try:
        port = parts.port or 21
    except ValueError as exc:
        raise FtpSetupError(f"{_without_secret(location)!r}: bad port") from exc
    user = unquote(parts.username) if parts.username else "anonymous"
    path = "/" + unquote(parts.path).strip("/")
    if any(part in (".", "..") for part in path.split("/")) or "\n" in path or "\r" in path:
        raise FtpSetupError(f"{location!r}: the path must not hold '.', '..' or line breaks")
    return FtpLocation(parts.scheme == "ftps", parts.hostname, port, user, path.rstrip("/"))


def _without_secret(location: str) -> str:
    parts = urlsplit(location)
    if parts.password is None:
        return location
    return location.replace(f":{parts.password}@", ":***@", 1)


def ftp_password(environ: dict[str, str] | None = None) -> str | None:
    """The password CAIRN_FTP_PASSWORD_FILE (first line) or CAIRN_FTP_PASSWORD gives, or None."""
    import os

    env = os.environ if environ is None else environ
    file = env.get("CAIRN_FTP_PASSWORD_FILE")
    if file:
        return read_password_file(file, "FTP", FtpSetupError)
    return env.get("CAIRN_FTP_PASSWORD")


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trust, plus the certificates in `ca_file` (CAIRN_FTP_CA) when given."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise FtpSetupError(f"cannot use the CA file {ca_file} (CAIRN_FTP_CA): {exc}") from exc
    return context


class FtpBackend:
    """Objects as files under one folder of an FTP server."""

    def __init__(
        self,
        where: FtpLocation,
        password: str | None,
        context: ssl.SSLContext | None = None,
        pool_size: int = POOL_SIZE,
        timeout: float = TIMEOUT,
    ) -> None:
        if password is None and where.user != "anonymous":
            raise FtpSetupError(
                f"{where} needs a password: set CAIRN_FTP_PASSWORD_FILE (a file whose first "
                "line is the password) or CAIRN_FTP_PASSWORD"
            )
        self._where = where
        self._password = password or ""
        self._context = context if context is not None else tls_context(None)
        self._timeout = timeout
        self._pool_size = pool_size
        self._idle: queue.LifoQueue[ftplib.FTP] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._lock = threading.Lock()
        self._made: set[str] = set()
        self._spent: set[int] = set()
        self._features: set[str] | None = None
        self._closed = False

    # ---- the Backend protocol ------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            connections=self._pool_size,
            ranged_reads=True,
            atomic_create=True,
            resumable_writes=True,
            conditional_create=False,
            server_checksums=False,
        )

    def location(self) -> str:
        return str(self._where)

    def create(self) -> None:
        """Make the folder and the layout's folders; refuse a folder that holds other files."""

        def run(ftp: ftplib.FTP) -> None:
            self._make_folders(ftp, self._where.path)
            names = set(self._entries(ftp, self._where.path or "/"))
            foreign = sorted(n for n in names if n not in _LAYOUT and not _temporary(n))
            if foreign:
                raise ForeignLocation(
                    f"refusing to create a repository: {self._where} holds other files "
                    f"(found {foreign[0]!r})"
                )
            for kind in ObjectKind:
                if kind is not ObjectKind.CONFIG:
                    self._make_folder(ftp, self._folder(kind))

        self._with_connection("create the repository in", self._where.path or "/", run)

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        check_handle(handle)
        payload = bytes(memoryview(data).cast("B"))
        path = self._path(handle)

        def run(ftp: ftplib.FTP) -> None:
            if self._same_or_refuse(ftp, handle, path, payload):
                return
            folder = path.rpartition("/")[0]
            if handle.kind is ObjectKind.PACK:
                self._make_folder(ftp, folder)
            if len(payload) > RESUMABLE_ABOVE:
                temp = path + PARTIAL_SUFFIX
                self._upload_resumable(ftp, temp, payload)
            else:
                temp = f"{path}.tmp-{secrets.token_hex(6)}"
                self._store(ftp, temp, payload, 0)
                if self._size(ftp, temp) != len(payload):
                    self._delete_quietly(ftp, temp)
                    raise TransientBackendError(f"the upload of {handle} arrived short; retrying")
            # Check again just before the rename: most FTP servers let RNTO replace a file, so
            # a writer that got there first with other bytes would be overwritten. The window
            # between this check and the rename remains (docs/design.md, "FTP").
            try:
                if self._same_or_refuse(ftp, handle, path, payload):
                    self._delete_quietly(ftp, temp)
                    return
            except AlreadyExists:
                self._delete_quietly(ftp, temp)
                raise
            self._rename(ftp, temp, path)

        self._with_connection("write", path, run)

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        check_handle(handle)
        path = self._path(handle)

        def run(ftp: ftplib.FTP) -> bytes:
            size = self._size(ftp, path)
            if size is None:
                raise NotFound(f"{handle} does not exist in {self._where}")
            count = read_span(size, offset, length, handle)
            if count == 0:
                return b""
            return self._retrieve(ftp, path, offset, count, to_end=offset + count == size)

        return self._with_connection("read", path, run)

    def stat(self, handle: Handle) -> ObjectInfo:
        check_handle(handle)
        path = self._path(handle)

        def run(ftp: ftplib.FTP) -> ObjectInfo:
            size = self._size(ftp, path)
            if size is None:
                raise NotFound(f"{handle} does not exist in {self._where}")
            return ObjectInfo(handle, size)

        return self._with_connection("stat", path, run)

    def exists(self, handle: Handle) -> bool:
        return exists_by_stat(self, handle)

    def remove(self, handle: Handle) -> None:
        check_handle(handle)
        path = self._path(handle)

        def run(ftp: ftplib.FTP) -> None:
            try:
                ftp.voidcmd(f"DELE {path}")
            except ftplib.error_perm as exc:
                if _code(exc) == "550" and not _permission(exc):
                    raise NotFound(f"{handle} does not exist in {self._where}") from exc
                raise

        self._with_connection("remove", path, run)

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        if kind is ObjectKind.CONFIG:
            config = Handle(kind, CONFIG_NAME)
            if self.exists(config):
                yield self.stat(config)
            return
        folder = self._folder(kind)
        if kind is ObjectKind.PACK:
            shards = self._listing(folder)
            for shard, (is_dir, _) in sorted(shards.items()):
                if is_dir and len(shard) == 2 and all(c in "0123456789abcdef" for c in shard):
                    yield from self._objects(kind, f"{folder}/{shard}", shard)
        else:
            yield from self._objects(kind, folder, "")

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                ftp = self._idle.get_nowait()
            except queue.Empty:
                return
            _quit(ftp)

    # ---- resumable uploads ----------------------------------------------------------------

    def _upload_resumable(self, ftp: ftplib.FTP, temp: str, payload: bytes) -> None:
        """Send `payload` to `temp`, going on from the bytes a broken earlier attempt left
        there (REST + STOR), then verify: the size, and, when it went on from an earlier
        attempt, the bytes read back (FTP has no portable checksum command: pure-ftpd and
        vsftpd have none)."""
        have = self._size(ftp, temp) or 0
        if have > len(payload):
            self._delete_quietly(ftp, temp)
            have = 0
        if have < len(payload):
            self._store(ftp, temp, payload, have)
        if self._size(ftp, temp) != len(payload):
            self._delete_quietly(ftp, temp)
            raise TransientBackendError(f"the upload to {temp} arrived short; sending it again")
        if have:
            back = self._retrieve(ftp, temp, 0, len(payload), to_end=True)
            if hashlib.sha256(back).digest() != hashlib.sha256(payload).digest():
                self._delete_quietly(ftp, temp)
                raise TransientBackendError(
                    f"the resumed upload to {temp} does not read back as sent; sending it again"
                )

    # ---- FTP commands ---------------------------------------------------------------------

    def _store(self, ftp: ftplib.FTP, path: str, payload: bytes, offset: int) -> None:
        """STOR `payload` from `offset` (after REST when not 0). When the data connection
        breaks, the server may have said why on the control connection: pure-ftpd resets the
        data connection on a full disk and answers 451 "Error during write to file"."""
        try:
            ftp.storbinary(
                f"STOR {path}",
                io.BytesIO(payload[offset:]),
                BLOCK,
                rest=offset if offset else None,
            )
        except OSError as exc:
            reply = _reply_after_break(ftp)
            if reply is not None and _full(reply):
                self._delete_quietly(ftp, path)
                raise StorageFull(
                    f"{self._where.host}:{self._where.port} could not store {path}: "
                    f"{reply.splitlines()[0]} (its disk or quota is most likely full)"
                ) from exc
            raise
        except ftplib.error_temp as exc:
            if _full(str(exc)):
                self._delete_quietly(ftp, path)
            raise
        except ftplib.error_perm as exc:
            if _code(exc) == "552":
                self._delete_quietly(ftp, path)
            raise

    def _retrieve(self, ftp: ftplib.FTP, path: str, offset: int, count: int, to_end: bool) -> bytes:
        """`count` bytes of `path` from `offset` (REST + RETR). A read that stops before the end
        closes its data connection and sends ABOR in the command stream (ftplib's `abort()`
        sends it as urgent TCP data, which a TLS socket cannot carry; without ABOR pure-ftpd
        over TLS answers nothing until its write times out). When the answers are not the
        expected two (the transfer's end, then ABOR's 225/226) and a NOOP's 200, the control
        connection is not reused."""
        out = bytearray()
        with ftp.transfercmd(f"RETR {path}", rest=offset if offset else None) as conn:
            while len(out) < count:
                block = conn.recv(min(BLOCK, count - len(out)))
                if not block:
                    break
                out += block
            if to_end and len(out) == count:
                # Read to the end of file: the server closes; wait for that, then its 226.
                while conn.recv(BLOCK):
                    raise GarbledAnswer(f"{path} held more bytes than SIZE said")
            if isinstance(conn, ssl.SSLSocket) and to_end:
                with suppress(OSError, ValueError):
                    conn.unwrap()
        if len(out) != count:
            raise TransientBackendError(f"the read of {path} broke off after {len(out)} bytes")
        if to_end:
            ftp.voidresp()
        elif not _aborted(ftp):
            # The server's answers to the cut transfer and ABOR did not come as expected: this
            # connection is not reused (the pool opens another).
            with self._lock:
                self._spent.add(id(ftp))
        return bytes(out)

    def _size(self, ftp: ftplib.FTP, path: str) -> int | None:
        """The size of `path`, or None when it does not exist."""
        try:
            reply = ftp.sendcmd(f"SIZE {path}")
        except ftplib.error_perm as exc:
            if _code(exc) == "550" and not _permission(exc):
                return None
            raise
        code, _, text = reply.partition(" ")
        if code != "213" or not text.strip().isdigit():
            raise GarbledAnswer(f"the answer to SIZE was {reply[:80]!r}")
        return int(text.strip())

    def _same_or_refuse(self, ftp: ftplib.FTP, handle: Handle, path: str, payload: bytes) -> bool:
        """True when `path` holds exactly `payload`; AlreadyExists when it holds other bytes;
        False when it does not exist."""
        size = self._size(ftp, path)
        if size is None:
            return False
        if size == len(payload) and (
            size == 0 or self._retrieve(ftp, path, 0, size, to_end=True) == payload
        ):
            return True
        raise AlreadyExists(f"{handle} already exists in {self._where} with other bytes")

    def _rename(self, ftp: ftplib.FTP, source: str, target: str) -> None:
        ftp.rename(source, target)  # RNFR (350), then RNTO

    def _delete_quietly(self, ftp: ftplib.FTP, path: str) -> None:
        with suppress(ftplib.Error):
            ftp.voidcmd(f"DELE {path}")

    def _make_folders(self, ftp: ftplib.FTP, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        for i in range(len(parts)):
            self._make_folder(ftp, "/" + "/".join(parts[: i + 1]))

    def _make_folder(self, ftp: ftplib.FTP, path: str) -> None:
        if path in self._made:
            return
        try:
            ftp.voidcmd(f"MKD {path}")
        except ftplib.error_perm as exc:
            if _code(exc) != "550":
                raise
            # 550: it exists, or may not be made; which one, a listing of the parent says.
            parent, _, name = path.rpartition("/")
            entries = self._entries(ftp, parent or "/")
            if not entries.get(name, False):
                raise
        with self._lock:
            self._made.add(path)

    def _entries(self, ftp: ftplib.FTP, folder: str) -> dict[str, bool]:
        return {name: is_dir for name, (is_dir, _) in self._list_folder(ftp, folder).items()}

    def _list_folder(self, ftp: ftplib.FTP, folder: str) -> dict[str, tuple[bool, int]]:
        """Every entry of `folder` as name → (is a folder, size): MLSD where the server has it,
        else LIST's Unix-style lines. A folder that does not exist raises NotFound."""
        features = self._feature_set(ftp)
        lines: list[str] = []
        command = f"MLSD {folder}" if "MLSD" in features else f"LIST -a {folder}"
        try:
            ftp.retrlines(command, lines.append)
        except ftplib.error_perm as exc:
            if _code(exc) == "550" and not _permission(exc):
                raise NotFound(f"the folder {folder} does not exist on {self._where}") from exc
            raise
        finally:
            # retrlines switched to TYPE A; reads with REST need binary (servers refuse an
            # ASCII resume). A connection too broken to answer is discarded anyway.
            with suppress(*ftplib.all_errors):
                ftp.voidcmd("TYPE I")
        entries: dict[str, tuple[bool, int]] = {}
        parse = _parse_mlsd if "MLSD" in features else _parse_list
        for line in lines:
            entry = parse(line)
            if entry is not None and entry[0] not in (".", ".."):
                entries[entry[0]] = (entry[1], entry[2])
        return entries

    def _feature_set(self, ftp: ftplib.FTP) -> set[str]:
        if self._features is None:
            try:
                reply = ftp.sendcmd("FEAT")
            except ftplib.error_perm:
                reply = ""
            self._features = {
                line.strip().split(" ")[0].upper() for line in reply.splitlines()[1:-1]
            }
        return self._features

    # ---- listings --------------------------------------------------------------------------

    def _listing(self, folder: str) -> dict[str, tuple[bool, int]]:
        """A folder's entries; a folder that does not exist is empty; a listing that broke off
        is ListingIncomplete."""

        def run(ftp: ftplib.FTP) -> dict[str, tuple[bool, int]]:
            try:
                return self._list_folder(ftp, folder)
            except NotFound:
                return {}

        try:
            return self._with_connection("list", folder, run)
        except (TransientBackendError, GarbledAnswer) as exc:
            raise ListingIncomplete(
                f"the listing of {folder} on {self._where} broke off: {exc}"
            ) from exc

    def _objects(self, kind: ObjectKind, folder: str, shard: str) -> Iterator[ObjectInfo]:
        for name, (is_dir, size) in sorted(self._listing(folder).items()):
            if not is_dir and is_hex_name(name) and name.startswith(shard):
                yield ObjectInfo(Handle(kind, name), size)

    # ---- paths -----------------------------------------------------------------------------

    def _folder(self, kind: ObjectKind) -> str:
        return f"{self._where.path}/{kind.value}"

    def _path(self, handle: Handle) -> str:
        if handle.kind is ObjectKind.CONFIG:
            return f"{self._where.path}/{CONFIG_NAME}"
        if handle.kind is ObjectKind.PACK:
            return f"{self._folder(handle.kind)}/{handle.name[:2]}/{handle.name}"
        return f"{self._folder(handle.kind)}/{handle.name}"

    # ---- connections -----------------------------------------------------------------------

    def _with_connection(self, action: str, path: str, run: Callable[[ftplib.FTP], T]) -> T:
        """Run `run` on a pooled connection, translating every failure into a BackendError
        once, here. A connection that failed in transport is closed, never reused."""
        if self._closed:
            raise BackendError(f"{self._where} is closed")
        with self._slots:
            try:
                ftp = self._idle.get_nowait()
            except queue.Empty:
                ftp = self._connect()
            healthy = False
            try:
                result = run(ftp)
                healthy = True
                return result
            except BackendError as exc:
                healthy = not isinstance(exc, TransientBackendError)
                raise
            except ftplib.error_perm as exc:
                healthy = True
                _raise_translated(exc, action, path, self._where)
            except ftplib.error_temp as exc:
                healthy = _code(exc) not in ("421", "425", "426")
                _raise_translated(exc, action, path, self._where)
            except Exception as exc:
                _raise_translated(exc, action, path, self._where)
            finally:
                with self._lock:
                    spent = id(ftp) in self._spent
                    self._spent.discard(id(ftp))
                if healthy and not spent and not self._closed:
                    self._idle.put(ftp)
                else:
                    _quit(ftp)

    def _connect(self) -> ftplib.FTP:
        where = self._where
        ftp: ftplib.FTP
        if where.tls:
            ftp = ftplib.FTP_TLS(context=self._context, timeout=self._timeout)  # noqa: S321
        else:
            # Plain FTP, as the user's location asks (docs/design.md says what it exposes).
            ftp = ftplib.FTP(timeout=self._timeout)  # noqa: S321
        step = "connect to"
        try:
            ftp.connect(where.host, where.port)
            if isinstance(ftp, ftplib.FTP_TLS):
                step = "start TLS with"
                ftp.auth()
            step = "log in to"
            ftp.login(where.user, self._password)
            if isinstance(ftp, ftplib.FTP_TLS):
                step = "protect the data connections of"
                ftp.prot_p()
            ftp.set_pasv(True)
            ftp.voidcmd("TYPE I")
        except ftplib.error_perm as exc:
            _quit(ftp)
            if _code(exc) == "530":
                raise StorageLoginRefused(
                    f"{where.host}:{where.port} refused the login of {where.user!r}: "
                    f"{_reply(exc)} (check CAIRN_FTP_PASSWORD_FILE or CAIRN_FTP_PASSWORD)"
                ) from exc
            if step != "log in to" and where.tls:
                raise StorageTlsFailed(
                    f"cannot {step} {where.host}:{where.port}: {_reply(exc)} (the server may "
                    "not offer TLS; use ftp:// only on a network you trust)"
                ) from exc
            _raise_translated(exc, step, where.path or "/", where)
        except ssl.SSLError as exc:
            _quit(ftp)
            raise StorageTlsFailed(
                f"the TLS handshake with {where.host}:{where.port} failed: "
                f"{exc.reason or exc} (a self-signed server: name its CA in CAIRN_FTP_CA)"
            ) from exc
        except Exception as exc:
            _quit(ftp)
            _raise_translated(exc, step, where.path or "/", where)
        return ftp


def _raise_translated(exc: BaseException, action: str, path: str, where: FtpLocation) -> NoReturn:
    """Raise the BackendError `exc` stands for (from `exc`)."""
    at = f"cannot {action} {path} on {where.host}:{where.port}"
    if isinstance(exc, ftplib.error_perm):
        code = _code(exc)
        if code == "530":
            raise StorageLoginRefused(f"{at}: the server refused the login: {_reply(exc)}") from exc
        if code == "552":
            raise StorageFull(f"{at}: the server is out of space or quota: {_reply(exc)}") from exc
        if code in ("550", "553") and _permission(exc):
            raise PermissionDenied(f"{at}: {_reply(exc)}") from exc
        if code == "550":
            raise NotFound(f"{at}: {_reply(exc)}") from exc
        if code in ("500", "501", "502", "504") and action != "write":
            raise GarbledAnswer(f"{at}: the server does not understand: {_reply(exc)}") from exc
        raise BackendError(f"{at}: {_reply(exc)}") from exc
    if isinstance(exc, ftplib.error_temp):
        if _code(exc) == "452" or _full(exc):
            raise StorageFull(f"{at}: the server is out of space: {_reply(exc)}") from exc
        raise TransientBackendError(f"{at}: {_reply(exc)}") from exc
    if isinstance(exc, ftplib.error_reply | ftplib.error_proto | UnicodeDecodeError):
        raise GarbledAnswer(f"{at}: the server's answer is not FTP: {exc}") from exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        raise StorageTlsFailed(f"{at}: the certificate did not verify: {exc}") from exc
    if isinstance(exc, OSError | EOFError | socket.timeout):
        raise TransientBackendError(f"{at}: {exc or type(exc).__name__}") from exc
    raise BackendError(f"{at}: {exc}") from exc


def _code(exc: BaseException) -> str:
    return str(exc)[:3]


def _reply(exc: BaseException) -> str:
    return str(exc).strip()[:200]


def _permission(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "permission" in text or "denied" in text or "not allowed" in text


def _full(reply: BaseException | str) -> bool:
    text = str(reply).lower()
    return any(words in text for words in ("no space", "quota", "disk full", "error during write"))


def _aborted(ftp: ftplib.FTP) -> bool:
    """Send ABOR after a transfer cut short; True when the connection is in step again."""

    def answer() -> str:
        try:
            return ftp.getresp()
        except ftplib.Error as exc:  # 426, 451: the transfer's end, as expected
            return str(exc)

    try:
        if ftp.sock is None:
            return False
        ftp.sock.settimeout(5)
        ftp.putcmd("ABOR")
        first = answer()
        # ABOR's answer alone (no transfer was running): 225, or a 226 that speaks of ABOR.
        # pure-ftpd answers "426 ABORT" for the transfer, then "226 … ABOR … succeeded".
        alone = first.startswith("225") or (first.startswith("226") and "ABOR" in first.upper())
        if not alone and not answer().startswith(("225", "226")):
            return False
        return ftp.sendcmd("NOOP").startswith("200")
    except Exception:  # any failure: the connection is not reused
        return False
    finally:
        with suppress(Exception):
            if ftp.sock is not None:
                ftp.sock.settimeout(ftp.timeout)


def _reply_after_break(ftp: ftplib.FTP) -> str | None:
    """The server's answer after a data connection broke, if it gives one within seconds."""
    try:
        if ftp.sock is not None:
            ftp.sock.settimeout(5)
        try:
            return ftp.getresp()
        except ftplib.Error as exc:
            return str(exc)
        finally:
            if ftp.sock is not None:
                ftp.sock.settimeout(ftp.timeout)
    except Exception:
        return None


def _temporary(name: str) -> bool:
    return ".tmp-" in name or name.endswith(PARTIAL_SUFFIX)


def _quit(ftp: ftplib.FTP) -> None:
    """Close a connection, politely if it still answers, without waiting long."""
    with suppress(Exception):
        if ftp.sock is not None:
            ftp.sock.settimeout(2)
            ftp.quit()
    with suppress(Exception):
        ftp.close()


def _parse_mlsd(line: str) -> tuple[str, bool, int] | None:
    facts_text, _, name = line.partition(" ")
    if not name:
        return None
    facts = {}
    for fact in facts_text.rstrip(";").split(";"):
        key, _, value = fact.partition("=")
        facts[key.lower()] = value
    kind = facts.get("type", "").lower()
    if kind in ("cdir", "pdir"):
        return None
    size = facts.get("size", "0")
    if not size.isdigit():
        raise GarbledAnswer(f"an MLSD line has no size: {line[:80]!r}")
    return name, kind == "dir", int(size)


def _parse_list(line: str) -> tuple[str, bool, int] | None:
    """One Unix ``ls -l`` style line of LIST (the common form; others are not understood)."""
    fields = line.split(None, 8)
    if len(fields) < 9 or not fields[4].isdigit():
        return None
    return fields[8], fields[0].startswith("d"), int(fields[4])
