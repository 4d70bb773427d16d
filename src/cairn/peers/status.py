"""`cairn peer status` (design 20.5): what each paired peer offers and holds, and how many
complete copies of this machine's latest backup exist, each one checked live on its peer; which
peers hold only an older copy (degraded), and whether the machine has been short of `r` complete
copies for longer than the alert threshold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import BackendError
from cairn.backends.remote import RemoteBackend, parse_address
from cairn.core.clock import Clock, epoch_ms
from cairn.core.errors import CairnError
from cairn.peers.peerserver import open_server, used_here
from cairn.peers.placement import ask_space, away_since
from cairn.peers.store import Copy, Peer, PeerStore


@dataclass(slots=True)
class PeerRow:
    peer: Peer
    used_there: int | None
    quota_there: int | None
    used_here: int | None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        p = self.peer
        return {
            "name": p.name,
            "role": p.role,
            "address": p.address,
            "fingerprint": p.fingerprint,
            "last_seen_ms": p.last_seen_ms,
            "offered": p.offer,
            "used_there": self.used_there,
            "quota_there": self.quota_there,
            "used_here": self.used_here,
            "error": self.error,
        }


@dataclass(slots=True)
class Protection:
    """This machine's latest run: the copies it recorded, and which were confirmed just now."""

    run_ms: int | None
    wanted: int
    confirmed: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    degraded: dict[str, int] = field(default_factory=dict)
    """Peers holding a complete copy, but not of the latest run: the run of their newest one."""
    unprotected_since_ms: int | None = None
    alert: bool = False

    @property
    def protected(self) -> bool:
        return len(self.confirmed) >= self.wanted

    def as_json(self) -> dict[str, Any]:
        return {
            "latest_run_ms": self.run_ms,
            "copies_wanted": self.wanted,
            "complete_copies": len(self.confirmed),
            "complete_on": self.confirmed,
            "unconfirmed": self.unconfirmed,
            "failed": self.failed,
            "protected": self.protected,
            "degraded": self.degraded,
            "unprotected_since_ms": self.unprotected_since_ms,
            "alert": self.alert,
        }


def peer_rows(store: PeerStore, clock: Clock) -> list[PeerRow]:
    services = open_server(store.folder, clock)
    rows = []
    for peer in store.peers():
        row = PeerRow(peer, None, None, used_here(services, peer.tenant_here))
        if peer.location is not None:
            try:
                space = ask_space(peer)
                row.used_there, row.quota_there = space.used, space.quota
                store.seen(peer.name, epoch_ms(clock))
                row.peer = store.peer(peer.name)
            except CairnError as exc:
                row.error = str(exc)
        rows.append(row)
    return rows


def protection(store: PeerStore, clock: Clock, alert_after_s: float) -> Protection:
    """The latest run's copies checked live, the degraded holders, and the alert: fewer than `r`
    complete copies for longer than `alert_after_s`."""
    copies = store.latest_run()
    state = Protection(copies[0].run_ms if copies else None, store.settings().copies)
    peers = {p.name: p for p in store.peers()}
    for copy in copies:
        if copy.snapshot is None:
            state.failed[copy.peer] = str(copy.error)
        elif copy.peer in peers and _holds(peers[copy.peer], copy):
            state.confirmed.append(copy.peer)
        else:
            state.unconfirmed.append(copy.peer)
    for name, newest in store.holders().items():
        if name in peers and name not in state.confirmed and newest != state.run_ms:
            state.degraded[name] = newest
    if not state.protected and state.run_ms is not None:
        state.unprotected_since_ms = _short_since(store, state, peers)
        state.alert = epoch_ms(clock) - state.unprotected_since_ms > alert_after_s * 1000
    return state


def _short_since(store: PeerStore, state: Protection, peers: dict[str, Peer]) -> int:
    """Since when this machine has had fewer than `r` complete copies: the first run of the
    trailing streak of runs that recorded fewer; if the latest run recorded enough but they no
    longer check out, since its unconfirmed peers were last seen."""
    since: int | None = None
    for run_ms, complete in reversed(store.runs()):
        if complete >= state.wanted:
            break
        since = run_ms
    if since is not None:
        return since
    seen = [away_since(peers[n]) for n in state.unconfirmed if n in peers]
    return min(seen, default=int(state.run_ms or 0))


def _holds(peer: Peer, copy: Copy) -> bool:
    """Whether the peer stores the copy's snapshot object: keyless, the name is enough, and a
    snapshot object is written only once all it refers to is stored (design 5)."""
    backend = RemoteBackend(
        parse_address(str(peer.location)), str(peer.token_there), None, peer.fingerprint
    )
    try:
        return backend.exists(Handle(ObjectKind.SNAPSHOT, str(copy.snapshot)))
    except (BackendError, CairnError):
        return False
    finally:
        backend.close()
