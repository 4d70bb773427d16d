"""RetryingBackend passes the suite, retries transient errors with backoff, and nothing else."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from cairn.backends.base import Backend, Handle, ObjectInfo, ObjectKind
from cairn.backends.errors import (
    BackendError,
    Busy,
    ListingIncomplete,
    NotFound,
    ServerUnreachable,
    StorageFull,
    TransientBackendError,
)
from cairn.backends.memory import MemoryBackend
from cairn.backends.testing.conformance import BackendConformance, handle_for
from cairn.backends.wrappers.faulty import FaultyBackend
from cairn.backends.wrappers.retrying import RetryingBackend


class TestRetryingBackend(BackendConformance):
    @pytest.fixture
    def backend(self) -> Backend:
        return RetryingBackend(MemoryBackend(), sleep=lambda _: None)


class _Sleeps:
    """The injected sleep and clock: sleeping moves the clock, so no test waits or measures."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 1000.0

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.now += delay

    def clock(self) -> float:
        return self.now


def _stack(retry_for: float = 60.0) -> tuple[RetryingBackend, FaultyBackend, _Sleeps]:
    faulty = FaultyBackend(MemoryBackend())
    sleeps = _Sleeps()
    retrying = RetryingBackend(
        faulty, retry_for, sleep=sleeps, clock=sleeps.clock, rng=random.Random(7)
    )
    return retrying, faulty, sleeps


def test_a_busy_storage_is_waited_for_as_asked_without_using_up_attempts() -> None:
    backend, faulty, sleeps = _stack(retry_for=0)
    handle = handle_for(ObjectKind.PACK, b"data")
    faulty.fail("save", Busy("503: the server is busy", retry_after=2.0), times=30)
    backend.save(handle, b"data")
    assert faulty.calls["save"] == 31, "30 busy answers, then stored: no retry budget was used"
    assert len(sleeps.delays) == 30
    assert all(2.0 <= delay <= 3.0 for delay in sleeps.delays), "as asked, spread by up to half"
    assert len(set(sleeps.delays)) > 1, "clients turned away together do not return together"


def test_a_busy_storage_is_waited_for_until_the_patience_is_spent() -> None:
    faulty = FaultyBackend(MemoryBackend())
    sleeps = _Sleeps()
    backend = RetryingBackend(faulty, busy_patience=60.0, sleep=sleeps, rng=random.Random(7))
    faulty.fail("load", Busy("503", retry_after=10.0), times=1000)
    with pytest.raises(Busy):
        backend.load(handle_for(ObjectKind.PACK, b"x"))
    assert 40.0 <= sum(sleeps.delays) <= 60.0
    assert faulty.calls["load"] == len(sleeps.delays) + 1


def test_a_busy_listing_is_waited_for_and_yields_no_object_twice() -> None:
    backend, faulty, sleeps = _stack(retry_for=0)
    faulty.save(handle_for(ObjectKind.PACK, b"p"), b"p")
    faulty.fail("list", Busy("503", retry_after=1.0), times=3)
    assert len(list(backend.list(ObjectKind.PACK))) == 1
    assert len(sleeps.delays) == 3


