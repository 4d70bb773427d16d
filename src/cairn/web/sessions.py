"""The console's server-side sessions (design 18.2).

A session is a random 256-bit ID in a cookie; the server keeps only its BLAKE3 hash (as for
tokens, 14.3: a stolen database does not sign anyone in), the user, a CSRF token and an expiry.
A browser that has not signed in gets an anonymous session (no user) so that the sign-in form
carries a CSRF token too; signing in replaces it with a new ID (no session fixation).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

import blake3

from cairn.core.clock import Clock, epoch_ms
from cairn.server.db import Database
from cairn.server.users import ConsoleUser, UserStore

COOKIE = "cairn_console"
SIGNED_IN_S = 8 * 3600
"""A signed-in session lasts a working day, then the user signs in again."""
ANONYMOUS_S = 30 * 60
"""The sign-in form's session: long enough to type a password."""
MAX_ANONYMOUS = 10_000
"""Sign-in forms opened and not used: past this many the oldest go, so a flood of page loads
cannot grow the table without bound (it only ends other people's unused forms)."""


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: ConsoleUser | None
    csrf: str
    expires_ms: int

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)


def _hash(session_id: str) -> bytes:
    return blake3.blake3(session_id.encode()).digest()


class SessionStore:
    def __init__(
        self, db: Database, users: UserStore, clock: Clock, max_anonymous: int = MAX_ANONYMOUS
    ) -> None:
        self._max_anonymous = max_anonymous
        self._db = db
        self._users = users
        self._clock = clock

    def start(self, user: ConsoleUser | None) -> Session:
        """A new session (and forget the expired ones, so the table stays small)."""
        now = epoch_ms(self._clock)
        life = SIGNED_IN_S if user is not None else ANONYMOUS_S
        session = Session(
            secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now + life * 1000
        )
        with self._db.write() as conn:
            conn.execute("DELETE FROM console_sessions WHERE expires_ms <= ?", (now,))
            conn.execute(
                "DELETE FROM console_sessions WHERE user IS NULL AND rowid <= (SELECT rowid "
                "FROM console_sessions WHERE user IS NULL ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                (self._max_anonymous - 1,),
            )
            conn.execute(
                "INSERT INTO console_sessions (id_hash, user, csrf, expires_ms) VALUES (?,?,?,?)",
                (
                    _hash(session.id),
                    None if user is None else user.name,
                    session.csrf,
                    session.expires_ms,
                ),
            )
        return session

    def find(self, session_id: str | None) -> Session | None:
        """The live session with this ID; None for an unknown, expired or orphaned one."""
        if not session_id or len(session_id) > 100:
            return None
        row = (
            self._db.read()
            .execute(
                "SELECT user, csrf, expires_ms FROM console_sessions WHERE id_hash = ?",
                (_hash(session_id),),
            )
            .fetchone()
        )
        if row is None or row[2] <= epoch_ms(self._clock):
            return None
        user = None if row[0] is None else self._users.get(row[0])
        if row[0] is not None and user is None:
            return None
        return Session(session_id, user, row[1], row[2])

    def end(self, session_id: str) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM console_sessions WHERE id_hash = ?", (_hash(session_id),))
