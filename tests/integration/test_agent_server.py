"""The agent and its server (design 15.3, 15.5), against a real `cairn server` over TLS.

A repository that goes away and comes back wakes the reachability trigger at once; every run an
agent reports shows in the tenant's status and in `cairn server jobs`; a report is refused when
malformed (400, CAIRN-E090) and lands only in the reporting token's tenant.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cairn.agent.report import report_run
from cairn.agent.spec import Every, JobSpec
from cairn.agent.triggers import ReachableTrigger, probe_repository
from cairn.notify.message import Outcome, RunSummary
from cairn.server.auth import Role
from tests.support.clitools import Cairn
from tests.support.serverfixture import RunningServer, free_port, running_server

DEADLINE = 60.0
SNAPSHOT = "ab" * 32


@pytest.fixture
def client_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The agent machine's config folder (pinned certificates), as its environment names it."""
    home = tmp_path / "agent-home"
    home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    for name in ("CAIRN_TOKEN", "CAIRN_TOKEN_FILE", "CAIRN_SERVER_FINGERPRINT"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("jobs-server")) as running:
        running.tenant("acme")
        running.tenant("beta")
        yield running


def _job(
    server: RunningServer, tenant: str, token: str, folder: Path, name: str = "home"
) -> JobSpec:
    token_file = folder / f"{tenant}-{name}.token"
    token_file.write_text(token + "\n")
    return JobSpec(
        name=name,
        repository=server.location(tenant),
        paths=("/home",),
        schedule=Every(3600.0),
        token_file=str(token_file),
    )


def _run(job: str, outcome: Outcome, host: str = "laptop-7", **extra: Any) -> RunSummary:
    now = time.time()
    return RunSummary(job=job, host=host, started=now - 60, ended=now, outcome=outcome, **extra)


def _jobs(server: RunningServer, *args: str) -> Any:
    result = Cairn(server.data).run("server", "jobs", *args, "--data", str(server.data), "--json")
    return result.json()


def _status(server: RunningServer, tenant: str, token: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{server.url}/v1/t/{tenant}/status",
        headers={"authorization": f"Bearer {token}"},
        verify=False,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


# Reports


def test_a_reported_run_shows_in_status_and_server_jobs(
    server: RunningServer, client_home: Path, tmp_path: Path
) -> None:
    backup = server.token("acme", Role.BACKUP)
    job = _job(server, "acme", backup, tmp_path)
    report_run(job, _run("home", Outcome.SUCCESS, snapshot=SNAPSHOT, files=12, bytes_added=3456))
    report_run(
        job,
        _run("home", Outcome.FAILURE, error_code="CAIRN-E033", message="storage unreachable"),
    )
    report_run(_job(server, "acme", backup, tmp_path, "db"), _run("db", Outcome.SUCCESS))
    shown = {(j["host"], j["job"]): j for j in _jobs(server, "acme")}
    assert set(shown) == {("laptop-7", "home"), ("laptop-7", "db")}
    home = shown[("laptop-7", "home")]
    assert (home["outcome"], home["error_code"], home["message"]) == (
        "failure",
        "CAIRN-E033",
        "storage unreachable",
    )
    assert home["last_success_ms"] is not None and home["silent"] is False
    assert home["tenant"] == "acme" and home["age_s"] >= 0
    status = _status(server, "acme", server.token("acme", Role.RESTORE))
    assert {(j["host"], j["job"], j["outcome"]) for j in status["jobs"]} == {
        ("laptop-7", "home", "failure"),
        ("laptop-7", "db", "success"),
    }
    table = Cairn(server.data).run("server", "jobs", "acme", "--data", str(server.data)).out
    assert "laptop-7" in table and "FAILING" in table and "CAIRN-E033" in table
    assert (client_home / "cairn" / "known_servers").exists()  # pinned like every client


def test_a_job_without_a_success_for_too_long_is_marked_silent(
    server: RunningServer, client_home: Path, tmp_path: Path
) -> None:
    job = _job(server, "acme", server.token("acme", Role.BACKUP), tmp_path, "photos")
    report_run(job, _run("photos", Outcome.FAILURE, host="desk-2", error_code="CAIRN-E030"))
    report_run(job, _run("photos", Outcome.SUCCESS, host="desk-3"))
    shown = {(j["host"], j["job"]): j for j in _jobs(server, "acme", "--silent-after", "1h")}
    assert shown[("desk-2", "photos")]["silent"] is True  # never succeeded
    assert shown[("desk-3", "photos")]["silent"] is False
    later = {(j["host"], j["job"]): j for j in _jobs(server, "acme", "--silent-after", "0s")}
    assert later[("desk-3", "photos")]["silent"] is True
    table = Cairn(server.data).run("server", "jobs", "--data", str(server.data)).out
    assert "SILENT" in table


def test_reports_stay_in_their_tenant(
    server: RunningServer, client_home: Path, tmp_path: Path
) -> None:
    report_run(
        _job(server, "beta", server.token("beta", Role.BACKUP), tmp_path, "beta-only"),
        _run("beta-only", Outcome.SUCCESS, host="beta-host"),
    )
    acme_jobs = _status(server, "acme", server.token("acme", Role.TENANT_ADMIN))["jobs"]
    beta_jobs = _status(server, "beta", server.token("beta", Role.RESTORE))["jobs"]
    assert all(j["host"] != "beta-host" for j in acme_jobs)
    assert [j["host"] for j in beta_jobs] == ["beta-host"]
    assert all(j["tenant"] == "beta" for j in _jobs(server, "beta"))
    # beta's token aimed at acme: the same 404 as a tenant that does not exist, nothing stored
    body = {"job": "x", "host": "intruder", "started": 1, "ended": 2, "outcome": "success"}
    headers = {"authorization": f"Bearer {server.token('beta', Role.TENANT_ADMIN)}"}
    answers = [
        httpx.post(f"{server.url}/v1/t/{t}/jobs", json=body, headers=headers, verify=False)
        for t in ("acme", "nosuch")
    ]
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].content == answers[1].content
    assert all(j["host"] != "intruder" for j in _jobs(server, "acme"))
    # nor can beta read acme's results
    answer = httpx.get(f"{server.url}/v1/t/acme/status", headers=headers, verify=False)
    assert answer.status_code == 404


