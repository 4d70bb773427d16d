"""`SftpBackend`: objects as files under one folder of an SSH server (the package docstring
says how saves stay atomic and resumable)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import PurePosixPath
from typing import NoReturn

import paramiko
from paramiko.sftp import CMD_FSTAT, CMD_RENAME
from paramiko.sftp_client import SFTPClient

from cairn.backends.base import Capabilities, Handle, ObjectInfo, ObjectKind, exists_by_stat
from cairn.backends.contract import CONFIG_NAME, check_handle, read_span
from cairn.backends.errors import (
    AlreadyExists,
    BackendError,
    ListingIncomplete,
    NotFound,
    StorageFull,
    TransientBackendError,
)
from cairn.backends.sftp.address import SftpAddress
from cairn.backends.sftp.listing import SHARDS, is_dir, list_kind, scan
from cairn.backends.sftp.login import Session, SftpCredentials, alive, connect
from cairn.backends.sftp.wire import (
    CREATE,
    READ,
    REWRITE,
    TRANSPORT_ERRORS,
    attributes_of,
    check,
    exchange,
    free_bytes,
    handle_in,
    is_sftp_status,
    open_handle,
    open_request,
    opened,
    pipelined_read,
    raise_translated,
    read_file,
    stat_or_none,
    sync_and_close,
    translated,
    write_and_close,
)

CONNECTIONS = 4
RESUMABLE_ABOVE = 4 * 1024 * 1024
"""Objects larger than this go up under a name a later save finds again, to resume."""
TEMP_PREFIX = ".tmp-"
PART_PREFIX = ".part-"
FOLDER_MODE = 0o700
_RESUME_CHECK = 1024 * 1024
"""How many bytes before the offset reached a resume reads back and compares."""
_FOLDER_KINDS = tuple(kind for kind in ObjectKind if kind is not ObjectKind.CONFIG)
_LAYOUT_NAMES = frozenset([CONFIG_NAME, *(kind.value for kind in _FOLDER_KINDS)])


_RESUME_ATTEMPTS = 3
"""How often a save of a large object looks again when the part it went on with was replaced."""


class _PartReplaced(TransientBackendError):
    """The part a resumed save wrote into came short: its name now holds another save's."""


