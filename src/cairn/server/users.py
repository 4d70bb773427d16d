"""The console's users (design 18.1): a name, a role, a tenant for a tenant admin, and an
argon2id hash of the password.

Console users are people signing in through a browser, not machines holding tokens: a password
a person chose is guessable, so it gets a slow, memory-hard hash (argon2id, the parameters of
argon2-cffi's RFC 9106 low-memory profile), unlike a token's 256-bit secret (14.3). An unknown
name is checked against a dummy hash, so a wrong name and a wrong password take the same time.
Changes go through `AdminOps` (audited); this module only stores and checks.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from enum import Enum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from cairn.core.clock import SYSTEM_CLOCK, Clock, epoch_ms
from cairn.core.errors import CairnError
from cairn.server.db import Database

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
MAX_PASSWORD = 1024
"""Bytes; a longer "password" is a file given by mistake, and only costs the hash time."""


class ConsoleRole(Enum):
    SERVER_ADMIN = "server-admin"
    """Everything the console shows, for every tenant (and, as they land, every change)."""
    TENANT_ADMIN = "tenant-admin"
    """Only its own tenant."""
    READ_ONLY = "read-only"
    """Everything a server admin sees, and changes nothing."""


class UserError(CairnError):
    """A console user that cannot be added: a bad name, role or tenant, or the name exists."""

    code = "CAIRN-E150"


class NoSuchUser(CairnError):
    code = "CAIRN-E151"


class NoPassword(CairnError):
    """No password was given: no --password-file and no terminal to ask on, an empty one, or
    a file that cannot be read."""

    code = "CAIRN-E152"


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    name: str
    role: ConsoleRole
    tenant: str | None
    created_ms: int = 0


_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
_DUMMY = _HASHER.hash("not a password anyone has")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


class UserStore:
    def __init__(self, db: Database, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._clock = clock

    def add(
        self,
        conn: sqlite3.Connection,
        user: ConsoleUser,
        password: str,
    ) -> ConsoleUser:
        """Store `user` inside the caller's write transaction (the audit record joins it)."""
        _check(conn, user, password)
        made = ConsoleUser(user.name, user.role, user.tenant, epoch_ms(self._clock))
        conn.execute(
            "INSERT INTO console_users (name, role, tenant, hash, created_ms) VALUES (?,?,?,?,?)",
            (made.name, made.role.value, made.tenant, hash_password(password), made.created_ms),
        )
        return made

    def remove(self, conn: sqlite3.Connection, name: str) -> None:
        """Remove `name`; its sessions go with it (ON DELETE CASCADE), so it is signed out."""
        if conn.execute("DELETE FROM console_users WHERE name = ?", (name,)).rowcount == 0:
            raise NoSuchUser(f"no console user named {name!r}")

    def list(self) -> list[ConsoleUser]:
        rows = self._db.read().execute(
            "SELECT name, role, tenant, created_ms FROM console_users ORDER BY name"
        )
        return [ConsoleUser(n, ConsoleRole(r), t, c) for n, r, t, c in rows]

    def get(self, name: str) -> ConsoleUser | None:
        return next((u for u in self.list() if u.name == name), None)

    def has_admin(self) -> bool:
        """Whether a server admin exists: until one does, the console does not open."""
        row = self._db.read().execute(
            "SELECT 1 FROM console_users WHERE role = ? LIMIT 1", (ConsoleRole.SERVER_ADMIN.value,)
        )
        return row.fetchone() is not None

    def verify(self, name: str, password: str) -> ConsoleUser | None:
        """The user when `password` is theirs, else None; an unknown name costs one hash too."""
        row = (
            self._db.read()
            .execute(
                "SELECT role, tenant, hash, created_ms FROM console_users WHERE name = ?", (name,)
            )
            .fetchone()
        )
        if row is None:
            password_matches(_DUMMY, password)
            return None
        role, tenant, stored, created = row
        if not password_matches(stored, password):
            return None
        return ConsoleUser(name, ConsoleRole(role), tenant, created)


def _check(conn: sqlite3.Connection, user: ConsoleUser, password: str) -> None:
    if not NAME.fullmatch(user.name):
        raise UserError(
            f"console user name {user.name!r}: use 1-63 of a-z, 0-9, '.', '_', '-' "
            "(starting with a letter or digit)"
        )
    if not password or len(password.encode()) > MAX_PASSWORD:
        raise NoPassword(f"the password must be 1 to {MAX_PASSWORD} bytes long")
    if (user.role is ConsoleRole.TENANT_ADMIN) != (user.tenant is not None):
        raise UserError("a tenant-admin needs --tenant, and only a tenant-admin takes one")
    found = conn.execute("SELECT 1 FROM tenants WHERE name = ?", (user.tenant,)).fetchone()
    if user.tenant is not None and found is None:
        raise UserError(f"no tenant named {user.tenant!r}")
    if conn.execute("SELECT 1 FROM console_users WHERE name = ?", (user.name,)).fetchone():
        raise UserError(f"a console user named {user.name!r} exists already")
