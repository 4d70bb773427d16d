"""This machine's backups on `r` paired peers (design 20.4).

Each copy is the agent's way of running a backup (15.4): a child `cairn` process against the
peer's tenant, its token and the pinned fingerprint in the child's environment, the owner's
passphrase passed down from the caller's. A failing copy (the peer is over its quota, away, or
anything else) is recorded and the next peer is tried.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cairn.agent.runner import BACKUP_PROGRAM
from cairn.core.clock import Clock, epoch_ms
from cairn.peers.errors import NotEnoughCopies, PeerError
from cairn.peers.pairing import pinned_tls
from cairn.peers.store import Copy, Peer, PeerStore

DEFAULT_GRACE_S = 7 * 24 * 3600.0
"""How long a peer holding a copy may be away before its share is placed elsewhere (20.4)."""
_TIMEOUT_S = 30.0
_CHILD_TIMEOUT_S = 24 * 3600.0
_DROPPED = ("CAIRN_REPOSITORY", "CAIRN_TOKEN_FILE", "CAIRN_TOKEN", "CAIRN_SERVER_FINGERPRINT")


@dataclass(frozen=True, slots=True)
class Space:
    """What a peer says this machine's tenant there holds (None: it did not answer)."""

    used: int
    quota: int | None

    @property
    def free(self) -> float:
        return float("inf") if self.quota is None else max(0, self.quota - self.used)


@dataclass(frozen=True, slots=True)
class RunResult:
    run_ms: int
    copies: list[Copy]
    wanted: int

    @property
    def complete(self) -> list[Copy]:
        return [c for c in self.copies if c.snapshot is not None]


def candidates(store: PeerStore) -> list[Peer]:
    """Peers that may hold this machine's copies: they offer and gave it a tenant (never this
    machine itself, which is never in its own peer list, and never a client-only peer)."""
    return [p for p in store.peers() if p.role == "offer" and p.token_there and p.location]


def ask_space(peer: Peer) -> Space:
    """The tenant's usage and quota on `peer`, asked through its pinned certificate."""
    context = pinned_tls(peer.address, peer.fingerprint)
    url = f"https://{peer.address}/v1/t/{peer.tenant_there}/status"
    try:
        response = httpx.get(
            url,
            headers={"authorization": f"Bearer {peer.token_there}", "user-agent": "cairn"},
            verify=context,
            timeout=_TIMEOUT_S,
        )
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise PeerError(f"{peer.name} did not answer its status: {exc}") from exc
    if response.status_code != 200:
        raise PeerError(f"{peer.name} refused its status: {response.status_code} {document}")
    try:
        quota = document.get("quota")
        return Space(int(document["used"]), None if quota is None else int(quota))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PeerError(
            f"{peer.name} answered its status with no usage: {document!r:.200}"
        ) from exc


def back_up(
    store: PeerStore,
    paths: Sequence[str],
    environ: Mapping[str, str],
    clock: Clock,
    copies: int | None = None,
    grace_s: float = DEFAULT_GRACE_S,
) -> RunResult:
    """One run: every reachable peer that holds a copy already is brought up to date (a peer
    back from away catches up), then new peers, most free space first, until `copies` are
    complete. A holder away for less than `grace_s` keeps its share (no other peer is given it
    meanwhile); one away longer has its share placed elsewhere. Raises NotEnoughCopies when
    fewer complete (the run's copies are recorded either way)."""
    wanted = copies or store.settings().copies
    run_ms = epoch_ms(clock)
    holders = store.holders()
    ranked: list[tuple[float, Peer]] = []
    made: list[Copy] = []
    waiting: list[Peer] = []
    for peer in candidates(store):
        try:
            space = ask_space(peer)
        except PeerError as exc:
            made.append(Copy(run_ms, peer.name, None, f"away: {exc}"))
            if peer.name in holders and run_ms - away_since(peer) <= grace_s * 1000:
                waiting.append(peer)
            continue
        store.seen(peer.name, epoch_ms(clock))
        ranked.append((space.free, peer))
    ranked.sort(key=lambda item: -item[0])
    ordered = [p for _f, p in ranked if p.name in holders]
    ordered += [p for _f, p in ranked if p.name not in holders]
    for peer in ordered:
        done = len([c for c in made if c.snapshot])
        if peer.name not in holders and done + len(waiting) >= wanted:
            break
        made.append(_one_copy(store, peer, paths, environ, run_ms))
    for copy in made:
        store.record_copy(copy)
    result = RunResult(run_ms, made, wanted)
    if len(result.complete) < wanted:
        why = "; ".join(f"{c.peer}: {c.error}" for c in made if c.error) or "no peer offers space"
        kept = "".join(
            f"; {p.name} keeps its share (its copy is degraded) until it has been away longer "
            f"than the grace period"
            for p in waiting
        )
        raise NotEnoughCopies(
            f"only {len(result.complete)} of {wanted} copies are complete ({why}){kept}"
        )
    return result


