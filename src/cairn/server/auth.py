"""Tokens, roles and the throttle on failed logins (design 14.3).

A token is ``cairn_<id>_<secret>``: a public 12-hex-digit ID that finds the row, and a 256-bit
secret of which the server keeps only the BLAKE3 hash. A random 256-bit secret cannot be guessed,
so a slow password hash would add nothing but a way to overload the server. Verification always
hashes and compares once, in constant time, against the row's hash or a dummy one, so a known and
an unknown ID take the same time.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

import blake3

from cairn.core.clock import SYSTEM_CLOCK, Clock, epoch_ms
from cairn.core.throttle import FailureThrottle
from cairn.server.db import Database
from cairn.server.errors import (
    BadRequest,
    NoSuchObject,
    Throttled,
    TokenExpired,
    TokenRevoked,
    Unauthenticated,
)

TOKEN_PATTERN = re.compile(r"^cairn_([0-9a-f]{12})_([0-9a-f]{64})$")
_DUMMY_HASH = blake3.blake3(b"no such token").digest()


class Role(Enum):
    """What a token may do (design 14.3)."""

    BACKUP = "backup"
    RESTORE = "restore"
    TENANT_ADMIN = "tenant-admin"
    SERVER_ADMIN = "server-admin"
    REPLICATION = "replication"
    """Another server's replication into this tenant as its area (design 17.14)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: a token's ID, role and tenant (None for server admins)."""

    token_id: str
    role: Role
    tenant: str | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: str
    secret: str
    role: Role
    tenant: str | None

    def __str__(self) -> str:
        return f"cairn_{self.id}_{self.secret}"


def _hash(secret: str) -> bytes:
    return blake3.blake3(secret.encode()).digest()


class TokenStore:
    """Issue, verify and revoke tokens in the server's database."""

    def __init__(self, db: Database, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._clock = clock

    def _now_ms(self) -> int:
        return epoch_ms(self._clock)

    def issue(
        self, role: Role, tenant: str | None, label: str = "", expires_ms: int | None = None
    ) -> IssuedToken:
        """A new token; with `expires_ms` (ms since the epoch) it is refused from then on."""
        if (role is Role.SERVER_ADMIN) != (tenant is None):
            raise BadRequest("a server-admin token has no tenant; every other role has one")
        if expires_ms is not None and expires_ms <= self._now_ms():
            raise BadRequest("a token's expiry must be in the future")
        token = IssuedToken(secrets.token_hex(6), secrets.token_hex(32), role, tenant)
        with self._db.write() as conn:
            if (
                tenant is not None
                and not conn.execute("SELECT 1 FROM tenants WHERE name = ?", (tenant,)).fetchone()
            ):
                raise NoSuchObject(f"no tenant {tenant!r}")
            conn.execute(
                "INSERT INTO tokens (id, tenant, role, hash, label, created_ms, expires_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    token.id,
                    tenant,
                    role.value,
                    _hash(token.secret),
                    label,
                    self._now_ms(),
                    expires_ms,
                ),
            )
        return token

    def verify(self, presented: str) -> Principal:
        """The principal of a valid, unrevoked, unexpired token; Unauthenticated for an unknown
        ID or a wrong secret; for the right secret, TokenRevoked once revoked and TokenExpired
        past its expiry (only its holder learns the state, and the throttle does not count it)."""
        match = TOKEN_PATTERN.match(presented)
        token_id, secret = (match[1], match[2]) if match else ("", "")
        row = (
            self._db.read()
            .execute(
                "SELECT hash, role, tenant, revoked_ms, expires_ms FROM tokens WHERE id = ?",
                (token_id,),
            )
            .fetchone()
        )
        stored = row[0] if row is not None else _DUMMY_HASH
        valid = hmac.compare_digest(stored, _hash(secret))  # always one hash, one comparison
        if not (valid and match and row is not None):
            raise Unauthenticated("authentication failed: the token is unknown or wrong")
        if row[3] is not None:
            raise TokenRevoked("authentication failed: the token was revoked")
        if row[4] is not None and self._now_ms() >= row[4]:
            when = datetime.fromtimestamp(row[4] / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
            raise TokenExpired(f"authentication failed: the token expired at {when}")
        return Principal(token_id, Role(row[1]), row[2])

    def revoke(self, token_id: str) -> None:
        with self._db.write() as conn:
            done = conn.execute(
                "UPDATE tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
                (self._now_ms(), token_id),
            )
            if done.rowcount == 0:
                raise NoSuchObject(f"no active token {token_id!r}")

    def list(self, tenant: str | None = None) -> list[dict[str, object]]:
        rows = self._db.read().execute(
            "SELECT id, tenant, role, label, created_ms, revoked_ms, expires_ms FROM tokens "
            "WHERE ? IS NULL OR tenant = ? ORDER BY created_ms",
            (tenant, tenant),
        )
        keys = ("id", "tenant", "role", "label", "created_ms", "revoked_ms", "expires_ms")
        return [dict(zip(keys, row, strict=True)) for row in rows]


class Throttle(FailureThrottle):
    """The server's throttle (design 14.3): past 10 failures a minute, an address is refused
    with Throttled (429, E064) until its oldest failure leaves the window."""

    def check(self, address: str) -> None:
        wait = self.wait_s(address)
        if wait is not None:
            raise Throttled(
                "too many failed logins from this address; wait before trying again",
                retry_after=wait,
            )
