"""The two duration readers say in their names which unit ``m`` is."""

from __future__ import annotations

from datetime import timedelta

from cairn.core.units import parse_interval
from cairn.snapshot.retention import parse_retention_span


def test_an_interval_reads_m_as_minutes() -> None:
    assert parse_interval("15m") == 15 * 60


def test_a_retention_span_reads_m_as_months() -> None:
    assert parse_retention_span("1m") == timedelta(days=30)