class SftpBackend:
    """Objects as files under one folder of an SSH server. The constructor connects nothing;
    see `create` for a new repository."""

    def __init__(self, address: SftpAddress, credentials: SftpCredentials | None = None) -> None:
        self._address = address
        self._credentials = credentials or SftpCredentials()
        self._root = PurePosixPath(address.path)
        self._idle: list[Session] = []
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
                    if stat_or_none(sftp, path) is None:
                        raise TransientBackendError(f"{temp} vanished") from exc
                    self._check_same(sftp, path, view)
                    return
            else:
                temp = path.with_name(TEMP_PREFIX + secrets.token_hex(8))
                self._upload(sftp, temp, view, 0, create=True)
            self._publish(sftp, temp, path, view)

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(handle)
        with self._session() as sftp, translated("read", path), opened(sftp, path, READ) as f:
            count = read_span(_size(sftp, f), offset, length, handle)
            data = pipelined_read(sftp, f, offset, count) if count else b""
        if len(data) != count:
            raise TransientBackendError(
                f"short read of {path}: got {len(data)} of {count} bytes at offset {offset}"
            )
        return data

    def stat(self, handle: Handle) -> ObjectInfo:
        path = self._path(handle)
        with self._session() as sftp, translated("stat", path):
            return ObjectInfo(handle, sftp.stat(str(path)).st_size or 0)

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        # Collected whole before the first is yielded: a listing that breaks off raises
        # ListingIncomplete, never looks like a shorter one.
        with self._session() as sftp:
            try:
                infos = list_kind(sftp, self._root, kind)
            except NotFound as exc:
                raise ListingIncomplete(f"cannot list {kind.value} on {self._address}") from exc
            except TransientBackendError as exc:
                raise ListingIncomplete(
                    f"listing {kind.value} on {self._address} broke: {exc}"
                ) from exc
        yield from infos

    def remove(self, handle: Handle) -> None:
        path = self._path(handle)
        with self._session() as sftp, translated("remove", path):
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
        last bytes there are the ones this save would send.

        Concurrent saves of the same object share the part and write the same bytes at the
        same offsets, so the part is never removed or truncated while it may be another
        save's: only when it holds bytes this object cannot have (it is longer, or its bytes
        differ). Removing a part another save still writes would let that save publish a
        part someone else had only begun."""
        for _ in range(_RESUME_ATTEMPTS - 1):
            try:
                self._upload_part(sftp, temp, data)
                return
            except _PartReplaced:
                continue  # look again at what the part's name holds now
        self._upload_part(sftp, temp, data)

    def _upload_part(self, sftp: SFTPClient, temp: PurePosixPath, data: memoryview) -> None:
        attrs = stat_or_none(sftp, temp)
        if attrs is not None:
            reached = attrs.st_size or 0
            if reached <= len(data) and self._ends_as(sftp, temp, data, reached):
                self._upload(sftp, temp, data, reached, create=False)
                if read_file(sftp, temp, 0, len(data)) == data:
                    return
            # Bytes this object cannot have (another program wrote there): send it all again.
            with suppress(OSError):
                sftp.remove(str(temp))
        self._upload(sftp, temp, data, 0, create=True)

    @staticmethod
    def _ends_as(sftp: SFTPClient, temp: PurePosixPath, data: memoryview, reached: int) -> bool:
        """True when the last bytes of `temp` before `reached` are those of `data`."""
        start = max(0, reached - _RESUME_CHECK)
        return reached == 0 or read_file(sftp, temp, start, reached - start) == data[start:reached]

    def _upload(
        self, sftp: SFTPClient, temp: PurePosixPath, data: memoryview, start: int, create: bool
    ) -> None:
        """Write data[start:] at its offsets into `temp`, fsync it, and check its size: two
        round trips and the writes (the open; the writes, fsync, fstat and close together)."""
        try:
            # A part missing on resume is NotFound (a concurrent save published it); a folder
            # missing when creating is the layout's fault.
            with translated(
                "open a temporary file in", temp.parent, BackendError if create else NotFound
            ):
                handle = open_handle(sftp, temp, CREATE if create else REWRITE)
        except BackendError:
            if not (create and temp.name.startswith(PART_PREFIX)):
                raise
            if stat_or_none(sftp, temp) is None:
                raise
            # A concurrent save of the same large object made its part first: write into that
            # part too (the same bytes at the same offsets).
            with translated("open a temporary file in", temp.parent, NotFound):
                handle = open_handle(sftp, temp, REWRITE)
        with translated("write", temp):
            # The size is of this file, even if a concurrent save renamed it meanwhile.
            failure, size = write_and_close(sftp, handle, data, start)
        if failure is None and size is not None and size < len(data) and not create:
            # Between the stat that found the part and this open, a concurrent save published
            # it and another began a new one under the same name: this wrote into that one.
            raise _PartReplaced(f"{temp} was replaced by another save's part meanwhile")
        if failure is not None or size != len(data):
            self._write_failed(sftp, temp, len(data) - (size or 0), failure or "short file")

    def _write_failed(
        self, sftp: SFTPClient, temp: PurePosixPath, missing: int, why: str
    ) -> NoReturn:
        free = free_bytes(sftp, temp.parent)
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
        """Rename without replacing; an existing object must hold the same bytes. The folder
        is opened in the rename's round trip and fsynced once the rename is answered."""
        rename, folder = exchange(
            sftp, [(CMD_RENAME, (str(temp), str(path))), open_request(path.parent, READ)]
        )
        folder_handle = handle_in(folder)
        try:
            self._settle_rename(sftp, rename, temp, path, data)
        except BaseException:
            with suppress(OSError, EOFError, paramiko.SSHException):
                sync_and_close(sftp, folder_handle, sync=False)
            raise
        # A server that cannot open a folder (a status answer) leaves it as durable as it makes
        # it; a broken connection raises, and the retried save fsyncs the folder then.
        sync_and_close(sftp, folder_handle)

    def _settle_rename(
        self,
        sftp: SFTPClient,
        answer: tuple[int, paramiko.Message],
        temp: PurePosixPath,
        path: PurePosixPath,
        data: memoryview,
    ) -> None:
        try:
            check(sftp, answer)
        except FileNotFoundError as exc:
            # Another save of the same object (its part shared with this one) published it.
            try:
                self._check_same(sftp, path, data)
            except NotFound:
                raise TransientBackendError(f"{temp} vanished before it was published") from exc
        except PermissionError as exc:
            raise_translated(exc, "publish", path)
        except OSError as exc:
            if not is_sftp_status(exc):
                raise_translated(exc, "publish", path)
            self._check_same(sftp, path, data)
            with suppress(OSError):
                sftp.remove(str(temp))

    def _check_same(self, sftp: SFTPClient, path: PurePosixPath, data: memoryview) -> None:
        with translated("read", path), opened(sftp, path, READ) as f:
            size = _size(sftp, f)
            same = size == len(data) and (size == 0 or pipelined_read(sftp, f, 0, size) == data)
        if not same:
            raise AlreadyExists(f"{path} exists on {self._address} with different bytes")

    # ---- layout ---------------------------------------------------------------------------

    def _make_layout(self) -> None:
        with self._session() as sftp:
            self._check_creatable(sftp)
            self._mkdir(sftp, self._root, parents=True)
            for kind in _FOLDER_KINDS:
                self._mkdir(sftp, self._root / kind.value)
            packs = self._root / ObjectKind.PACK.value
            present = {e.filename for e in scan(sftp, [packs])[packs]}
            for shard in SHARDS:
                if shard not in present:
                    self._mkdir(sftp, packs / shard)

    def _check_creatable(self, sftp: SFTPClient) -> None:
        try:
            entries = sftp.listdir(str(self._root))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise_translated(exc, "read", self._root)
        foreign = [e for e in entries if e not in _LAYOUT_NAMES and not e.startswith(".")]
        if foreign:
            raise BackendError(
                f"refusing to create a repository in {self._address}: the folder is not empty "
                f"and does not hold a Cairn repository (found {sorted(foreign)[0]!r})"
            )

    def _mkdir(self, sftp: SFTPClient, path: PurePosixPath, parents: bool = False) -> None:
        if parents and path.parent != path:
            with suppress(NotFound):
                if is_dir(stat_or_none(sftp, path)):
                    return
            if stat_or_none(sftp, path.parent) is None:
                self._mkdir(sftp, path.parent, parents=True)
        try:
            sftp.mkdir(str(path), FOLDER_MODE)
        except OSError as exc:
            if is_dir(stat_or_none(sftp, path)):
                return  # made already (or by another process meanwhile)
            raise_translated(exc, "create the folder", path, missing=BackendError)

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
            if session is None or not alive(session):
                if session is not None:
                    session.client.close()
                session = connect(self._address, self._credentials)
            healthy = False
            try:
                yield session.sftp
                healthy = True
            except (TransientBackendError, ListingIncomplete):
                raise
            except BackendError as exc:
                # paramiko says "Socket is closed" as it says an SFTP failure (a plain OSError):
                # whatever failed on a connection that is gone is worth a retry.
                if isinstance(exc.__cause__, TRANSPORT_ERRORS) or not alive(session):
                    raise TransientBackendError(f"{exc} (the connection broke)") from exc.__cause__
                healthy = True
                raise
            except (OSError, EOFError, paramiko.SSHException) as exc:
                # Whatever a step let through untranslated: the connection broke under it.
                raise TransientBackendError(
                    f"the connection to {self._address} broke: {exc or type(exc).__name__}"
                ) from exc
            finally:
                if healthy and alive(session):
                    with self._lock:
                        self._idle.append(session)
                else:
                    session.client.close()


def _size(sftp: SFTPClient, handle: bytes) -> int:
    """The size of an open file (FSTAT); a failure raises paramiko's OSError."""
    answer = exchange(sftp, [(CMD_FSTAT, (handle,))])[0]
    check(sftp, answer)
    attrs = attributes_of(answer)
    return 0 if attrs is None or attrs.st_size is None else int(attrs.st_size)
