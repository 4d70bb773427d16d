"""Where a repository lives on an SSH server: ``sftp:user@host:/path`` (restic's form; a path
without a leading slash is relative to the login folder) and ``sftp://user@host:port/path``
(the path is absolute, as in any URL)."""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from cairn.backends.errors import BackendError

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
