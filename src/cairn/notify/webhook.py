"""Webhooks (design 15.6): the event as JSON in an HTTP POST, signed with HMAC-SHA256 when the
spec has a secret, over verified TLS (plain HTTP to a loopback address only).

The receiver checks ``X-Cairn-Signature: sha256=<hex>``: the HMAC of the exact body bytes with
the shared secret, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
from urllib.parse import urlsplit

import httpx

from cairn.notify.credentials import is_loopback, read_secret, tls_context
from cairn.notify.errors import NotifyError, NotifyRejected, NotifyTlsError, NotifyUnreachable
from cairn.notify.message import Event, EventKind, WebhookSpec

SIGNATURE_HEADER = "X-Cairn-Signature"
PAYLOAD_VERSION = 1


class WebhookChannel:
    """POSTs each event as one JSON document to the spec's URL."""

    def __init__(self, spec: WebhookSpec) -> None:
        parts = urlsplit(spec.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise NotifyError(f"webhook URL {spec.url!r} is not an https:// URL")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise NotifyError(
                f"webhook URL {spec.url!r} is plain HTTP to another machine; use https:// "
                "(plain HTTP is allowed to a loopback address only)"
            )
        self._spec = spec
        self._host = parts.hostname

    @property
    def on(self) -> frozenset[EventKind]:
        """The kinds of event this channel carries."""
        return self._spec.on

    @property
    def name(self) -> str:
        """For log lines: the host only (a webhook's path often holds a secret token)."""
        return f"webhook to {self._host}"

    def send(self, event: Event) -> None:
        body = payload(event)
        headers = {"Content-Type": "application/json"}
        if self._spec.secret_file is not None:
            secret = read_secret(self._spec.secret_file, "webhook secret")
            headers[SIGNATURE_HEADER] = signature(secret, body)
        url = self._spec.url
        try:
            with httpx.Client(timeout=self._spec.timeout_s, verify=self._verify()) as client:
                response = client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _translate(exc, url) from exc
        if not response.is_success:
            raise NotifyRejected(
                f"the webhook {url} answered {response.status_code}: {response.text[:200]}"
            )

    def _verify(self) -> ssl.SSLContext:
        return tls_context(self._spec.ca_file)


def payload(event: Event) -> bytes:
    """The JSON body: the event's fields, with `details` as they are (times as epoch seconds)."""
    document = {
        "version": PAYLOAD_VERSION,
        "kind": event.kind.value,
        "host": event.host,
        "job": event.job,
        "subject": event.subject,
        "text": event.text,
        "details": event.details,
    }
    return json.dumps(document, sort_keys=True, default=str).encode()


def signature(secret: bytes, body: bytes) -> str:
    """The value of X-Cairn-Signature for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _translate(exc: httpx.HTTPError, url: str) -> NotifyError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return NotifyTlsError(f"TLS with the webhook {url} failed: {cause}")
        cause = cause.__cause__ or cause.__context__
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return NotifyTlsError(f"the webhook {url} has a certificate that did not verify: {exc}")
    if isinstance(exc, httpx.TransportError):
        return NotifyUnreachable(f"cannot reach the webhook {url}: {exc!r}")
    return NotifyError(f"posting to the webhook {url} failed: {exc!r}")
