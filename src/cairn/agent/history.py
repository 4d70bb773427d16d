"""The agent's local job history and run-time job state in SQLite (design 15.5).

`state/history.db` holds every run (job, start, end, outcome, attempt, snapshot, files, bytes,
error code, message, log path) and the jobs suspended or resumed with `cairn agent
suspend|resume`. Migrations are numbered SQL scripts recorded in ``PRAGMA user_version`` (as the
server's database does); a database written by a newer Cairn is refused. The daemon writes, and
`cairn agent status` reads from another process meanwhile: WAL mode lets both go on.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cairn.agent.schedule import LastRun
from cairn.core.errors import CairnError
from cairn.notify.message import Outcome, RunSummary
from cairn.statedb.sqlitedb import immediate, migrate

MIGRATIONS: tuple[str, ...] = (
    # 1: runs, and the suspend/resume switch per job
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        host TEXT NOT NULL,
        started REAL NOT NULL,
        ended REAL NOT NULL,
        outcome TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        snapshot TEXT,
        files INTEGER NOT NULL,
        bytes_added INTEGER NOT NULL,
        error_code TEXT,
        message TEXT NOT NULL,
        log_path TEXT,
        log_tail TEXT NOT NULL
    );
    CREATE INDEX runs_by_job ON runs (job, started);
    CREATE TABLE job_state (
        job TEXT PRIMARY KEY,
        suspended INTEGER NOT NULL,
        changed REAL NOT NULL
    );
    """,
)

_COLUMNS = (
    "job, host, started, ended, outcome, attempt, snapshot, files, bytes_added, error_code, "
    "message, log_path, log_tail"
)


class StateError(CairnError):
    """The agent's state folder or history database cannot be used."""


class History:
    """The history database at `path` (created and migrated on open)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # logs name files
            self._conn = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the job history {path}: {exc}") from exc

    @classmethod
    def if_exists(cls, path: Path) -> History | None:
        """The database at `path` if there is one: for a reader that must create nothing
        (`agent status` with a broken configuration may be looking at the wrong folder)."""
        return cls(path) if path.is_file() else None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, immediate(self._conn) as conn:
            yield conn

    def _migrate(self) -> None:
        with self._lock:
            migrate(self._conn, MIGRATIONS, self.path, StateError)

    # ---- runs ---------------------------------------------------------------------------

    def record(self, run: RunSummary) -> int:
        """Add one run; returns its row number."""
        with self._write() as conn:
            cursor = conn.execute(
                f"INSERT INTO runs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
                (
                    run.job,
                    run.host,
                    run.started,
                    run.ended,
                    run.outcome.value,
                    run.attempt,
                    run.snapshot,
                    run.files,
                    run.bytes_added,
                    run.error_code,
                    run.message,
                    run.log_path,
                    run.log_tail,
                ),
            )
            return int(cursor.lastrowid or 0)

    def runs(
        self, job: str | None = None, since: float = 0.0, limit: int = 1000
    ) -> list[RunSummary]:
        """Runs started at or after `since`, oldest first (the newest `limit` of them)."""
        where, params = "started >= ?", [since]
        if job is not None:
            where += " AND job = ?"
            params.append(job)  # type: ignore[arg-type]
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE {where} "  # noqa: S608
                "ORDER BY started DESC, id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_summary(row) for row in reversed(rows)]

    def last(self, job: str) -> RunSummary | None:
        runs = self.runs(job, limit=1)
        return runs[-1] if runs else None

    def last_run(self, job: str) -> LastRun | None:
        run = self.last(job)
        return LastRun(run.started, run.outcome) if run else None

    def jobs(self) -> list[str]:
        """Every job with a run in the history, by name (what is known without the
        configuration)."""
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT job FROM runs ORDER BY job").fetchall()
        return [str(job) for (job,) in rows]

    def last_success(self, jobs: Sequence[str]) -> dict[str, float | None]:
        """Per job, when its last successful (or warning) run ended; None: never."""
        found: dict[str, float | None] = dict.fromkeys(jobs)
        with self._lock:
            for job, ended in self._conn.execute(
                "SELECT job, MAX(ended) FROM runs WHERE outcome IN ('success', 'warning') "
                "GROUP BY job"
            ):
                if job in found:
                    found[job] = ended
        return found

    # ---- suspend / resume ---------------------------------------------------------------

    def set_suspended(self, job: str, suspended: bool, now: float) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO job_state (job, suspended, changed) VALUES (?, ?, ?) "
                "ON CONFLICT (job) DO UPDATE SET suspended = excluded.suspended, "
                "changed = excluded.changed",
                (job, int(suspended), now),
            )

    def suspended(self) -> dict[str, bool]:
        """The switches set at run time (they override the configuration's `suspended`)."""
        with self._lock:
            rows = self._conn.execute("SELECT job, suspended FROM job_state").fetchall()
        return {job: bool(value) for job, value in rows}

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _summary(row: tuple[object, ...]) -> RunSummary:
    (job, host, started, ended, outcome, attempt, snapshot, files, added, code, msg, log, tail) = (
        row
    )
    return RunSummary(
        job=str(job),
        host=str(host),
        started=float(started),  # type: ignore[arg-type]
        ended=float(ended),  # type: ignore[arg-type]
        outcome=Outcome(outcome),
        attempt=int(attempt),  # type: ignore[call-overload]
        snapshot=str(snapshot) if snapshot is not None else None,
        files=int(files),  # type: ignore[call-overload]
        bytes_added=int(added),  # type: ignore[call-overload]
        error_code=str(code) if code is not None else None,
        message=str(msg),
        log_path=str(log) if log is not None else None,
        log_tail=str(tail),
    )
