"""FaultyBackend with no rules passes the suite; with rules it misbehaves exactly as told."""

from __future__ import annotations

import pytest

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.errors import ListingIncomplete, StorageFull, TransientBackendError
from cairn.backends.memory import MemoryBackend
from cairn.backends.testing.conformance import BackendConformance, handle_for
from cairn.backends.wrappers.faulty import FaultyBackend


class TestFaultyBackendWithoutRules(BackendConformance):
    @pytest.fixture
    def backend(self) -> Backend:
        return FaultyBackend(MemoryBackend())


def _filled(count: int) -> FaultyBackend:
    backend = FaultyBackend(MemoryBackend())
    for i in range(count):
        data = f"pack {i}".encode()
        backend.save(handle_for(ObjectKind.PACK, data), data)
    return backend


def test_fail_raises_for_the_next_matching_calls_only() -> None:
    backend = _filled(0)
    handle = handle_for(ObjectKind.PACK, b"x")
    backend.fail("save", StorageFull("injected"), times=2)
    for _ in range(2):
        with pytest.raises(StorageFull):
            backend.save(handle, b"x")
    backend.save(handle, b"x")
    assert backend.calls["save"] == 3


def test_fail_honours_the_predicate() -> None:
    backend = _filled(0)
    target = handle_for(ObjectKind.PACK, b"target")
    backend.fail("load", TransientBackendError("injected"), when=lambda h: h == target)
    backend.save(target, b"target")
    other = handle_for(ObjectKind.PACK, b"other")
    backend.save(other, b"other")
    assert backend.load(other) == b"other"
    with pytest.raises(TransientBackendError):
        backend.load(target)
    assert backend.load(target) == b"target"


def test_fail_rejects_unknown_operations() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        _filled(0).fail("upload", StorageFull("x"))  # type: ignore[arg-type]


def test_truncated_listing_raises_after_keep_items() -> None:
    backend = _filled(5)
    backend.truncate_listing(ObjectKind.PACK, keep=2)
    seen: list[Handle] = []
    with pytest.raises(ListingIncomplete):
        seen.extend(info.handle for info in backend.list(ObjectKind.PACK))
    assert len(seen) == 2
    assert len(list(backend.list(ObjectKind.PACK))) == 5


def test_silently_dropped_listing_lies_without_raising() -> None:
    backend = _filled(5)
    backend.drop_listing_silently(ObjectKind.PACK, keep=3)
    assert len(list(backend.list(ObjectKind.PACK))) == 3
    assert len(list(backend.list(ObjectKind.PACK))) == 5


def test_short_reads_truncate_loaded_bytes() -> None:
    backend = _filled(0)
    handle = handle_for(ObjectKind.PACK, b"0123456789")
    backend.save(handle, b"0123456789")
    backend.short_reads(times=1)
    assert backend.load(handle) == b"01234"
    assert backend.load(handle) == b"0123456789"


def test_clear_drops_pending_rules() -> None:
    backend = _filled(1)
    backend.fail("list", ListingIncomplete("injected"))
    backend.short_reads(3)
    backend.clear()
    assert len(list(backend.list(ObjectKind.PACK))) == 1
