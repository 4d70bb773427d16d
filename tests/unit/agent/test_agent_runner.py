"""One job's run: the command and environment of the backup child, the upload limit from the
windows, reading the child's summary, retries with backoff, the job lock across processes, the
timeout and the stop. The child here is a small script standing in for `cairn backup` (the
integration tests run the real one)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from cairn.agent.runner import (
    E_BUSY,
    E_TIMEOUT,
    Retrying,
    Runner,
    backup_command,
    child_environment,
    read_attempt,
    upload_limit,
    window_applies,
)
from cairn.agent.spec import AgentSpec, Every, JobSpec, Window
from cairn.notify.message import Outcome

MIB = 1024 * 1024

FAKE_BACKUP = textwrap.dedent(
    """
    import json, os, signal, sys, time
    plan = os.environ["FAKE_PLAN"].split(",")
    counter = os.environ["FAKE_COUNTER"]
    n = int(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "w").write(str(n + 1))
    step = plan[min(n, len(plan) - 1)]
    with open(counter + ".argv", "w") as f:
        json.dump({"argv": sys.argv[1:], "password_file": os.environ.get("CAIRN_PASSWORD_FILE"),
                   "password": os.environ.get("CAIRN_PASSWORD")}, f)
    if step == "ok":
        print(json.dumps({"snapshot_id": "ab" * 32, "files": 3, "bytes_added": 42, "errors": []}))
    elif step == "warn":
        print(json.dumps({"snapshot_id": "cd" * 32, "files": 2, "bytes_added": 1,
                          "errors": [{"path": "/x", "message": "permission denied"}]}))
        sys.exit(3)
    elif step == "hang":
        def stop(signum, frame):
            print("stopping at a safe point", file=sys.stderr)
            sys.exit(130)
        signal.signal(signal.SIGTERM, stop)
        print("started", file=sys.stderr, flush=True)
        while True:
            time.sleep(0.05)
    else:
        code = step
        print(json.dumps({"error": {"code": code, "message": "no luck", "exit": 33}}))
        print("cairn: error " + code, file=sys.stderr)
        sys.exit(int(code[-3:]))
    """
)


def job(**kw: object) -> JobSpec:
    fields: dict[str, object] = {
        "name": "home",
        "repository": "/srv/repo",
        "paths": ("/home",),
        "schedule": Every(3600),
        "retry_backoff_s": 0.05,
    }
    fields.update(kw)
    return JobSpec(**fields)  # type: ignore[arg-type]


def make_runner(tmp_path: Path, plan: str, stop: threading.Event | None = None) -> Runner:
    script = tmp_path / "fake_backup.py"
    script.write_text(FAKE_BACKUP)
    agent = AgentSpec(state=tmp_path / "state", jobs=())
    environ = {"FAKE_PLAN": plan, "FAKE_COUNTER": str(tmp_path / "count"), "PATH": "/usr/bin:/bin"}
    environ["CAIRN_PASSWORD"] = "the agent's own"
    return Runner(
        agent,
        "host1",
        stop or threading.Event(),
        program=(sys.executable, str(script)),
        environ=environ,
    )


def wait_for(condition: Callable[[], bool], deadline_s: float = 120.0) -> None:
    """Poll until `condition` holds; a generous deadline only stops a hung test."""
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, "gave up waiting"
        time.sleep(0.05)


def attempts(tmp_path: Path) -> int:
    return int((tmp_path / "count").read_text())


def test_windows_and_limits_the_lowest_applies() -> None:
    day = Window("08:00", "18:00", 2 * MIB)
    night = Window("22:00", "06:00", 1 * MIB)
    assert window_applies(day, datetime(2026, 1, 1, 8, 0))
    assert not window_applies(day, datetime(2026, 1, 1, 18, 0))
    assert window_applies(night, datetime(2026, 1, 1, 23, 0))
    assert window_applies(night, datetime(2026, 1, 1, 5, 59))
    assert not window_applies(night, datetime(2026, 1, 1, 12, 0))
    agent = AgentSpec(Path("/s"), (), upload_limit=20 * MIB, upload_windows=(day, night))
    assert upload_limit(agent, job(), datetime(2026, 1, 1, 12, 0)) == 2 * MIB
    assert upload_limit(agent, job(), datetime(2026, 1, 1, 20, 0)) == 20 * MIB
    assert upload_limit(agent, job(upload_limit=5 * MIB), datetime(2026, 1, 1, 20, 0)) == 5 * MIB
    assert upload_limit(agent, job(upload_limit=5 * MIB), datetime(2026, 1, 1, 2, 0)) == MIB
    assert upload_limit(AgentSpec(Path("/s"), ()), job(), datetime(2026, 1, 1)) is None


def test_the_backup_command_carries_the_job() -> None:
    agent = AgentSpec(Path("/s"), (), priority="low", host="web1")
    spec = job(exclude=("*.tmp",), tags=("daily",))
    argv = backup_command(spec, agent, 2 * MIB, ["/s/dumps/home"], program=("cairn",))
    assert argv[:3] == ["nice", "-n", "19"]
    start = argv.index("cairn")
    assert argv[start:] == [
        "cairn", "backup", "--json", "-r", "/srv/repo", "--exclude", "*.tmp", "--tag", "daily",
        "--host", "web1", "--limit-upload", str(2 * MIB), "--", "/home", "/s/dumps/home",
    ]  # fmt: skip
    plain = backup_command(job(priority="normal"), agent, None, program=("cairn",))
    assert plain[0] == "cairn" and "--limit-upload" not in plain


def test_a_jobs_credentials_replace_the_agents() -> None:
    base = {"CAIRN_PASSWORD": "agent", "CAIRN_TOKEN": "t", "CAIRN_REPOSITORY": "/other", "X": "1"}
    env = child_environment(job(password_file="/etc/p", token_file="/etc/t"), base)
    assert env["CAIRN_PASSWORD_FILE"] == "/etc/p" and "CAIRN_PASSWORD" not in env
    assert env["CAIRN_TOKEN_FILE"] == "/etc/t" and "CAIRN_TOKEN" not in env
    assert "CAIRN_REPOSITORY" not in env and env["X"] == "1"
    assert child_environment(job(), base)["CAIRN_PASSWORD"] == "agent"


def test_reading_the_childs_summary() -> None:
    ok = read_attempt(
        0, b'noise\n{"snapshot_id": "ab", "files": 2, "bytes_added": 9}\n', False, False
    )
    assert (ok.outcome, ok.snapshot, ok.files, ok.bytes_added) == (Outcome.SUCCESS, "ab", 2, 9)
    error = b'{"error": {"code": "CAIRN-E012", "message": "wrong passphrase"}}'
    failed = read_attempt(12, error, False, False)
    assert (failed.outcome, failed.error_code, failed.retriable) == (
        Outcome.FAILURE, "CAIRN-E012", False,
    )  # fmt: skip
    unreachable = read_attempt(60, error.replace(b"E012", b"E060"), False, False)
    assert unreachable.retriable
    killed = read_attempt(-9, b"", False, False)
    assert killed.outcome is Outcome.FAILURE and killed.retriable and "signal 9" in killed.message
    assert read_attempt(130, b"", True, False).outcome is Outcome.INTERRUPTED
    assert read_attempt(-9, b"", False, True).error_code == E_TIMEOUT
    # a backup that finished before it heard the stop is a success: history tells the truth
    assert read_attempt(0, b'{"snapshot_id": "ab"}', True, False).outcome is Outcome.SUCCESS


def test_a_success_and_a_warning_are_recorded_with_their_figures(tmp_path: Path) -> None:
    run = make_runner(tmp_path, "ok").run(job(password_file="/etc/p"))
    assert (run.outcome, run.files, run.bytes_added, run.attempt) == (Outcome.SUCCESS, 3, 42, 1)
    assert run.snapshot == "ab" * 32
    seen = (tmp_path / "count.argv").read_text()
    assert '"password_file": "/etc/p"' in seen and "the agent's own" not in seen
    assert run.log_path is not None and Path(run.log_path).exists()
    assert "snapshot_id" in Path(run.log_path).read_text()


def test_a_warning_is_not_a_failure(tmp_path: Path) -> None:
    run = make_runner(tmp_path, "warn").run(job())
    assert run.outcome is Outcome.WARNING
    assert "1 file(s) could not be read" in run.message


def test_failures_that_can_pass_are_retried_with_growing_backoff(tmp_path: Path) -> None:
    run = make_runner(tmp_path, "CAIRN-E033,CAIRN-E060,ok").run(job(retries=3))
    assert run.outcome is Outcome.SUCCESS and run.attempt == 3
    assert attempts(tmp_path) == 3
    log = Path(run.log_path or "").read_text()
    assert "attempt 1 failed (CAIRN-E033); retry in 0.05s" in log
    assert "attempt 2 failed (CAIRN-E060); retry in 0.1s" in log


def test_each_retry_is_told_with_the_failed_attempt_and_the_next_start(tmp_path: Path) -> None:
    """What `agent status` shows during an outage comes from here."""
    runner = make_runner(tmp_path, "CAIRN-E033,CAIRN-E060,ok")
    told: list[Retrying] = []
    runner.on_retry = told.append
    run = runner.run(job(retries=3))
    assert [(r.job, r.failed, r.attempts, r.error_code, r.message) for r in told] == [
        ("home", 1, 4, "CAIRN-E033", "no luck"),
        ("home", 2, 4, "CAIRN-E060", "no luck"),
    ]
    assert all(r.started == run.started < r.retry_at for r in told)
    assert Retrying.from_json(told[0].as_json()) == told[0]
    assert Retrying.from_json({"job": "home"}) is None


def test_retries_end_after_the_configured_number(tmp_path: Path) -> None:
    run = make_runner(tmp_path, "CAIRN-E066").run(job(retries=2))
    assert (run.outcome, run.error_code, run.attempt) == (Outcome.FAILURE, "CAIRN-E066", 3)


def test_a_wrong_passphrase_is_not_retried(tmp_path: Path) -> None:
    run = make_runner(tmp_path, "CAIRN-E012,ok").run(job(retries=5))
    assert (run.outcome, run.error_code, run.attempt) == (Outcome.FAILURE, "CAIRN-E012", 1)
    assert attempts(tmp_path) == 1


def test_two_runs_of_a_job_never_overlap_across_processes(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, "ok")
    lock = tmp_path / "state" / "locks" / "home"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(lock),
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        skipped = runner.run(job())
        assert (skipped.outcome, skipped.error_code) == (Outcome.SKIPPED, E_BUSY)
        assert not (tmp_path / "count").exists(), "no backup started while the lock was held"
    finally:
        holder.communicate("")
    assert runner.run(job()).outcome is Outcome.SUCCESS


def test_a_stop_reaches_the_child_which_ends_at_a_safe_point(tmp_path: Path) -> None:
    stop = threading.Event()
    runner = make_runner(tmp_path, "hang", stop)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(runner.run(job())))
    thread.start()
    logs = tmp_path / "state" / "logs" / "home"
    wait_for(lambda: any("started" in p.read_text() for p in logs.glob("*.log")))
    stop.set()
    thread.join(timeout=60)
    run = result[0]
    assert run.outcome is Outcome.INTERRUPTED  # type: ignore[attr-defined]
    assert "stopping at a safe point" in Path(run.log_path).read_text()  # type: ignore[attr-defined]


def test_a_job_past_its_timeout_is_killed_with_its_process_group(tmp_path: Path) -> None:
    run = make_runner(tmp_path, "hang").run(job(timeout_s=0.5, retries=0))
    assert (run.outcome, run.error_code) == (Outcome.FAILURE, E_TIMEOUT)


@pytest.mark.parametrize("plan", ["CAIRN-E012"])
def test_history_message_names_the_childs_error(tmp_path: Path, plan: str) -> None:
    run = make_runner(tmp_path, plan).run(job())
    assert run.message == "no luck" and "cairn: error CAIRN-E012" in run.log_tail
