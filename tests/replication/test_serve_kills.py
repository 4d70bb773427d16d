"""kill -9 of a real `cairn server serve` at the crash points of replication, then `serve`
again (issue 14's proof, RELIABILITY.md R1 and R12): the process dies by SIGKILL inside the
scheduler's run, and with no manual step the copy on the target is a repository
`check --read-data` accepts, the restarted server's run resumes from the stored cursor, and the
copy then holds exactly the server's objects (a mirror: none missing, none extra), each hashing
to its name.

The workload is what a user runs: a local-folder target added with `cairn server target add`
(mirror mode, no quarantine delay, so one run both sends and deletes), continuous; two backups
replicated, then the target paused while a forget + prune and a third backup change the server.
That state is kept; each kill starts from a copy of it: `serve` with `CAIRN_CRASH_AT=<point>:<k>`
in its environment only, `cairn server target resume`, and the run dies at the k-th hit.

CI kills at the first hit of each point; `CAIRN_ROBUSTNESS=full` (`scripts/soak`) at every hit
the traced run makes (`CAIRN_ROBUSTNESS_REPORT=DIR` writes the figures as JSON)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.local import LocalBackend
from cairn.crypto.hashing import object_name
from cairn.replication.engine import SEND_ORDER
from cairn.replication.layout import server_id
from cairn.server.app import open_services
from cairn.server.context import Settings
from tests.integration.test_cli_server import Client, admin, tree
from tests.support.clitools import Cairn, manifest
from tests.support.serverfixture import RunningServer, free_port, running_server

TENANT = "killed"
TARGET = "offsite"
POINTS = (
    "replication.save",
    "replication.cursor",
    "replication.quarantine",
    "replication.remove",
    "replication.forget",
)
DEADLINE_S = 180.0
"""A bound on a wait on a slow, shared machine (the scheduler wakes within its poll of 5 s)."""


@dataclass
class Lab:
    """The prepared state every kill starts from: the server's data folder (stopped), a copy of
    the target folder, the client's home and the tree of the last backup. The target's location
    is stored in the server's database, so every run uses the same `offsite` folder, put back
    from the copy first (runs are one after the other)."""

    root: Path
    source: Path
    offsite: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def keep_offsite(self) -> None:
        shutil.copytree(self.offsite, self.root / "offsite-as-prepared", symlinks=True)

    def copy_to(self, where: Path) -> Lab:
        shutil.copytree(self.root, where, symlinks=True)
        shutil.rmtree(self.offsite, ignore_errors=True)
        shutil.copytree(where / "offsite-as-prepared", self.offsite, symlinks=True)
        return Lab(where, self.source, self.offsite, free_port())


def listing(backend: LocalBackend) -> dict[tuple[ObjectKind, str], int]:
    return {(k, info.handle.name): info.size for k in SEND_ORDER for info in backend.list(k)}


def tenant_id(data: Path) -> str:
    return open_services(Settings(data=data), create=False).tenants.get(TENANT).id


def copy_location(lab: Lab) -> Path:
    return lab.offsite / server_id(lab.data) / tenant_id(lab.data)


def wait_until(done: object, what: str, server: RunningServer | None = None) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done():  # type: ignore[operator]
        log = server.log()[-3000:] if server is not None else ""
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_S}s; {log}"
        time.sleep(0.3)


def in_step(lab: Lab) -> bool:
    """The copy holds exactly the server's objects."""
    server_side = LocalBackend(lab.data / "tenants" / tenant_id(lab.data))
    return listing(LocalBackend(copy_location(lab))) == listing(server_side)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("lab")
    prepared = Lab(root, root / "src", tmp_path_factory.mktemp("target") / "offsite", free_port())
    with running_server(prepared.data, port=prepared.port) as server:
        token = str(admin(server, "tenant", "add", TENANT)["admin_token"])
        client = Client(server, TENANT, root / "home", token)
        client.run("init")
        tree(prepared.source, 5, size=200_000)
        client.run("backup", str(prepared.source))
        (prepared.source / "second.bin").write_bytes(os.urandom(150_000))
        client.run("backup", str(prepared.source))
        prepared.offsite.mkdir()
        mirror = ("--mode", "mirror", "--quarantine", "0s")
        admin(server, "target", "add", TARGET, str(prepared.offsite), *mirror)
        wait_until(lambda: copy_location(prepared).exists() and in_step(prepared), "the copy")
        admin(server, "target", "pause", TARGET)
        first = min(client.run("snapshots", "--json").json(), key=lambda s: s["time"])["id"]
        client.run("forget", first, "--prune")
        (prepared.source / "third.bin").write_bytes(os.urandom(250_000))
        client.run("backup", str(prepared.source))
    assert not in_step(prepared), "the paused target has work to do"
    prepared.keep_offsite()
    return prepared


