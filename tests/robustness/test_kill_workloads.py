"""kill -9 at every crash point of the reference workloads (RELIABILITY.md R1, systematic pass).

Each workload is one entry: a name, how its repository is prepared, and the commands it runs.
CI kills each process of a workload once at each crash point it reaches (at its first, middle or
last hit there: `killharness.choose`); CAIRN_ROBUSTNESS=full (scripts/soak) kills at every hit.
killharness.py says what is verified after each kill. The longest workloads come first and are
split into shards, so that xdist starts them early on several workers (tests/conftest.py runs the
`slow` tests first) instead of leaving one of them to run alone at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cairn.backends.base import ObjectKind
from cairn.backends.local import LocalBackend
from cairn.core.ids import ObjectName
from cairn.format.pack import BlobKind
from cairn.format.snapshot import decode_snapshot
from cairn.repository.packs import read_trailer
from tests.robustness.killharness import CHECK_FAILED, ONLY_ENV, Lab, Run, Workload, systematic
from tests.robustness.trees import evolve, make_tree

pytestmark = pytest.mark.slow

PACK_SIZE = "64KiB"  # many small packs: many crash points in a few MB


def _init(lab: Lab) -> None:
    lab.tool().run("init", "--pack-size", PACK_SIZE)
    make_tree(lab.source("data"), lab.seed)


def _versions(lab: Lab, last: int) -> None:
    """Snapshots of versions 1 .. last-1 of the data; the source is left at version `last`."""
    _init(lab)
    for version in range(2, last + 1):
        lab.backup("data")
        evolve(lab.sources["data"], lab.seed, version)


def _forget_plan(lab: Lab) -> None:
    plan = lab.tool().run("forget", "--keep-last", "1", "--dry-run", "--json").json()
    lab.may_vanish = set(plan["to_remove"])
    assert lab.may_vanish, "the workload's forget must have something to remove"


def _backup(run: Run) -> None:
    run.call("backup", "backup", "--json", str(run.lab.sources["data"]))


def _prepare_backup_during_prune(lab: Lab) -> None:
    # v3 brings back a file only v1 held: the backup deduplicates against data the forget makes
    # unused and the prune condemns, so the sweep has to keep (resurrect) it.
    _versions(lab, 3)
    _forget_plan(lab)


def _backup_during_prune(run: Run) -> None:
    # The backup stops itself after saving its lock, loading the index and publishing its first
    # pack (publish 1 is the lock); forget and prune run to their end (or their kill) meanwhile.
    # --max-unused 0 condemns every pack with a dead blob (the default 5 % depends on how the
    # blobs fell into packs), so the pack of the file v3 brings back is always condemned.
    backup = run.start(
        "backup",
        "backup",
        "--json",
        str(run.lab.sources["data"]),
        pause_at=("local.save.publish", 2),
    )
    backup.wait_paused()
    if run.call("forget", "forget", "--keep-last", "1", "--json").ok:
        run.call("prune", "prune", "--max-unused", "0", "--json")
    backup.wait()
    sweep = run.call("sweep", "prune", "--json")  # sweeps once the backup's session has ended
    if run.target is None:  # the traced run: the workload still tests what it means to
        assert sweep.ok and sweep.json()["kept_packs"] > 0, "the sweep had nothing to keep"


def _prepare_forget_prune(lab: Lab) -> None:
    _versions(lab, 3)
    lab.backup("data")
    _forget_plan(lab)


def _forget_prune(run: Run) -> None:
    if run.call("forget", "forget", "--keep-last", "1", "--prune", "--json").ok:
        sweep = run.call("prune", "prune", "--grace", "0", "--json")  # what the first condemned
        if run.target is None:
            assert sweep.ok and sweep.json()["swept_packs"] > 0, "the sweep swept nothing"


def _prepare_key_change(lab: Lab) -> None:
    lab.passwords.update(second="battery staple", third="tr0ub4dor")
    _init(lab)
    lab.backup("data")


def _key_change(run: Run) -> None:
    first, second, third = "first", "second", "third"
    new = run.lab.password_file
    add = run.call(
        "key-add",
        *("key", "add", "--json", "--new-password-file", new(second)),
        keys=({first}, {first, second}),
    )
    if not add.ok:
        return
    passwd = run.call(
        "key-passwd",
        *("key", "passwd", "--new-password-file", new(third)),
        keys=({first, second}, {second, third}),
    )
    if passwd.ok:
        run.call(
            "key-remove",
            *("key", "remove", add.json()["id"]),
            password=third,
            keys=({second, third}, {third}),
        )


def _prepare_repair(lab: Lab) -> None:
    """Two snapshots of the same data, then damage that `check --repair` mends and the next
    backup fills in: a byte flipped in one data blob of a pack holding several, the oldest
    index gone (its packs are in no index), a snapshot's reflist gone."""
    _init(lab)
    lab.backup("data")
    lab.backup("data")
    backend = LocalBackend(lab.repo)
    packs = []
    for info in backend.list(ObjectKind.PACK):
        name = ObjectName.from_hex(info.handle.name)
        data = [e for e in read_trailer(backend, name, info.size) if e.kind is BlobKind.DATA]
        packs.append((len(data), name.hex, data))
    count, pack, entries = max(packs)
    assert count >= 2, "no pack holds two data blobs: nothing to salvage"
    path = lab.repo / "packs" / pack[:2] / pack
    blob = entries[0]
    with open(path, "r+b") as f:
        f.seek(blob.offset + blob.length // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x40]))
    indexes = sorted((lab.repo / "index").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert len(indexes) >= 2
    indexes[0].unlink()
    reflist = next((lab.repo / "reflists").iterdir())
    for snapshot in (lab.repo / "snapshots").iterdir():
        if reflist.name in {r.hex for r in decode_snapshot(snapshot.read_bytes()).reflists}:
            # repair writes the reflist again under a new salt and the snapshot's record with
            # it: the same snapshot under a new ID (design 13.5), restored like the others
            lab.may_vanish = {snapshot.name}
    reflist.unlink()
    lab.damaged = True
    assert lab.tool().run("check", "--read-data", check=False).code == CHECK_FAILED


def _repair(run: Run) -> None:
    # Exits 20 while the flipped blob's chunk is missing: the next backup stores it again.
    run.call("repair", "check", "--repair", "--read-data", codes=(0, CHECK_FAILED))


WORKLOADS = [  # longest first (CI: 45, 16, 25, 14, 9 and 9 kills of 2 to 5 s each)
    Workload("backup-during-prune", _prepare_backup_during_prune, _backup_during_prune, shards=4),
    Workload("repair", _prepare_repair, _repair, shards=2),
    Workload("forget-prune", _prepare_forget_prune, _forget_prune, shards=2),
    Workload("key-change", _prepare_key_change, _key_change),
    Workload("backup-second", lambda lab: _versions(lab, 2), _backup),
    Workload("backup-first", _init, _backup),
]


SHARDS = [(w, shard) for w in WORKLOADS for shard in range(w.shards)]


@pytest.mark.parametrize(
    ("workload", "shard"),
    SHARDS,
    ids=[w.name if w.shards == 1 else f"{w.name}-{s + 1}of{w.shards}" for w, s in SHARDS],
)
def test_a_kill_at_any_crash_point_loses_nothing(
    workload: Workload,
    shard: int,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    if shard > 0 and os.environ.get(ONLY_ENV):
        pytest.skip(f"{ONLY_ENV} replays one hit, in the first shard")
    summary = systematic(workload, tmp_path, shard)
    record_property("kill_harness", summary.line())
    summary.assert_clean()
    assert summary.kills > 0, summary.line()
