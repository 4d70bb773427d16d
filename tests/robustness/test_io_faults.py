"""R5: ENOSPC, EIO and EROFS at every write, fsync, link, rename, create, unlink and mkdir.

Each workload is the real command (``cairn.cli.main.main`` in this process) whose repository is a
`LocalBackend` over `FaultyFileSystem`. A clean run counts the workload's file-system calls by kind;
then, from the same starting repository each time, every counted call is failed in turn with each
errno (and every write is made short once). After each faulty run:

- the command either failed with the documented storage error (ENOSPC: exit 30, CAIRN-E030;
  EROFS: 31, CAIRN-E031; EIO: 34, CAIRN-E035), without a traceback, or exited 0 with a complete
  snapshot (the fault hit a step that does not matter, such as removing a temporary file);
- `check --read-data` passes on the repository as the fault left it, and every snapshot in it
  restores bit-exact (the earlier ones, and a new one if it was committed);
- the same command without the fault then succeeds, and its result restores bit-exact.

Workloads: a first backup into a fresh repository, a second backup onto a repository with one
snapshot (with the files cache of the first), the first backup again on a file system without hard
links (objects are published by rename, so renames are failed), forget + prune, a prune that
sweeps an earlier prune's deletion record, and init. CI runs a deterministic subset (every kind and
errno; the first, middle and last two calls of each kind); ``CAIRN_ROBUSTNESS=full`` runs every
case. The figures are printed at the end of the module (with ``-n 0``: xdist workers print
nothing) and written as JSON to ``$CAIRN_ROBUSTNESS_REPORT/io_faults.json`` when that is set.
"""

from __future__ import annotations

import os
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.robustness.faultfs import (
    CallKind,
    CliResult,
    Fault,
    FaultyFileSystem,
    copy_tree,
    publish,
    reset_tree,
    run_cli,
    tree_manifest,
)

FULL = os.environ.get("CAIRN_ROBUSTNESS") == "full"

EXPECTED = {"ENOSPC": (30, "CAIRN-E030"), "EROFS": (31, "CAIRN-E031"), "EIO": (34, "CAIRN-E035")}
PACK_SIZE = "4KiB"

Manifest = dict[str, tuple[object, ...]]


# ---- the starting repositories ----------------------------------------------------------------


@dataclass
class Workspace:
    """A source folder (its second version), and repositories to start each workload from."""

    root: Path
    data: Path
    v1: Manifest
    v2: Manifest
    templates: dict[str, Path] = field(default_factory=dict)
    expected: dict[str, Manifest] = field(default_factory=dict)
    """Snapshot name → the manifest it restores to (the snapshots of the templates)."""


def _write_v1(data: Path) -> None:
    rng = random.Random(5)
    (data / "sub" / "deeper").mkdir(parents=True)
    for i in range(6):
        (data / f"file{i}.bin").write_bytes(rng.randbytes(1200 + 400 * i))
    (data / "sub" / "notes.txt").write_text("notes\n" * 50)
    (data / "sub" / "deeper" / "empty").write_bytes(b"")
    (data / "link").symlink_to("sub/notes.txt")
    os.chmod(data / "file0.bin", 0o600)


def _write_v2(data: Path) -> None:
    rng = random.Random(6)
    (data / "file1.bin").write_bytes(rng.randbytes(2500))
    (data / "file5.bin").unlink()
    (data / "sub" / "new.bin").write_bytes(rng.randbytes(3000))


def _must(result: CliResult, what: str) -> CliResult:
    assert result.code == 0, f"{what}: {result}"
    return result


def _snapshots(repo: Path) -> set[str]:
    folder = repo / "snapshots"
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("io-faults")
    data = root / "data"
    _write_v1(data)
    ws = Workspace(root, data, tree_manifest(data), {})
    fresh = root / "tpl-fresh"
    _must(run_cli(["-r", str(fresh / "repo"), "init", "--pack-size", PACK_SIZE]), "init")
    ws.templates["fresh"] = fresh

    one = root / "tpl-one"
    copy_tree(fresh, one)
    _must(_backup(one, data), "first backup")
    (s1,) = _snapshots(one / "repo")
    ws.expected[s1] = ws.v1

    _write_v2(data)
    ws.v2 = tree_manifest(data)
    ws.templates["one"] = one

    two = root / "tpl-two"
    copy_tree(one, two)
    _must(_backup(two, data), "second backup")
    ws.templates["two"] = two
    (s2,) = _snapshots(two / "repo") - {s1}
    ws.expected[s2] = ws.v2

    pruned = root / "tpl-pruned"
    copy_tree(two, pruned)
    _must(run_cli(["-r", str(pruned / "repo"), *FORGET_PRUNE]), "forget --prune")
    assert list((pruned / "repo" / "deletions").iterdir()), "the prune wrote a deletion record"
    ws.templates["pruned"] = pruned
    return ws


def _backup(base: Path, data: Path, fs: FaultyFileSystem | None = None) -> CliResult:
    argv = ["-r", str(base / "repo"), "--cache-dir", str(base / "cache"), "backup", str(data)]
    return run_cli(argv, fs)


