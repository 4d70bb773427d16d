"""Turn a repository location string into a backend: the one place backends are chosen.

Supported: a plain path or ``local:/path`` (a LocalBackend); ``cairns://host:port/tenant`` (a
RemoteBackend on a Cairn server, TLS, certificate pinned on first use) and ``cairn://`` on
loopback only (no TLS), both wrapped to retry transient failures for a fixed time;
``s3:https://host/bucket/prefix`` (an S3Backend, credentials from the AWS variables and profile
files); ``sftp:user@host:/path`` and ``sftp://user@host:port/path`` (an SFTP server; keys,
password and known_hosts from `sftp_credentials`); ``ftp://`` and ``ftps://`` (an FTP server);
``webdav:https://host/path`` (a WebDavBackend; ``webdav:http://`` on loopback only),
all retried likewise; and ``memory:`` (a new, empty MemoryBackend on every call, so it suits
tests only: nothing outlives the process). With an
upload limit, saves pass through one token bucket (inside the retries, so a retried upload pays
again for the bytes it sends again).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cairn.backends.base import Backend
from cairn.backends.errors import BackendError
from cairn.backends.local import LocalBackend
from cairn.backends.memory import MemoryBackend
from cairn.backends.passwordfile import read_password_file
from cairn.backends.wrappers.ratelimited import RateLimitedBackend, TokenBucket
from cairn.backends.wrappers.retrying import DEFAULT_RETRY_FOR, RetryingBackend

if TYPE_CHECKING:
    from cairn.backends.sftp import SftpCredentials

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):")
_SUPPORTED = (
    "local paths, cairns://HOST:PORT/TENANT, s3:https://HOST/BUCKET[/PREFIX], "
    "sftp:USER@HOST:/PATH, sftp://USER@HOST:PORT/PATH, ftp(s)://USER@HOST:PORT/PATH, "
    "webdav:https://HOST/PATH, memory:"
)


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


class BadFingerprint(BackendError):
    """CAIRN_SERVER_FINGERPRINT is no SHA-256 fingerprint (64 hex digits, colons allowed)."""


_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


def required_fingerprint(text: str | None) -> str | None:
    """CAIRN_SERVER_FINGERPRINT, normalised to 64 lowercase hex digits; BadFingerprint if it is
    anything else (a typo must not read as a certificate mismatch)."""
    if not text:
        return None
    normal = text.strip().lower().replace(":", "")
    if not _FINGERPRINT.match(normal):
        raise BadFingerprint(
            f"CAIRN_SERVER_FINGERPRINT={text!r} is not a certificate fingerprint: give the "
            "SHA-256 fingerprint, 64 hex digits (colons allowed), as `cairn init` printed it"
        )
    return normal


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
            raise TokenFileUnreadable(
                f"cannot read the token file {token_file}: {exc.strerror or exc}"
            ) from exc
    return RemoteCredentials(
        token=token,
        known_servers=known_servers_path(environ),
        fingerprint=required_fingerprint(environ.get("CAIRN_SERVER_FINGERPRINT")),
        environ=environ,
    )


def open_backend(
    location: str,
    create: bool = False,
    remote: RemoteCredentials | None = None,
    upload_limit: int | None = None,
    retry_for: float = DEFAULT_RETRY_FOR,
    environ: Mapping[str, str] | None = None,
) -> Backend:
    """The backend `location` names; with `create`, a local folder layout is made first (a
    server's tenant already exists: its administrator made it). `upload_limit` is in bytes a
    second (None: no limit); `retry_for` is how long a server that does not answer is retried
    (seconds, design 14.9). `environ` (the process's by default) holds the SFTP credentials'
    variables, and those of S3, FTP and WebDAV when given (a replication target's own
    credentials, design 17.9), and a server location's token and pin when `remote` is not
    given (design 17.14: a Cairn server as a replication target)."""
    bucket = TokenBucket(upload_limit) if upload_limit else None
    if location == "memory:":
        return _limited(MemoryBackend(), bucket)
    if location.startswith(("cairn://", "cairns://")):
        if remote is None:  # a server's own use (a replication target): its environment's
            remote = remote_credentials(None, os.environ if environ is None else environ)
        return RetryingBackend(_limited(_open_remote(location, remote), bucket), retry_for)
    if location.startswith("s3:"):
        return RetryingBackend(_limited(_open_s3(location, environ), bucket), retry_for)
    if location.startswith(("ftp://", "ftps://")):
        ftp = _open_ftp(location, create, os.environ if environ is None else environ)
        return RetryingBackend(_limited(ftp, bucket), retry_for)
    if location.startswith("sftp:"):
        sftp = _open_sftp(location, create, os.environ if environ is None else environ)
        return RetryingBackend(_limited(sftp, bucket), retry_for)
    if location.startswith("webdav:"):
        env = environ if environ is not None else remote.environ if remote else os.environ
        webdav = _open_webdav(location, create, env)
        return RetryingBackend(_limited(webdav, bucket), retry_for)
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


def _open_s3(location: str, environ: Mapping[str, str] | None) -> Backend:
    # Imported here: boto3 costs ~0.3 s to import, and only an S3 location needs it.
    from cairn.backends.s3 import S3Backend, parse_location

    return S3Backend.open(parse_location(location), environ=environ)


def _open_ftp(location: str, create: bool, environ: Mapping[str, str]) -> Backend:
    # Imported here: only an FTP location pays for ftplib and ssl. The password and CA come from
    # CAIRN_FTP_PASSWORD_FILE / CAIRN_FTP_PASSWORD and CAIRN_FTP_CA, never from the location.
    from cairn.backends.ftp import FtpBackend, ftp_password, parse_ftp_location, tls_context

    where = parse_ftp_location(location)
    context = tls_context(environ.get("CAIRN_FTP_CA")) if where.tls else None
    backend = FtpBackend(where, ftp_password(dict(environ)), context)
    if create:
        backend.create()
    return backend


class SftpPasswordFileUnreadable(BackendError):
    """The SFTP password file named cannot be read."""


def _open_sftp(location: str, create: bool, environ: Mapping[str, str]) -> Backend:
    # Imported here: paramiko costs every command that does not use SFTP its import time.
    from cairn.backends.sftp import SftpBackend, parse_address

    address = parse_address(location, Path("~/.ssh/config").expanduser())
    credentials = sftp_credentials(environ)
    if create:
        return SftpBackend.create(address, credentials)
    return SftpBackend(address, credentials)


def sftp_credentials(environ: Mapping[str, str]) -> SftpCredentials:
    """SFTP login and trust from the environment: CAIRN_SFTP_KEY (a private key file; else the
    default keys in ~/.ssh), CAIRN_SFTP_KNOWN_HOSTS (else ~/.ssh/known_hosts),
    CAIRN_SFTP_PASSWORD_FILE or CAIRN_SFTP_PASSWORD (tried after the keys and the agent, and as a
    key's passphrase), CAIRN_SFTP_NO_AGENT=1 to leave the SSH agent out."""
    from cairn.backends.sftp import SftpCredentials

    password = environ.get("CAIRN_SFTP_PASSWORD")
    if password_file := environ.get("CAIRN_SFTP_PASSWORD_FILE"):
        password = read_password_file(password_file, "SFTP", SftpPasswordFileUnreadable)
    key, known = environ.get("CAIRN_SFTP_KEY"), environ.get("CAIRN_SFTP_KNOWN_HOSTS")
    return SftpCredentials(
        key_file=Path(key).expanduser() if key else None,
        known_hosts=Path(known).expanduser() if known else None,
        password=password,
        agent=environ.get("CAIRN_SFTP_NO_AGENT", "") in ("", "0"),
    )


def _open_webdav(location: str, create: bool, environ: Mapping[str, str]) -> Backend:
    # Imported here for the same reason as the server's client: only a WebDAV location pays
    # for the XML parser.
    from cairn.backends.webdav import WebDavBackend, parse_location, webdav_credentials

    address = parse_location(location)
    credentials = webdav_credentials(address, environ)
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
