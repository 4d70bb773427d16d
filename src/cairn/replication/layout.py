"""Where a server's tenants go on a target, and the server's own ID (design 17.3, 17.8).

`<target location>/<server-id>/<tenant-id>/` holds a repository (section 2): the sub-location is
opened as a location string, as the server's `StoredLayouts` opens `LOCATION/tenants/<id>`, so
every backend kind and every wrapper `open_backend` adds (retries, the upload limit) apply.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from cairn.backends.base import Backend
from cairn.backends.errors import BackendError
from cairn.backends.location import open_backend
from cairn.replication.credentials import target_environ
from cairn.replication.errors import ReplicationError
from cairn.replication.model import Target

SERVER_ID_FILE = "server-id"
_SERVER_ID = re.compile(r"^[0-9a-f]{32}$")

Opener = Callable[[str], Backend]
"""Opens a backend location, creating a folder layout where the kind needs one."""


class ServerIdUnusable(ReplicationError):
    """`DATA/server-id` holds something other than a server ID, or cannot be read or made."""


def server_id(data: Path) -> str:
    """The server's ID from `DATA/server-id`, made on first use (16 random bytes, hex). It names
    the server's folder on every target, so it never changes once made."""
    path = data / SERVER_ID_FILE
    try:
        if not path.exists():
            _make_server_id(path)
        text = path.read_text().strip()
    except OSError as exc:
        raise ServerIdUnusable(f"cannot read or make {path}: {exc.strerror or exc}") from exc
    if not _SERVER_ID.match(text):
        raise ServerIdUnusable(f"{path} does not hold a server ID (32 hex digits)")
    return text


def _make_server_id(path: Path) -> None:
    """Write a new ID under a temporary name and link it in: two processes making it at once
    agree on the first one published."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(16) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temp)


def open_target(location: str, environ: Mapping[str, str] | None = None) -> Backend:
    """The default opener: `open_backend` with the layout made where the kind needs it (a local
    folder, SFTP, FTP, WebDAV; a bucket prefix needs nothing), with `environ` for credentials
    (the process's when None; a target's own laid over it, 17.9)."""
    return open_backend(location, create=True, environ=environ)


def target_opener(target: Target, base: Mapping[str, str] | None = None) -> Opener:
    """An opener for `target`'s locations with its credentials file read now and laid over
    `base` (the process's environment by default)."""
    environ = target_environ(target, base)
    return functools.partial(open_target, environ=environ)


def tenant_location(location: str, server: str, tenant_id: str) -> str:
    """The location of one tenant's copy on a target."""
    return f"{location.rstrip('/')}/{server}/{tenant_id}"


class TargetLayouts:
    """Opens (once each) the backend of each tenant's copy on one target."""

    def __init__(self, location: str, server: str, opener: Opener = open_target) -> None:
        self.location = location
        self.server = server
        self._opener = opener
        self._open: dict[str, Backend] = {}
        self._guard = threading.Lock()

    def open(self, tenant_id: str) -> Backend:
        with self._guard:
            backend = self._open.get(tenant_id)
            if backend is None:
                where = tenant_location(self.location, self.server, tenant_id)
                backend = self._open[tenant_id] = self._opener(where)
            return backend

    def close(self) -> None:
        with self._guard:
            backends, self._open = list(self._open.values()), {}
        for backend in backends:
            with contextlib.suppress(BackendError):  # closing loses nothing if it fails
                backend.close()
