"""The job history: runs kept and read back, suspend switches, and a newer schema refused."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from cairn.agent.history import History, StateError
from cairn.notify.message import Outcome, RunSummary


def test_runs_are_kept_in_order_and_read_back_whole(tmp_path: Path) -> None:
    history = History(tmp_path / "state" / "history.db")
    first = RunSummary("home", "h", 10.0, 20.0, Outcome.FAILURE, 3, None, 0, 0, "CAIRN-E033", "x")
    second = RunSummary("home", "h", 30.0, 35.0, Outcome.SUCCESS, 1, "ab" * 32, 5, 99, None, "")
    other = RunSummary("etc", "h", 25.0, 26.0, Outcome.WARNING)
    for run in (first, other, second):
        history.record(run)
    assert history.runs("home") == [first, second]
    assert history.last("home") == second
    assert history.runs(since=25.0) == [other, second]
    assert history.last_success(["home", "etc", "never"]) == {
        "home": 35.0,
        "etc": 26.0,
        "never": None,
    }
    history.close()
    reopened = History(tmp_path / "state" / "history.db")
    assert reopened.last_run("home").started == 30.0  # type: ignore[union-attr]


def test_suspend_switches_override_and_persist(tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    history.set_suspended("home", True, 1.0)
    history.set_suspended("etc", False, 1.0)
    history.set_suspended("home", False, 2.0)
    history.set_suspended("home", True, 3.0)
    assert history.suspended() == {"home": True, "etc": False}


def test_a_database_of_a_newer_cairn_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    History(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match="newer Cairn"):
        History(path)


def test_an_unusable_state_folder_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StateError, match="cannot open the job history"):
        History(tmp_path / "file" / "history.db")
