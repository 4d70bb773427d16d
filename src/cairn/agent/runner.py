"""Running one job (design 15.4): its lock, hooks and dumps, the backup as a child process with
the job's priority, upload limit and timeout, retries with backoff, and the run's summary.

The backup is `cairn backup --json` in its own process group: a crash or a memory blow-up of one
job cannot take the agent down, and a stop (SIGTERM to the agent, or the job's timeout) reaches
the child and everything it started through one `killpg`. The child's stderr, and the output of
every hook and dump, go to the run's log (`state/logs/<job>/<run>.log`); its stdout is the JSON
summary, read when it ends and then appended to the log.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from cairn.agent.dumps import DumpFailed, take_dumps
from cairn.agent.hooks import run_hook
from cairn.agent.spec import AgentSpec, JobSpec, Window
from cairn.core.clock import SYSTEM_CLOCK, epoch_s
from cairn.core.errors import CairnError
from cairn.notify.message import Outcome, RunSummary

BACKUP_PROGRAM: tuple[str, ...] = (sys.executable, "-m", "cairn.cli.main")
STOP_GRACE_S = 30.0
"""After SIGTERM, how long a child has to stop at a safe point before it is killed."""
BACKOFF_CAP_S = 3600.0
KEEP_LOGS = 200
"""Logs kept per job (the newest); the history keeps every run's summary."""
EXIT_WARNING = 3
EXIT_INTERRUPTED = 130

E_BUSY = "CAIRN-E081"
E_HOOK = "CAIRN-E084"
E_TIMEOUT = "CAIRN-E085"
E_NO_START = "CAIRN-E086"

RETRIABLE = frozenset(
    {
        "CAIRN-E010",  # no repository (yet): a removable disk or a share not mounted
        "CAIRN-E032",  # the storage could not list its objects
        "CAIRN-E033",  # the storage is unreachable or failing
        "CAIRN-E035",  # another storage failure (an I/O error)
        "CAIRN-E050",  # the session's lease ran out (the machine slept)
        "CAIRN-E060",  # the server does not answer
        "CAIRN-E064",  # throttled after failed logins
        "CAIRN-E066",  # the server is busy
    }
)
"""Failures that can pass by themselves: worth retrying with backoff. A wrong passphrase, a
config or usage error, a damaged repository or a full quota are not retried."""


class JobBusy(CairnError):
    """Another run of this job holds its lock."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One start of the backup child and what it said."""

    outcome: Outcome
    exit_code: int | None
    snapshot: str | None = None
    files: int = 0
    bytes_added: int = 0
    error_code: str | None = None
    message: str = ""

    @property
    def retriable(self) -> bool:
        if self.outcome is not Outcome.FAILURE:
            return False
        if self.error_code is None:
            # Killed by a signal, or died without a word (a crash, the OOM killer): retry.
            return self.exit_code is None or self.exit_code < 0
        return self.error_code in RETRIABLE


@dataclass(frozen=True, slots=True)
class Retrying:
    """A run between two attempts of its backup (design 15.4): which attempt failed and how,
    and when the next of at most `attempts` starts. `cairn agent status` shows it."""

    job: str
    started: float
    """When the run started."""
    failed: int
    """The number of the attempt that failed (1 for the first)."""
    attempts: int
    error_code: str | None
    message: str
    retry_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "started": self.started,
            "failed_attempt": self.failed,
            "attempts": self.attempts,
            "error_code": self.error_code,
            "message": self.message,
            "retry_at": self.retry_at,
        }

    @classmethod
    def from_json(cls, document: Any) -> Retrying | None:
        """Read back `as_json` (from the agent's file); None for anything else."""
        try:
            return cls(
                str(document["job"]),
                float(document["started"]),
                int(document["failed_attempt"]),
                int(document["attempts"]),
                None if document["error_code"] is None else str(document["error_code"]),
                str(document["message"]),
                float(document["retry_at"]),
            )
        except (TypeError, KeyError, ValueError):
            return None


# ---- the lock -------------------------------------------------------------------------------


