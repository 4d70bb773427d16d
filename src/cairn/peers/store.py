"""A peer's own database, `DIR/peer.db` (design 20.2): its settings, the invitations it issued,
the peers it is paired with, and where each of its backups landed.

Several processes use it at once (`peer serve` answers a join while `peer invite` or `peer
backup` runs), so every change is one short `BEGIN IMMEDIATE` transaction and readers wait up to
30 s for a writer (SQLite's busy timeout), as the server's own database does.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cairn.peers.errors import AlreadyPaired, NoSuchPeer, PeerFolderError

DATABASE = "peer.db"
ROLES = ("offer", "client-only")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS invitations (
    secret_hash BLOB PRIMARY KEY, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
    used_ms INTEGER, used_by TEXT);
CREATE TABLE IF NOT EXISTS peers (
    name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL UNIQUE, address TEXT NOT NULL,
    role TEXT NOT NULL, offer INTEGER, tenant_here TEXT, tenant_there TEXT, token_there TEXT,
    repo_ready INTEGER NOT NULL DEFAULT 0, paired_ms INTEGER NOT NULL, last_seen_ms INTEGER);
CREATE TABLE IF NOT EXISTS copies (
    run_ms INTEGER NOT NULL, peer TEXT NOT NULL, snapshot TEXT, error TEXT,
    PRIMARY KEY (run_ms, peer));
"""


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """What `peer init` was told: who this machine is and what it offers."""

    name: str
    role: str
    offer: int | None
    listen: str
    paths: tuple[str, ...]
    copies: int

    @property
    def offers(self) -> bool:
        return self.role == "offer"


@dataclass(frozen=True, slots=True)
class Peer:
    """A paired peer, as this machine recorded it at pairing (and last saw it)."""

    name: str
    fingerprint: str
    address: str
    role: str
    offer: int | None
    tenant_here: str | None
    tenant_there: str | None
    token_there: str | None
    repo_ready: bool
    paired_ms: int
    last_seen_ms: int | None

    @property
    def location(self) -> str | None:
        """Where this machine's copy on that peer lives (None: it gave this machine no tenant)."""
        if self.tenant_there is None:
            return None
        return f"cairns://{self.address}/{self.tenant_there}"


@dataclass(frozen=True, slots=True)
class Copy:
    run_ms: int
    peer: str
    snapshot: str | None
    error: str | None


