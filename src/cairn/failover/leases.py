"""The witness's leases: compare-and-swap on one record per lease name, kept in SQLite.

The rules (design 19.3), each a single transaction under one lock:
- acquire: granted when the lease is free, expired, or already the caller's; the epoch becomes
  epoch + 1 (so a new grant, even to the same holder, fences everything written before it);
- renew: granted only to the holder, naming the current epoch, before expiry; the epoch stays;
- release: the holder, naming the current epoch, frees the lease; the epoch stays.
The epoch only grows and is on disk (synchronous=FULL) before a grant is answered.

Expiry is judged on the witness's own monotonic clock, from the moment it last granted or
renewed. Those moments live in memory only: a witness that restarts counts every held lease as
granted at its start, which can only make a lease last longer here than its holder thinks (the
holder counts from before it sent the request), never shorter.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from cairn.core.clock import Clock
from cairn.failover.errors import LeaseHeld, WitnessRequestBad, WitnessSetupError

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
HOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MIN_TTL_S = 1.0
MAX_TTL_S = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT,
    epoch INTEGER NOT NULL,
    ttl_s REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as the witness sees it now."""

    name: str
    holder: str | None
    epoch: int
    ttl_s: float
    remaining_s: float
    """How long the holder keeps it by the witness's clock (0: free or expired)."""

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "holder": self.holder,
            "epoch": self.epoch,
            "ttl_s": self.ttl_s,
            "remaining_s": round(self.remaining_s, 3),
        }


def check_request(name: str, holder: str | None = None, ttl_s: float | None = None) -> None:
    """Refuse a malformed name, holder or TTL before anything is read (WitnessRequestBad)."""
    if not NAME.match(name):
        raise WitnessRequestBad(f"lease name {name!r}: use 1-63 of a-z 0-9 . _ -")
    if holder is not None and not HOLDER.match(holder):
        raise WitnessRequestBad(f"holder {holder!r}: use 1-128 of A-Z a-z 0-9 . _ : -")
    if ttl_s is not None and not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
        raise WitnessRequestBad(f"ttl_s {ttl_s}: between {MIN_TTL_S} and {MAX_TTL_S} seconds")


class LeaseTable:
    """Every lease of one witness, in `path` (SQLite)."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            held = self._db.execute("SELECT name FROM leases WHERE holder IS NOT NULL").fetchall()
        except sqlite3.Error as exc:
            raise WitnessSetupError(f"cannot use the witness database {path}: {exc}") from exc
        started = clock.monotonic()
        self._granted: dict[str, float] = {name: started for (name,) in held}

    def close(self) -> None:
        self._db.close()

    def read(self, name: str) -> Lease:
        check_request(name)
        with self._lock:
            return self._current(name)

    def acquire(self, name: str, holder: str, ttl_s: float) -> Lease:
        check_request(name, holder, ttl_s)
        with self._lock:
            lease = self._current(name)
            if lease.holder not in (None, holder) and lease.remaining_s > 0:
                raise LeaseHeld(
                    f"lease {name} is held by {lease.holder} (epoch {lease.epoch}) for "
                    f"{lease.remaining_s:.1f} s more",
                    lease.holder,
                    lease.epoch,
                )
            return self._write(name, holder, lease.epoch + 1, ttl_s)

    def renew(self, name: str, holder: str, epoch: int, ttl_s: float) -> Lease:
        check_request(name, holder, ttl_s)
        with self._lock:
            lease = self._current(name)
            if lease.holder != holder or lease.epoch != epoch or lease.remaining_s <= 0:
                raise LeaseHeld(_why_not(lease, holder, epoch, "renew"), lease.holder, lease.epoch)
            return self._write(name, holder, epoch, ttl_s)

    def release(self, name: str, holder: str, epoch: int) -> Lease:
        check_request(name, holder)
        with self._lock:
            lease = self._current(name)
            if lease.holder != holder or lease.epoch != epoch:
                raise LeaseHeld(
                    _why_not(lease, holder, epoch, "release"), lease.holder, lease.epoch
                )
            self._db.execute("UPDATE leases SET holder = NULL WHERE name = ?", (name,))
            self._granted.pop(name, None)
            return Lease(name, None, epoch, lease.ttl_s, 0.0)

    def _current(self, name: str) -> Lease:
        row = self._db.execute(
            "SELECT holder, epoch, ttl_s FROM leases WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return Lease(name, None, 0, 0.0, 0.0)
        holder, epoch, ttl_s = row
        granted = self._granted.get(name)
        remaining = 0.0
        if holder is not None and granted is not None:
            remaining = max(0.0, ttl_s - (self._clock.monotonic() - granted))
        return Lease(name, holder, int(epoch), float(ttl_s), remaining)

    def _write(self, name: str, holder: str, epoch: int, ttl_s: float) -> Lease:
        """Durable before it is answered: the epoch must never be handed out twice."""
        self._db.execute(
            "INSERT INTO leases (name, holder, epoch, ttl_s) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
            "epoch = excluded.epoch, ttl_s = excluded.ttl_s",
            (name, holder, epoch, ttl_s),
        )
        self._granted[name] = self._clock.monotonic()
        return Lease(name, holder, epoch, ttl_s, ttl_s)


def _why_not(lease: Lease, holder: str, epoch: int, what: str) -> str:
    if lease.holder is None:
        return f"cannot {what} lease {lease.name}: it is free (epoch {lease.epoch}); acquire it"
    if lease.holder != holder:
        return f"cannot {what} lease {lease.name}: {lease.holder} holds it (epoch {lease.epoch})"
    if lease.epoch != epoch:
        return f"cannot {what} lease {lease.name}: epoch {epoch} is not the current {lease.epoch}"
    return f"cannot {what} lease {lease.name}: it expired; acquire it again"
