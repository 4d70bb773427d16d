"""The conformance suite: one test per obligation of the Backend protocol.

Subclass ``BackendConformance`` in a class whose name starts with ``Test`` and provide a pytest
fixture method ``backend`` that returns (or yields) a fresh, empty backend::

    class TestMemoryBackend(BackendConformance):
        @pytest.fixture
        def backend(self) -> Backend:
            return MemoryBackend()
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import blake3
import pytest

from cairn.backends.base import Backend, Handle, ObjectInfo, ObjectKind
from cairn.backends.errors import AlreadyExists, BackendError, NotFound

CONFIG = Handle(ObjectKind.CONFIG, "config")
OBJECT_KINDS = tuple(kind for kind in ObjectKind if kind is not ObjectKind.CONFIG)
INVALID_NAMES = (
    "../x",
    "../" + "a" * 61,
    "/etc/passwd",
    "config",
    "A" * 64,
    "a" * 63,
    "a" * 65,
    "g" * 64,
    "",
    "aa/" + "a" * 61,
    "\x00" + "a" * 63,
)

INVALID_HANDLES = [
    Handle(kind, name)
    for kind in (ObjectKind.PACK, ObjectKind.KEY, ObjectKind.CONFIG)
    for name in INVALID_NAMES
    if not (kind is ObjectKind.CONFIG and name == "config")
]


def object_name(data: bytes) -> str:
    """The name the repository gives `data`: its BLAKE3-256 in hex. Backends that store anything
    under any valid name do not care; the server checks that bytes hash to their name."""
    return blake3.blake3(data).hexdigest()


def handle_for(kind: ObjectKind, data: bytes) -> Handle:
    """The handle `data` would be saved under as an object of `kind`."""
    return CONFIG if kind is ObjectKind.CONFIG else Handle(kind, object_name(data))


def listed(backend: Backend, kind: ObjectKind) -> Counter[Handle]:
    """How often each handle appears in one listing of `kind`."""
    return Counter(info.handle for info in backend.list(kind))


class BackendConformance:
    """Every backend and wrapper passes these tests; a subclass supplies the `backend` fixture."""

    @pytest.fixture
    def backend(self) -> Backend:
        """A fresh, empty backend; subclasses must override this fixture."""
        raise NotImplementedError("subclasses provide the backend fixture")

    @pytest.mark.parametrize("kind", list(ObjectKind))
    def test_save_then_load_round_trips(self, backend: Backend, kind: ObjectKind) -> None:
        data = f"contents of a {kind.value} object".encode()
        handle = handle_for(kind, data)
        backend.save(handle, data)
        assert backend.load(handle) == data

    def test_range_loads_return_exactly_the_range(self, backend: Backend) -> None:
        data = bytes(range(256)) * 4
        handle = handle_for(ObjectKind.PACK, data)
        backend.save(handle, data)
        assert backend.load(handle, 10, 20) == data[10:30]
        assert backend.load(handle, 1000) == data[1000:]
        assert backend.load(handle, 0, len(data)) == data
        assert backend.load(handle, len(data) - 1, 1) == data[-1:]

    def test_range_at_the_end_and_of_length_zero_are_empty(self, backend: Backend) -> None:
        data = b"0123456789"
        handle = handle_for(ObjectKind.PACK, data)
        backend.save(handle, data)
        assert backend.load(handle, len(data)) == b""
        assert backend.load(handle, len(data), 0) == b""
        assert backend.load(handle, 3, 0) == b""

    @pytest.mark.parametrize(("offset", "length"), [(5, 6), (11, None), (11, 0), (-1, 2), (0, -1)])
    def test_ranges_beyond_the_object_raise(
        self, backend: Backend, offset: int, length: int | None
    ) -> None:
        data = b"0123456789"
        handle = handle_for(ObjectKind.PACK, data)
        backend.save(handle, data)
        with pytest.raises(BackendError):
            backend.load(handle, offset, length)

    @pytest.mark.parametrize("kind", list(ObjectKind))
    def test_missing_objects_raise_not_found(self, backend: Backend, kind: ObjectKind) -> None:
        handle = handle_for(kind, b"never saved")
        with pytest.raises(NotFound):
            backend.load(handle)
        with pytest.raises(NotFound):
            backend.load(handle, 0, 1)
        with pytest.raises(NotFound):
            backend.stat(handle)
        assert not backend.exists(handle)

    def test_saving_identical_bytes_again_succeeds(self, backend: Backend) -> None:
        data = b"identical"
        handle = handle_for(ObjectKind.INDEX, data)
        backend.save(handle, data)
        backend.save(handle, bytes(data))
        backend.save(handle, memoryview(data))
        assert backend.load(handle) == data
        assert listed(backend, ObjectKind.INDEX) == {handle: 1}

    @pytest.mark.parametrize("other", [b"different", b"", b"identical plus more"])
    def test_saving_different_bytes_raises_already_exists(
        self, backend: Backend, other: bytes
    ) -> None:
        data = b"identical"
        handle = handle_for(ObjectKind.SNAPSHOT, data)
        backend.save(handle, data)
        with pytest.raises(AlreadyExists):
            backend.save(handle, other)
        assert backend.load(handle) == data

    def test_config_is_written_once(self, backend: Backend) -> None:
        backend.save(CONFIG, b"first")
        with pytest.raises(AlreadyExists):
            backend.save(CONFIG, b"second")
        assert backend.load(CONFIG) == b"first"

    def test_list_yields_every_object_exactly_once(self, backend: Backend) -> None:
        saved = {kind: set[Handle]() for kind in ObjectKind}
        for i in range(40):
            handle = handle_for(OBJECT_KINDS[i % len(OBJECT_KINDS)], f"object {i}".encode())
            backend.save(handle, f"object {i}".encode())
            saved[handle.kind].add(handle)
        backend.save(CONFIG, b"config")
        saved[ObjectKind.CONFIG].add(CONFIG)
        for kind in ObjectKind:
            assert listed(backend, kind) == dict.fromkeys(saved[kind], 1)

    def test_list_reports_sizes(self, backend: Backend) -> None:
        blobs = [b"", b"x", b"y" * 1000]
        for data in blobs:
            backend.save(handle_for(ObjectKind.PACK, data), data)
        expected = {ObjectInfo(handle_for(ObjectKind.PACK, d), len(d)) for d in blobs}
        assert set(backend.list(ObjectKind.PACK)) == expected

    def test_kinds_are_stored_apart(self, backend: Backend) -> None:
        data = b"one name, two kinds"
        key, index = handle_for(ObjectKind.KEY, data), handle_for(ObjectKind.INDEX, data)
        backend.save(key, data)
        backend.save(index, data)
        assert not backend.exists(Handle(ObjectKind.PACK, key.name))
        assert listed(backend, ObjectKind.KEY) == {key: 1}
        assert listed(backend, ObjectKind.PACK) == {}
        backend.remove(key)
        assert backend.load(index) == data
        assert not backend.exists(key)

    @pytest.mark.parametrize("kind", list(ObjectKind))
    def test_an_empty_backend_lists_nothing(self, backend: Backend, kind: ObjectKind) -> None:
        assert list(backend.list(kind)) == []

    def test_list_never_yields_temporary_or_partial_objects(self, backend: Backend) -> None:
        payloads = [os.urandom(64 * 1024) for _ in range(24)]
        expected = {handle_for(ObjectKind.PACK, d): len(d) for d in payloads}
        done = threading.Event()

        def save_all() -> None:
            try:
                for data in payloads:
                    backend.save(handle_for(ObjectKind.PACK, data), data)
            finally:
                done.set()

        saver = threading.Thread(target=save_all)
        saver.start()
        while not done.is_set():
            for info in backend.list(ObjectKind.PACK):
                assert expected.get(info.handle) == info.size
        saver.join()
        assert listed(backend, ObjectKind.PACK) == dict.fromkeys(expected, 1)

    def test_stat_reports_the_size(self, backend: Backend) -> None:
        for size in (0, 1, 4097):
            data = os.urandom(size)
            handle = handle_for(ObjectKind.REFLIST, data)
            backend.save(handle, data)
            assert backend.stat(handle) == ObjectInfo(handle, size)

    def test_remove_then_the_object_is_gone(self, backend: Backend) -> None:
        data = b"short-lived"
        handle = handle_for(ObjectKind.LOCK, data)
        backend.save(handle, data)
        backend.remove(handle)
        assert not backend.exists(handle)
        with pytest.raises(NotFound):
            backend.load(handle)
        with pytest.raises(NotFound):
            backend.stat(handle)
        assert listed(backend, ObjectKind.LOCK) == {}

    def test_remove_of_a_missing_object_raises_not_found(self, backend: Backend) -> None:
        with pytest.raises(NotFound):
            backend.remove(handle_for(ObjectKind.LOCK, b"never saved"))
        with pytest.raises(NotFound):
            backend.remove(CONFIG)

    def test_a_removed_object_can_be_saved_again(self, backend: Backend) -> None:
        handle = handle_for(ObjectKind.LOCK, b"lock")
        backend.save(handle, b"lock")
        backend.remove(handle)
        backend.save(handle, b"lock")
        assert backend.load(handle) == b"lock"

    def test_exists(self, backend: Backend) -> None:
        handle = handle_for(ObjectKind.KEY, b"key")
        assert not backend.exists(handle)
        backend.save(handle, b"key")
        assert backend.exists(handle)

    def test_concurrent_saves_of_one_object_all_succeed(self, backend: Backend) -> None:
        data = os.urandom(256 * 1024)
        handle = handle_for(ObjectKind.PACK, data)
        barrier = threading.Barrier(8)

        def save() -> None:
            barrier.wait()
            backend.save(handle, data)

        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(save) for _ in range(8)]:
                future.result()
        assert backend.load(handle) == data
        assert listed(backend, ObjectKind.PACK) == {handle: 1}

    def test_concurrent_saves_of_different_objects(self, backend: Backend) -> None:
        payloads = [os.urandom(1024) for _ in range(32)]
        with ThreadPoolExecutor(8) as pool:
            futures = [
                pool.submit(backend.save, handle_for(ObjectKind.INDEX, d), d) for d in payloads
            ]
            for future in futures:
                future.result()
        assert {h.name for h in listed(backend, ObjectKind.INDEX)} == {
            object_name(d) for d in payloads
        }

    def test_a_large_object_round_trips(self, backend: Backend) -> None:
        data = os.urandom(20 * 1024 * 1024)
        handle = handle_for(ObjectKind.PACK, data)
        backend.save(handle, data)
        assert backend.stat(handle).size == len(data)
        assert backend.load(handle) == data
        middle, span = len(data) // 2, 3 * 1024 * 1024
        assert backend.load(handle, middle, span) == data[middle : middle + span]

    def test_an_empty_object_round_trips(self, backend: Backend) -> None:
        handle = handle_for(ObjectKind.PACK, b"")
        backend.save(handle, b"")
        assert backend.load(handle) == b""
        assert backend.stat(handle).size == 0
        assert backend.exists(handle)

    def test_memoryview_input_is_accepted_and_copied(self, backend: Backend) -> None:
        buffer = bytearray(b"....payload....")
        view = memoryview(buffer)[4:11]
        handle = handle_for(ObjectKind.PACK, b"payload")
        backend.save(handle, view)
        buffer[4:11] = b"changed"
        assert backend.load(handle) == b"payload"

    @pytest.mark.parametrize("handle", INVALID_HANDLES, ids=str)
    def test_invalid_names_are_rejected(self, backend: Backend, handle: Handle) -> None:
        with pytest.raises(BackendError):
            backend.save(handle, b"x")
        with pytest.raises(BackendError):
            backend.load(handle)
        with pytest.raises(BackendError):
            backend.stat(handle)
        with pytest.raises(BackendError):
            backend.exists(handle)
        with pytest.raises(BackendError):
            backend.remove(handle)
        for listed_kind in ObjectKind:
            assert listed(backend, listed_kind) == {}

    def test_a_hex_name_is_not_a_config_name(self, backend: Backend) -> None:
        with pytest.raises(BackendError):
            backend.save(Handle(ObjectKind.CONFIG, object_name(b"x")), b"x")
        assert listed(backend, ObjectKind.CONFIG) == {}

    def test_location_and_capabilities_are_available(self, backend: Backend) -> None:
        assert backend.location()
        assert backend.capabilities.connections >= 1
