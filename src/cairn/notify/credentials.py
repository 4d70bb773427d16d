"""Reading the secrets channels need (an SMTP password, a webhook's HMAC key) from their files,
and the TLS and loopback rules both channels share."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from cairn.notify.errors import NotifyError


def read_secret(path: str, what: str) -> bytes:
    """The first line of `path`, without its line end; NotifyError when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise NotifyError(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    lines = data.splitlines()
    if not lines or not lines[0]:
        raise NotifyError(f"the {what} file {path} is empty")
    return lines[0]


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or only `ca_file` (PEM) when given."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise NotifyError(f"cannot load the CA file {ca_file}: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, the only places plain text may go."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
