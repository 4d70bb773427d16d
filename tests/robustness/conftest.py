"""Prints the kill harness's figures at the end of a run of tests/robustness (each test also
records them as the `kill_harness` property, which reaches JUnit XML and xdist's controller)."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports = [
        r
        for outcome in ("passed", "failed")
        for r in terminalreporter.stats.get(outcome, [])
        if isinstance(r, pytest.TestReport)
    ]
    lines = sorted(
        str(value) for r in reports for name, value in r.user_properties if name == "kill_harness"
    )
    if lines:
        terminalreporter.section("kill harness (RELIABILITY.md R1)")
        for line in lines:
            terminalreporter.write_line(line)
