"""The progress line fits the terminal and shows a total, a percentage and the time left once
the total is known."""

from __future__ import annotations

import io

import pytest

from cairn.cli.progress import TerminalProgress, terminal_columns


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def progress(columns: int, clock: Clock) -> TerminalProgress:
    return TerminalProgress("backing up", io.StringIO(), 3600, columns=lambda: columns, clock=clock)


@pytest.mark.parametrize("columns", [10, 30, 50, 80, 200])
def test_the_line_never_passes_the_terminal_width(columns: int) -> None:
    clock = Clock()
    shown = progress(columns, clock)
    try:
        for _ in range(12345):
            shown.file_done(0)
        shown.bytes_done(7 << 30)
        clock.now += 3725
        assert len(shown.line()) < columns
        shown.add_total(99999, 900 << 30)
        assert len(shown.line()) < columns
    finally:
        shown.finish()


def test_a_known_total_gives_percentage_total_and_time_left() -> None:
    clock = Clock()
    shown = progress(200, clock)
    try:
        shown.bytes_done(1 << 30)
        clock.now += 10
        assert "%" not in shown.line() and "ETA" not in shown.line()
        shown.add_total(10, 4 << 30)
        line = shown.line()
        assert line.startswith("backing up  25.0%  ETA 30s  1.0 GiB of 4.0 GiB  0/10 files")
    finally:
        shown.finish()


def test_columns_come_from_the_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    assert terminal_columns(io.StringIO()) == 30
