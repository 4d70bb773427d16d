"""RateLimitedBackend passes the suite; its token bucket asks to sleep exactly what the rate
requires (a fake clock: no timing in the test), shared by every uploading thread."""

from __future__ import annotations

import threading

import pytest

from cairn.backends.base import Backend, ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.backends.testing.conformance import BackendConformance, handle_for
from cairn.backends.wrappers.faulty import FaultyBackend
from cairn.backends.wrappers.ratelimited import RateLimitedBackend, TokenBucket


class FakeTime:
    """A monotonic clock that moves only when slept on (or told to)."""

    def __init__(self, advance_on_sleep: bool = True) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self._advance = advance_on_sleep
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if self._advance:
                self.now += seconds


def bucket(rate: int, time: FakeTime, burst: int | None = None) -> TokenBucket:
    return TokenBucket(rate, burst, monotonic=time.monotonic, sleep=time.sleep)


class TestRateLimitedBackend(BackendConformance):
    @pytest.fixture
    def backend(self) -> Backend:
        return RateLimitedBackend(MemoryBackend(), bucket(1 << 30, FakeTime()))


def test_the_burst_goes_at_once_then_each_byte_waits_its_turn() -> None:
    time = FakeTime()
    limit = bucket(1000, time)
    assert limit.take(1000) == 0.0, "a full bucket pays one second's worth at once"
    assert limit.take(500) == pytest.approx(0.5)
    assert limit.take(3000) == pytest.approx(3.0), "larger than the burst: waits its full time"
    assert sum(time.sleeps) == pytest.approx(3.5)
    assert (4500 - 1000) / (time.now - 100.0) == pytest.approx(1000), "the rate, after the burst"


def test_time_spent_elsewhere_refills_the_bucket_but_never_beyond_the_burst() -> None:
    time = FakeTime()
    limit = bucket(1000, time, burst=2000)
    limit.take(2000)
    time.now += 1.5  # the backup was reading files meanwhile
    assert limit.take(1500) == 0.0
    time.now += 3600
    assert limit.take(2000) == 0.0, "an idle hour refills up to the burst only"
    assert limit.take(1000) == pytest.approx(1.0)


def test_many_uploading_threads_share_one_budget() -> None:
    time = FakeTime(advance_on_sleep=False)  # every thread asks at the same instant
    limit = bucket(1000, time)
    threads = [
        threading.Thread(target=lambda: [limit.take(1000) for _ in range(5)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 20 takes of one second's worth against one bucket: the first is the burst, then each
    # waits behind the debt of all the others, whichever thread it came from.
    assert sorted(time.sleeps) == pytest.approx([float(n) for n in range(1, 20)])


def test_only_saves_pay_and_they_pay_their_size() -> None:
    time = FakeTime()
    inner = FaultyBackend(MemoryBackend())
    backend = RateLimitedBackend(inner, bucket(100, time, burst=1))
    data = b"x" * 250
    handle = handle_for(ObjectKind.PACK, data)
    backend.save(handle, data)
    assert time.sleeps == [pytest.approx(2.49)], "250 bytes at 100 B/s, after a 1-byte burst"
    backend.load(handle)
    backend.stat(handle)
    list(backend.list(ObjectKind.PACK))
    backend.exists(handle)
    backend.remove(handle)
    assert len(time.sleeps) == 1
    assert inner.calls["save"] == 1 and inner.calls["load"] == 1


def test_a_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)
