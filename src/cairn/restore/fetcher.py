"""Reading the blobs a restore needs: pack by pack, in spans, in worker threads.

A restore wants each needed blob once, however many files use it. `plan_reads` groups the blobs
by pack and merges neighbours into spans, one storage read each (a full restore reads each pack
in one or two reads instead of one per blob). `fetch` loads, opens and verifies the spans in
worker threads and hands the plaintexts to the one thread that writes files, through a bounded
queue (small blobs of a span in batches): memory stays below workers x MAX_SPAN plus the queue,
whatever the snapshot's size.

Lost data is not an error here: a chunk that no index lists is handed back by `plan_reads` as
missing, and a blob whose bytes fail verification (or whose pack is gone) comes out of `fetch` as
a `Lost` in place of its plaintext, so the restore can write every file that is intact. Storage
failures (unreachable, full, refused) still stop the restore.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cairn.core.errors import FormatError, IntegrityError
from cairn.core.ids import ChunkId, ObjectName
from cairn.format.pack import BlobKind
from cairn.repository.chunkindex import Location
from cairn.repository.errors import ObjectMissing
from cairn.restore.protocols import PackReader

MAX_GAP = 256 * 1024
"""Neighbouring blobs closer than this are read together, the gap read and dropped."""
MAX_SPAN = 8 * 1024 * 1024
QUEUE_BLOBS = 8
"""Hand-offs in the queue; each is one blob, or several small ones of one span (BATCH_*)."""
BATCH_BLOBS = 64
BATCH_BYTES = 256 * 1024
"""Small blobs of a span go to the writer together, up to these: with many small files a hand-off
per blob (a lock and a thread switch each) cost the restore more than its writes, while the
queue still holds at most QUEUE_BLOBS x (BATCH_BYTES + one blob)."""


@dataclass(frozen=True, slots=True)
class SpanBlob:
    chunk_id: ChunkId
    offset: int  # from the start of the span
    length: int


@dataclass(frozen=True, slots=True)
class Span:
    """One read: `length` bytes of `pack` from `offset`, holding `blobs`."""

    pack: ObjectName
    offset: int
    length: int
    blobs: tuple[SpanBlob, ...]


@dataclass(frozen=True, slots=True)
class Lost:
    """A blob that cannot be given back, and why."""

    reason: str


def plan_reads(
    repo: PackReader, chunk_ids: Iterable[ChunkId], missing: list[ChunkId] | None = None
) -> list[Span]:
    """The reads that fetch every chunk once, packs in the order the chunks are first needed.

    A chunk in no index (or listed as a tree) is appended to `missing`; without that list it
    raises ObjectMissing (or IntegrityError) before anything is read or written.
    """
    by_pack: dict[ObjectName, dict[ChunkId, Location]] = {}
    for chunk_id in chunk_ids:
        location = repo.index.get(chunk_id)
        if location is None or location.kind is not BlobKind.DATA:
            if missing is None:
                raise _unusable(chunk_id, location)
            missing.append(chunk_id)
            continue
        by_pack.setdefault(location.pack, {})[chunk_id] = location
    spans: list[Span] = []
    for pack, blobs in by_pack.items():
        ordered = sorted(blobs.items(), key=lambda item: item[1].offset)
        group = [ordered[0]]
        for item in ordered[1:]:
            start, last = group[0][1], group[-1][1]
            end = item[1].offset + item[1].length
            if item[1].offset - (last.offset + last.length) <= MAX_GAP and (
                end - start.offset <= MAX_SPAN
            ):
                group.append(item)
            else:
                spans.append(_span(pack, group))
                group = [item]
        spans.append(_span(pack, group))
    return spans


def _unusable(chunk_id: ChunkId, location: Location | None) -> IntegrityError:
    if location is None:
        return ObjectMissing(f"chunk {chunk_id.hex()[:8]} is in no index")
    return IntegrityError(f"chunk {chunk_id.hex()[:8]} is a {location.kind.name}, not data")


def _span(pack: ObjectName, group: list[tuple[ChunkId, Location]]) -> Span:
    start = group[0][1].offset
    end = max(loc.offset + loc.length for _, loc in group)
    blobs = tuple(SpanBlob(cid, loc.offset - start, loc.length) for cid, loc in group)
    return Span(pack, start, end - start, blobs)


_DONE = object()


def fetch(
    repo: PackReader, spans: list[Span], workers: int
) -> Iterator[tuple[ChunkId, bytes | Lost]]:
    """Yield (chunk ID, verified plaintext or Lost) for every blob of `spans`, read by `workers`
    threads.

    The first other error of any worker is raised here; the other workers then stop.
    """
    jobs = iter(spans)
    jobs_lock = threading.Lock()
    out: queue.Queue[object] = queue.Queue(maxsize=QUEUE_BLOBS)
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            while not stop.is_set():
                with jobs_lock:
                    span = next(jobs, None)
                if span is None:
                    return
                for batch in _batches(_read_span(repo, span)):
                    put(batch)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)
        finally:
            put(_DONE)

    threads = [
        threading.Thread(target=work, name=f"restore-read-{i}", daemon=True)
        for i in range(max(1, min(workers, len(spans))))
    ]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            item = out.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield from item  # type: ignore[misc]
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _batches(
    items: Iterable[tuple[ChunkId, bytes | Lost]],
) -> Iterator[list[tuple[ChunkId, bytes | Lost]]]:
    """The blobs of one span in lists of up to BATCH_BLOBS blobs and about BATCH_BYTES."""
    batch: list[tuple[ChunkId, bytes | Lost]] = []
    size = 0
    for item in items:
        batch.append(item)
        size += 0 if isinstance(item[1], Lost) else len(item[1])
        if len(batch) >= BATCH_BLOBS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _read_span(repo: PackReader, span: Span) -> Iterator[tuple[ChunkId, bytes | Lost]]:
    """The blobs of one span, each opened and verified on its own: one bad blob loses only
    itself, a missing or short pack every blob of the span."""
    try:
        view = memoryview(repo.load_span(span.pack, span.offset, span.length))
    except (IntegrityError, FormatError) as exc:
        for blob in span.blobs:
            yield blob.chunk_id, Lost(str(exc))
        return
    for blob in span.blobs:
        envelope = view[blob.offset : blob.offset + blob.length]
        if len(envelope) < blob.length:
            yield blob.chunk_id, Lost(f"pack {span.pack.short()} is shorter than its index says")
            continue
        try:
            yield blob.chunk_id, repo.open_blob(BlobKind.DATA, blob.chunk_id, envelope)
        except (IntegrityError, FormatError) as exc:
            yield blob.chunk_id, Lost(str(exc))
