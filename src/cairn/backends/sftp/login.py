"""Logging in to an SSH server, as OpenSSH's client does: whom to trust and how to log in.

The host key must be in known_hosts (``~/.ssh/known_hosts``, or the file
`SftpCredentials.known_hosts` names); an unknown host, or a key other than the one recorded, is
`HostKeyUnknown` with the fingerprint, never trusted silently. Logins try a key file (or the
default ``~/.ssh/id_*`` keys), the SSH agent, and a password, in that order.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import paramiko
from paramiko.sftp_client import SFTPClient

from cairn.backends.errors import (
    BackendError,
    GarbledAnswer,
    HostKeyUnknown,
    StorageLoginRefused,
    TransientBackendError,
)
from cairn.backends.sftp.address import SftpAddress
from cairn.backends.sftp.wire import TRANSPORT_ERRORS

TIMEOUT = 30.0
CIPHERS_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
"""Preferred over paramiko's default aes128-ctr with hmac-sha2-256: AES-GCM seals each packet in
one call on both ends (AES-NI), where CTR adds an HMAC per packet (measured: design 6.3)."""
# paramiko's transport thread logs each failure it raises (with a traceback) before this module
# translates it; unconfigured, Python would print that on stderr beside Cairn's own message.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


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
class Session:
    """One SSH connection and its SFTP session."""

    client: paramiko.SSHClient
    sftp: SFTPClient


def connect(address: SftpAddress, credentials: SftpCredentials) -> Session:
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
    # paramiko takes a list of key files too (its stubs say one).
    keys: Any = [str(key)] if key else list(address.identity_files) or None
    try:
        client.connect(
            address.host,
            address.port,
            username=address.user,
            key_filename=keys,
            password=credentials.password,
            allow_agent=credentials.agent,
            look_for_keys=key is None,
            timeout=TIMEOUT,
            banner_timeout=TIMEOUT,
            auth_timeout=TIMEOUT,
            transport_factory=_transport,
        )
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(15)
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(TIMEOUT * 4)  # type: ignore[union-attr]
    except BaseException as exc:
        client.close()
        _raise_connect_error(exc, address, credentials, known)
    return Session(client, sftp)


def _transport(sock: Any, **options: Any) -> paramiko.Transport:
    """paramiko's transport, asking for AES-GCM first (`CIPHERS_FIRST`); a server without it
    agrees on one of paramiko's others."""
    transport = paramiko.Transport(sock, **options)
    security = transport.get_security_options()
    rest = tuple(c for c in security.ciphers if c not in CIPHERS_FIRST)
    security.ciphers = CIPHERS_FIRST + rest
    return transport


def _raise_connect_error(
    exc: BaseException, address: SftpAddress, credentials: SftpCredentials, known: Path
) -> NoReturn:
    if isinstance(exc, BackendError):
        raise exc
    if isinstance(exc, paramiko.BadHostKeyException):
        raise HostKeyUnknown(_changed_key_message(address, known, exc)) from exc
    if isinstance(exc, paramiko.AuthenticationException) or (
        # paramiko's word when it found no key, no agent and no password to try: no retry helps.
        isinstance(exc, paramiko.SSHException) and "No authentication methods" in str(exc)
    ):
        tried = _tried(address, credentials)
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
    if isinstance(exc, (*TRANSPORT_ERRORS, OSError)):
        raise TransientBackendError(
            f"cannot reach {address.host}:{address.port} over SSH: {exc or type(exc).__name__}"
        ) from exc
    raise exc


def _tried(address: SftpAddress, credentials: SftpCredentials) -> str:
    tried = [f"the key {credentials.key_file}" if credentials.key_file else "the keys in ~/.ssh"]
    if credentials.key_file is None and address.identity_files:
        tried.insert(0, "the IdentityFile keys of ~/.ssh/config")
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


def alive(session: Session) -> bool:
    transport = session.client.get_transport()
    channel = session.sftp.get_channel()
    return (
        transport is not None
        and transport.is_active()
        and channel is not None
        and not channel.closed
    )
