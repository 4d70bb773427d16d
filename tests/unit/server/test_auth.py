"""The throttle on failed logins stays bounded however many addresses fail (design 14.3)."""

from __future__ import annotations

import pytest

from cairn.server.auth import Throttle
from cairn.server.errors import Throttled


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
