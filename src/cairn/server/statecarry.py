"""The server's state carried to its replication targets (design 17.15): after each pass of the
scheduler, every target that is not paused gets the sealed state at once when its tenants or
tokens changed (a tenant, a quota, a retention policy, a token issued or revoked), within a
minute when anything else audited happened (a replication run, a request), and at least every
15 minutes; the newest few are kept on each target. Sealed with the operator's state key
(`DATA/state-key`); without one, nothing is carried.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn.backends.base import Backend
from cairn.backends.errors import BackendError
from cairn.core.clock import Clock, epoch_ms
from cairn.core.errors import CairnError
from cairn.replication.credentials import target_environ
from cairn.replication.layout import open_target
from cairn.replication.model import Target
from cairn.replication.sealedstate import StateKey, load_key, seal
from cairn.replication.stateshelf import push, state_location
from cairn.server.db import Database
from cairn.server.state import ServerState

log = logging.getLogger("cairn.server")

EVERY_S = 15 * 60.0
"""The longest time between two pushes to a target, whatever changed."""
GAP_S = 60.0
"""The shortest time between two pushes for a change that is not a tenant's or a token's: the
audit log moves with every request, so a busy server would otherwise push every pass."""
_ESSENTIALS = (
    "SELECT name, id, quota, retention FROM tenants ORDER BY id",
    "SELECT id, tenant, role, hash, label, revoked_ms, expires_ms FROM tokens ORDER BY id",
)
TLS_FILES = ("cert.pem", "key.pem")


def tls_files(data: Path) -> dict[str, str]:
    """The data folder's own certificate and key (clients pinned the certificate)."""
    found = {}
    for name in TLS_FILES:
        path = data / "tls" / name
        if path.is_file():
            found[name] = path.read_text()
    return found


@dataclass(slots=True)
class _Pushed:
    head: int
    essentials: int
    at: float
    """Monotonic time of the push."""


class StateCarrier:
    """Pushes the sealed state to each target when due; see the module docstring."""

    def __init__(
        self,
        state: ServerState,
        db: Database,
        data: Path,
        server_id: str,
        clock: Clock,
        opener: Callable[[str, Mapping[str, str]], Backend] = open_target,
        every_s: float = EVERY_S,
    ) -> None:
        self._state = state
        self._db = db
        self._data = data
        self._server_id = server_id
        self._clock = clock
        self._opener = opener
        self._every_s = every_s
        self._pushed: dict[str, _Pushed] = {}
        self._open: dict[str, tuple[Mapping[str, str], Backend]] = {}
        self._guard = threading.Lock()
        self._told_no_key = False

    def carry(self, targets: list[Target]) -> list[str]:
        """Push to each target that is due; returns the names pushed to. A failure is logged
        and tried again at the next call: it never stops replication."""
        wanted = [t for t in targets if not t.paused]
        if not wanted:
            return []
        head, essentials = self._audit_head(), self._essentials()
        due = [t for t in wanted if self._due(t, head, essentials)]
        if not due:
            return []
        key = self._key()
        if key is None:
            return []
        name, blob = seal(key, self.payload(), epoch_ms(self._clock))
        pushed = []
        for target in due:
            try:
                push(self._backend(target), name, blob)
            except (BackendError, CairnError, OSError) as exc:
                log.warning("the server's state did not reach %s: %s", target.name, exc)
                continue
            self._pushed[_place(target)] = _Pushed(head, essentials, self._clock.monotonic())
            pushed.append(target.name)
        return pushed

    def payload(self) -> dict[str, Any]:
        return {"state": self._state.export(), "tls": tls_files(self._data)}

    def close(self) -> None:
        with self._guard:
            opened, self._open = [backend for _, backend in self._open.values()], {}
        for backend in opened:
            with contextlib.suppress(BackendError):  # closing loses nothing if it fails
                backend.close()

    def _key(self) -> StateKey | None:
        try:
            key = load_key(self._data)
        except CairnError as exc:
            log.warning("the server's state is not carried to targets: %s", exc)
            return None
        if key is None and not self._told_no_key:
            self._told_no_key = True
            log.warning(
                "the server's state is not carried to its targets: set the operator's key with "
                "`cairn server state-key set` (design 17.15)"
            )
        return key

    def _due(self, target: Target, head: int, essentials: int) -> bool:
        last = self._pushed.get(_place(target))
        if last is None or essentials != last.essentials:
            return True
        age = self._clock.monotonic() - last.at
        return (head != last.head and age >= GAP_S) or age >= self._every_s

    def _essentials(self) -> int:
        """A fingerprint of the tenants and tokens (not usage): small tables, read each pass."""
        conn = self._db.read()
        return hash(tuple(tuple(conn.execute(query)) for query in _ESSENTIALS))

    def _audit_head(self) -> int:
        row = self._db.read().execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()
        return int(row[0])

    def _backend(self, target: Target) -> Backend:
        """The target's state folder, opened with its credentials (17.9), read each time: new
        credentials open it again."""
        where = state_location(target.location, self._server_id)
        environ = target_environ(target)
        with self._guard:
            found = self._open.get(where)
            if found is not None and found[0] == environ:
                return found[1]
            if found is not None:
                with contextlib.suppress(BackendError):
                    found[1].close()
            backend = self._opener(where, environ)
            self._open[where] = (environ, backend)
            return backend


def _place(target: Target) -> str:
    """A target and its location: an edited location gets the state at once."""
    return f"{target.name} {target.location}"
