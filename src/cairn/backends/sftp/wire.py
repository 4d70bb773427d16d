"""SFTP requests as the backend sends them: pipelined, each answer checked, through paramiko's
request layer (its public API waits for each answer in turn, and its pipelined file drops the
error answers still in flight when the file is closed, which would hide a full disk).

A round trip costs as much as a small write on a real network, so the steps of a save that do
not depend on each other's answers go out back to back (`exchange`): the SFTP server handles the
requests of one handle in the order they came (draft-ietf-secsh-filexfer-02, 6), which is what
makes "fsync after the last write" hold without waiting for the writes' answers first.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import PurePosixPath
from typing import Any, NoReturn

import paramiko
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_OPEN,
    CMD_READ,
    CMD_STATUS,
    CMD_WRITE,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_READ,
    SFTP_FLAG_WRITE,
    SFTP_OK,
)
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_client import SFTPClient

from cairn.backends.errors import (
    BackendError,
    NotFound,
    PermissionDenied,
    StorageFull,
    TransientBackendError,
)

BLOCK = 128 * 1024
"""Bytes per SFTP read or write request (OpenSSH's server takes up to 255 KiB)."""
IN_FLIGHT = 64
"""Requests sent and not yet answered, at most, per connection."""
READ = SFTP_FLAG_READ
CREATE = SFTP_FLAG_READ | SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL
"""A new file, refused if the name exists (O_EXCL)."""
REWRITE = SFTP_FLAG_READ | SFTP_FLAG_WRITE
"""An existing file, written at offsets (a resumed part)."""
TRANSPORT_ERRORS = (paramiko.SSHException, EOFError, ConnectionError, TimeoutError)

_INT64: Any = getattr(paramiko.sftp_client, "int64")  # noqa: B009  not in the stubs
"""paramiko's marker type for a 64-bit request field (a file offset)."""

Answer = tuple[int, paramiko.Message]


class Raw:
    """paramiko's request layer, which its public API (and its type stubs) leave out: the SFTP
    extensions and the pipelined requests need it. Pinned by paramiko's major version."""

    def __init__(self, sftp: SFTPClient) -> None:
        self._sftp: Any = sftp

    def request(self, kind: int, *args: object) -> tuple[int | None, paramiko.Message | None]:
        """Send one request and wait for its answer; a failure status raises OSError."""
        answer: tuple[int | None, paramiko.Message | None] = self._sftp._request(kind, *args)
        return answer

    def send(self, answers: object, kind: int, *args: object) -> int:
        """Send one request without waiting; paramiko hands its answer to
        ``answers._async_response(kind, message, number)``. Returns its number."""
        number: int = self._sftp._async_request(answers, kind, *args)
        return number

    def read_response(self) -> None:
        """Wait for the next answer and hand it on."""
        self._sftp._read_response()

    def raise_status(self, msg: paramiko.Message) -> None:
        """paramiko's OSError for a failure status (FileNotFoundError, PermissionError...)."""
        self._sftp._convert_status(msg)


class _Collected:
    """Keeps each answer by its request number."""

    def __init__(self) -> None:
        self.got: dict[int, Answer] = {}

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self.got[num] = (t, msg)


def exchange(sftp: SFTPClient, requests: Sequence[tuple[int, tuple[object, ...]]]) -> list[Answer]:
    """Send `requests` back to back, then wait for every answer: one round trip for all.
    Returns the answers in the order of the requests (failures as status answers)."""
    raw = Raw(sftp)
    collected = _Collected()
    numbers = [raw.send(collected, kind, *args) for kind, args in requests]
    while len(collected.got) < len(numbers):
        raw.read_response()
    return [collected.got[n] for n in numbers]


def attributes_of(answer: Answer) -> SFTPAttributes | None:
    """The attributes an FSTAT or STAT answered, or None if it failed."""
    t, msg = answer
    if t != CMD_ATTRS:
        return None
    attrs: SFTPAttributes = getattr(SFTPAttributes, "_from_msg")(msg)  # noqa: B009
    return attrs


def open_handle(sftp: SFTPClient, path: PurePosixPath, flags: int) -> bytes:
    """Open `path` with SFTP's open flags; raises paramiko's OSError on a failure status."""
    raw = Raw(sftp)
    t, msg = raw.request(CMD_OPEN, str(path), flags, SFTPAttributes())
    if t != CMD_HANDLE or msg is None:  # a server that breaks the protocol: as a broken link
        raise paramiko.SSHException(f"expected a handle, got answer {t}")
    return bytes(msg.get_binary())


@contextmanager
def opened(sftp: SFTPClient, path: PurePosixPath, flags: int) -> Iterator[bytes]:
    """A handle of `path`, closed on the way out (a close that fails is left: the handle dies
    with the session)."""
    handle = open_handle(sftp, path, flags)
    try:
        yield handle
    finally:
        with suppress(OSError, EOFError, paramiko.SSHException):
            Raw(sftp).request(CMD_CLOSE, handle)


# ---- writing ------------------------------------------------------------------------------


class _WriteAnswers:
    """Counts the answers to pipelined writes and keeps the first failure."""

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


def write_and_close(
    sftp: SFTPClient, handle: bytes, data: memoryview, start: int
) -> tuple[str | None, int | None]:
    """Write data[start:] at its offsets into the open `handle` with up to `IN_FLIGHT` writes
    unanswered; then fsync (``fsync@openssh.com``), fstat and close it, sent behind the writes
    without waiting for them. Returns the first write failure (None if all were written) and
    the file's size after the fsync (None if the fstat failed). The handle is closed either way.
    """
    answers = _WriteAnswers()
    raw = Raw(sftp)
    sent = 0
    for offset in range(start, len(data), BLOCK):
        raw.send(answers, CMD_WRITE, handle, _INT64(offset), bytes(data[offset : offset + BLOCK]))
        sent += 1
        while sent - answers.received > IN_FLIGHT:
            raw.read_response()
        if answers.failure is not None:
            break
    tail: list[tuple[int, tuple[object, ...]]] = [(CMD_FSTAT, (handle,)), (CMD_CLOSE, (handle,))]
    if answers.failure is None:
        tail.insert(0, (CMD_EXTENDED, ("fsync@openssh.com", handle)))
    closing = exchange(sftp, tail)  # also reads the writes' answers that are still to come
    while answers.received < sent:
        raw.read_response()
    # A server without fsync@openssh.com answers it with a failure status: left at that.
    return answers.failure, _size(attributes_of(closing[-2]))


def _size(attrs: SFTPAttributes | None) -> int | None:
    return None if attrs is None or attrs.st_size is None else int(attrs.st_size)


# ---- reading ------------------------------------------------------------------------------


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


def pipelined_read(sftp: SFTPClient, handle: bytes, offset: int, count: int) -> bytes:
    """`count` bytes from `offset` with up to `IN_FLIGHT` reads unanswered (paramiko's
    readv joins its pieces into bytes one by one: quadratic for a pack). A file that ends early
    raises EOFError: a short read, TransientBackendError once translated."""
    answers = _ReadAnswers(offset, count)
    raw = Raw(sftp)
    answers.rest = [
        (start, min(BLOCK, offset + count - start))
        for start in range(offset, offset + count, BLOCK)
    ]
    answers.rest.reverse()
    while answers.failure is None and (answers.rest or answers.pending):
        while answers.rest and len(answers.pending) < IN_FLIGHT:
            start, length = answers.rest.pop()
            number = raw.send(answers, CMD_READ, handle, _INT64(start), length)
            answers.pending[number] = (start, length)
        raw.read_response()
    while answers.pending:
        raw.read_response()
    if answers.failure is not None:
        raise EOFError(answers.failure)
    return bytes(answers.buffer)


def read_file(sftp: SFTPClient, path: PurePosixPath, offset: int, count: int) -> bytes:
    """`count` bytes of `path` from `offset` (fewer if it is shorter: the caller checks)."""
    with translated("read", path), opened(sftp, path, READ) as handle:
        return pipelined_read(sftp, handle, offset, count) if count else b""


def free_bytes(sftp: SFTPClient, folder: PurePosixPath) -> int | None:
    """Bytes free for an unprivileged user under `folder` (statvfs@openssh.com), or None."""
    try:
        _t, msg = Raw(sftp).request(CMD_EXTENDED, "statvfs@openssh.com", str(folder))
        if msg is None:
            return None
        _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
    except (OSError, EOFError, paramiko.SSHException):
        return None
    return int(frsize * bavail)


# ---- errors -------------------------------------------------------------------------------


def stat_or_none(sftp: SFTPClient, path: PurePosixPath) -> SFTPAttributes | None:
    try:
        return sftp.stat(str(path))
    except FileNotFoundError:
        return None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise_translated(exc, "stat", path)


def is_sftp_status(exc: OSError) -> bool:
    """True for an SFTP status answer paramiko raised as a plain OSError (no errno)."""
    return type(exc) is OSError and exc.errno is None and str(exc) != "Socket is closed"


@contextmanager
def translated(
    action: str, path: PurePosixPath, missing: type[BackendError] = NotFound
) -> Iterator[None]:
    try:
        yield
    except BackendError:
        raise
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise_translated(exc, action, path, missing)


def raise_translated(
    exc: BaseException, action: str, path: PurePosixPath, missing: type[BackendError] = NotFound
) -> NoReturn:
    if isinstance(exc, FileNotFoundError):
        raise missing(f"cannot {action} {path}: not found") from exc
    if isinstance(exc, PermissionError):
        raise PermissionDenied(f"cannot {action} {path}: permission denied") from exc
    if isinstance(exc, OSError) and is_sftp_status(exc):
        raise BackendError(f"cannot {action} {path}: the server said {exc}") from exc
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise StorageFull(f"cannot {action} {path}: no space left") from exc
    raise TransientBackendError(f"cannot {action} {path}: the connection broke ({exc!r})") from exc


# ---- answers --------------------------------------------------------------------------------


def check(sftp: SFTPClient, answer: Answer) -> None:
    """Raise paramiko's OSError for a failure status answer, as its own calls would."""
    t, msg = answer
    if t == CMD_STATUS:
        Raw(sftp).raise_status(msg)


def handle_in(answer: Answer) -> bytes | None:
    """The handle an OPEN answered, or None if it was refused."""
    t, msg = answer
    return bytes(msg.get_binary()) if t == CMD_HANDLE else None


def open_request(path: PurePosixPath, flags: int) -> tuple[int, tuple[object, ...]]:
    return CMD_OPEN, (str(path), flags, SFTPAttributes())


def sync_and_close(sftp: SFTPClient, handle: bytes | None, sync: bool = True) -> None:
    """fsync (where the server can) and close an open handle, in one round trip."""
    if handle is None:
        return
    requests: list[tuple[int, tuple[object, ...]]] = [(CMD_CLOSE, (handle,))]
    if sync:
        requests.insert(0, (CMD_EXTENDED, ("fsync@openssh.com", handle)))
    exchange(sftp, requests)
