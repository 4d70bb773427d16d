"""Retry transient backend failures with exponential backoff and full jitter; wait as asked when
the storage says it is busy."""

from __future__ import annotations

import random
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
from cairn.backends.errors import Busy, NotFound, TransientBackendError

T = TypeVar("T")


class RetryingBackend:
    """Calls `inner` up to `attempts` times while it raises TransientBackendError.

    Between attempts it sleeps a random time in [0, min(max_delay, base_delay * 2**n)] ("full
    jitter"), so many clients that failed together do not retry together. `Busy` (a server that
    answered 503 or 429 with Retry-After) is no failed attempt: it waits the time asked, stretched
    by up to half at random, and tries again, until it has waited `busy_patience` seconds in all
    for that call (15 minutes, as restic's backends wait). A server under load turns clients away
    by design; giving up after a few quick retries would turn its back-pressure into failed
    backups. Other errors pass through at once. Deviations that retries make necessary:

    - ``remove`` answered NotFound on a retry counts as done: the failed attempt may have removed
      the object before its answer was lost.
    - ``list`` restarts the listing on a retry and skips what it already yielded.
    """

    def __init__(
        self,
        inner: Backend,
        attempts: int = 5,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        busy_patience: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._inner = inner
        self._attempts = attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._busy_patience = busy_patience
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 (jitter, not secrets)

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
            try:
                for info in self._inner.list(kind):
                    if info.handle not in seen:
                        seen.add(info.handle)
                        yield info
                return
            except Busy as exc:
                waited = self._wait_busy(exc, waited)
            except TransientBackendError:
                if self._last(attempt):
                    raise
                self._pause(attempt)
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
            try:
                return operation()
            except Busy as exc:
                waited = self._wait_busy(exc, waited)
            except TransientBackendError:
                if self._last(attempt):
                    raise
                self._pause(attempt)
                attempt += 1

    def _last(self, attempt: int) -> bool:
        return attempt + 1 >= self._attempts

    def _pause(self, attempt: int) -> None:
        """Sleep before attempt number `attempt + 1` (counting from 0)."""
        ceiling = min(self._max_delay, self._base_delay * 2**attempt)
        self._sleep(self._rng.uniform(0, ceiling))

    def _wait_busy(self, busy: Busy, waited: float) -> float:
        """Sleep as the busy storage asked; the seconds waited so far for this call, or `busy`
        raised again once the patience is spent."""
        delay = max(busy.retry_after, self._base_delay) * self._rng.uniform(1.0, 1.5)
        if waited + delay > self._busy_patience:
            raise busy
        self._sleep(delay)
        return waited + delay