@contextlib.contextmanager
def job_lock(path: Path) -> Iterator[None]:
    """Hold `flock` on `path` for the run: two runs of a job never overlap, also across two
    processes sharing the state folder. The kernel releases it when the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise JobBusy(f"another run of this job holds {path}") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


# ---- the command ----------------------------------------------------------------------------


def _minutes(clock: str) -> int:
    hour, minute = clock.split(":")
    return int(hour) * 60 + int(minute)


def window_applies(window: Window, local: datetime) -> bool:
    """True when local time `local` is inside the window (which may cross midnight)."""
    now, start, end = local.hour * 60 + local.minute, _minutes(window.start), _minutes(window.end)
    if start <= end:
        return start <= now < end
    return now >= start or now < end


def upload_limit(agent: AgentSpec, job: JobSpec, local: datetime) -> int | None:
    """The lowest of the job's limit, the agent's, and every window open at `local`."""
    limits = [x for x in (job.upload_limit, agent.upload_limit) if x is not None]
    limits += [w.limit for w in agent.upload_windows if window_applies(w, local)]
    return min(limits) if limits else None


def backup_command(
    job: JobSpec,
    agent: AgentSpec,
    limit: int | None,
    extra_paths: Sequence[str] = (),
    program: Sequence[str] = BACKUP_PROGRAM,
) -> list[str]:
    """The argument vector of the backup child (credentials go in its environment)."""
    argv: list[str] = []
    if (job.priority or agent.priority) == "low":
        argv += ["nice", "-n", "19"] if shutil.which("nice") else []
        argv += ["ionice", "-c3"] if shutil.which("ionice") else []
    argv += [*program, "backup", "--json", "-r", job.repository]
    for pattern in job.exclude:
        argv += ["--exclude", pattern]
    for tag in job.tags:
        argv += ["--tag", tag]
    if agent.host:
        argv += ["--host", agent.host]
    if limit is not None:
        argv += ["--limit-upload", str(limit)]
    return [*argv, "--", *job.paths, *extra_paths]


def child_environment(job: JobSpec, base: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment with the job's credentials: a job's password file or command
    replaces any passphrase the agent itself was given, so one job never uses another's."""
    env = dict(base)
    env.pop("CAIRN_REPOSITORY", None)
    if job.password_file or job.password_command:
        for name in ("CAIRN_PASSWORD", "CAIRN_PASSWORD_FILE", "CAIRN_PASSWORD_COMMAND"):
            env.pop(name, None)
    if job.password_file:
        env["CAIRN_PASSWORD_FILE"] = job.password_file
    elif job.password_command:
        env["CAIRN_PASSWORD_COMMAND"] = job.password_command
    if job.token_file:
        env.pop("CAIRN_TOKEN", None)
        env["CAIRN_TOKEN_FILE"] = job.token_file
    return env


def read_attempt(exit_code: int, stdout: bytes, stopped: bool, timed_out: bool) -> Attempt:
    """What one run of the child came to, from its exit status and its JSON output."""
    document = _last_json(stdout)
    if exit_code in (0, EXIT_WARNING) and "snapshot_id" in document:
        return Attempt(
            Outcome.SUCCESS if exit_code == 0 else Outcome.WARNING,
            exit_code,
            snapshot=str(document["snapshot_id"]),
            files=int(document.get("files", 0)),
            bytes_added=int(document.get("bytes_added", 0)),
            message=_warnings(document),
        )
    if timed_out:
        return Attempt(Outcome.FAILURE, exit_code, error_code=E_TIMEOUT, message="timed out")
    if stopped:
        return Attempt(Outcome.INTERRUPTED, exit_code, message="stopped by the agent")
    error = document.get("error")
    if isinstance(error, dict):
        return Attempt(
            Outcome.FAILURE,
            exit_code,
            error_code=str(error.get("code")),
            message=str(error.get("message", "")),
        )
    if exit_code < 0:
        message = f"the backup was killed by signal {-exit_code}"
    else:
        message = f"the backup exited with status {exit_code} and no summary"
    return Attempt(Outcome.FAILURE, exit_code, message=message)


def _last_json(stdout: bytes) -> dict[str, Any]:
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict):
                return document
    return {}


def _warnings(document: Mapping[str, Any]) -> str:
    errors = document.get("errors") or []
    if not errors:
        return ""
    first = errors[0]
    example = f"{first.get('path')}: {first.get('message')}"
    return f"{len(errors)} file(s) could not be read, e.g. {example}"


