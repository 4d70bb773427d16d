"""Listing folders over SFTP, many at once.

The packs folder has 256 shard folders; listing them one after another costs four round trips
each (open, two reads, close), a thousand in all. Here each folder's requests are a chain, the
next sent when its answer comes, with up to `wire.IN_FLIGHT` folders under way at a time: about
four round trips for all of them.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

import paramiko
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_HANDLE,
    CMD_NAME,
    CMD_OPENDIR,
    CMD_READDIR,
    CMD_STATUS,
    SFTP_EOF,
    SFTP_NO_SUCH_FILE,
    SFTP_PERMISSION_DENIED,
)
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_client import SFTPClient

from cairn.backends.base import Handle, ObjectInfo, ObjectKind
from cairn.backends.contract import CONFIG_NAME
from cairn.backends.errors import BackendError, NotFound, PermissionDenied
from cairn.backends.sftp.wire import IN_FLIGHT, Raw, stat_or_none, translated
from cairn.core.ids import is_hex_name

SHARDS = tuple(f"{i:02x}" for i in range(256))
_SHARD_SET = frozenset(SHARDS)
_OPEN, _READ, _CLOSE = "open", "read", "close"


class _Folders:
    """The state of a pipelined listing: what each outstanding request was for."""

    def __init__(self, sftp: SFTPClient, folders: Sequence[PurePosixPath]) -> None:
        self._raw = Raw(sftp)
        self._waiting = list(reversed(folders))
        self.pending: dict[int, tuple[PurePosixPath, str, bytes]] = {}
        self.entries: dict[PurePosixPath, list[SFTPAttributes]] = {f: [] for f in folders}
        self.failure: BackendError | None = None

    def start_more(self) -> None:
        """Open folders until `IN_FLIGHT` are under way (none after a failure)."""
        while self._waiting and len(self.pending) < IN_FLIGHT and self.failure is None:
            folder = self._waiting.pop()
            self._send(folder, _OPEN, b"", CMD_OPENDIR, str(folder))

    def _send(self, folder: PurePosixPath, step: str, handle: bytes, *request: Any) -> None:
        number = self._raw.send(self, *request)
        self.pending[number] = (folder, step, handle)

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        folder, step, handle = self.pending.pop(num)
        code = msg.get_int() if t == CMD_STATUS else None
        if step == _OPEN and t == CMD_HANDLE:
            handle = bytes(msg.get_binary())
            self._send(folder, _READ, handle, CMD_READDIR, handle)
        elif step == _READ and t == CMD_NAME:
            self.entries[folder] += _names(msg)
            self._send(folder, _READ, handle, CMD_READDIR, handle)
        elif step == _READ:
            self._send(folder, _CLOSE, handle, CMD_CLOSE, handle)
            if code != SFTP_EOF:
                self._failed(folder, t, code, msg)
        elif step == _OPEN:
            self._failed(folder, t, code, msg)

    def _failed(
        self, folder: PurePosixPath, t: int, code: int | None, msg: paramiko.Message
    ) -> None:
        if self.failure is not None:
            return
        if code == SFTP_NO_SUCH_FILE:
            self.failure = NotFound(f"cannot list {folder}: not found")
        elif code == SFTP_PERMISSION_DENIED:
            self.failure = PermissionDenied(f"cannot list {folder}: permission denied")
        else:
            said = msg.get_text() if code is not None else f"unexpected answer {t}"
            self.failure = BackendError(f"cannot list {folder}: the server said {said}")


def _names(msg: paramiko.Message) -> list[SFTPAttributes]:
    from_msg = getattr(SFTPAttributes, "_from_msg")  # noqa: B009  not in the stubs
    entries = []
    for _ in range(msg.get_int()):
        filename, longname = msg.get_text(), msg.get_text()
        entry: SFTPAttributes = from_msg(msg, filename, longname)
        if filename not in (".", ".."):
            entries.append(entry)
    return entries


def scan(
    sftp: SFTPClient, folders: Sequence[PurePosixPath]
) -> dict[PurePosixPath, list[SFTPAttributes]]:
    """The entries of each of `folders`, listed at once. Raises NotFound, PermissionDenied or
    BackendError for a folder that cannot be listed (after every request was answered, so the
    connection stays usable); a broken connection raises paramiko's own errors."""
    folders_state = _Folders(sftp, folders)
    raw = Raw(sftp)
    with translated("list", folders[0] if folders else PurePosixPath("/")):
        folders_state.start_more()
        while folders_state.pending:
            raw.read_response()
            folders_state.start_more()
    if folders_state.failure is not None:
        raise folders_state.failure
    return folders_state.entries


def list_kind(sftp: SFTPClient, root: PurePosixPath, kind: ObjectKind) -> list[ObjectInfo]:
    """Every object of `kind` under `root`: valid names only, so never a temporary file."""
    if kind is ObjectKind.CONFIG:
        attrs = stat_or_none(sftp, root / CONFIG_NAME)
        return [] if attrs is None else [ObjectInfo(Handle(kind, CONFIG_NAME), attrs.st_size or 0)]
    folder = root / kind.value
    if kind is not ObjectKind.PACK:
        return _objects(kind, scan(sftp, [folder])[folder], "")
    shards = [
        folder / entry.filename
        for entry in scan(sftp, [folder])[folder]
        if entry.filename in _SHARD_SET and is_dir(entry)
    ]
    listed = scan(sftp, shards)
    return [info for shard in shards for info in _objects(kind, listed[shard], shard.name)]


def _objects(kind: ObjectKind, entries: list[SFTPAttributes], prefix: str) -> list[ObjectInfo]:
    return [
        ObjectInfo(Handle(kind, entry.filename), entry.st_size or 0)
        for entry in entries
        if is_hex_name(entry.filename) and entry.filename.startswith(prefix) and not is_dir(entry)
    ]


def is_dir(entry: SFTPAttributes | None) -> bool:
    return entry is not None and entry.st_mode is not None and stat.S_ISDIR(entry.st_mode)
