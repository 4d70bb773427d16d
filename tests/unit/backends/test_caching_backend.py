"""CachingBackend: hits, misses, damaged entries healed, and copies of removed objects dropped."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter
from pathlib import Path

import blake3
import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import ListingIncomplete, NotFound
from cairn.backends.memory import MemoryBackend
from cairn.backends.testing.conformance import handle_for
from cairn.backends.wrappers.caching import CACHED_KINDS, CacheFolder, CachingBackend
from cairn.backends.wrappers.faulty import FaultyBackend


def hashes_to_name(handle: Handle, data: bytes) -> bool:
    return blake3.blake3(data).hexdigest() == handle.name


def stack(tmp_path: Path) -> tuple[CachingBackend, FaultyBackend, CacheFolder]:
    storage = FaultyBackend(MemoryBackend())
    folder = CacheFolder(tmp_path / "cache")
    return CachingBackend(storage, folder, hashes_to_name), storage, folder


def stored(storage: FaultyBackend, kind: ObjectKind, data: bytes) -> Handle:
    handle = handle_for(kind, data)
    storage.save(handle, data)
    return handle


@pytest.mark.parametrize("kind", sorted(CACHED_KINDS, key=attrgetter("value")))
def test_a_second_load_is_served_from_the_folder(tmp_path: Path, kind: ObjectKind) -> None:
    cache, storage, folder = stack(tmp_path)
    handle = stored(storage, kind, b"an immutable object")
    assert cache.load(handle) == b"an immutable object"
    assert cache.load(handle) == b"an immutable object"
    assert storage.calls["load"] == 1
    assert (cache.hits, cache.misses) == (1, 1)
    assert folder.path(handle).read_bytes() == b"an immutable object"


@pytest.mark.parametrize("kind", [ObjectKind.PACK, ObjectKind.LOCK, ObjectKind.CONFIG])
def test_packs_locks_and_config_are_never_cached(tmp_path: Path, kind: ObjectKind) -> None:
    cache, storage, _folder = stack(tmp_path)
    handle = Handle(kind, "config") if kind is ObjectKind.CONFIG else handle_for(kind, b"x")
    storage.save(handle, b"x")
    cache.load(handle)
    cache.load(handle)
    assert storage.calls["load"] == 2
    assert not (tmp_path / "cache").exists()


def test_a_damaged_entry_is_dropped_and_fetched_again(tmp_path: Path) -> None:
    cache, storage, folder = stack(tmp_path)
    handle = stored(storage, ObjectKind.INDEX, b"index bytes")
    cache.load(handle)
    folder.path(handle).write_bytes(b"index bytez")  # a bit flip on the local disk
    assert cache.load(handle) == b"index bytes"
    assert storage.calls["load"] == 2
    assert folder.path(handle).read_bytes() == b"index bytes", "healed"


def test_a_truncated_or_empty_entry_is_a_miss(tmp_path: Path) -> None:
    cache, storage, folder = stack(tmp_path)
    handle = stored(storage, ObjectKind.SNAPSHOT, b"snapshot bytes")
    cache.load(handle)
    folder.path(handle).write_bytes(b"")
    assert cache.load(handle) == b"snapshot bytes"
    assert storage.calls["load"] == 2


def test_bytes_that_do_not_match_their_name_are_returned_but_not_kept(tmp_path: Path) -> None:
    """A lying storage is the repository layer's to report; its bytes never enter the cache."""
    cache, storage, folder = stack(tmp_path)
    handle = handle_for(ObjectKind.SNAPSHOT, b"the real snapshot")
    storage.save(handle, b"a forged snapshot")
    assert cache.load(handle) == b"a forged snapshot"
    assert not folder.path(handle).exists()


def test_a_save_is_written_through_so_it_is_never_fetched_back(tmp_path: Path) -> None:
    cache, storage, _folder = stack(tmp_path)
    handle = handle_for(ObjectKind.INDEX, b"new index")
    cache.save(handle, memoryview(b"new index"))
    assert cache.load(handle) == b"new index"
    assert storage.calls["load"] == 0


def test_a_failed_save_leaves_no_copy(tmp_path: Path) -> None:
    cache, storage, folder = stack(tmp_path)
    handle = handle_for(ObjectKind.INDEX, b"new index")
    storage.fail("save", NotFound("refused"))
    with pytest.raises(NotFound):
        cache.save(handle, b"new index")
    assert not folder.path(handle).exists()


def test_remove_drops_the_copy(tmp_path: Path) -> None:
    cache, storage, folder = stack(tmp_path)
    handle = stored(storage, ObjectKind.SNAPSHOT, b"forgotten")
    cache.load(handle)
    cache.remove(handle)
    assert not folder.path(handle).exists()
    with pytest.raises(NotFound):
        cache.load(handle)