# ---- the run --------------------------------------------------------------------------------


class Runner:
    """Runs jobs for one agent. `stop` (set on SIGTERM) makes a running child stop at a safe
    point and ends backoff waits; the run is then `interrupted`."""

    def __init__(
        self,
        agent: AgentSpec,
        host: str,
        stop: threading.Event,
        *,
        program: Sequence[str] = BACKUP_PROGRAM,
        environ: Mapping[str, str] | None = None,
        now: Callable[[], float] = lambda: epoch_s(SYSTEM_CLOCK),
        log: Callable[..., None] = lambda event, **fields: None,
        on_retry: Callable[[Retrying], None] = lambda retrying: None,
    ) -> None:
        self.agent = agent
        self.on_retry = on_retry
        self.host = host
        self.stop = stop
        self.program = tuple(program)
        self.environ = dict(os.environ if environ is None else environ)
        self.now = now
        self.log = log

    def run(self, job: JobSpec) -> RunSummary:
        """Run `job` now, under its lock; a held lock gives a `skipped` run."""
        started = self.now()
        run_id = datetime.fromtimestamp(started).strftime("%Y%m%dT%H%M%S-") + secrets.token_hex(2)
        log_path = self.agent.state / "logs" / job.name / f"{run_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        base = RunSummary(job.name, self.host, started, started, Outcome.SKIPPED)
        try:
            with job_lock(self.agent.state / "locks" / job.name), log_path.open("ab") as log:
                summary = self._run_locked(job, base, log_path, log)
        except JobBusy as exc:
            return replace(base, ended=self.now(), error_code=E_BUSY, message=str(exc))
        _prune_logs(log_path.parent, KEEP_LOGS)
        return replace(summary, ended=self.now(), log_path=str(log_path), log_tail=_tail(log_path))

    def _run_locked(
        self, job: JobSpec, base: RunSummary, log_path: Path, log: BinaryIO
    ) -> RunSummary:
        env = {**self.environ, "CAIRN_JOB": job.name, "CAIRN_LOG": str(log_path)}
        env["CAIRN_REPOSITORY"] = job.repository
        _note(log, f"run of job {job.name} starts")
        failed = self._hooks(job, "before", env, log)
        extra: list[str] = []
        if failed is None and job.dumps:
            failed = self._dumps(job, log, extra)
        if failed is not None:
            summary = replace(base, outcome=Outcome.FAILURE, error_code=E_HOOK, message=failed)
        else:
            summary = self._backup_with_retries(job, base, extra, log)
        env["CAIRN_OUTCOME"] = summary.outcome.value
        if summary.outcome in (Outcome.SUCCESS, Outcome.WARNING):
            self._hooks(job, "after", env, log)
        elif summary.outcome is Outcome.FAILURE:
            self._hooks(job, "failure", env, log)
        self._hooks(job, "always", env, log)
        _note(log, f"run ends: {summary.outcome.value} {summary.error_code or ''}")
        return summary

    def _hooks(self, job: JobSpec, when: str, env: Mapping[str, str], log: BinaryIO) -> str | None:
        """Run the job's hooks of one kind, in order; the first failure of a `before` hook stops
        the rest and is returned (other kinds all run: they clean up)."""
        failure = None
        for hook in (h for h in job.hooks if h.when == when):
            _note(log, f"{when} hook: {hook.run}")
            result = run_hook(hook, {**env, "CAIRN_HOOK": when}, log)
            if not result.ok:
                failure = failure or f"{when} hook {hook.run} failed: {result.error}"
                self.log("hook_failed", job=job.name, when=when, error=result.error)
                if when == "before":
                    break
        return failure

    def _dumps(self, job: JobSpec, log: BinaryIO, extra: list[str]) -> str | None:
        staging = self.agent.state / "dumps" / job.name
        try:
            files = take_dumps(job.dumps, staging, log)
        except DumpFailed as exc:
            return f"a database dump failed: {exc}"
        if files:
            extra.append(str(staging))
        return None

    def _backup_with_retries(
        self, job: JobSpec, base: RunSummary, extra: Sequence[str], log: BinaryIO
    ) -> RunSummary:
        attempt_no = 0
        while True:
            attempt_no += 1
            attempt = self._backup_once(job, extra, log)
            self.log(
                "attempt",
                job=job.name,
                attempt=attempt_no,
                outcome=attempt.outcome.value,
                error_code=attempt.error_code,
            )
            if not attempt.retriable or attempt_no > job.retries:
                break
            delay = min(job.retry_backoff_s * 2 ** (attempt_no - 1), BACKOFF_CAP_S)
            _note(log, f"attempt {attempt_no} failed ({attempt.error_code}); retry in {delay:g}s")
            self.on_retry(
                Retrying(
                    job.name,
                    base.started,
                    attempt_no,
                    job.retries + 1,
                    attempt.error_code,
                    attempt.message,
                    self.now() + delay,
                )
            )
            if self.stop.wait(delay):
                attempt = replace(attempt, outcome=Outcome.INTERRUPTED, message="stopped")
                break
        return replace(
            base,
            outcome=attempt.outcome,
            attempt=attempt_no,
            snapshot=attempt.snapshot,
            files=attempt.files,
            bytes_added=attempt.bytes_added,
            error_code=attempt.error_code,
            message=attempt.message,
        )

    def _backup_once(self, job: JobSpec, extra: Sequence[str], log: BinaryIO) -> Attempt:
        if self.stop.is_set():
            return Attempt(Outcome.INTERRUPTED, None, message="stopped before it started")
        limit = upload_limit(self.agent, job, datetime.fromtimestamp(self.now()))
        argv = backup_command(job, self.agent, limit, extra, self.program)
        _note(log, "backup: " + " ".join(argv))
        log.flush()
        with _scratch(log) as out:
            try:
                child = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=log,
                    env=child_environment(job, self.environ),
                    start_new_session=True,
                )
            except OSError as exc:
                return Attempt(Outcome.FAILURE, None, error_code=E_NO_START, message=str(exc))
            self.log("backup_started", job=job.name, pid=child.pid)
            stopped, timed_out = self._supervise(child, job.timeout_s)
            out.seek(0)
            stdout = out.read()
        log.write(stdout)
        return read_attempt(child.returncode, stdout, stopped, timed_out)

    def _supervise(self, child: subprocess.Popen[bytes], timeout_s: float) -> tuple[bool, bool]:
        """Wait for the child; on stop or timeout send SIGTERM (and SIGCONT, in case it is
        stopped), then SIGKILL after the grace period. Returns (stopped, timed_out)."""
        deadline = time.monotonic() + timeout_s
        terminated_at: float | None = None
        stopped = timed_out = False
        while child.poll() is None:
            if terminated_at is None and (self.stop.is_set() or time.monotonic() > deadline):
                stopped, timed_out = self.stop.is_set(), not self.stop.is_set()
                terminated_at = time.monotonic()
                _signal_group(child.pid, signal.SIGTERM)
                _signal_group(child.pid, signal.SIGCONT)
            elif terminated_at is not None and time.monotonic() - terminated_at > STOP_GRACE_S:
                _signal_group(child.pid, signal.SIGKILL)
                child.wait()
                break
            if terminated_at is None:
                self.stop.wait(0.2)  # wakes at once on a stop
            else:
                time.sleep(0.2)
        return stopped, timed_out


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@contextlib.contextmanager
def _scratch(log: BinaryIO) -> Iterator[BinaryIO]:
    path = Path(log.name + ".out") if isinstance(log.name, str) else None
    assert path is not None
    with path.open("w+b") as out:
        try:
            yield out
        finally:
            path.unlink(missing_ok=True)


def _note(log: BinaryIO, line: str) -> None:
    stamp = SYSTEM_CLOCK.now().isoformat(timespec="seconds")
    log.write(f"[{stamp}] cairn-agent: {line}\n".encode())
    log.flush()


def _tail(path: Path, lines: int = 20, limit: int = 4096) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _prune_logs(folder: Path, keep: int) -> None:
    """Remove all but the newest `keep` run logs (names start with the run's time)."""
    logs = sorted(folder.glob("*.log"))
    for old in logs[: max(0, len(logs) - keep)]:
        old.unlink(missing_ok=True)
