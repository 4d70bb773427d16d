"""The walker: post-order events, excludes, markers, odd names, and errors that do not stop it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cairn.core.patterns import PatternSet
from cairn.source.walker import (
    CACHEDIR_SIGNATURE,
    DirDoneEvent,
    EntryEvent,
    ErrorEvent,
    FileEvent,
    Walker,
    ancestor_nodes,
)


def tree(root: Path) -> bytes:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f.txt").write_text("f")
    (root / "a" / "g.log").write_text("g")
    (root / "cache").mkdir()
    (root / "cache" / "CACHEDIR.TAG").write_bytes(CACHEDIR_SIGNATURE + b"\n")
    (root / "cache" / "junk").write_text("junk")
    (root / "skipme").mkdir()
    (root / "skipme" / ".nobackup").write_text("")
    (root / "skipme" / "data").write_text("data")
    with open(os.fsencode(root) + b"/\xff\xfe", "wb") as f:
        f.write(b"odd")
    os.symlink("a", root / "link")
    os.mkfifo(root / "fifo")
    return os.fsencode(root)


def paths(events: list[object]) -> list[tuple[str, bytes]]:
    return [(type(e).__name__, e.path) for e in events]  # type: ignore[attr-defined]


def test_post_order_and_kinds(tmp_path: Path) -> None:
    root = tree(tmp_path)
    events = list(Walker().walk(root))
    kinds = {e.path[len(root) :]: type(e) for e in events}
    assert kinds[b"/a/b/f.txt"] is FileEvent
    assert kinds[b"/link"] is EntryEvent
    assert kinds[b"/fifo"] is EntryEvent
    assert kinds[b"/\xff\xfe"] is FileEvent
    order = [e.path for e in events]
    assert (
        order.index(root + b"/a/b/f.txt") < order.index(root + b"/a/b") < order.index(root + b"/a")
    )
    assert isinstance(events[-1], DirDoneEvent)
    assert events[-1].path == root


def test_excludes_and_markers(tmp_path: Path) -> None:
    root = tree(tmp_path)
    walker = Walker(
        excludes=PatternSet.compile(["*.log"]),
        exclude_if_present=[b".nobackup"],
        exclude_caches=True,
    )
    seen = {e.path[len(root) :] for e in walker.walk(root)}
    assert b"/a/g.log" not in seen
    assert b"/skipme" in seen and b"/skipme/data" not in seen
    assert b"/skipme/.nobackup" in seen  # the marker is kept, as restic keeps it
    assert b"/cache" in seen and b"/cache/CACHEDIR.TAG" in seen and b"/cache/junk" not in seen


def test_unreadable_folder_is_an_error_event_not_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path)
    real = os.scandir

    def failing(path: bytes) -> object:
        if path.endswith(b"/a"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", failing)
    events = list(Walker().walk(root))
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [e.path for e in errors] == [root + b"/a"]
    assert any(e.path == root + b"/skipme/data" for e in events)


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    events = list(Walker().walk(os.fsencode(tmp_path / "nope")))
    assert len(events) == 1 and isinstance(events[0], ErrorEvent)


def test_ancestors_frame_the_snapshot(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path / "x")
    frame = ancestor_nodes(root)
    assert [p for p, _ in frame][-1] == os.fsencode(tmp_path)
    assert all(n.type == "dir" for _, n in frame)