GOOD = {"job": "home", "host": "pc", "started": 10.0, "ended": 20.5, "outcome": "success"}
BAD_BODIES = [
    ("not json", b"{nope"),
    ("a list", b"[]"),
    ("no job", {k: v for k, v in GOOD.items() if k != "job"}),
    ("empty job", {**GOOD, "job": ""}),
    ("long job", {**GOOD, "job": "j" * 101}),
    ("job not text", {**GOOD, "job": 7}),
    ("control characters", {**GOOD, "host": "pc\x1b[2J"}),
    ("unknown outcome", {**GOOD, "outcome": "great"}),
    ("ended before started", {**GOOD, "ended": 5.0}),
    ("time not a number", {**GOOD, "started": "yesterday"}),
    ("time a boolean", {**GOOD, "started": True}),
    ("time negative", {**GOOD, "started": -1}),
    ("time huge", {**GOOD, "ended": 1e300}),
    ("files negative", {**GOOD, "files": -1}),
    ("files too big for SQLite", {**GOOD, "files": 2**64}),
    ("bytes a float", {**GOOD, "bytes_added": 1.5}),
    ("snapshot not an ID", {**GOOD, "snapshot": "../../etc/passwd"}),
    ("error code not one", {**GOOD, "error_code": "E1; DROP TABLE"}),
    ("message too long", {**GOOD, "message": "m" * 1001}),
    ("unknown field", {**GOOD, "paths": ["/home/alice/secret.txt"]}),
    ("nesting bomb", b'{"job": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("too large", {**GOOD, "message": "m" * 70_000}),
]


@pytest.mark.parametrize(("label", "body"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_a_malformed_report_is_a_bad_request(
    server: RunningServer, label: str, body: object
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"authorization": f"Bearer {server.token('acme', Role.BACKUP)}"}
    answer = httpx.post(
        f"{server.url}/v1/t/acme/jobs", content=content, headers=headers, verify=False, timeout=30
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] in ("CAIRN-E090", "CAIRN-E068")
    assert "Traceback" not in server.log()


def test_a_good_report_with_every_field_is_recorded(server: RunningServer) -> None:
    body = {
        **GOOD,
        "snapshot": SNAPSHOT,
        "files": 2**40,
        "bytes_added": 0,
        "error_code": None,
        "message": "two lines\nand a\ttab",
    }
    headers = {"authorization": f"Bearer {server.token('acme', Role.BACKUP)}"}
    answer = httpx.post(f"{server.url}/v1/t/acme/jobs", json=body, headers=headers, verify=False)
    assert answer.status_code == 201, answer.text
    shown = {(j["host"], j["job"]): j for j in _jobs(server, "acme")}[("pc", "home")]
    assert (shown["started_ms"], shown["ended_ms"], shown["files"]) == (10_000, 20_500, 2**40)
    assert shown["message"] == "two lines\nand a\ttab"
    entries = server.services().audit.entries(500)
    assert any(e["action"] == "report-job" and e["target"] == "pc home success" for e in entries)


def test_report_run_never_raises(
    client_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    token_file = tmp_path / "token"
    token_file.write_text("cairn_000000000000_" + "1" * 64)
    nowhere = JobSpec(
        name="home",
        repository=f"cairns://127.0.0.1:{port}/acme",
        paths=("/home",),
        schedule=Every(3600.0),
        token_file=str(token_file),
    )
    unreadable = JobSpec(
        name="home",
        repository=f"cairns://127.0.0.1:{port}/acme",
        paths=("/home",),
        schedule=Every(3600.0),
        token_file=str(tmp_path / "missing-token"),
    )
    local = JobSpec(name="home", repository=str(tmp_path), paths=("/",), schedule=Every(60.0))
    with caplog.at_level(logging.WARNING, "cairn.agent.report"):
        for job in (nowhere, unreadable, local):
            report_run(job, _run("home", Outcome.SUCCESS))
    assert caplog.text.count("CAIRN-E091") == 2  # a local repository has no server to tell


def test_a_refused_token_is_logged_not_raised(
    server: RunningServer, client_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    revoked = server.services().tokens.issue(Role.BACKUP, "acme")
    server.services().tokens.revoke(revoked.id)
    job = _job(server, "acme", str(revoked), tmp_path, "revoked")
    with caplog.at_level(logging.WARNING, "cairn.agent.report"):
        report_run(job, _run("revoked", Outcome.SUCCESS))
    assert "CAIRN-E091" in caplog.text
    assert all(j["job"] != "revoked" for j in _jobs(server, "acme"))


# Reachability


class Wakes:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, reason: str) -> None:
        with self._cond:
            self.reasons.append(reason)
            self._cond.notify_all()

    def wait_for(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.reasons) >= count, DEADLINE), self.reasons


def _wait_until(condition: Any) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.05)


def test_a_server_stopped_and_started_again_wakes_the_trigger_at_once(
    tmp_path: Path, client_home: Path
) -> None:
    data = tmp_path / "server"
    port = free_port()
    wakes = Wakes()
    location = f"cairns://127.0.0.1:{port}/acme"
    trigger = ReachableTrigger(lambda: probe_repository(location, timeout_s=2.0), probe_s=0.2)
    try:
        with running_server(data, port=port):
            trigger.start(wakes)
            wakes.wait_for(1)  # reachable at start: once
        _wait_until(lambda: not trigger.reachable)  # cut off
        assert wakes.reasons == ["reachable"]
        with running_server(data, port=port):  # back on the network
            wakes.wait_for(2)
        assert wakes.reasons == ["reachable", "reachable"]
    finally:
        trigger.stop()


def test_a_server_showing_another_certificate_is_unreachable(
    tmp_path: Path, client_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running_server(tmp_path / "server") as server:
        location = server.location("acme")
        assert probe_repository(location)
        assert not (client_home / "cairn" / "known_servers").exists()  # a probe pins nothing
        pins = client_home / "cairn" / "known_servers"
        pins.parent.mkdir(parents=True)
        pins.write_text(f"127.0.0.1:{server.port} {'0' * 64}\n")
        with caplog.at_level(logging.ERROR, "cairn.agent.triggers"):
            assert not probe_repository(location)
        assert "CAIRN-E094" in caplog.text


def test_a_plain_loopback_server_is_probed_too(tmp_path: Path) -> None:
    with running_server(tmp_path / "server", False) as server:
        assert probe_repository(server.location("acme"))
    assert not probe_repository(server.location("acme"))


def test_a_report_names_no_files(server: RunningServer, client_home: Path, tmp_path: Path) -> None:
    job = _job(server, "acme", server.token("acme", Role.BACKUP), tmp_path, "private")
    message = "cannot read /home/alice/tax-2026.pdf and ~/.ssh/id_ed25519 on cairns://h:1/acme"
    report_run(job, _run("private", Outcome.WARNING, message=message))
    shown = {j["job"]: j for j in _jobs(server, "acme")}["private"]
    assert "alice" not in shown["message"] and "id_ed25519" not in shown["message"]
    assert (
        shown["message"].startswith("cannot read <path>")
        and "cairns://h:1/acme" in shown["message"]
    )


def test_server_jobs_says_so_when_nothing_was_reported(server: RunningServer) -> None:
    server.tenant("quiet")
    tool = Cairn(server.data)
    assert tool.run("server", "jobs", "quiet", "--data", str(server.data)).out.strip() == (
        "no job results reported yet"
    )
    assert _jobs(server, "quiet") == []
    bad = tool.run(
        "server", "jobs", "--silent-after", "soon", "--data", str(server.data), check=False
    )
    assert bad.code == 2 and "CAIRN-E002" in bad.err
    missing = tool.run("server", "jobs", "nosuch", "--data", str(server.data), check=False)
    assert missing.code == 72
