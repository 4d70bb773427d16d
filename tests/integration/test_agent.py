"""`cairn agent` end to end: a real agent process, real `cairn backup` children, a real local
repository. Schedules of a second or two, and waits on history rows with generous deadlines
(never a timing assertion)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.agentfixtures import AgentProcess, wait_for
from tests.support.clitools import Cairn, manifest


class Agent(AgentProcess):
    """An agent (agentfixtures.AgentProcess) with a local repository, its passphrase and
    folders to back up."""

    def __init__(self, root: Path) -> None:
        self.repo = root / "repo"
        self.password = root / "pass"
        self.tool = Cairn(self.repo, cache=root / "cache")
        super().__init__(root, self.tool.env())
        self.password.write_text("correct horse\n")

    def init_repo(self, *extra: str) -> None:
        self.tool.run("init", *extra)

    def source(self, name: str = "src", files: int = 3) -> Path:
        src = self.root / name
        src.mkdir(exist_ok=True)
        for i in range(files):
            (src / f"f{i}.txt").write_text(f"{name} file {i}\n" * 100)
        return src

    def job(self, name: str, src: Path, schedule: str = '{ every = "1s" }', **kw: Any) -> str:
        lines = [
            "[[job]]",
            f'name = "{name}"',
            f'repository = "{kw.pop("repository", self.repo)}"',
            f'password_file = "{kw.pop("password_file", self.password)}"',
            f'paths = ["{src}"]',
            f"schedule = {schedule}",
        ]
        lines += [f"{key} = {json.dumps(value)}" for key, value in kw.items()]
        return "\n".join(lines) + "\n"

    def write_jobs(self, *jobs: str, jitter: str = "0s") -> None:
        self.write_config("\n".join(jobs), jitter=jitter)

    def snapshots(self) -> list[dict[str, Any]]:
        env = self.tool.env()
        env["CAIRN_PASSWORD"] = "correct horse"
        return self.tool.run("snapshots", "--json", env=env).json()  # type: ignore[no-any-return]


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(tmp_path)
    yield a
    a.kill()


def successes(agent: Agent, job: str, after: int = 0) -> Callable[[], bool]:
    return lambda: len([r for r in agent.rows(job) if r["outcome"] == "success"]) >= after


def test_the_agent_runs_jobs_on_schedule_and_status_tells_the_truth(agent: Agent) -> None:
    agent.init_repo()
    src = agent.source()
    agent.write_jobs(agent.job("docs", src, '{ every = "2s" }'))
    agent.start()
    wait_for(successes(agent, "docs", 2), "two successful runs")
    running = agent.cli("status", "--json", check=True)
    live = json.loads(running.stdout)
    assert live["agent"]["running"] and live["agent"]["pid"] == agent.process.pid  # type: ignore[union-attr]
    docs = live["jobs"][0]
    assert docs["running"] or docs["next_run"] is not None  # the agent's own plan
    assert agent.stop() == 0

    rows = agent.rows("docs")
    snapshot_ids = {s["id"] for s in agent.snapshots()}
    assert all(r["snapshot"] in snapshot_ids for r in rows if r["outcome"] == "success")
    status = json.loads(agent.cli("status", "--json", check=True).stdout)
    assert not status["agent"]["running"]
    last, newest = status["jobs"][0]["last_run"], rows[-1]
    assert (last["started"], last["outcome"], last["snapshot"]) == (
        newest["started"], newest["outcome"], newest["snapshot"],
    )  # fmt: skip
    assert last["duration_s"] == round(newest["ended"] - newest["started"], 3)
    human = agent.cli("status", check=True).stdout
    assert "agent: not running" in human
    assert f"docs  every 2s  {datetime.fromtimestamp(newest['started']):%Y-%m-%d %H:%M:%S}" in human
    assert newest["outcome"] in human  # success, or interrupted if the stop came mid-run


def test_an_injected_failure_shows_in_history_and_status_with_its_code(agent: Agent) -> None:
    agent.init_repo()
    wrong = agent.root / "wrong.pass"
    wrong.write_text("not the passphrase\n")
    agent.write_jobs(agent.job("docs", agent.source(), password_file=str(wrong), retries=3))
    once = agent.cli("run-once", "docs")
    assert once.returncode == 12, once.stderr
    assert "failure CAIRN-E012" in once.stdout
    rows = agent.rows("docs")
    assert [(r["outcome"], r["error_code"], r["attempt"]) for r in rows] == [
        ("failure", "CAIRN-E012", 1)  # a wrong passphrase is not retried
    ]
    status = json.loads(agent.cli("status", "--json", check=True).stdout)["jobs"][0]
    assert (status["last_run"]["outcome"], status["last_run"]["error_code"]) == (
        "failure", "CAIRN-E012",
    )  # fmt: skip
    assert "wrong passphrase" in status["last_run"]["message"]
    assert "failure (CAIRN-E012)" in agent.cli("status", check=True).stdout
    assert "CAIRN-E012" in Path(rows[0]["log_path"]).read_text()


def test_retries_with_backoff_until_the_repository_appears(agent: Agent) -> None:
    src = agent.source()
    agent.write_jobs(agent.job("docs", src, '{ every = "1h" }', retries=12, retry_backoff="1s"))
    agent.start()
    wait_for(
        lambda: [e for e in agent.events("attempt") if e["error_code"] == "CAIRN-E010"],
        "a first attempt that finds no repository",
    )
    # The disk "is mounted": the repository appears at once, whole (made aside, then renamed).
    aside = Cairn(agent.root / "repo.new")
    aside.run("init")
    os.rename(agent.root / "repo.new", agent.repo)
    row = wait_for(lambda: [r for r in agent.rows("docs") if r["outcome"] == "success"], "success")[
        0
    ]
    assert row["attempt"] > 1
    log = Path(row["log_path"]).read_text()
    assert "attempt 1 failed (CAIRN-E010); retry in 1s" in log
    if row["attempt"] > 2:
        assert "attempt 2 failed (CAIRN-E010); retry in 2s" in log
    assert agent.stop() == 0
    assert len(agent.rows("docs")) == 1  # one run, several attempts


def test_sigterm_during_a_run_interrupts_it_safely_and_the_next_start_resumes(
    agent: Agent,
) -> None:
    agent.init_repo("--pack-size", "64KiB")
    src = agent.root / "big"
    src.mkdir()
    rng = random.Random(5)
    for i in range(150):
        (src / f"part{i:03}.bin").write_bytes(rng.randbytes(200 * 1024))
    total = 150 * 200 * 1024
    agent.write_jobs(agent.job("big", src, '{ every = "1h" }'))
    # The backup child stops itself (SIGSTOP) at its 50th stored object: mid-run, before the
    # first periodic index flush (every 64 packs); then the agent is told to stop.
    agent.start(CAIRN_CRASH_PAUSE="local.save.publish:50")
    pid = wait_for(lambda: agent.events("backup_started"), "the backup child")[0]["pid"]
    wait_for(lambda: _state(pid) == "T", "the child to pause mid-backup")
    assert agent.stop() == 0

    rows = agent.rows("big")
    assert [(r["outcome"], r["snapshot"]) for r in rows] == [("interrupted", None)]
    assert "interrupted" in Path(rows[0]["log_path"]).read_text()  # the child stopped cleanly
    assert not list((agent.repo / "snapshots").iterdir()), "no snapshot, half or whole"
    assert not list((agent.repo / "locks").iterdir()), "the child released its repository lock"
    assert list((agent.repo / "index").iterdir()), "what it stored was indexed as it stopped"
    agent.tool.run("check")

    # The next start runs the interrupted job at once (its schedule says 1h) and reuses the
    # packs the interrupted run stored.
    agent.start()
    done = wait_for(lambda: [r for r in agent.rows("big") if r["outcome"] == "success"], "resume")
    assert agent.stop() == 0
    assert done[0]["bytes_added"] < 0.8 * total, "data stored before the stop is not stored again"
    assert any(e.get("catch_up") for e in agent.events("run_started"))
    agent.tool.run("check", "--read-data")
    agent.tool.run("restore", "latest", "--target", str(agent.root / "out"))
    assert manifest(agent.root / "out" / src.relative_to("/")) == manifest(src)


def test_after_downtime_one_catch_up_runs_at_once_without_jitter(agent: Agent) -> None:
    agent.init_repo()
    agent.write_jobs(agent.job("docs", agent.source(), '{ every = "1h" }'), jitter="1h")
    # The history says the job last ran three hours ago: three hourly slots were missed while
    # the agent was down. (A one-hour jitter would make this test wait an hour if it applied.)
    assert agent.cli("run-once", "docs").returncode == 0
    three_hours_ago = time.time() - 3 * 3600
    with contextlib.closing(sqlite3.connect(agent.state / "history.db")) as conn, conn:
        conn.execute("UPDATE runs SET started = ?, ended = ?", (three_hours_ago, three_hours_ago))
    agent.start()
    wait_for(lambda: len(agent.rows("docs")) == 2, "the catch-up run")
    started = agent.events("run_started")
    assert len(started) == 1 and started[0]["catch_up"]
    catch_up = agent.rows("docs")[-1]
    wait_for(
        lambda: json.loads(agent.cli("status", "--json").stdout)["jobs"][0]["next_run"], "plan"
    )
    status = json.loads(agent.cli("status", "--json", check=True).stdout)["jobs"][0]
    # one run for the three missed slots; the next is an hour (plus its jitter) after it
    assert catch_up["started"] + 3600 <= status["next_run"] < catch_up["started"] + 7200
    assert agent.stop() == 0
    assert len(agent.rows("docs")) == 2


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def test_two_runs_of_a_job_never_overlap_across_processes(agent: Agent) -> None:
    agent.init_repo()
    agent.write_jobs(agent.job("docs", agent.source(), '{ every = "1h" }', priority="low"))
    agent.start(CAIRN_CRASH_PAUSE="local.save.publish:1")  # the agent's run holds the lock
    pid = wait_for(lambda: agent.events("backup_started"), "the backup child")[0]["pid"]
    wait_for(lambda: _state(pid) == "T", "the child to pause")
    # priority = "low": the backup runs at nice 19, in the idle I/O class
    assert Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16] == "19"
    if shutil.which("ionice"):
        assert (
            "idle"
            in subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True).stdout
        )
    once = agent.cli("run-once", "docs", "--json")
    assert once.returncode == 81, once.stderr
    assert json.loads(once.stdout)["outcome"] == "skipped"
    assert agent.stop() == 0
    outcomes = sorted((r["outcome"], r["error_code"]) for r in agent.rows("docs"))
    assert outcomes == [("interrupted", None), ("skipped", "CAIRN-E081")]
    # and a held lock from any other process is respected the same way
    lock = agent.state / "locks" / "docs"
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert agent.cli("run-once", "docs").returncode == 81
    finally:
        os.close(fd)
    assert agent.cli("run-once", "docs").returncode == 0


def test_sighup_reloads_a_new_job_and_refuses_a_broken_config(agent: Agent) -> None:
    agent.init_repo()
    a, b = agent.source("a"), agent.source("b")
    agent.write_jobs(agent.job("a", a, '{ every = "2s" }'))
    process = agent.start()
    wait_for(successes(agent, "a", 1), "job a")
    agent.write_jobs(agent.job("a", a, '{ every = "2s" }'), agent.job("b", b, '{ every = "2s" }'))
    process.send_signal(signal.SIGHUP)
    wait_for(successes(agent, "b", 1), "the new job b after SIGHUP")

    agent.config.write_text(agent.config.read_text() + "\n[[job]]\nname = 'c'\nbogus = 1\n")
    process.send_signal(signal.SIGHUP)
    refused = wait_for(lambda: agent.events("reload_refused"), "the refusal")[0]
    assert "job[c]" in refused["error"] or "job[2]" in refused["error"]
    seen = len(agent.rows("a"))
    wait_for(successes(agent, "a", seen + 1), "job a still running on the old config")
    assert process.poll() is None
    assert agent.stop() == 0
    assert not agent.rows("c")


def test_suspend_and_resume_a_job_at_run_time(agent: Agent) -> None:
    agent.init_repo()
    a, b = agent.source("a"), agent.source("b")
    agent.write_jobs(agent.job("a", a), agent.job("b", b))
    agent.start()
    wait_for(successes(agent, "b", 1), "job b")
    assert agent.cli("suspend", "b").returncode == 0
    suspended_at = time.time()
    runs_of_a = len(agent.rows("a"))
    wait_for(successes(agent, "a", runs_of_a + 3), "job a, three more times")
    assert not [r for r in agent.rows("b") if r["started"] > suspended_at]
    status = json.loads(agent.cli("status", "--json", check=True).stdout)
    b_status = next(j for j in status["jobs"] if j["job"] == "b")
    assert b_status["suspended"] and b_status["next_run"] is None
    assert agent.cli("resume", "b").returncode == 0
    resumed_at = time.time()
    wait_for(lambda: [r for r in agent.rows("b") if r["started"] > resumed_at], "b after resume")
    assert agent.stop() == 0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[agent]\nstate = "STATE"\njitter = "soon"\n', "agent.jitter"),
        ("[[job]]\nname = 'a'\nrepository = '/r'\npaths = ['/x']\nschedule = { every = '1h' }\n"
         "colour = 'blue'\n", "job[a].colour"),
    ],
)  # fmt: skip
def test_a_bad_config_is_refused_with_its_code(agent: Agent, text: str, key: str) -> None:
    agent.config.write_text(text.replace("STATE", str(agent.state)))
    for action in ("check-config", "run", "status"):
        done = agent.cli(action)
        assert done.returncode == 80, done.stderr
        assert f"CAIRN-E080: {agent.config}: {key}" in done.stderr
    unknown = agent.cli("run-once", "nope")
    assert unknown.returncode == 80  # the file is checked before the job name
    assert not agent.state.exists()  # status found no history there, and made none


def test_an_unknown_job_name_is_its_own_error(agent: Agent) -> None:
    agent.write_jobs(agent.job("docs", agent.source()))
    done = agent.cli("suspend", "doc")
    assert done.returncode == 82 and "CAIRN-E082" in done.stderr and "jobs: docs" in done.stderr
    assert agent.cli("check-config", check=True).stdout.startswith(f"{agent.config}: ok, 1 job")


def test_status_during_an_outage_shows_the_failed_attempt_and_the_next_retry(
    agent: Agent,
) -> None:
    """The repository is away (a disk not mounted): the first attempt fails, the next waits an
    hour. Status says both, and a job that never ran shows no outcome of a run before."""
    agent.write_jobs(
        agent.job("docs", agent.source(), '{ every = "1h" }', retries=3, retry_backoff="1h")
    )
    agent.start()
    job = wait_for(
        lambda: [j for j in agent.status()["jobs"] if j["retrying"]], "the retry in the status"
    )[0]
    assert job["running"] and job["last_run"] is None
    retrying = job["retrying"]
    assert (retrying["failed_attempt"], retrying["attempts"], retrying["error_code"]) == (
        1, 4, "CAIRN-E010",
    )  # fmt: skip
    assert retrying["retry_at"] >= retrying["started"] + 3600
    retry_at = f"{datetime.fromtimestamp(retrying['retry_at']):%Y-%m-%d %H:%M:%S}"
    human = agent.cli("status", check=True).stdout
    row = next(line for line in human.splitlines() if line.startswith("docs "))
    assert row.split()[3:5] == ["never", "none"], row
    assert row.endswith(f"attempt 2 of 4 at {retry_at}"), row
    assert f"docs: attempt 1 of 4 failed (CAIRN-E010: {retrying['message']}); attempt 2 at" in human
    assert "before:" not in human
    assert agent.stop() == 0
    assert [r["outcome"] for r in agent.rows("docs")] == ["interrupted"]


def test_status_with_a_broken_config_shows_the_history_and_the_error(agent: Agent) -> None:
    agent.init_repo()
    agent.write_jobs(agent.job("docs", agent.source(), '{ every = "1h" }'))
    process = agent.start()
    wait_for(successes(agent, "docs", 1), "the first run")
    wait_for(lambda: agent.status()["jobs"][0]["next_run"], "the agent's plan")
    agent.config.write_text(agent.config.read_text() + "bogus = 1\n")
    process.send_signal(signal.SIGHUP)  # refused: the agent keeps its configuration
    wait_for(lambda: agent.events("reload_refused"), "the refusal")

    human = agent.cli("status")
    assert human.returncode == 80
    assert f"CAIRN-E080: {agent.config}: job[docs].bogus" in human.stderr
    assert "configuration: unusable (CAIRN-E080" in human.stdout
    assert f"agent: running (pid {process.pid})" in human.stdout
    row = next(line for line in human.stdout.splitlines() if line.startswith("docs "))
    assert "success" in row, human.stdout
    as_json = agent.cli("status", "--json")
    assert as_json.returncode == 80
    document = json.loads(as_json.stdout)
    assert document["error"]["code"] == "CAIRN-E080"
    docs = document["result"]["jobs"][0]
    assert (docs["job"], docs["last_run"]["outcome"]) == ("docs", "success")
    assert docs["next_run"] is not None and "bogus" in document["result"]["config_error"]
    assert agent.stop() == 0


def test_run_once_prints_its_summary_and_no_log_lines(agent: Agent) -> None:
    agent.init_repo()
    agent.write_jobs(agent.job("docs", agent.source(), '{ every = "1h" }'))
    once = agent.cli("run-once", "docs", check=True)
    assert once.stdout.startswith("job docs: success in ")
    assert once.stderr == ""
    logged = agent.cli("run-once", "docs", "--log-json", check=True)
    events = [json.loads(line)["event"] for line in logged.stderr.splitlines()]
    assert events[0] == "run_started" and events[-1] == "run_ended"


def test_run_once_says_when_it_retries(agent: Agent) -> None:
    agent.write_jobs(agent.job("docs", agent.source(), retries=1, retry_backoff="1s"))
    once = agent.cli("run-once", "docs")
    assert once.returncode == 10, once.stderr
    assert "docs: attempt 1 of 2 failed (CAIRN-E010: " in once.stderr
    assert "); attempt 2 at " in once.stderr
    assert "{" not in once.stderr  # no JSON log lines
    assert "failure CAIRN-E010" in once.stdout and "attempt 2" in once.stdout


@pytest.mark.parametrize("key", ["password_file", "token_file"])
def test_check_config_refuses_a_file_that_cannot_be_read(agent: Agent, key: str) -> None:
    missing = agent.root / "nowhere" / f"{key}.txt"
    agent.write_jobs(agent.job("docs", agent.source(), **{key: str(missing)}))
    done = agent.cli("check-config")
    assert done.returncode == 80, done.stdout
    assert (
        f"CAIRN-E080: {agent.config}: job[docs].{key}: {missing} cannot be read "
        "(No such file or directory)"
    ) in done.stderr
    assert "ok" not in done.stdout


def test_check_config_refuses_a_channels_file_that_cannot_be_read(agent: Agent) -> None:
    folder = agent.root / "secret-is-a-folder"
    folder.mkdir()
    channel = (
        f'[[notify]]\nkind = "webhook"\nurl = "http://127.0.0.1:9/x"\nsecret_file = "{folder}"\n'
    )
    agent.write_jobs(agent.job("docs", agent.source()), channel)
    done = agent.cli("check-config")
    assert done.returncode == 80
    assert f"{agent.config}: notify[0].secret_file: {folder} cannot be read" in done.stderr


def test_test_notify_without_a_channel_is_a_configuration_error(agent: Agent) -> None:
    agent.write_jobs(agent.job("docs", agent.source()))
    done = agent.cli("test-notify")
    assert done.returncode == 80
    assert f"CAIRN-E080: {agent.config}: notify: no [[notify]] channel to test" in done.stderr
