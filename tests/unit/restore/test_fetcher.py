"""Blobs reach the writer in batches: all of them, in order, each batch within its bounds."""

from __future__ import annotations

from cairn.core.ids import ChunkId
from cairn.restore.fetcher import BATCH_BLOBS, BATCH_BYTES, Lost, _batches


def test_batches_keep_every_blob_in_order_within_the_bounds() -> None:
    sizes = [300] * 200 + [BATCH_BYTES] + [10] * 3
    items: list[tuple[ChunkId, bytes | Lost]] = [
        (ChunkId(i.to_bytes(32, "big")), bytes(n)) for i, n in enumerate(sizes)
    ]
    items.insert(5, (ChunkId(bytes(32)), Lost("damaged")))
    batches = list(_batches(items))
    assert [item for batch in batches for item in batch] == items
    for batch in batches:
        assert 1 <= len(batch) <= BATCH_BLOBS
        data = [len(b) for _, b in batch if not isinstance(b, Lost)]
        assert not data or sum(data) - data[-1] < BATCH_BYTES  # only the last may pass it
