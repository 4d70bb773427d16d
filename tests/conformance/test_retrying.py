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
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def _stack(attempts: int = 5) -> tuple[RetryingBackend, FaultyBackend, _Sleeps]:
    faulty = FaultyBackend(MemoryBackend())
    sleeps = _Sleeps()
    retrying = RetryingBackend(faulty, attempts=attempts, sleep=sleeps, rng=random.Random(7))
    return retrying, faulty, sleeps


def test_a_busy_storage_is_waited_for_as_asked_without_using_up_attempts() -> None:
    backend, faulty, sleeps = _stack(attempts=2)
    handle = handle_for(ObjectKind.PACK, b"data")
    faulty.fail("save", Busy("503: the server is busy", retry_after=2.0), times=30)
    backend.save(handle, b"data")
    assert faulty.calls["save"] == 31, "30 busy answers, then stored: no attempt was used up"
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
    backend, faulty, sleeps = _stack(attempts=1)
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
        assert 0 <= delay <= min(5.0, 0.1 * 2**attempt)


def test_the_last_transient_error_is_raised_after_all_attempts() -> None:
    backend, faulty, sleeps = _stack(attempts=3)
    faulty.fail("load", TransientBackendError("timeout"), times=10)
    with pytest.raises(TransientBackendError):
        backend.load(handle_for(ObjectKind.PACK, b"x"))
    assert faulty.calls["load"] == 3
    assert len(sleeps.delays) == 2


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
