"""Tokens that expire, and the throttle on failed logins, which stays bounded however many
addresses fail (design 14.3)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cairn.core.clock import FrozenClock
from cairn.server.auth import Role, Throttle, TokenStore
from cairn.server.db import Database
from cairn.server.errors import BadRequest, Throttled, TokenExpired, TokenRevoked, Unauthenticated
from cairn.server.tenants import TenantStore

DAY_MS = 24 * 3600 * 1000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_check_without_failures_leaves_no_entry() -> None:
    throttle = Throttle(clock=FakeClock())
    for n in range(100):
        throttle.check(f"198.51.100.{n}")
    assert len(throttle) == 0


def test_addresses_are_forgotten_once_their_window_passes() -> None:
    clock = FakeClock()
    throttle = Throttle(limit=3, window_s=60, clock=clock)
    for n in range(500):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 500
    clock.now += 61
    throttle.failed("203.0.113.1")  # any later call expires what has left the window
    assert len(throttle) == 1
    clock.now += 61
    throttle.check("203.0.113.2")
    assert len(throttle) == 0


def test_the_table_is_capped_and_keeps_the_latest_offenders() -> None:
    clock = FakeClock()
    throttle = Throttle(limit=3, window_s=60, max_addresses=100, clock=clock)
    for _ in range(3):
        throttle.failed("203.0.113.9")
    with pytest.raises(Throttled):
        throttle.check("203.0.113.9")
    for n in range(1000):
        clock.now += 0.01
        throttle.failed(f"2001:db8::{n:x}")
    assert len(throttle) == 100
    for _ in range(3):
        throttle.failed("203.0.113.9")  # failing again puts it back among the newest
    for n in range(99):
        throttle.failed(f"2001:db8::1:{n:x}")
    with pytest.raises(Throttled):
        throttle.check("203.0.113.9")
    assert len(throttle) == 100


def test_an_address_keeps_only_its_last_failures() -> None:
    clock = FakeClock()
    throttle = Throttle(limit=3, window_s=60, clock=clock)
    for _ in range(10_000):
        throttle.failed("203.0.113.7")
    with pytest.raises(Throttled) as refused:
        throttle.check("203.0.113.7")
    assert refused.value.details["retry_after"] == 61
    clock.now += 60
    throttle.check("203.0.113.7")  # all its failures were at one moment: the window has passed


def test_a_token_is_refused_once_it_expires(tmp_path: Path) -> None:
    db = Database(tmp_path / "server.db")
    TenantStore(db, tmp_path / "tenants").create("acme")
    start = 1_800_000_000_000
    clock = FrozenClock(datetime.fromtimestamp(start / 1000, UTC))  # the server's one clock
    tokens = TokenStore(db, clock)
    lasting = tokens.issue(Role.BACKUP, "acme", "laptop")
    expiring = tokens.issue(Role.BACKUP, "acme", "contractor", expires_ms=start + 90 * DAY_MS)
    assert tokens.verify(str(expiring)).token_id == expiring.id
    clock.advance((90 * DAY_MS - 1) / 1000)
    assert tokens.verify(str(expiring)).token_id == expiring.id
    clock.advance(1 / 1000)
    with pytest.raises(TokenExpired, match="expired at 2027-") as refused:
        tokens.verify(str(expiring))
    assert refused.value.code == "CAIRN-E075" and refused.value.status == 401
    wrong = f"cairn_{expiring.id}_{'0' * 64}"
    with pytest.raises(Unauthenticated) as guessed:  # only the secret's holder learns "expired"
        tokens.verify(wrong)
    assert type(guessed.value) is Unauthenticated
    assert tokens.verify(str(lasting)).token_id == lasting.id
    listed = {t["id"]: t["expires_ms"] for t in tokens.list()}
    assert listed == {lasting.id: None, expiring.id: 1_800_000_000_000 + 90 * DAY_MS}


def test_an_expiry_in_the_past_is_refused(tmp_path: Path) -> None:
    db = Database(tmp_path / "server.db")
    TenantStore(db, tmp_path / "tenants").create("acme")
    tokens = TokenStore(db, FrozenClock(datetime.fromtimestamp(1_800_000_000, UTC)))
    with pytest.raises(BadRequest, match="future"):
        tokens.issue(Role.RESTORE, "acme", expires_ms=1_800_000_000_000)


def test_a_revoked_token_is_told_so_and_only_its_holder_learns_it(tmp_path: Path) -> None:
    """TokenRevoked (like TokenExpired) is not counted by the throttle: see routes._authenticate
    and tests/integration/test_cli_server_faults.py."""
    db = Database(tmp_path / "server.db")
    TenantStore(db, tmp_path / "tenants").create("acme")
    tokens = TokenStore(db)
    revoked = tokens.issue(Role.BACKUP, "acme", "laptop")
    tokens.revoke(revoked.id)
    with pytest.raises(TokenRevoked, match="revoked") as refused:
        tokens.verify(str(revoked))
    assert refused.value.code == "CAIRN-E061" and refused.value.status == 401
    with pytest.raises(Unauthenticated) as guessed:
        tokens.verify(f"cairn_{revoked.id}_{'0' * 64}")
    assert type(guessed.value) is Unauthenticated