FORGET_PRUNE = ["forget", "--keep-last", "1", "--prune"]


# ---- workloads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    start: str | None
    """Template to start from (None: an empty location)."""
    run: Callable[[Path, Path, FaultyFileSystem | None], CliResult]
    """(base folder, source folder, file system) → the command's result."""
    kinds: tuple[CallKind, ...] = tuple(CallKind)
    hard_links: bool = True


def _init(base: Path, _data: Path, fs: FaultyFileSystem | None) -> CliResult:
    return run_cli(["-r", str(base / "repo"), "init", "--pack-size", PACK_SIZE], fs)


def _forget_prune(base: Path, _data: Path, fs: FaultyFileSystem | None) -> CliResult:
    return run_cli(["-r", str(base / "repo"), *FORGET_PRUNE], fs)


def _prune(base: Path, _data: Path, fs: FaultyFileSystem | None) -> CliResult:
    return run_cli(["-r", str(base / "repo"), "prune"], fs)


WORKLOADS = {
    w.name: w
    for w in [
        Workload("backup-first", "fresh", _backup),
        Workload("backup-second", "one", _backup),
        Workload("backup-first-no-hardlinks", "fresh", _backup, (CallKind.RENAME,), False),
        Workload("forget-prune", "two", _forget_prune),
        Workload("prune-sweep", "pruned", _prune),
        Workload("init", None, _init),
    ]
}


# ---- one case ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    workload: str
    fault: str
    outcome: str
    code: int
    problems: list[str] = field(default_factory=list)


def _start(ws: Workspace, workload: Workload, base: Path) -> None:
    """Make `base` hold exactly the workload's starting repository (and files cache)."""
    if workload.start is None:
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir()
    elif not base.exists():
        copy_tree(ws.templates[workload.start], base)
    else:
        reset_tree(ws.templates[workload.start], base)


def _restores(ws: Workspace, repo: Path, name: str, expected: Manifest, target: Path) -> list[str]:
    result = run_cli(["-r", str(repo), "restore", name, "--target", str(target)])
    if result.code != 0:
        return [f"snapshot {name[:8]} does not restore: {result}"]
    restored = target / ws.data.relative_to("/")
    if tree_manifest(restored) != expected:
        return [f"snapshot {name[:8]} restores different bytes or metadata (SILENT CORRUPTION)"]
    return []


def _consistent(ws: Workspace, base: Path, what: str) -> list[str]:
    """check --read-data passes and every snapshot restores bit-exact."""
    repo = base / "repo"
    check = run_cli(["-r", str(repo), "check", "--read-data"])
    problems = [] if check.code == 0 else [f"{what}: check --read-data fails: {check}"]
    for i, name in enumerate(sorted(_snapshots(repo))):
        expected = ws.expected.get(name, ws.v2)  # a snapshot the workload made holds v2
        target = base / f"restore-{i}"
        problems += [f"{what}: {p}" for p in _restores(ws, repo, name, expected, target)]
        shutil.rmtree(target, ignore_errors=True)
    return problems


def _judge_exit(result: CliResult, fault: Fault, fired: bool) -> tuple[str, list[str]]:
    """The outcome class of the faulty run, and what is wrong with its exit and messages."""
    problems = []
    if "Traceback" in result.err:
        problems.append(f"a traceback on stderr: {result.err[-400:]!r}")
    if not fired:
        return "not reached", problems + ([] if result.code == 0 else [f"failed: {result}"])
    if result.code == 0:
        return "succeeded", problems
    if fault.errno_name == "SHORT":
        return "failed", [*problems, f"a short write is not an error, yet: {result}"]
    code, error = EXPECTED[fault.errno_name]
    if result.code != code or f"error {error}" not in result.err:
        problems.append(f"expected exit {code} with {error}, got {result}")
    return "failed", problems


def run_case(ws: Workspace, workload: Workload, fault: Fault, base: Path) -> Outcome:
    _start(ws, workload, base)
    repo = base / "repo"
    before = _snapshots(repo) if repo.exists() else set()
    fs = FaultyFileSystem(fault, hard_links=workload.hard_links)
    result = workload.run(base, ws.data, fs)
    outcome, problems = _judge_exit(result, fault, fs.fired)
    if workload.name == "init":
        problems += _after_init(ws, base, result)
    else:
        new = (_snapshots(repo) - before) if workload.name.startswith("backup") else set()
        if result.code == 0 and workload.name.startswith("backup") and len(new) != 1:
            problems.append(f"exit 0 but {len(new)} new snapshots")
        if result.code != 0 and new:
            outcome = "failed, snapshot kept"  # published, then its folder fsync failed
        damage = _consistent(ws, base, "after the fault")
        if damage and result.code == 0:
            problems.append("EXIT 0 WITH AN INCOMPLETE SNAPSHOT OR A DAMAGED REPOSITORY")
        problems += damage + _rerun(ws, workload, base)
    return Outcome(workload.name, str(fault), outcome, result.code, problems)


