"""Throttling failed authentications per client address (the server's tokens and sign-in,
design 14.3; the witness's token, design 19.3): shared, so both count alike."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable

from cairn.core.clock import SYSTEM_CLOCK


class FailureThrottle:
    """Counts failed authentications per client address in a sliding window; past the limit the
    address is refused (429) until its oldest failure leaves the window.

    The table is bounded: an address whose last failure has left the window is forgotten, only the
    last `limit` failures of an address are kept, and past `max_addresses` the address whose last
    failure is oldest is dropped. (An attacker with that many addresses can so flush its own
    entries; one with that many addresses gets as many guesses anyway. Guessing a 256-bit secret
    is hopeless either way: the throttle protects the server's work, not the tokens.)"""

    def __init__(
        self,
        limit: int = 10,
        window_s: float = 60.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = SYSTEM_CLOCK.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window_s
        self._max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        """By last failure, oldest first, so expiring and evicting take from the front."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many addresses the table holds."""
        return len(self._failures)

    def wait_s(self, address: str) -> int | None:
        """How many seconds `address` must wait before it may try again; None if it need not."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            recent = self._failures.get(address)
            if recent is None:
                return None
            self._trim(recent, now)
            if len(recent) >= self._limit:
                return int(recent[0] + self._window - now) + 1
            return None

    def failed(self, address: str) -> None:
        with self._lock:
            now = self._clock()
            self._expire(now)
            recent = self._failures.pop(address, None) or deque(maxlen=self._limit)
            self._trim(recent, now)
            recent.append(now)
            self._failures[address] = recent  # to the end: its failure is now the newest
            while len(self._failures) > self._max_addresses:
                self._failures.popitem(last=False)

    def _expire(self, now: float) -> None:
        """Forget the addresses whose last failure has left the window."""
        while self._failures:
            address, recent = next(iter(self._failures.items()))
            if recent and recent[-1] > now - self._window:
                return
            del self._failures[address]

    def _trim(self, recent: deque[float], now: float) -> None:
        while recent and recent[0] <= now - self._window:
            recent.popleft()
