"""The scanner counts what the backup will read, with the backup's exclusions."""

from __future__ import annotations

import os
from pathlib import Path

from cairn.backup.scanner import Scanner
from cairn.core.patterns import PatternSet
from cairn.core.progress import SilentProgress
from cairn.source.walker import Walker


class Totals(SilentProgress):
    def __init__(self) -> None:
        super().__init__()
        self.totals: list[tuple[int, int]] = []

    def add_total(self, files: int, size: int) -> None:
        self.totals.append((files, size))


def test_the_total_counts_files_and_bytes_less_what_is_excluded(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one").write_bytes(b"x" * 100)
    (tmp_path / "two").write_bytes(b"y" * 20)
    (tmp_path / "skip.log").write_bytes(b"z" * 1000)
    os.symlink("two", tmp_path / "link")
    walker = Walker(excludes=PatternSet.compile(["*.log"]))
    progress = Totals()
    scanner = Scanner(walker, [os.fsencode(tmp_path)], progress)
    assert scanner.count() == (2, 120)
    scanner.start()
    scanner._thread.join()
    assert progress.totals == [(2, 120)], "the total is reported once, when complete"


def test_a_stopped_scanner_reports_no_total(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    progress = Totals()
    scanner = Scanner(Walker(), [os.fsencode(tmp_path)], progress)
    scanner.stop()
    assert scanner.count() is None