def _rerun(ws: Workspace, workload: Workload, base: Path) -> list[str]:
    """The same command without the fault succeeds and leaves a consistent repository."""
    again = workload.run(base, ws.data, FaultyFileSystem(hard_links=workload.hard_links))
    if again.code != 0:
        return [f"the rerun without the fault fails: {again}"]
    problems = []
    if workload.name in ("forget-prune", "prune-sweep"):
        sweep = _prune(base, ws.data, None)  # sweeps what the rerun condemned
        if sweep.code != 0:
            problems.append(f"the sweeping prune after the rerun fails: {sweep}")
        if len(_snapshots(base / "repo")) != 1:
            problems.append("forget did not leave exactly one snapshot")
    return problems + _consistent(ws, base, "after the rerun")


def _after_init(ws: Workspace, base: Path, result: CliResult) -> list[str]:
    """An init that failed leaves no repository, or a whole one; init then works (or is refused
    because the repository exists), and a backup into it succeeds."""
    repo = base / "repo"
    problems = []
    if (repo / "config").exists():
        check = run_cli(["-r", str(repo), "check"])
        if check.code != 0:
            problems.append(f"a config exists but check fails: {check}")
    else:
        if result.code == 0:
            problems.append("init exited 0 but wrote no config")
        again = _init(base, ws.data, None)
        if again.code != 0:
            problems.append(f"init again fails: {again}")
    backup = _backup(base, ws.data)
    if backup.code != 0:
        return [*problems, f"a backup after init fails: {backup}"]
    return problems + _consistent(ws, base, "after a backup")


# ---- enumerating the cases --------------------------------------------------------------------


COUNTS: dict[str, Counter[CallKind]] = {}
OUTCOMES: list[Outcome] = []


def _counts(ws: Workspace, workload: Workload) -> Counter[CallKind]:
    """The calls a clean run of the workload makes, by kind."""
    if workload.name not in COUNTS:
        base = ws.root / f"count-{workload.name}"
        _start(ws, workload, base)
        fs = FaultyFileSystem(hard_links=workload.hard_links)
        _must(workload.run(base, ws.data, fs), f"clean {workload.name}")
        COUNTS[workload.name] = fs.counts
        shutil.rmtree(base)
    return COUNTS[workload.name]


def _chosen(count: int) -> list[int]:
    """Which of `count` calls to fail: all of them, or in CI the first, the middle one and the
    last two (a command's last writes are its commit and its clean-up)."""
    if FULL:
        return list(range(1, count + 1))
    return sorted({n for n in (1, (count + 1) // 2, count - 1, count) if n >= 1})


def _faults(counts: Counter[CallKind], workload: Workload, errno_name: str) -> Iterator[Fault]:
    for kind in workload.kinds:
        if errno_name == "SHORT" and kind is not CallKind.WRITE:
            continue
        for nth in _chosen(counts[kind]):
            yield Fault(kind, nth, errno_name)


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not OUTCOMES:
        return
    lines = ["", f"R5 I/O faults ({'full' if FULL else 'CI subset'}):"]
    for name, counts in COUNTS.items():
        shown = ", ".join(f"{k.value} {counts[k]}" for k in CallKind if counts[k])
        lines.append(f"  {name}: calls in a clean run: {shown}")
    table: Counter[tuple[str, str]] = Counter((o.workload, o.outcome) for o in OUTCOMES)
    for (name, outcome), n in sorted(table.items()):
        lines.append(f"  {name}: {outcome}: {n}")
    bad = sum(1 for o in OUTCOMES if o.problems)
    lines.append(f"  injections: {len(OUTCOMES)}, with problems: {bad}")
    document = {
        "mode": "full" if FULL else "ci",
        "counts": {n: {k.value: c[k] for k in CallKind} for n, c in COUNTS.items()},
        "outcomes": [o.__dict__ for o in OUTCOMES],
    }
    publish(request.config, lines, "io_faults.json", document)


CASES = [
    (name, errno_name)
    for name in WORKLOADS
    for errno_name in ("ENOSPC", "EIO", "EROFS", "SHORT")
    if not (errno_name == "SHORT" and CallKind.WRITE not in WORKLOADS[name].kinds)
]


@pytest.mark.parametrize(("workload_name", "errno_name"), CASES)
def test_a_failing_call_never_acknowledges_an_incomplete_snapshot(
    workspace: Workspace, workload_name: str, errno_name: str
) -> None:
    workload = WORKLOADS[workload_name]
    counts = _counts(workspace, workload)
    assert sum(counts[k] for k in workload.kinds), "the workload makes the calls it should"
    problems = []
    base = workspace.root / f"case-{workload_name}-{errno_name}"
    for fault in _faults(counts, workload, errno_name):
        outcome = run_case(workspace, workload, fault, base)
        OUTCOMES.append(outcome)
        problems += [f"{fault}: {p}" for p in outcome.problems]
    shutil.rmtree(base, ignore_errors=True)
    assert not problems, "\n".join(problems)
