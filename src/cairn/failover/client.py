"""The witness's client: acquire, renew and release one lease, and say when each was sent.

A holder judges its lease only by its own elapsed time since it SENT the request that granted it
(`Grant.sent`): the witness started counting later than that, so the holder's view of the lease
ends first, whatever either clock says (design 19.3). The witness's certificate is pinned by the
SHA-256 fingerprint in the URL's fragment (`https://host:port#<fingerprint>`), as `cairn witness
serve` prints it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from cairn.backends.errors import BackendError
from cairn.backends.location import BadFingerprint, required_fingerprint
from cairn.backends.remote import ServerAddress, pinned_context
from cairn.core.clock import Clock
from cairn.failover.errors import (
    LeaseHeld,
    StandbyUsage,
    WitnessRequestBad,
    WitnessTokenRefused,
    WitnessUnreachable,
)


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease the witness granted, and when (this machine's monotonic clock) it was asked for."""

    epoch: int
    ttl_s: float
    sent: float


@dataclass(frozen=True, slots=True)
class WitnessUrl:
    host: str
    port: int
    fingerprint: str

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def __str__(self) -> str:
        return self.base


def parse_witness_url(text: str) -> WitnessUrl:
    """`https://HOST:PORT#FINGERPRINT`; anything else is StandbyUsage, said in words."""
    parts = urlsplit(text)
    try:
        fingerprint = required_fingerprint(parts.fragment)
        port = parts.port
    except (BadFingerprint, ValueError) as exc:
        raise StandbyUsage(f"--witness {text!r}: {exc}") from exc
    if parts.scheme != "https" or not parts.hostname or port is None or fingerprint is None:
        raise StandbyUsage(
            f"--witness {text!r}: give https://HOST:PORT#FINGERPRINT, as `cairn witness serve` "
            "prints it (the fingerprint pins the witness's certificate)"
        )
    return WitnessUrl(parts.hostname, port, fingerprint)


class WitnessClient:
    """One lease at one witness, for one holder."""

    def __init__(
        self, url: WitnessUrl, token: str, lease: str, holder: str, clock: Clock, timeout: float
    ) -> None:
        self.url = url
        self.lease = lease
        self.holder = holder
        self._token = token
        self._clock = clock
        self._timeout = timeout
        self._client: httpx.Client | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def acquire(self, ttl_s: float) -> Grant:
        return self._grant("acquire", {"holder": self.holder, "ttl_s": ttl_s})

    def renew(self, epoch: int, ttl_s: float) -> Grant:
        return self._grant("renew", {"holder": self.holder, "epoch": epoch, "ttl_s": ttl_s})

    def release(self, epoch: int) -> None:
        self._post("release", {"holder": self.holder, "epoch": epoch})

    def _grant(self, action: str, body: dict[str, Any]) -> Grant:
        sent = self._clock.monotonic()  # before sending: the witness counts from later
        answer = self._post(action, body)
        return Grant(int(answer["epoch"]), float(answer["ttl_s"]), sent)

    def _post(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http().post(f"/v1/leases/{self.lease}/{action}", json=body)
            answer = response.json()
        except (httpx.HTTPError, ssl.SSLError, OSError, BackendError, ValueError) as exc:
            self.close()  # a new connection (and certificate check) next time
            raise WitnessUnreachable(f"the witness {self.url} did not answer: {exc}") from exc
        if response.status_code == 200 and isinstance(answer, dict):
            return answer
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        message = str(error.get("message", f"HTTP {response.status_code}"))
        if response.status_code == 409:
            raise LeaseHeld(message, error.get("holder"), int(error.get("epoch", 0)))
        if response.status_code in (401, 429):  # 429: after wrong tokens from this address
            raise WitnessTokenRefused(f"the witness {self.url} refused the token: {message}")
        if response.status_code == 400:
            raise WitnessRequestBad(message)
        raise WitnessUnreachable(f"the witness {self.url} failed: {message}")

    def _http(self) -> httpx.Client:
        if self._client is None:
            address = ServerAddress("cairns", self.url.host, self.url.port, "")
            context = pinned_context(
                address, None, self.url.fingerprint, record=False, timeout=self._timeout
            )
            self._client = httpx.Client(
                base_url=self.url.base,
                verify=context,
                timeout=self._timeout,
                headers={"authorization": f"Bearer {self._token}"},
            )
        return self._client