def test_transient_errors_are_retried_with_bounded_jittered_backoff() -> None:
    backend, faulty, sleeps = _stack()
    handle = handle_for(ObjectKind.PACK, b"data")
    faulty.fail("save", TransientBackendError("reset"), times=4)
    backend.save(handle, b"data")
    assert faulty.calls["save"] == 5
    assert len(sleeps.delays) == 4
    for attempt, delay in enumerate(sleeps.delays):
        ceiling = min(10.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_a_server_that_stays_away_is_given_up_on_when_the_budget_is_spent() -> None:
    backend, faulty, sleeps = _stack(retry_for=60.0)
    faulty.fail("load", ServerUnreachable("connection refused"), times=10_000)
    started = sleeps.now
    with pytest.raises(ServerUnreachable):
        backend.load(handle_for(ObjectKind.PACK, b"x"))
    assert sleeps.now - started == pytest.approx(60.0), "no sooner and no later than the budget"
    assert faulty.calls["load"] == len(sleeps.delays) + 1, "one attempt at the deadline"
    assert max(sleeps.delays) <= 10.0


def test_slow_failures_are_given_up_on_after_the_same_budget() -> None:
    """A connection that times out spends the budget as a refused one does (one attempt more,
    at the most, runs past it)."""
    sleeps = _Sleeps()

    class TimingOut(FaultyBackend):
        def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
            self.calls["load"] += 1
            sleeps.now += 10.0  # the connect timeout
            raise ServerUnreachable("timed out")

    timing_out = TimingOut(MemoryBackend())
    backend = RetryingBackend(timing_out, 60.0, sleep=sleeps, clock=sleeps.clock)
    started = sleeps.now
    with pytest.raises(ServerUnreachable):
        backend.load(handle_for(ObjectKind.PACK, b"x"))
    assert 60.0 <= sleeps.now - started <= 60.0 + 10.0
    assert timing_out.calls["load"] == len(sleeps.delays) + 1


def test_after_giving_up_each_call_of_the_same_outage_tries_once() -> None:
    """The run's clean-up (its last index, its lock) does not wait a whole budget again."""
    backend, faulty, sleeps = _stack(retry_for=30.0)
    faulty.fail("save", ServerUnreachable("refused"), times=10_000)
    with pytest.raises(ServerUnreachable):
        backend.save(handle_for(ObjectKind.PACK, b"a"), b"a")
    calls, waited = faulty.calls["save"], len(sleeps.delays)
    with pytest.raises(ServerUnreachable):
        backend.save(handle_for(ObjectKind.INDEX, b"i"), b"i")
    assert faulty.calls["save"] == calls + 1 and len(sleeps.delays) == waited


def test_an_answer_ends_the_outage_and_the_next_one_has_a_whole_budget() -> None:
    backend, faulty, sleeps = _stack(retry_for=30.0)
    faulty.fail("save", ServerUnreachable("refused"), times=3)
    backend.save(handle_for(ObjectKind.PACK, b"a"), b"a")
    sleeps.now += 3600  # much later, the server goes away again
    faulty.fail("save", ServerUnreachable("refused"), times=10_000)
    started = sleeps.now
    with pytest.raises(ServerUnreachable):
        backend.save(handle_for(ObjectKind.PACK, b"b"), b"b")
    assert sleeps.now - started == pytest.approx(30.0)


def test_no_budget_means_one_attempt() -> None:
    backend, faulty, sleeps = _stack(retry_for=0)
    faulty.fail("stat", TransientBackendError("timeout"), times=10)
    with pytest.raises(TransientBackendError):
        backend.stat(handle_for(ObjectKind.PACK, b"x"))
    assert faulty.calls["stat"] == 1 and sleeps.delays == []


@pytest.mark.parametrize("error", [StorageFull("full"), NotFound("gone"), BackendError("io")])
def test_other_errors_are_not_retried(error: BackendError) -> None:
    backend, faulty, sleeps = _stack()
    faulty.fail("stat", error)
    with pytest.raises(type(error)):
        backend.stat(handle_for(ObjectKind.PACK, b"x"))
    assert faulty.calls["stat"] == 1
    assert sleeps.delays == []


def test_a_retried_listing_yields_no_object_twice() -> None:
    backend, faulty, _ = _stack()
    handles: set[Handle] = set()
    for i in range(6):
        data = f"pack {i}".encode()
        faulty.save(handle_for(ObjectKind.PACK, data), data)
        handles.add(handle_for(ObjectKind.PACK, data))
    faulty.fail("list", TransientBackendError("reset"))
    listed = [info.handle for info in backend.list(ObjectKind.PACK)]
    assert sorted(listed, key=str) == sorted(handles, key=str)


def test_a_listing_interrupted_mid_way_resumes_without_duplicates() -> None:
    inner = MemoryBackend()
    for i in range(6):
        data = f"pack {i}".encode()
        inner.save(handle_for(ObjectKind.PACK, data), data)

    class FlakyLister(FaultyBackend):
        failed = False

        def list(self, kind: ObjectKind) -> Iterator[ObjectInfo]:
            for count, info in enumerate(super().list(kind)):
                if count == 3 and not self.failed:
                    self.failed = True
                    raise TransientBackendError("connection reset mid-listing")
                yield info

    backend = RetryingBackend(FlakyLister(inner), sleep=lambda _: None)
    listed = [info.handle for info in backend.list(ObjectKind.PACK)]
    assert len(listed) == len(set(listed)) == 6


def test_incomplete_listings_are_not_retried() -> None:
    backend, faulty, sleeps = _stack()
    faulty.fail("list", ListingIncomplete("cut"))
    with pytest.raises(ListingIncomplete):
        list(backend.list(ObjectKind.PACK))
    assert sleeps.delays == []


def test_a_remove_that_succeeded_before_its_answer_was_lost_counts_as_done() -> None:
    inner = MemoryBackend()
    handle = handle_for(ObjectKind.LOCK, b"lock")
    inner.save(handle, b"lock")

    class LostAnswer(FaultyBackend):
        def remove(self, handle: Handle) -> None:
            first = self.calls["remove"] == 0
            super().remove(handle)
            if first:
                raise TransientBackendError("answer lost")

    backend = RetryingBackend(LostAnswer(inner), sleep=lambda _: None)
    backend.remove(handle)
    assert not inner.exists(handle)
    with pytest.raises(NotFound):
        backend.remove(handle)