class PeerStore:
    """`DIR/peer.db`; see the module docstring."""

    def __init__(self, folder: Path) -> None:
        path = folder / DATABASE
        if not path.is_file():
            raise PeerFolderError(
                f"{folder} is not a Cairn peer folder (it has no {DATABASE}): check --data, or "
                f"make one with `cairn peer init --data {folder} ...`"
            )
        self.folder = folder
        self._conn = _connect(path)

    @classmethod
    def create(cls, folder: Path, settings: PeerSettings) -> PeerStore:
        """Make the folder (0700) and its database (0600) with `settings`; refuse an existing
        one."""
        if (folder / DATABASE).exists():
            raise PeerFolderError(f"{folder} is a peer folder already; nothing was changed")
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(folder / DATABASE, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise PeerFolderError(f"cannot make the peer folder {folder}: {exc}") from exc
        conn = _connect(folder / DATABASE)
        conn.executescript(_SCHEMA)  # commits by itself: it cannot run inside a transaction
        with _transaction(conn):
            document = {
                "name": settings.name,
                "role": settings.role,
                "offer": settings.offer,
                "listen": settings.listen,
                "paths": list(settings.paths),
                "copies": settings.copies,
            }
            conn.execute("INSERT INTO settings VALUES ('self', ?)", (json.dumps(document),))
        conn.close()
        return cls(folder)

    def close(self) -> None:
        self._conn.close()

    def settings(self) -> PeerSettings:
        row = self._conn.execute("SELECT value FROM settings WHERE key = 'self'").fetchone()
        d = json.loads(row[0])
        return PeerSettings(
            d["name"], d["role"], d["offer"], d["listen"], tuple(d["paths"]), d["copies"]
        )

    # Invitations

    def add_invitation(self, secret_hash: bytes, created_ms: int, expires_ms: int) -> None:
        with _transaction(self._conn):
            self._conn.execute(
                "INSERT INTO invitations (secret_hash, created_ms, expires_ms) VALUES (?, ?, ?)",
                (secret_hash, created_ms, expires_ms),
            )

    @contextlib.contextmanager
    def redeeming(self) -> Iterator[sqlite3.Connection]:
        """One write transaction for checking and spending an invitation and recording the
        joiner together: two joins with one code cannot both see it unused."""
        with _transaction(self._conn):
            yield self._conn

    # Peers

    def peers(self) -> list[Peer]:
        rows = self._conn.execute(_SELECT_PEERS + " ORDER BY name")
        return [_peer(row) for row in rows]

    def peer(self, name: str) -> Peer:
        row = self._conn.execute(_SELECT_PEERS + " WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NoSuchPeer(f"no paired peer named {name!r}; `cairn peer list` shows them")
        return _peer(row)

    def add_peer(self, peer: Peer, conn: sqlite3.Connection | None = None) -> None:
        """Record a paired peer; a name or fingerprint paired already is AlreadyPaired."""
        if conn is None:
            with _transaction(self._conn):
                self._add(self._conn, peer)
        else:
            self._add(conn, peer)

    @staticmethod
    def _add(conn: sqlite3.Connection, p: Peer) -> None:
        taken = conn.execute(
            "SELECT name FROM peers WHERE name = ? OR fingerprint = ?", (p.name, p.fingerprint)
        ).fetchone()
        if taken is not None:
            raise AlreadyPaired(
                f"a peer named {taken[0]!r} with that name or certificate is paired already: "
                f"`cairn peer forget {taken[0]}` first to pair it again"
            )
        conn.execute(
            _INSERT_PEER,
            (
                p.name,
                p.fingerprint,
                p.address,
                p.role,
                p.offer,
                p.tenant_here,
                p.tenant_there,
                p.token_there,
                int(p.repo_ready),
                p.paired_ms,
                p.last_seen_ms,
            ),
        )

    def remove_peer(self, name: str) -> Peer:
        peer = self.peer(name)
        with _transaction(self._conn):
            self._conn.execute("DELETE FROM peers WHERE name = ?", (name,))
        return peer

    def seen(self, name: str, now_ms: int) -> None:
        with _transaction(self._conn):
            self._conn.execute("UPDATE peers SET last_seen_ms = ? WHERE name = ?", (now_ms, name))

    def repo_made(self, name: str) -> None:
        with _transaction(self._conn):
            self._conn.execute("UPDATE peers SET repo_ready = 1 WHERE name = ?", (name,))

    # Copies

    def record_copy(self, copy: Copy) -> None:
        with _transaction(self._conn):
            self._conn.execute(
                "INSERT OR REPLACE INTO copies VALUES (?, ?, ?, ?)",
                (copy.run_ms, copy.peer, copy.snapshot, copy.error),
            )

    def holders(self) -> dict[str, int]:
        """The peers holding a complete copy of this machine, each with its newest copy's run."""
        rows = self._conn.execute(
            "SELECT peer, MAX(run_ms) FROM copies WHERE snapshot IS NOT NULL GROUP BY peer"
        )
        return {str(peer): int(run) for peer, run in rows}

    def runs(self) -> list[tuple[int, int]]:
        """Every run, oldest first, with how many of its copies were complete."""
        rows = self._conn.execute(
            "SELECT run_ms, COUNT(snapshot) FROM copies GROUP BY run_ms ORDER BY run_ms"
        )
        return [(int(run), int(complete)) for run, complete in rows]

    def latest_run(self) -> list[Copy]:
        """The copies of this machine's latest backup run (none before the first)."""
        row = self._conn.execute("SELECT MAX(run_ms) FROM copies").fetchone()
        if row[0] is None:
            return []
        rows = self._conn.execute(
            "SELECT run_ms, peer, snapshot, error FROM copies WHERE run_ms = ? ORDER BY peer",
            (row[0],),
        )
        return [Copy(*r) for r in rows]


_SELECT_PEERS = (
    "SELECT name, fingerprint, address, role, offer, tenant_here, tenant_there, token_there, "
    "repo_ready, paired_ms, last_seen_ms FROM peers"
)
_INSERT_PEER = (
    "INSERT INTO peers (name, fingerprint, address, role, offer, tenant_here, tenant_there, "
    "token_there, repo_ready, paired_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _peer(row: tuple[object, ...]) -> Peer:
    values = list(row)
    values[8] = bool(values[8])
    return Peer(*values)  # type: ignore[arg-type]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
