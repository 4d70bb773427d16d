"""Where a repository lives on an SSH server: ``sftp:user@host:/path`` (restic's form; a path
without a leading slash is relative to the login folder) and ``sftp://user@host:port/path``
(the path is absolute, as in any URL).

The host may be an alias of the user's ``~/.ssh/config``, read as OpenSSH's client reads it:
``HostName``, ``Port``, ``User`` and ``IdentityFile`` of the matching ``Host`` blocks apply, and
a user or port written in the location wins over the file's.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import paramiko

from cairn.backends.errors import BackendError

_SHORT = re.compile(r"^sftp:(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/@\[\]]+):(?P<path>.+)$")


@dataclass(frozen=True, slots=True)
class SftpAddress:
    """Where a repository lives on an SSH server."""

    host: str
    path: str
    user: str
    port: int = 22
    identity_files: tuple[str, ...] = ()
    """Key files the SSH configuration names for this host (``IdentityFile``)."""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = self.path if self.path.startswith("/") else f"/~/{self.path}"
        return f"sftp://{self.user}@{host}:{self.port}{path}"

    @property
    def known_hosts_name(self) -> str:
        """The host's name in known_hosts: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_address(location: str, ssh_config: Path | None = None) -> SftpAddress:
    """An `SftpAddress` from ``sftp:user@host:/path`` or ``sftp://user@host:port/path``, its
    host looked up in `ssh_config` (an OpenSSH client configuration; None reads none)."""
    if location.startswith("sftp://"):
        host, path, user, port = _parse_url(location)
    else:
        match = _SHORT.match(location)
        if match is None:
            raise BackendError(
                f"invalid SFTP location {location!r}: use sftp:user@host:/path "
                "or sftp://user@host:port/path"
            )
        host, path = match["host"].strip("[]"), _clean_path(match["path"], location)
        user, port = match["user"], None
    return _configured(host, path, user, port, ssh_config)


def _parse_url(location: str) -> tuple[str, str, str | None, int | None]:
    parts = urlsplit(location)
    try:
        port = parts.port
    except ValueError as exc:
        raise BackendError(f"invalid port in the SFTP location {location!r}") from exc
    if parts.password is not None:
        raise BackendError(
            f"{parts.scheme}://…: a password does not belong in a location (it would show in "
            "messages and process lists); set CAIRN_SFTP_PASSWORD or CAIRN_SFTP_PASSWORD_FILE"
        )
    if not parts.hostname or not parts.path or parts.query or parts.fragment:
        raise BackendError(f"invalid SFTP location {location!r}: use sftp://user@host:port/path")
    user = unquote(parts.username) if parts.username else None
    return parts.hostname, _clean_path(unquote(parts.path), location), user, port


def _configured(
    host: str, path: str, user: str | None, port: int | None, ssh_config: Path | None
) -> SftpAddress:
    """The address with what the SSH configuration says of `host` filled in, as OpenSSH's
    client does: the location's own user and port first, then the file's, then the defaults."""
    found = _lookup(host, ssh_config) if ssh_config is not None else {}
    if "proxycommand" in found or "proxyjump" in found:
        raise BackendError(
            f"{ssh_config} reaches {host} through ProxyCommand or ProxyJump, which Cairn does "
            "not follow; give the address it can reach directly"
        )
    try:
        port = port or int(str(found.get("port", 22)))
    except ValueError as exc:
        raise BackendError(f"{ssh_config}: invalid Port for {host}: {found['port']!r}") from exc
    return SftpAddress(
        str(found.get("hostname", host)),
        path,
        user or str(found.get("user", "")) or _local_user(),
        port,
        _strings(found.get("identityfile")),
    )


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _lookup(host: str, ssh_config: Path) -> dict[str, object]:
    try:
        config = paramiko.SSHConfig.from_path(str(ssh_config))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, paramiko.ssh_exception.ConfigParseError) as exc:
        raise BackendError(f"cannot read the SSH configuration {ssh_config}: {exc}") from exc
    return dict(config.lookup(host))


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
