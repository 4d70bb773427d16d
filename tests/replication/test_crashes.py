"""A replication run stopped at every kind of crash point (design 17.4, issue 14's proof): the
engine's own (before a target save, a cursor move, a quarantine insert, a target removal, a
quarantine row's removal) and the target's (a local folder's write, publish and unlink). At each
stop the copy is a repository `cairn check` accepts; the next run finishes the job and the copy
then holds exactly what the server holds, every object hashing to its name.

The stop is an exception raised at the crash point in this process (`crashpoints.set_handler`):
what the run made durable before it stays, nothing after it happens. A mirror target with no
quarantine delay takes a workload of sends and deletions in one run (two backups, then a forget
and prune on the server after the target's first copy)."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.local import LocalBackend
from cairn.core import crashpoints
from cairn.crypto.hashing import object_name
from cairn.replication.engine import SEND_ORDER
from cairn.replication.model import Filters, Mode, Target
from tests.integration.test_cli_server import Client, admin, tree
from tests.replication.support import Engine
from tests.support.clitools import Cairn
from tests.support.serverfixture import RunningServer, running_server

TENANT = "crashy"


class Crash(BaseException):
    """The process died here (not an error any layer may catch)."""


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("primary")) as server:
        yield server


def listing(backend: LocalBackend) -> dict[tuple[ObjectKind, str], int]:
    return {
        (kind, info.handle.name): info.size for kind in SEND_ORDER for info in backend.list(kind)
    }


def mirror(name: str, location: str) -> Target:
    return Target(name, location, Mode.MIRROR, quarantine_s=0, filters=Filters(tenants=(TENANT,)))


class Stopper:
    """Counts crash point hits (from any thread); raises Crash at the k-th hit of one."""

    def __init__(self, at: tuple[str, int] | None = None) -> None:
        self.at = at
        self.hits: Counter[str] = Counter()
        self.order: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def __call__(self, name: str) -> None:
        with self._lock:
            self.hits[name] += 1
            hit = (name, self.hits[name])
            self.order.append(hit)
        if hit == self.at:
            raise Crash(name)


def chosen(order: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Every engine point's first, middle and last hit; the target's first and last."""
    by_name: dict[str, list[int]] = {}
    for name, k in order:
        by_name.setdefault(name, []).append(k)
    picks: set[tuple[str, int]] = set()
    for name, ks in by_name.items():
        if name.startswith("replication."):
            picks |= {(name, ks[0]), (name, ks[len(ks) // 2]), (name, ks[-1])}
        elif name in ("local.save.publish", "local.remove.unlink", "local.save.write"):
            picks |= {(name, ks[0]), (name, ks[-1])}
    return sorted(picks)


def test_a_run_stopped_at_any_crash_point_leaves_a_repository_and_the_next_run_finishes(
    primary: RunningServer, tmp_path: Path
) -> None:
    token = str(admin(primary, "tenant", "add", TENANT)["admin_token"])
    client = Client(primary, TENANT, tmp_path / "home", token)
    client.run("init")
    source = tree(tmp_path / "src", 7, size=120_000)
    client.run("backup", str(source))
    (source / "second.bin").write_bytes(b"second backup\n" * 20_000)
    client.run("backup", str(source))

    engine = Engine(primary.data)
    pristine = tmp_path / "pristine"
    first = engine.replicator.run(
        engine.register(mirror("first", str(pristine))), engine.layouts(str(pristine))
    )
    assert first.error is None
    first_snapshot = min(client.run("snapshots", "--json").json(), key=lambda s: s["time"])["id"]
    client.run("forget", first_snapshot, "--prune")
    server_side = LocalBackend(primary.data / "tenants" / engine.tenant_id(TENANT))
    expected = listing(server_side)
    before = listing(LocalBackend(Path(engine.copy_location(str(pristine), TENANT))))
    assert set(before) - set(expected), "the forget removed objects the target holds"

    def replay(name: str, stopper: Stopper | None) -> tuple[Path, bool]:
        location = tmp_path / name
        shutil.copytree(pristine, location)
        target = engine.register(mirror(name, str(location)))
        with engine.db.write() as conn:
            conn.execute("INSERT INTO cursors (target, seq) VALUES (?, ?)", (name, first.cursor))
        crashpoints.set_handler(stopper)
        try:
            report = engine.replicator.run(target, engine.layouts(str(location)))
            assert report.error is None, report
            return location, False
        except Crash:
            return location, True
        finally:
            crashpoints.set_handler(None)

    probe = Stopper()
    replay("probe", probe)
    points = chosen(probe.order)
    assert {name for name, _ in points} >= {
        "replication.save",
        "replication.cursor",
        "replication.quarantine",
        "replication.remove",
        "replication.forget",
    }
    print(f"{len(points)} crash points of {len(probe.order)} hits: {points}")
    for index, point in enumerate(points):
        location, crashed = replay(f"cut{index}", Stopper(point))
        assert crashed, point
        copy_location = engine.copy_location(str(location), TENANT)
        Cairn(copy_location, cache=tmp_path / f"cache{index}").run("check")
        target = mirror(f"cut{index}", str(location))
        again = engine.replicator.run(target, engine.layouts(str(location)))
        assert again.error is None, (point, again)
        copy = LocalBackend(Path(copy_location))
        assert listing(copy) == expected, point
        for kind, name in expected:
            if kind is not ObjectKind.CONFIG:
                assert object_name(copy.load(Handle(kind, name))).hex == name, point
    Cairn(copy_location, cache=tmp_path / "final").run("check", "--read-data")
