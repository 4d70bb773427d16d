"""cairn unlock: show the locks, remove those whose lease has ended (design 13.1).

Locks in Cairn end by themselves: a lock whose lease has passed (plus the clock-skew margin), or
whose process on this machine is gone, no longer holds anything up, and prune removes it. So
`unlock` is never needed to recover; it shows who holds a lock and until when, and tidies the
ended ones. `--remove-all` (restic's) removes live locks too, which takes away the protection of
a backup that is running: it asks for `--yes` first.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import NotFound
from cairn.cli.context import Context
from cairn.cli.errors import UnlockRefused
from cairn.core.errors import FormatError, IntegrityError
from cairn.format.lock import decode_owner
from cairn.repository.locks import SKEW_MS, StoredLock, has_ended, now_ms, read_locks
from cairn.repository.repository import Repository

_REMOVE_ALL_WARNING = (
    "removing a live lock takes away a running backup's protection: a prune may then delete "
    "data it has stored, and it will refuse to commit"
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "unlock",
        parents=[common],
        help="show the locks and remove ended ones (locks end by themselves)",
    )
    p.add_argument(
        "--remove-all",
        action="store_true",
        help="remove every lock, also live ones (dangerous while a backup runs; needs --yes)",
    )
    p.add_argument("--yes", action="store_true", help="confirm --remove-all")
    p.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class LockView:
    """One lock as a person reads it."""

    lock: StoredLock
    owner: str
    ended: bool


def run(ctx: Context) -> int:
    repo = ctx.open_repository(load_index=False)
    now = now_ms(ctx.clock)
    views = [_view(repo, lock, now) for lock in read_locks(repo.backend)]
    live = [v for v in views if not v.ended]
    if ctx.args.remove_all and live and not ctx.args.yes:
        raise UnlockRefused(
            f"{len(live)} lock(s) are live; {_REMOVE_ALL_WARNING}. Add --yes to remove them anyway"
        )
    doomed = views if ctx.args.remove_all else [v for v in views if v.ended]
    _show(ctx, views, now)
    removed = [v for v in doomed if _remove(repo, v.lock)]
    _summary(ctx, views, removed)
    ctx.output.json(
        {
            "locks": [_json(v, now) for v in views],
            "removed": [v.lock.name.hex for v in removed],
        }
    )
    return 0


def _view(repo: Repository, lock: StoredLock, now: int) -> LockView:
    record = lock.record
    try:
        owner = decode_owner(repo.open_lock(record.sealed, record.session))
        who = f"{owner.host} pid {owner.pid}"
    except (FormatError, IntegrityError):
        who = "(unknown: sealed with another key)"
    return LockView(lock, who, has_ended(record, now, repo.open_lock))


def _remove(repo: Repository, lock: StoredLock) -> bool:
    try:
        repo.backend.remove(Handle(ObjectKind.LOCK, lock.name.hex))
    except NotFound:  # its session ended and removed it meanwhile
        return False
    return True


def _age(ms: int) -> str:
    seconds = max(ms, 0) // 1000
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _ends(view: LockView, now: int) -> str:
    if view.ended:
        return "ended"
    end = view.lock.record.expires_ms + SKEW_MS
    return f"in {_age(end - now)} unless renewed"


def _show(ctx: Context, views: list[LockView], now: int) -> None:
    rows = [
        [
            v.lock.record.session.hex() if ctx.verbosity else v.lock.record.session.hex()[:8],
            v.lock.record.purpose,
            v.owner,
            _age(now - v.lock.record.created_ms),
            _ends(v, now),
        ]
        for v in views
    ]
    if rows:
        ctx.output.table(["Session", "Purpose", "Held by", "Saved", "Lease ends"], rows)
    for v in views if ctx.verbosity else []:
        ctx.output.text(
            f"lock object locks/{v.lock.name.hex}: session {v.lock.record.session.hex()}"
        )


def _summary(ctx: Context, views: list[LockView], removed: list[LockView]) -> None:
    out = ctx.output
    live = sum(1 for v in views if not v.ended)
    out.text(
        f"{len(views)} lock(s): {live} live, {len(views) - live} ended; {len(removed)} removed"
    )
    if ctx.args.remove_all and any(not v.ended for v in removed):
        out.text(f"warning: {_REMOVE_ALL_WARNING}")
    out.text(
        "locks end by themselves: a running session renews its lock every few minutes, and a "
        "lock whose lease has passed, or whose process on this machine is gone, holds nothing "
        "up (prune removes it); Cairn never needs `unlock` to recover"
    )


def _json(view: LockView, now: int) -> dict[str, Any]:
    r = view.lock.record
    return {
        "name": view.lock.name.hex,
        "session": r.session.hex(),
        "purpose": r.purpose,
        "held_by": view.owner,
        "created": datetime.fromtimestamp(r.created_ms / 1000).astimezone().isoformat(),
        "expires": datetime.fromtimestamp(r.expires_ms / 1000).astimezone().isoformat(),
        "age_s": max(now - r.created_ms, 0) // 1000,
        "ended": view.ended,
    }
