"""Power loss at every crash point of the reference workloads (RELIABILITY.md, row R2).

Each workload (init, a first backup, a second backup that writes an index after every pack,
forget + two prunes, key add / passwd / remove) runs in this process on a `LocalBackend` over a
`PowerLossFS`. A probe run lists the crash points it hits; then, for every hit k and one more cut
after the workload returned, the workload is replayed from the same durable starting state and the
power is cut at hit k: only what was made durable survives, in some cases with the last un-fsynced
write torn. On what survived, with no manual step:

- no object of any kind is half-written: every listed object hashes to its name, the config
  decodes, and the repository opens with its passphrase (the old or the new one in a key change);
- no acknowledged snapshot (its commit returned before the cut) is lost: it is listed and restores
  bit-exact, as does every other listed snapshot; an acknowledged forget or key removal holds;
- ``check --read-data`` is clean; the next backup succeeds, checks clean and restores bit-exact
  (after forget + prune, two more prunes also finish the job and check clean).

The reboot is modelled by advancing the clock past a lease and its skew margin, so the cut
process's locks have ended, as they would have by the time the machine is back. Uploads use one
connection and files are read by one worker, so the crash points come in one order and every cut
replays exactly (a replay whose k-th point differs from the probe's fails the test).

A finished workload must leave nothing volatile (its end state is the next one's start). The
mutation checks at the end run the same pass over deliberately broken saves (folder fsync skipped,
file fsync skipped, written in place) and require it to report lost or half-written objects.

CI cuts at every crash point in two modes (names as of the last folder fsync; all names kept and
the last write torn), except that init's run of 256 shard-folder mkdirs is thinned to its ends
and every 32nd; init and the first backup also run without hard links (publish by rename).
``CAIRN_ROBUSTNESS=full`` cuts at every point in six modes (names durable or all, times no tear,
a torn prefix or torn garbage) and runs every workload without hard links too.
``CAIRN_ROBUSTNESS_SEED`` changes the seed of the torn writes (printed with every failure). Run
with ``-s`` to see each pass's figures.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cairn.backends.base import Backend, Handle, ObjectKind
from cairn.backends.filesystem import FileSystem
from cairn.backends.local import LocalBackend
from cairn.backends.testing.conformance import BackendConformance
from cairn.backup.archiver import Archiver, BackupOptions
from cairn.core import crashpoints
from cairn.core.clock import FrozenClock
from cairn.core.crashpoints import crashpoint
from cairn.core.errors import CairnError
from cairn.core.ids import ObjectName
from cairn.core.progress import SilentProgress
from cairn.crypto.hashing import object_name
from cairn.crypto.kdf import TEST_KDF
from cairn.format.config import RepoParams, decode_config
from cairn.repository.check import Checker
from cairn.repository.errors import WrongPassword
from cairn.repository.keyring import make_key, remove_key, save_key
from cairn.repository.locks import LEASE_MS, SKEW_MS, Session
from cairn.repository.prune import PruneOptions, Pruner, PruneResult
from cairn.repository.repository import Repository
from cairn.restore.restorer import RestoreOptions, Restorer
from cairn.snapshot.forget import remove_snapshots
from cairn.source.walker import Walker

from .powerfs import NameMode, PowerLossFS, Tear, TearMode

ROOT = Path("/vault/repo")
START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
P1, P1_NEW, P2 = b"first passphrase", b"first passphrase, changed", b"second passphrase"
PARAMS = RepoParams(
    chunk_min=1024, chunk_avg=2048, chunk_max=8192, pack_size=16 * 1024, compression=3
)
GRACE_MS = 60_000
REBOOT_SECONDS = (LEASE_MS + SKEW_MS) / 1000 + 1
FULL = os.environ.get("CAIRN_ROBUSTNESS") == "full"
SEED = os.environ.get("CAIRN_ROBUSTNESS_SEED", "cairn-r2")

Mode = tuple[NameMode, TearMode | None]
CI_MODES: list[Mode] = [("durable", None), ("all", "garbage")]
FULL_MODES: list[Mode] = [
    ("durable", None),
    ("durable", "prefix"),
    ("durable", "garbage"),
    ("all", None),
    ("all", "prefix"),
    ("all", "garbage"),
]
MODES = FULL_MODES if FULL else CI_MODES


class PowerCut(BaseException):
    """Raised at the crash point where the power went; nothing in Cairn may catch it."""


# ---- the data backed up -------------------------------------------------------------------

FileTree = dict[str, tuple[int, int, bytes]]
"""relative path -> (mode, mtime in ns, contents)."""


def _random(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


VERSIONS: dict[str, dict[str, bytes]] = {
    "v1": {
        "a.bin": _random(1, 24_000),
        "b.txt": b"the quick brown fox jumps over the lazy dog\n" * 300,
        "empty": b"",
        "d.bin": _random(2, 20_000),
    },
    "v2": {
        "a.bin": _random(1, 24_000),
        "b.txt": b"the quick brown fox jumps over the lazy dog\n" * 300 + _random(3, 3000),
        "empty": b"",
        "e.bin": _random(4, 40_000),
    },
    "next": {"a.bin": _random(1, 24_000), "n.bin": _random(5, 7000)},
}


@dataclass(frozen=True)
class Sources:
    folders: dict[str, Path]
    trees: dict[str, FileTree]


@pytest.fixture(scope="module")
def sources() -> Iterator[Sources]:
    # A short path: every restore recreates it under its target, and deep ones are slow to remove.
    base = Path(tempfile.mkdtemp(prefix="cairn-r2-"))
    try:
        yield make_sources(base)
    finally:
        shutil.rmtree(base)


def make_sources(base: Path) -> Sources:
    folders, trees = {}, {}
    for tag, files in VERSIONS.items():
        folder = base / tag
        folder.mkdir()
        for i, (name, data) in enumerate(sorted(files.items())):
            path = folder / name
            path.write_bytes(data)
            path.chmod(0o640 if i % 2 else 0o600)
            os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000 + i))
        folders[tag], trees[tag] = folder, describe(folder)
    return Sources(folders, trees)


def describe(folder: Path) -> FileTree:
    out: FileTree = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        data = path.read_bytes() if path.is_file() else b""
        out[str(path.relative_to(folder))] = (stat.S_IMODE(info.st_mode), info.st_mtime_ns, data)
    return out


# ---- workloads ----------------------------------------------------------------------------


@dataclass
class Acks:
    """What the workload reported done before the cut: calls that returned."""

    init: bool = False
    snapshots: dict[str, ObjectName] = field(default_factory=dict)
    """tag -> snapshot name, for every acknowledged backup."""
    forgotten: set[str] = field(default_factory=set)
    """Tags whose forget returned."""
    forgetting: set[str] = field(default_factory=set)
    """Tags whose forget began (done or not)."""
    keys: set[str] = field(default_factory=set)
    """Key steps that returned: "add" (P2), "passwd" (P1 -> P1_NEW), "remove" (P2)."""
    keys_begun: set[str] = field(default_factory=set)
    """Key steps that began (done or not)."""

    def copy(self) -> Acks:
        return replace(
            self,
            snapshots=dict(self.snapshots),
            forgotten=set(self.forgotten),
            forgetting=set(self.forgetting),
            keys=set(self.keys),
            keys_begun=set(self.keys_begun),
        )


class Run:
    """One run of a workload: its file system, clock and the acknowledgements it collected."""

    def __init__(self, fs: FileSystem, acks: Acks, clock: FrozenClock, sources: Sources) -> None:
        self.fs = fs
        self.acks = acks
        self.clock = clock
        self.sources = sources
        self.powered = True
        self.notes: dict[str, int] = {}
        self.backend_type: type[LocalBackend] = LocalBackend

    def ack(self, update: Callable[[Acks], None]) -> None:
        """Record an acknowledgement, unless the power went before the call returned."""
        if self.powered:
            update(self.acks)

    def backend(self) -> LocalBackend:
        return self.backend_type(ROOT, fs=self.fs)


Workload = Callable[[Run], None]
Wrap = Callable[[PowerLossFS], FileSystem]
"""Wraps the simulated file system, for the mutation checks: a deliberately broken save."""


def work_init(run: Run) -> None:
    backend = run.backend_type.create(ROOT, fs=run.fs)
    Repository.init(backend, P1, run.clock, kdf=TEST_KDF, params=PARAMS)
    run.ack(lambda a: setattr(a, "init", True))


class EveryPackClock:
    """The run's wall clock, but a monotonic clock that moves 31 s at every reading: the uploader
    then writes an index after every pack (its 30 s flush), as a long backup does."""

    def __init__(self, clock: FrozenClock) -> None:
        self._clock = clock
        self._monotonic = 0.0

    def now(self) -> datetime:
        return self._clock.now()

    def monotonic(self) -> float:
        self._monotonic += 31
        return self._monotonic


def do_backup(run: Run, tag: str, passphrase: bytes, index_every_pack: bool = False) -> None:
    backend = run.backend()
    clock = EveryPackClock(run.clock) if index_every_pack else run.clock
    repo = Repository.open(backend, passphrase, clock)
    try:
        repo.session = Session(backend, run.clock, "backup", seal=repo._seal_lock)
        repo.session.acquire(renew_in_background=False)
        repo.load_index()
        repo.start_writing(connections=1)  # one upload at a time: one order of crash points
        options = BackupOptions([bytes(run.sources.folders[tag])], host="h", tags=[tag], workers=1)
        result = Archiver(repo, Walker(), SilentProgress()).run(options)
        snapshot = result.snapshot
        assert snapshot is not None
        run.ack(lambda a: a.snapshots.__setitem__(tag, snapshot))
    finally:
        repo.close()


def do_prune(run: Run, passphrase: bytes) -> PruneResult:
    backend = run.backend()
    repo = Repository.open(backend, passphrase, run.clock)
    session = Session(backend, run.clock, "prune", seal=repo._seal_lock)
    session.acquire(renew_in_background=False)
    try:
        pruner = Pruner(backend, run.clock, session, PARAMS.pack_size, opener=repo.open_lock)
        return pruner.run(PruneOptions(max_unused=0, grace_ms=GRACE_MS))
    finally:
        session.release()


def prune_twice(run: Run, passphrase: bytes) -> PruneResult:
    """Condemn, wait out the grace, sweep."""
    do_prune(run, passphrase)
    run.clock.advance(GRACE_MS / 1000 + 1)
    return do_prune(run, passphrase)


def work_backup(tag: str, index_every_pack: bool = False) -> Workload:
    def work(run: Run) -> None:
        do_backup(run, tag, P1, index_every_pack)

    return work


def work_forget_prune(run: Run) -> None:
    backend = run.backend()
    repo = Repository.open(backend, P1, run.clock)
    repo.session = Session(backend, run.clock, "forget", seal=repo._seal_lock)
    repo.session.acquire(renew_in_background=False)
    try:
        run.ack(lambda a: a.forgetting.add("v1"))
        remove_snapshots(repo, [run.acks.snapshots["v1"].hex])
        run.ack(lambda a: a.forgotten.add("v1"))
    finally:
        repo.close()
    result = prune_twice(run, P1)
    run.notes["swept_packs"] = result.swept_packs


def work_keys(run: Run) -> None:
    backend = run.backend()
    repo = Repository.open(backend, P1, run.clock)
    p2 = save_key(backend, make_key(repo.master, repo.repo_id, P2, TEST_KDF, run.clock))
    run.ack(lambda a: a.keys.add("add"))
    run.ack(lambda a: a.keys_begun.add("passwd"))
    new = save_key(backend, make_key(repo.master, repo.repo_id, P1_NEW, TEST_KDF, run.clock))
    remove_key(backend, repo.key_name, new)  # the new key is durable before the old one goes
    run.ack(lambda a: a.keys.add("passwd"))
    repo = Repository.open(backend, P1_NEW, run.clock)
    run.ack(lambda a: a.keys_begun.add("remove"))
    remove_key(backend, p2, repo.key_name)
    run.ack(lambda a: a.keys.add("remove"))


# ---- starting states ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """A durable state to start a workload from, and what had been acknowledged to reach it."""

    fs: PowerLossFS
    acks: Acks
    hour: int


def clock_at(hour: int) -> FrozenClock:
    return FrozenClock(START + timedelta(hours=hour))


def advance(stage: Stage, work: Workload, sources: Sources) -> Stage:
    fs = stage.fs.clone()
    run = Run(fs, stage.acks.copy(), clock_at(stage.hour), sources)
    work(run)
    # Everything a finished workload did must already be durable: a cut now loses nothing.
    after = fs.power_cut("durable")
    assert after.cut is not None and after.cut.volatile_ops == 0, (
        "a finished workload left changes that a power cut loses:\n"
        + "\n".join(op.describe() for op in fs.log if op.fate != "durable")
    )
    return Stage(after, run.acks, stage.hour + 1)


@pytest.fixture(scope="module")
def stages(sources: Sources) -> dict[str, Stage]:
    empty = Stage(PowerLossFS(), Acks(), 0)  # init makes /vault too: parents must be fsynced
    init = advance(empty, work_init, sources)
    v1 = advance(init, work_backup("v1"), sources)
    v2 = advance(v1, work_backup("v2"), sources)
    return {"empty": empty, "init": init, "v1": v1, "v2": v2}


WORKLOADS: dict[str, tuple[str, Workload]] = {
    "init": ("empty", work_init),
    "first-backup": ("init", work_backup("v1")),
    "second-backup": ("v1", work_backup("v2", index_every_pack=True)),
    "forget-prune": ("v2", work_forget_prune),
    "keys": ("v1", work_keys),
}


# ---- cutting the power --------------------------------------------------------------------


class Cutter:
    """A crash-point handler: records every hit, and cuts the power at hit `at` (0: never)."""

    def __init__(self, run: Run, at: int, cut: Callable[[], PowerLossFS]) -> None:
        self.run, self.at, self._cut = run, at, cut
        self.hits: list[str] = []
        self.survivor: PowerLossFS | None = None
        self._lock = threading.Lock()

    def __call__(self, name: str) -> None:
        with self._lock:
            self.hits.append(name)
            if len(self.hits) != self.at:
                return
            self.run.powered = False
            self.survivor = self._cut()
        raise PowerCut(name)


@contextmanager
def handling(handler: crashpoints.Handler) -> Iterator[None]:
    crashpoints.set_handler(handler)
    try:
        yield
    finally:
        crashpoints.set_handler(None)


def probe(
    stage: Stage,
    work: Workload,
    sources: Sources,
    wrap: Wrap | None = None,
    backend_type: type[LocalBackend] = LocalBackend,
) -> tuple[list[str], Run]:
    """Run the workload without a cut: the crash points it hits, in order."""
    fs = stage.fs.clone()
    run = Run(wrap(fs) if wrap else fs, stage.acks.copy(), clock_at(stage.hour), sources)
    run.backend_type = backend_type
    cutter = Cutter(run, 0, lambda: PowerLossFS())
    with handling(cutter):
        work(run)
    return cutter.hits, run


@dataclass(frozen=True)
class Case:
    workload: str
    k: int
    point: str
    names: NameMode
    tear: TearMode | None

    @property
    def seed(self) -> str:
        return f"{SEED}:{self.workload}:{self.k}:{self.names}:{self.tear}"

    def __str__(self) -> str:
        tear = f", last write torn ({self.tear})" if self.tear else ""
        return (
            f"{self.workload}: cut at hit {self.k} ({self.point}), names {self.names}{tear}, "
            f"seed {self.seed!r}"
        )


@dataclass
class Outcome:
    case: Case
    problems: list[str]
    acked: int
    """Acknowledged snapshots that had to survive this cut."""
    lost: set[str]
    """The tags of those that did not, or do not restore bit-exact."""
    torn_length: int
    torn_visible: bool
    log_tail: str


def cut_once(
    stage: Stage,
    work: Workload,
    case: Case,
    sources: Sources,
    scratch: Path,
    wrap: Wrap | None = None,
    backend_type: type[LocalBackend] = LocalBackend,
) -> Outcome:
    """Replay the workload from `stage`, cut the power at hit `case.k`, and recover."""
    fs = stage.fs.clone()
    run = Run(wrap(fs) if wrap else fs, stage.acks.copy(), clock_at(stage.hour), sources)
    run.backend_type = backend_type
    tear = Tear(case.tear, case.seed) if case.tear else None
    cutter = Cutter(run, case.k, lambda: fs.power_cut(case.names, tear))
    with handling(cutter):
        try:
            work(run)
        except BaseException:
            if cutter.survivor is None:
                raise  # a failure before the cut is a bug of its own
    problems = []
    survivor = cutter.survivor
    if survivor is None:
        if case.k <= len(cutter.hits) or case.point != AFTER:
            problems.append(f"the replay never reached hit {case.k}: it hit {len(cutter.hits)}")
        run.powered = False
        survivor = fs.power_cut(case.names, tear)
    elif cutter.hits[case.k - 1] != case.point:
        problems.append(f"hit {case.k} was {cutter.hits[case.k - 1]}, the probe had {case.point}")
    acked = len(set(run.acks.snapshots) - run.acks.forgetting)
    found, lost = recover(survivor, run, case.workload, scratch, backend_type)
    cut = survivor.cut
    assert cut is not None
    return Outcome(
        case,
        problems + found,
        acked,
        lost,
        cut.torn_length,
        cut.torn_path is not None,
        fs.format_log(last=25),
    )


AFTER = "after the workload returned"


# ---- what must hold after the cut ---------------------------------------------------------


def recover(
    fs: PowerLossFS, cut: Run, workload: str, scratch: Path, backend_type: type[LocalBackend]
) -> tuple[list[str], set[str]]:
    """Reboot on what survived: every broken promise, and the acknowledged snapshots lost."""
    clock = cut.clock
    clock.advance(REBOOT_SECONDS)  # the cut process's locks have ended by the time we are back
    run = Run(fs, cut.acks.copy(), clock, cut.sources)
    run.backend_type = backend_type
    backend = run.backend()
    problems: list[str] = []
    lost: set[str] | None = None
    try:
        if not backend.exists(CONFIG):
            if run.acks.init:
                return ["the repository of an acknowledged init is gone (no config)"], set()
            work_init(run)  # an interrupted init is simply run again
        problems += half_written(backend)
        passphrase, key_problems = check_keys(backend, run.acks, clock)
        problems += key_problems
        if passphrase is not None:
            found, lost = check_repository(backend, passphrase, run, scratch)
            problems += found
        if not problems:
            assert passphrase is not None
            do_backup(run, "next", passphrase)
            if workload == "forget-prune":
                prune_twice(run, passphrase)
            found, lost = check_repository(backend, passphrase, run, scratch)
            problems += found
    except (CairnError, OSError) as exc:
        problems.append(f"recovery failed: {type(exc).__name__}: {exc}")
    if lost is None:  # the repository did not open: nothing in it can be restored
        lost = {t for t in run.acks.snapshots if t not in run.acks.forgetting}
    return problems, lost


def half_written(backend: Backend) -> list[str]:
    """Every object that does not hash to its name, and a config that does not decode."""
    problems = []
    for kind in ObjectKind:
        if kind is ObjectKind.CONFIG:
            if backend.exists(CONFIG):
                try:
                    decode_config(backend.load(CONFIG))
                except CairnError as exc:
                    problems.append(f"the config is half-written: {exc}")
            continue
        for info in backend.list(kind):
            data = backend.load(info.handle)
            if object_name(data).hex != info.handle.name:
                problems.append(
                    f"{kind.value}/{info.handle.name[:8]} is half-written ({len(data)} bytes)"
                )
    return problems


def opens(backend: Backend, passphrase: bytes, clock: FrozenClock) -> bool:
    try:
        Repository.open(backend, passphrase, clock)
    except WrongPassword:
        return False
    return True


def check_keys(backend: Backend, acks: Acks, clock: FrozenClock) -> tuple[bytes | None, list[str]]:
    """The passphrases open what they must (old or new during a change); the one to use."""
    works = {p: opens(backend, p, clock) for p in (P1, P1_NEW, P2)}
    problems = []
    if "passwd" in acks.keys and (works[P1] or not works[P1_NEW]):
        problems.append("an acknowledged passphrase change did not hold")
    if "passwd" not in acks.keys_begun and not works[P1]:
        problems.append("the passphrase does not open the repository")
    if not works[P1] and not works[P1_NEW]:
        problems.append("neither the old nor the new passphrase opens the repository")
    if "add" in acks.keys and "remove" not in acks.keys_begun and not works[P2]:
        problems.append("an acknowledged added key is gone")
    if "remove" in acks.keys and works[P2]:
        problems.append("an acknowledged key removal did not hold")
    passphrase = P1_NEW if works[P1_NEW] else P1 if works[P1] else None
    return passphrase, problems


def check_repository(
    backend: Backend, passphrase: bytes, run: Run, scratch: Path
) -> tuple[list[str], set[str]]:
    """check --read-data is clean; acknowledged snapshots are there; every one restores exactly.
    Returns the problems and the tags of the acknowledged snapshots lost or damaged."""
    repo = Repository.open(backend, passphrase, run.clock)
    repo.load_index()
    problems = [f"check: {e}" for e in Checker(repo).run(read_data=True).errors]
    listed = set(repo.snapshot_names())
    lost = set()
    for tag, name in sorted(run.acks.snapshots.items()):
        if tag in run.acks.forgotten and name in listed:
            problems.append(f"the forgotten snapshot {tag} is back")
        elif tag not in run.acks.forgetting and name not in listed:
            problems.append(f"the acknowledged snapshot {tag} ({name.short()}) is lost")
            lost.add(tag)
    acked = {name: tag for tag, name in run.acks.snapshots.items()}
    for name in sorted(listed, key=lambda n: n.hex):
        found = restores_exactly(repo, name, run.sources, scratch)
        problems += found
        if found and name in acked and acked[name] not in run.acks.forgetting:
            lost.add(acked[name])
    return problems, lost


def restores_exactly(
    repo: Repository, name: ObjectName, sources: Sources, scratch: Path
) -> list[str]:
    target = scratch / f"restore-{name.hex[:16]}"
    try:
        snap = repo.read_snapshot(name)
        tag = snap.body.tags[0]
        Restorer(repo, SilentProgress()).run(snap.body.tree, RestoreOptions(target=target))
        restored = describe(target / str(sources.folders[tag]).lstrip("/"))
        if restored != sources.trees[tag]:
            return [f"snapshot {tag} ({name.short()}) restores other bytes or metadata"]
        return []
    except CairnError as exc:
        return [f"snapshot {name.short()} does not restore: {type(exc).__name__}: {exc}"]
    finally:
        shutil.rmtree(target, ignore_errors=True)


CONFIG = Handle(ObjectKind.CONFIG, "config")


# ---- the passes -----------------------------------------------------------------------------


@dataclass
class Figures:
    """What one pass did, for docs/reliability.md."""

    workload: str
    modes: list[Mode]
    points: int = 0
    chosen: int = 0
    """Hits cut at (every one, plus the cut after the workload, unless CI thinned a long run)."""
    point_names: set[str] = field(default_factory=set)
    cuts: int = 0
    tears: int = 0
    torn_visible: int = 0
    acked_checks: int = 0
    lost: int = 0
    failures: list[Outcome] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        self.cuts += 1
        self.tears += outcome.torn_length > 0
        self.torn_visible += outcome.torn_visible
        self.acked_checks += outcome.acked
        self.lost += len(outcome.lost)
        if outcome.problems:
            self.failures.append(outcome)

    def summary(self) -> str:
        return (
            f"R2 {self.workload}: {self.points} crash points ({len(self.point_names)} kinds) "
            f"+ 1 after the workload, cut at {self.chosen}; {self.cuts} power cuts, "
            f"{self.tears} tore an un-fsynced write ({self.torn_visible} left it reachable); "
            f"{self.acked_checks} acknowledged snapshots due, {self.lost} lost; "
            f"{len(self.failures)} failed cuts; "
            f"seed {SEED!r}"
        )

    def explain(self, first: int = 3) -> str:
        parts = [self.summary()]
        for outcome in self.failures[:first]:
            parts.append(f"{outcome.case}:\n  " + "\n  ".join(outcome.problems))
            parts.append("last file-system operations before the cut:\n" + outcome.log_tail)
        return "\n".join(parts)


def chosen_hits(points: list[str]) -> list[int]:
    """The hits (1-based) to cut at: all of them with CAIRN_ROBUSTNESS=full. In CI, a long run of
    one point (init's 256 shard folders) is thinned to its two ends and every 32nd hit."""
    chosen = []
    start = 0
    while start < len(points):
        end = start
        while end < len(points) and points[end] == points[start]:
            end += 1
        length = end - start
        for n in range(length):
            if FULL or length <= 8 or n < 2 or n >= length - 2 or n % 32 == 0:
                chosen.append(start + n + 1)
        start = end
    return chosen


def sweep(
    stage: Stage,
    work: Workload,
    workload: str,
    sources: Sources,
    scratch: Path,
    modes: list[Mode],
    wrap: Wrap | None = None,
    backend_type: type[LocalBackend] = LocalBackend,
    hard_links: bool = True,
    label: str | None = None,
) -> Figures:
    """Cut the power at every crash point of the workload (and once after it) in every mode."""
    if not hard_links:
        stage = Stage(stage.fs.clone(hard_links=False), stage.acks, stage.hour)
    hits, probed = probe(stage, work, sources, wrap, backend_type)
    figures = Figures(
        label or workload, modes, len(hits), point_names=set(hits), notes=probed.notes
    )
    if isinstance(probed.fs, PowerLossFS):
        figures.notes["renames"] = sum(op.call == "rename" for op in probed.fs.log)
    points = [*hits, AFTER]
    chosen = chosen_hits(points)
    figures.chosen = len(chosen)
    for k in chosen:
        for names, tear in modes:
            case = Case(workload, k, points[k - 1], names, tear)
            figures.add(cut_once(stage, work, case, sources, scratch, wrap, backend_type))
    return figures


PASSES = [(w, True) for w in WORKLOADS] + [
    (w, False) for w in WORKLOADS if FULL or w in ("init", "first-backup")
]


@pytest.mark.parametrize(
    ("workload", "hard_links"),
    PASSES,
    ids=[w if links else f"{w}-without-hard-links" for w, links in PASSES],
)
def test_power_loss_at_every_crash_point_keeps_every_acknowledged_snapshot(
    workload: str, hard_links: bool, stages: dict[str, Stage], sources: Sources, tmp_path: Path
) -> None:
    start, work = WORKLOADS[workload]
    label = workload if hard_links else f"{workload} (no hard links: publish by rename)"
    figures = sweep(
        stages[start], work, workload, sources, tmp_path, MODES, hard_links=hard_links, label=label
    )
    print(figures.summary())
    assert not figures.failures, figures.explain()
    assert figures.lost == 0
    least, names = EXPECTED_POINTS[workload]
    assert figures.points >= least and names <= figures.point_names
    if workload == "forget-prune":
        assert figures.notes["swept_packs"] > 0, "the second prune swept: its points were cut"
    if not hard_links:
        assert figures.notes["renames"] > 0, "objects were published by rename"


EXPECTED_POINTS: dict[str, tuple[int, set[str]]] = {
    "init": (10, {"local.create.mkdir", "local.create.dirsync", "local.save.publish"}),
    "first-backup": (20, {"lock.save", "local.save.fsync", "local.save.dirsync", "lock.remove"}),
    "second-backup": (20, {"lock.save", "local.save.fsync", "local.save.dirsync", "lock.remove"}),
    "forget-prune": (
        30,
        {"forget.remove", "prune.index.save", "prune.record.save", "prune.sweep.pack"},
    ),
    "keys": (10, {"local.save.publish", "local.remove.unlink", "local.remove.dirsync"}),
}


# ---- the harness catches broken saves (mutation checks) -------------------------------------


class SkipFsync:
    """A broken file system: fsync does nothing on folders (or on files), as a save that forgot
    it would behave. Everything else goes to the simulated file system underneath."""

    def __init__(self, fs: PowerLossFS, folders: bool) -> None:
        self._fs = fs
        self._folders = folders
        self._folder_fds: set[int] = set()

    def open(self, path: Path, flags: int, mode: int = 0o777) -> int:
        fd = self._fs.open(path, flags, mode)
        if flags & os.O_DIRECTORY:
            self._folder_fds.add(fd)
        return fd

    def fsync(self, fd: int) -> None:
        if (fd in self._folder_fds) != self._folders:
            self._fs.fsync(fd)

    def close(self, fd: int) -> None:
        self._folder_fds.discard(fd)
        self._fs.close(fd)

    def write(self, fd: int, data: memoryview) -> int:
        return self._fs.write(fd, data)

    def pread(self, fd: int, count: int, offset: int) -> bytes:
        return self._fs.pread(fd, count, offset)

    def fsize(self, fd: int) -> int:
        return self._fs.fsize(fd)

    def link(self, source: Path, target: Path) -> None:
        self._fs.link(source, target)

    def rename(self, source: Path, target: Path) -> None:
        self._fs.rename(source, target)

    def unlink(self, path: Path) -> None:
        self._fs.unlink(path)

    def size(self, path: Path) -> int:
        return self._fs.size(path)

    def lexists(self, path: Path) -> bool:
        return self._fs.lexists(path)

    def scan(self, folder: Path) -> list[tuple[str, bool]]:
        return self._fs.scan(folder)

    def listdir(self, folder: Path) -> list[str]:
        return self._fs.listdir(folder)

    def mkdir(self, path: Path, mode: int, parents: bool) -> None:
        self._fs.mkdir(path, mode, parents)

    def is_dir(self, path: Path) -> bool:
        return self._fs.is_dir(path)


class InPlaceBackend(LocalBackend):
    """A broken save: writes the object under its final name (no temporary file), then fsyncs
    the file and the folder. Durable once it returns, but a cut midway leaves a torn object."""

    def save(self, handle: Handle, data: bytes | memoryview) -> None:
        path = self._path(handle)
        crashpoint("local.save.write")
        fd = self._fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._fs.write(fd, memoryview(data))
            crashpoint("local.save.fsync")
            self._fs.fsync(fd)
        finally:
            self._fs.close(fd)
        crashpoint("local.save.dirsync")
        folder = self._fs.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._fs.fsync(folder)
        finally:
            self._fs.close(folder)


def test_the_pass_catches_a_save_that_skips_the_folder_fsync(
    stages: dict[str, Stage], sources: Sources, tmp_path: Path
) -> None:
    figures = sweep(
        stages["init"],
        work_backup("v1"),
        "first-backup",
        sources,
        tmp_path,
        [("durable", None)],
        wrap=lambda fs: SkipFsync(fs, folders=True),
        label="first-backup, folder fsync skipped (mutant)",
    )
    print(figures.summary())
    assert figures.lost > 0, figures.summary()
    assert any("v1" in o.lost for o in figures.failures if o.case.point == AFTER)


def test_the_pass_catches_a_save_that_skips_the_file_fsync(
    stages: dict[str, Stage], sources: Sources, tmp_path: Path
) -> None:
    figures = sweep(
        stages["init"],
        work_backup("v1"),
        "first-backup",
        sources,
        tmp_path,
        [("durable", None)],
        wrap=lambda fs: SkipFsync(fs, folders=False),
        label="first-backup, file fsync skipped (mutant)",
    )
    print(figures.summary())
    assert figures.lost > 0, figures.summary()
    problems = [p for o in figures.failures for p in o.problems]
    assert any(p.startswith("snapshots/") and "half-written (0 bytes)" in p for p in problems)


def test_the_pass_catches_a_save_that_writes_in_place(
    stages: dict[str, Stage], sources: Sources, tmp_path: Path
) -> None:
    figures = sweep(
        stages["init"],
        work_backup("v1"),
        "first-backup",
        sources,
        tmp_path,
        [("all", "garbage")],
        backend_type=InPlaceBackend,
        label="first-backup, saved in place (mutant)",
    )
    print(figures.summary())
    torn = [o for o in figures.failures if o.torn_visible]
    assert torn, figures.summary()
    assert all(any("half-written" in p for p in o.problems) for o in torn)


def test_init_into_new_parent_folders_survives_a_power_cut() -> None:
    """Regression: `LocalBackend.create` fsynced only the root's parent, so parent folders it
    made itself could vanish at a power cut, taking an acknowledged repository with them."""
    fs = PowerLossFS(folders=("/vault",))
    root = Path("/vault/new/deeper/repo")
    clock = clock_at(0)
    Repository.init(LocalBackend.create(root, fs=fs), P1, clock, kdf=TEST_KDF, params=PARAMS)
    after = fs.power_cut("durable")
    assert after.listdir(Path("/vault")) == ["new"]
    Repository.open(LocalBackend(root, fs=after), P1, clock)


# ---- the simulated file system itself -------------------------------------------------------

D = Path("/d")
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def write_file(fs: PowerLossFS, path: Path, data: bytes, sync: bool = True) -> None:
    fd = fs.open(path, CREATE)
    fs.write(fd, memoryview(data))
    if sync:
        fs.fsync(fd)
    fs.close(fd)


def sync_folder(fs: PowerLossFS, folder: Path) -> None:
    fd = fs.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    fs.fsync(fd)
    fs.close(fd)


def test_a_name_survives_only_once_its_folder_is_fsynced() -> None:
    fs = PowerLossFS(folders=("/d",))
    write_file(fs, D / "f", b"data")
    assert not fs.clone().power_cut().lexists(D / "f")
    sync_folder(fs, D)
    after = fs.power_cut()
    assert after.read_file(D / "f") == b"data"
    assert [op.call for op in fs.durable_ops()] == ["create", "write", "fsync", "fsync"]


def test_contents_survive_only_once_the_file_is_fsynced() -> None:
    fs = PowerLossFS(folders=("/d",))
    write_file(fs, D / "f", b"data", sync=False)
    sync_folder(fs, D)
    assert fs.clone().power_cut().read_file(D / "f") == b"", "the zero-length file"
    write_file(fs, D / "g", b"more", sync=False)
    kept = fs.power_cut("all")
    assert kept.read_file(D / "g") == b"", "names kept, contents not"


def test_a_new_folder_needs_its_parent_fsynced_and_removals_their_folder() -> None:
    fs = PowerLossFS(folders=("/d",))
    fs.mkdir(D / "sub", 0o700, parents=False)
    sync_folder(fs, D / "sub")
    assert not fs.clone().power_cut().lexists(D / "sub")
    sync_folder(fs, D)
    write_file(fs, D / "sub" / "f", b"x")
    sync_folder(fs, D / "sub")
    fs.rename(D / "sub" / "f", D / "sub" / "g")
    fs.unlink(D / "sub" / "g")
    assert fs.clone().power_cut().read_file(D / "sub" / "f") == b"x"
    sync_folder(fs, D / "sub")
    assert fs.power_cut().listdir(D / "sub") == []


@pytest.mark.parametrize("mode", ["prefix", "garbage"])
def test_a_torn_write_keeps_a_seeded_part_of_the_last_write(mode: TearMode) -> None:
    fs = PowerLossFS(folders=("/d",))
    write_file(fs, D / "f", b"A" * 10)
    sync_folder(fs, D)
    fd = fs.open(D / "f", os.O_WRONLY | os.O_APPEND)
    fs.write(fd, memoryview(b"B" * 1000))
    fs.close(fd)  # closing is no fsync
    first = fs.clone().power_cut(tear=Tear(mode, 7))
    again = fs.power_cut(tear=Tear(mode, 7))
    data = first.read_file(D / "f")
    assert data == again.read_file(D / "f"), "the same seed tears the same way"
    assert first.cut is not None and first.cut.torn_path == "/d/f"
    kept = first.cut.torn_kept
    assert kept < 1000 and data[: 10 + kept] == b"A" * 10 + b"B" * kept
    assert len(data) == (1010 if mode == "garbage" else 10 + kept)
    assert [op.fate for op in fs.log][-1] == "torn"


def test_after_the_cut_the_old_file_system_is_dead() -> None:
    fs = PowerLossFS(folders=("/d",))
    fd = fs.open(D / "f", CREATE)
    fs.power_cut()
    with pytest.raises(OSError, match="power is off"):
        fs.write(fd, memoryview(b"late"))


def test_errors_are_the_ones_the_os_gives() -> None:
    fs = PowerLossFS(folders=("/d",), hard_links=False)
    write_file(fs, D / "f", b"x")
    with pytest.raises(FileExistsError):
        fs.open(D / "f", CREATE)
    with pytest.raises(FileNotFoundError):
        fs.open(D / "missing", os.O_RDONLY)
    with pytest.raises(NotADirectoryError):
        fs.open(D / "f", os.O_RDONLY | os.O_DIRECTORY)
    with pytest.raises(NotADirectoryError):
        fs.scan(D / "f")
    with pytest.raises(NotADirectoryError):
        fs.open(D / "f" / "x", CREATE)
    with pytest.raises(IsADirectoryError):
        fs.unlink(D)
    with pytest.raises(PermissionError):
        fs.link(D / "f", D / "g")
    with pytest.raises(FileExistsError):
        fs.mkdir(D / "f", 0o700, parents=True)
    with pytest.raises(FileNotFoundError):
        fs.mkdir(D / "a" / "b", 0o700, parents=False)
    assert PowerLossFS(folders=("/d",)).clone(hard_links=True).hard_links


def test_crash_point_handler_sees_every_hit_and_can_be_removed() -> None:
    seen: list[str] = []
    with handling(seen.append):
        crashpoint("a")
        crashpoint("b")
    crashpoint("c")
    assert seen == ["a", "b"]
    assert not crashpoints._armed, "nothing armed: the fast path"


class TestLocalBackendOnPowerLossFS(BackendConformance):
    """The local backend runs unchanged on the simulated file system (errnos included)."""

    @pytest.fixture(params=[True, False], ids=["links", "without-hard-links"])
    def backend(self, request: pytest.FixtureRequest) -> Backend:
        return LocalBackend.create(ROOT, fs=PowerLossFS(hard_links=request.param))
