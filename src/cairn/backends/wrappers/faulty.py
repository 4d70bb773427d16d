"""A fault injector for tests: failures, short reads and incomplete or lying listings, by rule.

With no rules it behaves exactly like the backend it wraps (and passes the conformance suite).
Rules are consumed in the order they were added; each fires for a number of matching calls.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

from cairn.backends.base import Backend, Capabilities, Handle, ObjectInfo, ObjectKind
from cairn.backends.errors import ListingIncomplete

Op = Literal["save", "load", "stat", "list", "remove", "exists"]
OPS: frozenset[str] = frozenset(get_args(Op))
Predicate = Callable[[Handle], bool]


@dataclass
class _Failure:
    op: str
    error: BaseException
    times: int
    when: Predicate | None

    def matches(self, op: str, handle: Handle) -> bool:
        return self.times > 0 and op == self.op and (self.when is None or self.when(handle))


@dataclass
class _ListingCut:
    kind: ObjectKind
    keep: int
    silent: bool
    times: int


class FaultyBackend:
    """Wraps `inner` and misbehaves as its rules say; `calls` counts calls per operation.

    For ``list``, a ``when`` predicate receives a Handle of the listed kind with an empty name.
    """

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._cuts: list[_ListingCut] = []
        self._short_reads = 0
        self.calls: Counter[str] = Counter()

    def fail(
        self, op: Op, error: BaseException, times: int = 1, when: Predicate | None = None
    ) -> None:
        """Make the next `times` calls of `op` (that `when` accepts) raise `error`."""
        if op not in OPS:
            raise ValueError(f"unknown operation {op!r}; one of {sorted(OPS)}")
        with self._lock:
            self._failures.append(_Failure(op, error, times, when))

    def truncate_listing(self, kind: ObjectKind, keep: int, times: int = 1) -> None:
        """Make the next `times` listings of `kind` yield at most `keep` items, then raise
        ListingIncomplete (also when fewer objects exist)."""
        with self._lock:
            self._cuts.append(_ListingCut(kind, keep, silent=False, times=times))

    def drop_listing_silently(self, kind: ObjectKind, keep: int, times: int = 1) -> None:
        """Make the next `times` listings of `kind` stop after `keep` items, raising nothing.

        This simulates storage that lies; callers that must not trust a listing cross-check it.
        """
        with self._lock:
            self._cuts.append(_ListingCut(kind, keep, silent=True, times=times))

    def short_reads(self, times: int = 1) -> None:
        """Make the next `times` loads return only the first half of the bytes asked for."""
        with self._lock:
            self._short_reads += times

    def clear(self) -> None:
        """Drop every rule that has not fired yet."""
        with self._lock:
            self._failures.clear()
            self._cuts.clear()
            self._short_reads = 0

    @property
    def capabilities(self) -> Capabilities:
        return self._inner.capabilities

    def location(self) -> str:
        return self._inner.location()

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        self._enter("save", handle)
        self._inner.save(handle, data)

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        self._enter("load", handle)
        data = self._inner.load(handle, offset, length)
        return data[: len(data) // 2] if self._take_short_read() else data

    def stat(self, handle: Handle) -> ObjectInfo:
        self._enter("stat", handle)
        return self._inner.stat(handle)

    def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
        self._enter("list", Handle(kind, ""))
        cut = self._take_cut(kind)
        for count, info in enumerate(self._inner.list(kind)):
            if cut is not None and count >= cut.keep:
                break
            yield info
        if cut is not None and not cut.silent:
            raise ListingIncomplete(f"injected: listing of {kind.value} cut after {cut.keep}")

    def remove(self, handle: Handle) -> None:
        self._enter("remove", handle)
        self._inner.remove(handle)

    def exists(self, handle: Handle) -> bool:
        self._enter("exists", handle)
        return self._inner.exists(handle)

    def close(self) -> None:
        self._inner.close()

    def _enter(self, op: str, handle: Handle) -> None:
        """Count the call, and raise the error of the first rule that matches it."""
        with self._lock:
            self.calls[op] += 1
            failure = next((f for f in self._failures if f.matches(op, handle)), None)
            if failure is not None:
                failure.times -= 1
        if failure is not None:
            raise failure.error

    def _take_cut(self, kind: ObjectKind) -> _ListingCut | None:
        with self._lock:
            cut = next((c for c in self._cuts if c.kind is kind and c.times > 0), None)
            if cut is not None:
                cut.times -= 1
            return cut

    def _take_short_read(self) -> bool:
        with self._lock:
            if self._short_reads <= 0:
                return False
            self._short_reads -= 1
            return True
