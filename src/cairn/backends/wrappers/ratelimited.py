"""Limit the upload rate: a token bucket in front of ``save``, shared by every uploading thread.

One bucket is the whole process's budget (the agent passes each run's limit as
``--limit-upload``, design 15.4). A save takes as many tokens as it has bytes before it starts;
the bucket may go into debt, so an object larger than the burst waits for exactly the time its
bytes need at the rate, and concurrent savers queue behind each other's debt. The bytes of one
object then travel at line speed: the limit holds on average (over a few objects), not within
an object. A server backend sends objects over 16 MiB in resumable parts inside one save, so
they too are paid for as a whole, before the first part. Only uploads are limited; loads,
listings and removals pass through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cairn.backends.base import (
    Backend,
    Handle,
)
from cairn.backends.wrappers.forwarding import ForwardingBackend
from cairn.core.clock import SYSTEM_CLOCK


class TokenBucket:
    """`rate` bytes a second, with up to `burst` bytes (default: one second's worth) sent at once
    after an idle spell. Thread-safe; sleeps outside its lock."""

    def __init__(
        self,
        rate: int,
        burst: int | None = None,
        monotonic: Callable[[], float] = SYSTEM_CLOCK.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"an upload limit must be positive, not {rate}")
        self.rate = rate
        self._capacity = float(burst if burst is not None else rate)
        self._tokens = self._capacity
        self._monotonic = monotonic
        self._sleep = sleep
        self._stamp = monotonic()
        self._lock = threading.Lock()

    def take(self, n: int) -> float:
        """Spend `n` bytes' worth, sleeping until the bucket can pay; returns the seconds slept."""
        with self._lock:
            now = self._monotonic()
            elapsed = max(0.0, now - self._stamp)
            self._stamp = now
            self._tokens = min(self._capacity, self._tokens + elapsed * self.rate) - n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class RateLimitedBackend(ForwardingBackend):
    """Calls `inner`, paying `bucket` for every byte saved before the save starts."""

    def __init__(self, inner: Backend, bucket: TokenBucket) -> None:
        super().__init__(inner)
        self._bucket = bucket

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        self._bucket.take(len(data))
        self._inner.save(handle, data)