def kill_run(lab: Lab, point: str | None, k: int = 0, trace: Path | None = None) -> None:
    """`serve` with the crash point armed, the target resumed: returns once the server died by
    SIGKILL (with `point`) or, tracing, once the copy is in step."""
    env = {"CAIRN_CRASH_AT": f"{point}:{k}"} if point else {}
    if trace is not None:
        env["CAIRN_CRASH_TRACE"] = str(trace)
    with running_server(lab.data, port=lab.port, env=env) as server:
        admin(server, "target", "resume", TARGET)
        if point is None:
            wait_until(lambda: in_step(lab), "the traced run", server)
            return
        try:
            code = server.process.wait(timeout=DEADLINE_S)
        except Exception:
            pytest.fail(f"{point}:{k} was not reached; {server.log()[-3000:]}")
        assert code == -signal.SIGKILL, (point, k, code, server.log()[-3000:])


def recover(lab: Lab, cache: Path) -> None:
    """No manual step: the copy checks clean as the kill left it; `serve` again resumes the run
    and brings the copy in step; every object hashes to its name; it checks clean again."""
    copy = copy_location(lab)
    tool = Cairn(copy, cache=cache)
    tool.run("check", "--read-data")
    with running_server(lab.data, port=lab.port) as server:
        wait_until(lambda: in_step(lab), "the resumed run", server)
        status = admin(server, "target", "status")
        assert [(r["name"], r["lag_objects"]) for r in status] == [(TARGET, 0)], status
    backend = LocalBackend(copy)
    for kind, name in listing(backend):
        if kind is not ObjectKind.CONFIG:
            assert object_name(backend.load(Handle(kind, name))).hex == name
    tool.run("check", "--read-data")
    restored = cache.parent / "restored"
    tool.run("restore", "latest", "--target", str(restored))
    assert manifest(restored / lab.source.relative_to("/")) == manifest(lab.source)


def chosen(trace: Path) -> list[tuple[str, int]]:
    """Each replication point's first hit in CI; every hit with CAIRN_ROBUSTNESS=full."""
    hits = Counter(line.strip() for line in trace.read_text().splitlines())
    full = os.environ.get("CAIRN_ROBUSTNESS") == "full"
    return [(p, k) for p in POINTS for k in (range(1, hits[p] + 1) if full else (1,))]


def test_kill_9_of_serve_at_every_replication_crash_point(lab: Lab, tmp_path: Path) -> None:
    probe = lab.copy_to(tmp_path / "probe")
    trace = tmp_path / "trace"
    kill_run(probe, None, trace=trace)
    hits = Counter(line.strip() for line in trace.read_text().splitlines())
    assert all(hits[p] for p in POINTS), f"the workload misses a point: {hits}"
    kills = chosen(trace)
    started = time.monotonic()
    for index, (point, k) in enumerate(kills):
        run = lab.copy_to(tmp_path / f"kill{index}")
        kill_run(run, point, k)
        recover(run, tmp_path / f"kill{index}-cache" / "cache")
        shutil.rmtree(run.root)
    figures = {
        "kills": len(kills),
        "points": {p: hits[p] for p in POINTS},
        "failures": 0,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(f"serve killed at {figures}")
    report = os.environ.get("CAIRN_ROBUSTNESS_REPORT")
    if report:
        Path(report).mkdir(parents=True, exist_ok=True)
        (Path(report) / "replication-serve-kills.json").write_text(json.dumps(figures))
