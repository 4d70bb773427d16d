"""Retry transient backend failures with backoff over a fixed time budget; wait as asked when the
storage says it is busy."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from cairn.backends.base import (
    Backend,
    Capabilities,
    ChunkAnswer,
    Handle,
    ObjectInfo,
    ObjectKind,
    forward_chunk_query,
)
from cairn.backends.errors import Busy, NotFound, ServerNotPrimary, TransientBackendError
from cairn.core.clock import SYSTEM_CLOCK

T = TypeVar("T")

DEFAULT_RETRY_FOR = 60.0
"""Seconds an outage is retried before a call gives up (CAIRN_RETRY_FOR, --retry-for)."""


class RetryingBackend:
    """Calls `inner` again while it raises TransientBackendError, for `retry_for` seconds.

    The budget is per outage, not per call: it starts at the first failure that no success has
    followed, on any thread, and is spent when `retry_for` seconds have passed since then by
    `clock`. A call gives up once it is spent (its last attempt starts by the deadline, so a
    server that is down is given up on `retry_for` seconds after the first failed attempt began,
    plus at most one attempt's connection timeout); a call made during an outage whose budget is
    spent tries once. So a refused connection (instant) and a timed-out one (slow) are waited for
    equally long, and a run that gave up does not wait again for each clean-up request. Any
    success ends the outage. Between attempts it sleeps a random time in [c/2, c], c = min(
    `max_delay`, `base_delay` * 2**n) ("equal jitter"; never past the deadline), so clients that
    failed together do not retry together.

    `Busy` (a server that answered 503 or 429 with Retry-After) is no failure: it waits the time
    asked, stretched by up to half at random, and tries again, until it has waited
    `busy_patience` seconds in all for that call (15 minutes, as restic's backends wait). A
    server under load turns clients away by design; giving up after a few quick retries would turn
    its back-pressure into failed backups. A server of a pair that is not the primary
    (`ServerNotPrimary`, design 19.4) is waited for `retry_for` seconds instead: a takeover, not
    load. Other errors pass through at once. Deviations that
    retries make necessary:

    - ``remove`` answered NotFound on a retry counts as done: the failed attempt may have removed
      the object before its answer was lost.
    - ``list`` restarts the listing on a retry and skips what it already yielded.
    """

    def __init__(
        self,
        inner: Backend,
        retry_for: float = DEFAULT_RETRY_FOR,
        base_delay: float = 0.5,
        max_delay: float = 10.0,
        busy_patience: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = SYSTEM_CLOCK.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if retry_for < 0:
            raise ValueError("retry_for must not be negative")
        self._inner = inner
        self._retry_for = retry_for
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._busy_patience = busy_patience
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 (jitter, not secrets)
        self._outage_since: float | None = None
        self._outage_lock = threading.Lock()

    @property
    def capabilities(self) -> Capabilities:
        return self._inner.capabilities

    def location(self) -> str:
        return self._inner.location()

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        # A save that failed after storing the bytes is repeated with the same bytes: idempotent.
        self._retry(lambda: self._inner.save(handle, data))

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        return self._retry(lambda: self._inner.load(handle, offset, length))

    def stat(self, handle: Handle) -> ObjectInfo:
        return self._retry(lambda: self._inner.stat(handle))

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        seen: set[Handle] = set()
        attempt, waited = 0, 0.0
        while True:
            tried_at = self._clock()
            try:
                for info in self._inner.list(kind):
                    if info.handle not in seen:
                        seen.add(info.handle)
                        yield info
                self._recovered()
                return
            except Busy as exc:
                waited = self._wait_busy(exc, waited)
            except TransientBackendError as exc:
                if not self._pause(attempt, tried_at):
                    raise self._given_up(exc) from exc
                attempt += 1

    def remove(self, handle: Handle) -> None:
        first = True

        def attempt() -> None:
            nonlocal first
            retried, first = not first, False
            try:
                self._inner.remove(handle)
            except NotFound:
                if not retried:
                    raise

        self._retry(attempt)

    def exists(self, handle: Handle) -> bool:
        return self._retry(lambda: self._inner.exists(handle))

    def query_chunks(self, ids: Sequence[bytes]) -> dict[bytes, ChunkAnswer]:
        """The wrapped backend's chunk query (capabilities.chunk_query says whether it has one)."""
        return self._retry(lambda: forward_chunk_query(self._inner, ids))

    def close(self) -> None:
        self._inner.close()

    def _retry(self, operation: Callable[[], T]) -> T:
        attempt, waited = 0, 0.0
        while True:
            tried_at = self._clock()
            try:
                result = operation()
            except Busy as exc:
                waited = self._wait_busy(exc, waited)
            except TransientBackendError as exc:
                if not self._pause(attempt, tried_at):
                    raise self._given_up(exc) from exc
                attempt += 1
            else:
                self._recovered()
                return result

    def _pause(self, attempt: int, tried_at: float) -> bool:
        """Sleep before attempt number `attempt + 1` (counting from 0); False, without sleeping,
        once the outage's budget is spent. An outage starts when its first failed attempt did
        (a timed-out attempt's wait counts)."""
        with self._outage_lock:
            now = self._clock()
            if self._outage_since is None:
                self._outage_since = tried_at
            left = self._outage_since + self._retry_for - now
        if left <= 0:
            return False
        ceiling = min(self._max_delay, self._base_delay * 2**attempt)
        self._sleep(min(left, self._rng.uniform(ceiling / 2, ceiling)))
        return True

    def _given_up(self, failure: TransientBackendError) -> TransientBackendError:
        """`failure` again, saying for how long it was retried (and how to wait longer)."""
        return type(failure)(
            f"{failure} (retried for {self._retry_for:g} s; --retry-for or CAIRN_RETRY_FOR "
            "sets how long)"
        )

    def _recovered(self) -> None:
        """The storage answered: an outage is over, and the next one has a whole budget."""
        if self._outage_since is not None:
            with self._outage_lock:
                self._outage_since = None

    def _wait_busy(self, busy: Busy, waited: float) -> float:
        """Sleep as the busy storage asked; the seconds waited so far for this call, or `busy`
        raised again once the patience is spent. (A busy answer is an answer: no outage.)"""
        self._recovered()
        delay = max(busy.retry_after, self._base_delay) * self._rng.uniform(1.0, 1.5)
        # A pair with no primary (design 19.4) is an outage, not back-pressure: --retry-for's
        # patience applies, not the quarter hour a loaded server is given.
        patience = self._retry_for if isinstance(busy, ServerNotPrimary) else self._busy_patience
        if waited + delay > patience:
            raise busy
        self._sleep(delay)
        return waited + delay
