"""Turn a repository location string into a backend: the one place backends are chosen.

Supported: a plain path or ``local:/path`` (a LocalBackend); ``cairns://host:port/tenant`` (a
RemoteBackend on a Cairn server, TLS, certificate pinned on first use) and ``cairn://`` on
loopback only (no TLS), both wrapped to retry transient failures; ``webdav:https://host/path``
(a WebDavBackend; ``webdav:http://`` on loopback only; retried too); and ``memory:`` (a new,
empty MemoryBackend on every call, so it suits tests only: nothing outlives the process). With an
upload limit, saves pass through one token bucket (inside the retries, so a retried upload pays
again for the bytes it sends again).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cairn.backends.base import Backend
from cairn.backends.errors import BackendError
from cairn.backends.local import LocalBackend
from cairn.backends.memory import MemoryBackend
from cairn.backends.wrappers.ratelimited import RateLimitedBackend, TokenBucket
from cairn.backends.wrappers.retrying import RetryingBackend

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):")
_SUPPORTED = "local paths, cairns://HOST:PORT/TENANT, webdav:https://HOST/PATH, memory:"


@dataclass(frozen=True, slots=True)
class RemoteCredentials:
    """What a server location needs besides its address (the CLI reads these from options and
    the environment; nothing below it does)."""

    token: str | None
    known_servers: Path
    fingerprint: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict)
    """The caller's environment, for the storage servers' own variables (CAIRN_WEBDAV_*)."""


class MissingToken(BackendError):
    """A server location was given without a token."""


class TokenFileUnreadable(BackendError):
    """The token file named cannot be read."""


def known_servers_path(environ: Mapping[str, str]) -> Path:
    """Where a client keeps pinned server certificates: $XDG_CONFIG_HOME/cairn/known_servers."""
    config = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "cairn" / "known_servers"


def remote_credentials(token_file: str | None, environ: Mapping[str, str]) -> RemoteCredentials:
    """Token and certificate pin for a server location, as every Cairn client finds them (the
    caller passes the environment: nothing below the CLI and the agent reads it): `token_file`,
    else CAIRN_TOKEN_FILE, else CAIRN_TOKEN; CAIRN_SERVER_FINGERPRINT to require a certificate
    before first use."""
    token_file = token_file or environ.get("CAIRN_TOKEN_FILE")
    token = environ.get("CAIRN_TOKEN")
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise TokenFileUnreadable(f"cannot read the token file {token_file}: {exc}") from exc
    return RemoteCredentials(
        token=token,
        known_servers=known_servers_path(environ),
        fingerprint=environ.get("CAIRN_SERVER_FINGERPRINT"),
        environ=environ,
    )


def open_backend(
    location: str,
    create: bool = False,
    remote: RemoteCredentials | None = None,
    upload_limit: int | None = None,
) -> Backend:
    """The backend `location` names; with `create`, a local folder layout is made first (a
    server's tenant already exists: its administrator made it). `upload_limit` is in bytes a
    second (None: no limit)."""
    bucket = TokenBucket(upload_limit) if upload_limit else None
    if location == "memory:":
        return _limited(MemoryBackend(), bucket)
    if location.startswith(("cairn://", "cairns://")):
        return RetryingBackend(_limited(_open_remote(location, remote), bucket))
    if location.startswith("webdav:"):
        return RetryingBackend(_limited(_open_webdav(location, create, remote), bucket))
    path = _local_path(location)
    if create:
        return _limited(LocalBackend.create(path), bucket)
    return _limited(LocalBackend(path), bucket)


def _limited(backend: Backend, bucket: TokenBucket | None) -> Backend:
    return backend if bucket is None else RateLimitedBackend(backend, bucket)


def _open_remote(location: str, remote: RemoteCredentials | None) -> Backend:
    # Imported here, not at the top: the HTTP client costs every command ~0.1 s to import, and
    # only a server location needs it (tests/unit/cli/test_imports.py).
    from cairn.backends.remote import KnownServers, RemoteBackend, parse_address

    address = parse_address(location)
    if remote is None or not remote.token:
        raise MissingToken(
            f"{location} needs a token: set CAIRN_TOKEN or CAIRN_TOKEN_FILE, or --token-file"
        )
    known = KnownServers(remote.known_servers)
    return RemoteBackend(address, remote.token, known, remote.fingerprint)


def _open_webdav(location: str, create: bool, remote: RemoteCredentials | None) -> Backend:
    # Imported here for the same reason as the server's client: only a WebDAV location pays
    # for the XML parser.
    from cairn.backends.webdav import WebDavBackend, parse_location, webdav_credentials

    address = parse_location(location)
    credentials = webdav_credentials(address, remote.environ if remote is not None else None)
    if create:
        return WebDavBackend.create(address, credentials)
    return WebDavBackend(address, credentials)


def _local_path(location: str) -> Path:
    if location.startswith("local:"):
        location = location.removeprefix("local:")
    elif (match := _SCHEME.match(location)) is not None:
        raise BackendError(
            f"unsupported repository location {location!r} (scheme {match['scheme']!r}); "
            f"supported: {_SUPPORTED}"
        )
    if not location:
        raise BackendError(f"empty repository location; supported: {_SUPPORTED}")
    return Path(location).expanduser()
