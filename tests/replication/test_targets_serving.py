"""The replication scheduler inside the server (design 17.11, 17.12): started with the app only
when targets exist, each run in the audit log, a failing target alerted through the `--notify`
channels (a real webhook receiver), stopped when the app stops. The engine is replaced by the
scheduler tests' fake runner until it is merged."""

from __future__ import annotations

import json
import time
from pathlib import Path

from starlette.testclient import TestClient

from cairn.replication.db import ReplicationDb
from cairn.replication.model import Target
from cairn.server.app import create_app, open_services
from cairn.server.context import Settings
from tests.replication.test_targets_scheduler import FakeRunner
from tests.support.notifyfixtures import webhook_server

DEADLINE_S = 60.0


def journal_one(db: ReplicationDb) -> None:
    with db.write() as conn:
        conn.execute(
            "INSERT INTO journal (tenant_id, kind, name, size, action, at_ms) "
            "VALUES ('t1', 'packs', 'p', 10, 'add', 0)"
        )


def runner_for(data: Path, **settings: object) -> tuple[FakeRunner, ReplicationDb]:
    """A data folder, and the fake engine over its replication database."""
    open_services(Settings(data=data))
    db = ReplicationDb(data / "replication.db")
    return FakeRunner(db, **settings), db  # type: ignore[arg-type]


def wait_until(condition: object, what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < end, f"{what} did not happen"
        time.sleep(0.05)


def test_a_target_added_while_serving_is_taken_up(tmp_path: Path) -> None:
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    runner, db = runner_for(tmp_path / "data")
    services = open_services(Settings(data=tmp_path / "data"), runner=runner)
    assert services.replication is not None
    with TestClient(create_app(services)):
        assert services.replication.scheduler.running, "running with no target yet"
        services.targets.add(Target(name="nas", location=str(offsite)))
        journal_one(db)
        services.replication.wake.set()
        wait_until(lambda: runner.calls, "a run of the target added while serving")
    assert not services.replication.scheduler.running
    assert open_services(Settings(data=tmp_path / "data")).replication is None, "no engine"


def test_a_failing_target_runs_is_audited_alerted_and_stops_with_the_app(tmp_path: Path) -> None:
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    with webhook_server(None) as hook:
        notify = tmp_path / "notify.toml"
        notify.write_text(f'[[notify]]\nkind = "webhook"\nurl = "{hook.url}"\n')
        data = tmp_path / "data"
        runner, db = runner_for(data, failures=1, raises=True)
        services = open_services(Settings(data=data, notify=notify), runner=runner)
        services.targets.add(Target(name="nas", location=str(offsite), retries=0))
        journal_one(db)
        assert services.replication is not None
        with TestClient(create_app(services)):
            services.replication.wake.set()
            wait_until(lambda: runner.calls, "a replication run")
            wait_until(lambda: hook.hits, "the failure webhook")
        assert not services.replication.scheduler.running
        alert = json.loads(hook.hits[0].body)
        assert "replication/nas" in json.dumps(alert) and "hung up" in json.dumps(alert)
        audit = services.audit.entries(100)
        runs = [e for e in audit if e["action"] == "replicate"]
        assert runs and runs[-1]["actor"] == "replication"
        assert str(runs[-1]["outcome"]).startswith("failed: ConnectionError")


def test_metrics_show_each_targets_lag_and_state(tmp_path: Path) -> None:
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    _, db = runner_for(tmp_path / "data")
    services = open_services(Settings(data=tmp_path / "data"))
    services.targets.add(Target(name="nas", location=str(offsite)))
    journal_one(db)
    text = services.metrics.exposition().decode()
    assert 'cairn_replication_lag_bytes{target="nas"} 10.0' in text
    assert 'cairn_replication_pending_objects{target="nas"} 1.0' in text
    # the change was journalled at the epoch: far more than twice the 5-minute interval ago
    assert 'cairn_replication_state{state="lagging",target="nas"} 1.0' in text
    assert 'cairn_replication_state{state="ok",target="nas"} 0.0' in text
    assert "cairn_replication_last_success_seconds{" not in text, "never succeeded: absent"


def test_a_restart_does_not_tell_a_failure_again(tmp_path: Path) -> None:
    """The alerter's state file (15.6) remembers the failure it told: the event the restarted
    scheduler raises again for a target still failing sends nothing (design 17.12)."""
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    with webhook_server(None) as hook:
        notify = tmp_path / "notify.toml"
        notify.write_text(f'[[notify]]\nkind = "webhook"\nurl = "{hook.url}"\n')
        data = tmp_path / "data"
        runner, db = runner_for(data, failures=100, raises=True)
        services = open_services(Settings(data=data, notify=notify), runner=runner)
        services.targets.add(Target(name="nas", location=str(offsite), retries=0))
        journal_one(db)
        assert services.replication is not None
        with TestClient(create_app(services)):
            services.replication.wake.set()
            wait_until(lambda: hook.hits, "the failure webhook")
        for _ in range(2):  # two restarts, each seeing the target still failing
            services = open_services(Settings(data=data, notify=notify), runner=runner)
            assert services.replication is not None and services.alerts is not None
            services.alerts.start()
            events = services.replication.scheduler.watch()
            assert [e.kind.value for e in events] == ["failed"]
            assert services.replication.scheduler.due() == [], "it waits, not tried at once"
            services.alerts.stop()  # every queued alert handled
        assert len(hook.hits) == 1, [h.body for h in hook.hits]
        assert len(runner.calls) == 1