def test_a_complete_listing_drops_copies_of_objects_storage_no_longer_lists(
    tmp_path: Path,
) -> None:
    cache, storage, folder = stack(tmp_path)
    kept = stored(storage, ObjectKind.INDEX, b"kept")
    gone = stored(storage, ObjectKind.INDEX, b"superseded")
    cache.load(kept)
    cache.load(gone)
    storage.remove(gone)  # by a prune elsewhere, or the server's GC
    assert [i.handle for i in cache.list(ObjectKind.INDEX)] == [kept]
    assert folder.path(kept).exists()
    assert not folder.path(gone).exists()


def test_an_incomplete_or_abandoned_listing_drops_nothing(tmp_path: Path) -> None:
    cache, storage, folder = stack(tmp_path)
    handles = [stored(storage, ObjectKind.SNAPSHOT, f"snap {i}".encode()) for i in range(4)]
    for handle in handles:
        cache.load(handle)
    storage.truncate_listing(ObjectKind.SNAPSHOT, keep=1)
    with pytest.raises(ListingIncomplete):
        list(cache.list(ObjectKind.SNAPSHOT))
    next(iter(cache.list(ObjectKind.SNAPSHOT)))  # a caller that only wanted to know "any?"
    assert all(folder.path(h).exists() for h in handles)


def test_range_loads_of_a_cached_object_are_served_from_the_copy(tmp_path: Path) -> None:
    cache, storage, _folder = stack(tmp_path)
    handle = stored(storage, ObjectKind.REFLIST, b"0123456789")
    assert cache.load(handle, 2, 3) == b"234"
    assert cache.load(handle, 7) == b"789"
    assert storage.calls["load"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_costs_only_time(tmp_path: Path) -> None:
    cache, storage, _folder = stack(tmp_path)
    (tmp_path / "cache").mkdir(mode=0o500)
    handle = stored(storage, ObjectKind.KEY, b"key object")
    assert cache.load(handle) == b"key object"
    assert cache.load(handle) == b"key object"
    assert storage.calls["load"] == 2


def test_a_folder_in_the_way_costs_only_time(tmp_path: Path) -> None:
    """Works as root too: the cache root is a file, so nothing can be written under it."""
    storage = FaultyBackend(MemoryBackend())
    (tmp_path / "file").write_bytes(b"not a folder")
    cache = CachingBackend(storage, CacheFolder(tmp_path / "file"), hashes_to_name)
    handle = stored(storage, ObjectKind.KEY, b"key object")
    assert cache.load(handle) == b"key object"
    assert cache.load(handle) == b"key object"
    assert storage.calls["load"] == 2
    assert [i.handle for i in cache.list(ObjectKind.KEY)] == [handle]


def test_no_temporary_files_are_left_and_entries_are_private(tmp_path: Path) -> None:
    cache, storage, _folder = stack(tmp_path)
    for i in range(5):
        cache.load(stored(storage, ObjectKind.INDEX, f"index {i}".encode()))
    files = os.listdir(tmp_path / "cache" / "index")
    assert len(files) == 5 and not any(f.startswith(".") for f in files)
    assert all(os.stat(tmp_path / "cache" / "index" / f).st_mode & 0o077 == 0 for f in files)
    assert os.stat(tmp_path / "cache" / "index").st_mode & 0o077 == 0


def test_concurrent_readers_and_a_vandal_never_see_wrong_bytes(tmp_path: Path) -> None:
    """Threads (as several processes would) share one folder while entries are deleted and
    damaged under them: every load returns the object's bytes, none raises."""
    storage = MemoryBackend()
    objects = {handle_for(ObjectKind.INDEX, b"index %d" % i): b"index %d" % i for i in range(20)}
    for handle, data in objects.items():
        storage.save(handle, data)
    readers = [
        CachingBackend(storage, CacheFolder(tmp_path / "cache"), hashes_to_name) for _ in range(4)
    ]
    stop = threading.Event()

    def vandal() -> None:
        folder = CacheFolder(tmp_path / "cache")
        while not stop.is_set():
            for n, handle in enumerate(objects):
                if n % 2:
                    folder.drop(handle)
                else:
                    with contextlib.suppress(OSError):
                        folder.path(handle).write_bytes(b"garbage")

    def read(cache: CachingBackend) -> list[bool]:
        return [cache.load(h) == d for _ in range(30) for h, d in objects.items()]

    spoiler = threading.Thread(target=vandal)
    spoiler.start()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = [ok for oks in pool.map(read, readers) for ok in oks]
    finally:
        stop.set()
        spoiler.join()
    assert len(results) == 4 * 30 * 20 and all(results)