def away_since(peer: Peer) -> int:
    """When the peer was last seen answering (its pairing, if never since)."""
    return peer.last_seen_ms if peer.last_seen_ms is not None else peer.paired_ms


def _one_copy(
    store: PeerStore, peer: Peer, paths: Sequence[str], environ: Mapping[str, str], run_ms: int
) -> Copy:
    env = child_environment(store.folder, peer, environ)
    location = str(peer.location)
    if not peer.repo_ready:
        done = _child(["init", "--json", "-r", location], env)
        if done.returncode == 0 or _error_code(done.stdout) == "CAIRN-E013":
            store.repo_made(peer.name)
        else:
            return Copy(run_ms, peer.name, None, _why(done))
    done = _child(["backup", "--json", "-r", location, "--", *paths], env)
    if done.returncode not in (0, 3):  # 3: saved, with some paths unreadable (docs/errors.md)
        return Copy(run_ms, peer.name, None, _why(done))
    snapshot = _last_json(done.stdout).get("snapshot_id")
    return Copy(run_ms, peer.name, str(snapshot), None)


def child_environment(folder: Path, peer: Peer, environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment (its passphrase source) with the peer's token and pin, and this
    peer folder's own known-servers file and cache."""
    env = {k: v for k, v in environ.items() if k not in _DROPPED}
    env["CAIRN_TOKEN"] = str(peer.token_there)
    env["CAIRN_SERVER_FINGERPRINT"] = peer.fingerprint
    env["XDG_CONFIG_HOME"] = str(folder / "client")
    env["CAIRN_CACHE_DIR"] = str(folder / "cache")
    return env


def run_cairn(args: Sequence[str], env: Mapping[str, str]) -> int:
    """A `cairn` child whose output goes to this process's own (restore: the user reads it)."""
    return subprocess.run(
        [*BACKUP_PROGRAM, *args], env=dict(env), check=False, timeout=_CHILD_TIMEOUT_S
    ).returncode


def _child(args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*BACKUP_PROGRAM, *args],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=_CHILD_TIMEOUT_S,
    )


def _last_json(stdout: bytes) -> dict[str, Any]:
    for line in reversed(stdout.decode(errors="replace").strip().splitlines()):
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict):
            return document
    try:
        whole = json.loads(stdout)
    except ValueError:
        return {}
    return whole if isinstance(whole, dict) else {}


def _error_code(stdout: bytes) -> str | None:
    error = _last_json(stdout).get("error")
    return str(error.get("code")) if isinstance(error, dict) else None


def _why(done: subprocess.CompletedProcess[bytes]) -> str:
    error = _last_json(done.stdout).get("error")
    if isinstance(error, dict):
        return f"{error.get('code')}: {error.get('message')}"
    tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no message)"]
    return f"exit {done.returncode}: {tail[0]}"
