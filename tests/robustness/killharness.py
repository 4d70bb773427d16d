"""The process-kill harness for RELIABILITY.md R1.

A *workload* is a name, a way to prepare the repository it starts from (a `Lab`), and the `cairn`
commands it runs (a function of a `Run`). The harness runs it once with CAIRN_CRASH_TRACE to list
every crash point each of its processes hits (a `Hit`: process label, point, k-th time), then, for
each hit (all of them, or a deterministic sample in CI), copies the prepared repository and client
cache, runs the workload again with CAIRN_CRASH_AT so that process dies by SIGKILL right there,
and verifies with no manual step:

- the killed process really died by SIGKILL when its trace shows the point was reached, and
  every other process of the run succeeded;
- the repository opens with the passphrases the key commands promise (never with none);
- `check --read-data` passes (for a repository damaged on purpose: after `check --repair` is run
  again and a backup has stored what the damage took);
- every snapshot that existed before stays (unless the workload's forget may remove it), every
  snapshot a command acknowledged is listed, and every listed snapshot restores bit-exact;
- the next backup and a prune succeed, the prune leaves no lock behind (every process has
  ended), and `check --read-data` passes again.

Environment: CAIRN_ROBUSTNESS=full kills at every hit (default, CI: one hit of each process and
point, see `choose`);
CAIRN_ROBUSTNESS_ONLY="<process>@<point>:<k>" replays one hit; CAIRN_ROBUSTNESS_REPORT=<folder>
gets a JSON file of figures per workload (or shard of one, or series of random trials).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.robustness.clibatch import Batch
from tests.support.clitools import Cairn, Result, manifest

MODE_ENV = "CAIRN_ROBUSTNESS"
ONLY_ENV = "CAIRN_ROBUSTNESS_ONLY"
REPORT_ENV = "CAIRN_ROBUSTNESS_REPORT"
CHECK_FAILED = 20
"""`check` found errors: what `check --repair` exits with while chunks are still missing."""
MAX_FAILURES = 5
"""Stop a workload after this many failed kills: the first ones tell the story."""
_HANG_GUARD_S = 600.0

Manifest = dict[bytes, tuple[Any, ...]]


class TrialFailed(AssertionError):
    """A verification after a kill failed; the message names workload, kill and seed."""


@dataclass(frozen=True, order=True, slots=True)
class Hit:
    """The k-th time process `process` of a workload reached crash point `point`."""

    process: str
    point: str
    k: int

    def __str__(self) -> str:
        return f"{self.process}@{self.point}:{self.k}"

    @classmethod
    def parse(cls, text: str) -> Hit:
        m = re.fullmatch(r"(.+)@(.+):(\d+)", text.strip())
        if not m:
            raise ValueError(f"{text!r}: a hit looks like <process>@<point>:<k>")
        return cls(m[1], m[2], int(m[3]))


def describe(root: Path) -> Manifest:
    """`manifest` with hardlink groups named by their smallest path, not the first one walked
    (folder order on disk differs between the source and a restore)."""
    entries = manifest(root)
    groups: dict[bytes, bytes] = {}
    for rel, entry in entries.items():
        if len(entry) == 10 and entry[8] is not None:  # a regular file with several links
            groups[entry[8]] = min(groups.get(entry[8], rel), rel)
    return {
        rel: (*e[:8], groups[e[8]], e[9]) if len(e) == 10 and e[8] is not None else e
        for rel, e in entries.items()
    }


def differences(expected: Manifest, got: Manifest) -> str:
    """A short account of how two trees differ (never the file contents)."""
    missing = sorted(expected.keys() - got.keys())
    extra = sorted(got.keys() - expected.keys())
    changed = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
    parts = [
        f"{label}: {[os.fsdecode(p) for p in paths[:5]]}"
        for label, paths in (("missing", missing), ("extra", extra), ("differ", changed))
        if paths
    ]
    return "; ".join(parts) or "no difference"


# ---- the prepared state -------------------------------------------------------------------


@dataclass
class Lab:
    """What a workload starts from: source trees, passphrases, and a prepared repository with its
    client cache. Everything under `root/seed` is copied for each run; sources are only read."""

    root: Path
    name: str = "workload"
    seed: int = 1
    password: str = "first"
    """Name of the passphrase that opens the prepared repository."""
    passwords: dict[str, str] = field(default_factory=lambda: {"first": "correct horse"})
    sources: dict[str, Path] = field(default_factory=dict)
    snapshots: dict[str, Manifest] = field(default_factory=dict)
    """Every snapshot of the prepared repository, and the tree it must restore to."""
    may_vanish: set[str] = field(default_factory=set)
    """Snapshots the workload's forget is allowed to remove."""
    next_backup: str = ""
    """The source the verification backs up after a kill (default: the first source)."""
    damaged: bool = False
    """The prepared repository is damaged on purpose (for repair): after a kill, the verification
    first runs `check --repair --read-data` again and a backup that stores what the damage took,
    and only then asks for a clean check and bit-exact restores."""

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        (self.root / "seed").mkdir(parents=True, exist_ok=True)
        self._manifests: dict[str, Manifest] = {}

    @property
    def repo(self) -> Path:
        return self.root / "seed" / "repo"

    @property
    def cache(self) -> Path:
        return self.root / "seed" / "cache"

    def tool(self, password: str | None = None) -> Cairn:
        """The `cairn` command on the prepared repository (to build it)."""
        return Cairn(self.repo, self.passwords[password or self.password], cache=self.cache)

    def source(self, name: str) -> Path:
        """The folder of source `name` (made empty if new)."""
        if name not in self.sources:
            path = self.root / "src" / name
            path.mkdir(parents=True)
            self.sources[name] = path
            self.next_backup = self.next_backup or name
        return self.sources[name]

    def password_file(self, name: str) -> str:
        path = self.root / "passwords" / name
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.write_text(self.passwords[name] + "\n")
        return str(path)

    def backup(self, source: str) -> str:
        """Back up a source into the prepared repository; remember what the snapshot holds."""
        done = self.tool().run("backup", "--json", str(self.sources[source]))
        snapshot_id: str = done.json()["snapshot_id"]
        self.snapshots[snapshot_id] = describe(self.sources[source])
        return snapshot_id

    def forget(self, *args: str) -> None:
        """Run forget on the prepared repository; drop the snapshots it removed."""
        done = self.tool().run("forget", "--json", *args)
        for snapshot_id in done.json()["to_remove"]:  # with --prune, prune's is under "prune"
            del self.snapshots[snapshot_id]

    def freeze(self) -> None:
        """The sources are final: record what a backup of each must restore to."""
        self._manifests = {name: describe(path) for name, path in self.sources.items()}

    def expected_tree(self, paths: list[str]) -> tuple[str, Manifest] | None:
        """The source a snapshot of `paths` was taken of, and its tree."""
        for name, path in self.sources.items():
            if paths == [str(path)]:
                return name, self._manifests[name]
        return None


# ---- one run of a workload ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How one process of a run ended, and the crash points it hit."""

    label: str
    args: tuple[str, ...]
    code: int
    out: str
    err: str
    hits: Counter[str]
    trace: list[str]
    codes: tuple[int, ...] = (0,)
    """The exit codes that mean the command did its job."""

    @property
    def ok(self) -> bool:
        return self.code in self.codes and "Traceback" not in self.err

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL

    def json(self) -> Any:
        return json.loads(self.out.splitlines()[0])

    def describe(self) -> str:
        tail = self.err.strip().splitlines()[-3:]
        return f"`cairn {' '.join(self.args)}` ({self.label}) exited {self.code}: {tail}"


@dataclass
class _KeyPromise:
    """Which passphrases must open the repository after the key commands of a run."""

    must: set[str]
    gone: set[str] = field(default_factory=set)
    one_of: set[str] = field(default_factory=set)

    def after(self, outcome: Outcome, before: set[str], after: set[str]) -> None:
        if outcome.ok:
            self.must, self.gone, self.one_of = set(after), before - after, set()
        elif outcome.killed:
            # Died midway: what it did not touch still opens; of a passphrase it replaced and
            # its replacement, at least one does.
            self.must, self.gone = before & after, set()
            replaced = before - after and after - before
            self.one_of = before ^ after if replaced else set()


class Proc:
    """One `cairn` process of a run, started in the background."""

    def __init__(
        self,
        run: Run,
        label: str,
        args: tuple[str, ...],
        env: dict[str, str],
        codes: tuple[int, ...] = (0,),
    ) -> None:
        self.run = run
        self.label = label
        self.args = args
        self.codes = codes
        logs = run.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self._out = logs / f"{label}.out"
        self._err = logs / f"{label}.err"
        self._trace = Path(env["CAIRN_CRASH_TRACE"])
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "cairn.cli.main", *args], env=env, stdout=out, stderr=err
            )
        self.outcome: Outcome | None = None

    def wait_paused(self) -> bool:
        """Wait until the process stops itself at its pause point (True) or ends (False)."""
        deadline = time.monotonic() + _HANG_GUARD_S
        while self.popen.poll() is None:
            if _process_state(self.popen.pid) == "T":
                return True
            if time.monotonic() > deadline:
                self.popen.kill()
                raise TrialFailed(f"{self.label} neither paused nor ended")
            time.sleep(0.005)
        return False

    def resume(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGCONT)

    def wait(self) -> Outcome:
        if self.outcome is None:
            self.resume()
            code = self.popen.wait(timeout=_HANG_GUARD_S)
            trace = self._trace.read_text().split() if self._trace.exists() else []
            self.outcome = Outcome(
                self.label,
                self.args,
                code,
                self._out.read_text(errors="replace"),
                self._err.read_text(errors="replace"),
                Counter(trace),
                trace,
                self.codes,
            )
            self.run.outcomes.append(self.outcome)
        return self.outcome


class _BatchCairn(Cairn):
    """`Cairn` whose commands run in the run's batch process (see clibatch.py)."""

    def __init__(self, repo: Path, password: str, cache: Path, batch: Batch) -> None:
        super().__init__(repo, password, cache)
        self._batch = batch

    def run(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None, **kw: Any
    ) -> Result:
        result = Result(*self._batch.run(list(args), env or self.env()))
        if check and result.code != 0:
            raise AssertionError(f"cairn {' '.join(args)} exited {result.code}:\n{result.err}")
        assert "Traceback" not in result.err, result.err
        return result


def _process_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0].decode()
    except (OSError, IndexError):
        return "?"


class Run:
    """One execution of a workload on a fresh copy of the lab's repository and cache; with a
    target, the process labelled `target.process` is killed at that hit."""

    def __init__(self, lab: Lab, workdir: Path, target: Hit | None) -> None:
        self.lab = lab
        self.workdir = workdir
        self.target = target
        self.repo = workdir / "repo"
        self.cache = workdir / "cache"
        shutil.copytree(lab.repo, self.repo, symlinks=True)
        if lab.cache.exists():
            shutil.copytree(lab.cache, self.cache, symlinks=True)
        (workdir / "traces").mkdir()
        self.outcomes: list[Outcome] = []
        self.procs: list[Proc] = []
        self.keys = _KeyPromise(must={lab.password})
        self.verdict = ""
        self.stray_temp_files = 0
        self._batch: Batch | None = None

    def tool(self, password: str | None = None) -> Cairn:
        """The `cairn` command on this run's repository, for the verification: its commands run
        one after another in one batch process (the processes of the workload are started with
        `start` and `call`)."""
        if self._batch is None:
            self._batch = Batch(self._cairn().env())
        secret = self.lab.passwords[password or self.lab.password]
        return _BatchCairn(self.repo, secret, self.cache, self._batch)

    def _cairn(self, password: str | None = None) -> Cairn:
        return Cairn(self.repo, self.lab.passwords[password or self.lab.password], self.cache)

    def start(
        self,
        label: str,
        *args: str,
        password: str | None = None,
        pause_at: tuple[str, int] | None = None,
        codes: tuple[int, ...] = (0,),
    ) -> Proc:
        """Start `cairn *args` as process `label` (unique in the run); `codes`: the exit codes
        that mean it did its job."""
        if any(p.label == label for p in self.procs):
            raise ValueError(f"two processes labelled {label!r}")
        extra = {"CAIRN_CRASH_TRACE": str(self.workdir / "traces" / label)}
        if self.target is not None and self.target.process == label:
            extra["CAIRN_CRASH_AT"] = f"{self.target.point}:{self.target.k}"
        if pause_at is not None:
            extra["CAIRN_CRASH_PAUSE"] = f"{pause_at[0]}:{pause_at[1]}"
        proc = Proc(self, label, args, self._cairn(password).env(**extra), codes)
        self.procs.append(proc)
        return proc

    def call(
        self,
        label: str,
        *args: str,
        password: str | None = None,
        keys: tuple[set[str], set[str]] | None = None,
        codes: tuple[int, ...] = (0,),
    ) -> Outcome:
        """Run `cairn *args` to its end. `keys`: the passphrases that open the repository
        before and after this command, for a command that changes them."""
        outcome = self.start(label, *args, password=password, codes=codes).wait()
        if keys is not None:
            self.keys.after(outcome, *keys)
        return outcome

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait()
        if self._batch is not None:
            self._batch.close()

    def hits(self) -> list[Hit]:
        """Every (process, point, k) this run hit, in the order of each process's trace."""
        found = []
        for outcome in self.outcomes:
            seen: Counter[str] = Counter()
            for point in outcome.trace:
                seen[point] += 1
                found.append(Hit(outcome.label, point, seen[point]))
        return found


Commands = Callable[[Run], None]


@dataclass(frozen=True)
class Workload:
    """A reference workload: its name, how to prepare its lab, and the commands it runs."""

    name: str
    prepare: Callable[[Lab], None]
    commands: Commands
    shards: int = 1
    """The kills of a long workload are split into this many tests, which xdist runs on several
    workers (each shard prepares and traces the workload again: a few seconds)."""


# ---- verification ---------------------------------------------------------------------------


class Verifier:
    """Checks one run after its kill (`trial` adds the workload, kill and seed to a failure)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.lab = run.lab

    def fail(self, message: str) -> TrialFailed:
        return TrialFailed(message)

    def expect(self, result: Result | Outcome, what: str, codes: tuple[int, ...] = (0,)) -> None:
        if result.code not in codes or "Traceback" in result.err:
            tail = result.err.strip().splitlines()[-6:]
            raise self.fail(f"{what} exited {result.code}:\n" + "\n".join(tail))

    def verify(self) -> str:
        """All of the checks; returns "killed" or "not reached" (the k-th hit never came)."""
        verdict = self._processes()
        tool = self.run.tool(self._passphrase())
        source = self.lab.sources[self.lab.next_backup]
        if self.lab.damaged:
            again = tool.run("check", "--repair", "--read-data", check=False)
            self.expect(again, "check --repair after the kill", codes=(0, CHECK_FAILED))
            self.expect(tool.run("backup", str(source), check=False), "the backup after repair")
        self.expect(
            tool.run("check", "--read-data", check=False), "check --read-data after the kill"
        )
        listed = self._snapshots(tool)
        for snapshot_id, paths in sorted(listed.items()):
            self._restore(tool, snapshot_id, paths, "after the kill")
        self.expect(tool.run("backup", str(source), check=False), "the next backup")
        self.expect(tool.run("prune", check=False), "prune after the next backup")
        locks = (self.run.repo / "locks").iterdir()
        left = sorted(p.name[:8] for p in locks if not p.name.startswith(".tmp-"))
        if left:
            raise self.fail(f"locks left after every process ended and prune ran: {left}")
        self.expect(tool.run("check", "--read-data", check=False), "check --read-data at the end")
        return verdict

    def _processes(self) -> str:
        target = self.run.target
        verdict = "completed" if target is None else "not reached"
        for outcome in self.run.outcomes:
            if target is not None and outcome.label == target.process:
                reached = outcome.hits[target.point] >= target.k
                if reached and not outcome.killed:
                    raise self.fail(
                        f"reached {target} but did not die by SIGKILL: " + outcome.describe()
                    )
                if reached:
                    verdict = "killed"
                    continue
            if not outcome.ok:
                raise self.fail("a process that was not killed failed: " + outcome.describe())
        return verdict

    def _passphrase(self) -> str:
        """Check the key promises; return a passphrase that opens the repository."""
        keys = self.run.keys
        if keys == _KeyPromise(must={self.lab.password}):
            return self.lab.password  # no key command ran: check opens it or fails
        opens = {
            name: self.run.tool(name).run("key", "list", check=False).code == 0
            for name in sorted(keys.must | keys.gone | keys.one_of)
        }
        state = {name: "opens" if ok else "does not open" for name, ok in opens.items()}
        if not all(opens[n] for n in keys.must):
            raise self.fail(f"a passphrase that must open the repository does not: {state}")
        if any(opens[n] for n in keys.gone):
            raise self.fail(f"a removed passphrase still opens the repository: {state}")
        if keys.one_of and not any(opens[n] for n in keys.one_of):
            raise self.fail(f"neither the old nor the new passphrase opens: {state}")
        if not any(opens.values()):
            raise self.fail(f"no passphrase opens the repository: {state}")
        return next(name for name, ok in opens.items() if ok)

    def _snapshots(self, tool: Cairn) -> dict[str, list[str]]:
        listing = tool.run("snapshots", "--json", check=False)
        self.expect(listing, "snapshots")
        listed: dict[str, list[str]] = {s["id"]: s["paths"] for s in listing.json()}
        for snapshot_id in sorted(self.lab.snapshots.keys() - self.lab.may_vanish):
            if snapshot_id not in listed:
                raise self.fail(f"snapshot {snapshot_id[:8]} existed before and is gone")
        for outcome in self.run.outcomes:
            if outcome.ok and outcome.args[:1] == ("backup",):
                acknowledged = outcome.json()["snapshot_id"]
                if acknowledged not in listed:
                    raise self.fail(f"acknowledged snapshot {acknowledged[:8]} is not listed")
        return listed

    def _restore(self, tool: Cairn, snapshot_id: str, paths: list[str], when: str) -> None:
        expected = self.lab.snapshots.get(snapshot_id)
        if expected is None:
            found = self.lab.expected_tree(paths)
            if found is None:
                raise self.fail(f"snapshot {snapshot_id[:8]} of {paths} is of no known source")
            expected = found[1]
        target = self.run.workdir / "restore" / snapshot_id[:12]
        if target.exists():
            shutil.rmtree(target)
        self.expect(
            tool.run("restore", snapshot_id, "--target", str(target), check=False),
            f"restore of snapshot {snapshot_id[:8]} {when}",
        )
        got = describe(target / Path(paths[0]).relative_to("/"))
        if got != expected:
            raise self.fail(
                f"snapshot {snapshot_id[:8]} ({when}) does not restore bit-exact: "
                + differences(expected, got)
            )


# ---- driving a workload -------------------------------------------------------------------


def full_mode() -> bool:
    value = os.environ.get(MODE_ENV, "ci")
    if value not in ("ci", "full"):
        raise ValueError(f"{MODE_ENV}={value!r}: use ci or full")
    return value == "full"


def choose(hits: list[Hit], full: bool) -> list[Hit]:
    """Every hit; or, for CI, one hit of each (process, point) site, so every site is killed at
    once: of a site hit several times, its first, middle (5 hits or more) or last hit, picked by
    a hash of the site. Across the sites all three kinds are killed at, each site always at the
    same kind; `CAIRN_ROBUSTNESS=full` (scripts/soak) kills at every hit of every site."""
    if full:
        return sorted(set(hits))
    last: dict[tuple[str, str], int] = {}
    for hit in hits:
        site = (hit.process, hit.point)
        last[site] = max(last.get(site, 0), hit.k)
    chosen = []
    for (process, point), n in last.items():
        kinds = sorted({1, n} | ({(n + 1) // 2} if n >= 5 else set()))
        chosen.append(Hit(process, point, kinds[_crc(f"{process}@{point}") % len(kinds)]))
    return sorted(chosen)


def shard_of(hit: Hit, shards: int, full: bool) -> int:
    """The shard that kills at `hit`: by a hash of the hit (full: a site's hits spread over the
    shards), or in CI by a hash of its site, so that a site whose hit count differs between two
    shards' traces is still killed in exactly one of them."""
    return _crc(str(hit) if full else f"{hit.process}@{hit.point}") % shards


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


@dataclass
class Summary:
    """The figures of one workload (or one shard of it, or a series of random trials)."""

    workload: str
    mode: str
    seed: int
    shard: str = "1/1"
    points: int = 0
    sites: int = 0
    hits: int = 0
    kills: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    not_reached: list[str] = field(default_factory=list)
    """Hits a trace listed that the run with the kill did not reach (threads went another way:
    that run is verified all the same)."""
    stray_temp_files: int = 0
    """Temporary files left in the repository by killed saves, summed over the kills (they are
    never listed, so they cost space, nothing else)."""
    seconds: float = 0.0

    def add(self, hit: Hit, run: Run | None, failure: str | None = None) -> None:
        verdict = "failed" if run is None else run.verdict
        self.outcomes[verdict] += 1
        self.kills += verdict == "killed"
        if verdict == "not reached":
            self.not_reached.append(str(hit))
        if failure is not None:
            self.failures.append(failure)
        if run is not None:
            self.stray_temp_files += run.stray_temp_files

    def count_hits(self, hits: list[Hit]) -> None:
        self.hits += len(hits)
        self.points = max(self.points, len({h.point for h in hits}))
        self.sites = max(self.sites, len({(h.process, h.point) for h in hits}))

    def line(self) -> str:
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()))
        return (
            f"{self.workload} [{self.mode}, shard {self.shard}, seed {self.seed}]: "
            f"{self.points} crash points ({self.sites} process/point sites), {self.hits} hits "
            f"traced, {self.kills} kills: {outcomes}; {len(self.failures)} failures; "
            f"{self.stray_temp_files} stray temporary files ({self.seconds:.0f} s)"
            + (f"; not reached: {', '.join(self.not_reached)}" if self.not_reached else "")
        )

    def record(self) -> None:
        """Print the figures; write them as JSON into the folder $CAIRN_ROBUSTNESS_REPORT names
        (where the other robustness suites write theirs), one file per workload and shard."""
        print(self.line())
        folder = os.environ.get(REPORT_ENV)
        if folder:
            data = asdict(self)
            data["outcomes"] = dict(self.outcomes)
            name = f"kill-{self.workload}-{self.shard.replace('/', 'of')}.json"
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_text(json.dumps(data, indent=1))

    def assert_clean(self) -> None:
        if self.failures:
            shown = "\n\n".join(self.failures)
            raise TrialFailed(f"{len(self.failures)} kill(s) failed: {self.line()}\n\n{shown}")


@contextmanager
def running(lab: Lab, workdir: Path, target: Hit | None) -> Iterator[Run]:
    """A run whose processes are all ended when the block is left, and whose folder is removed
    unless the block failed (it is kept for a look at the repository)."""
    workdir.mkdir(parents=True)
    run = Run(lab, workdir, target)
    try:
        yield run
    finally:
        run.stop_all()
    shutil.rmtree(workdir)


def trial(lab: Lab, commands: Commands, workdir: Path, target: Hit | None, context: str) -> Run:
    """Run the commands (killing at `target`), then verify; returns the run with its `verdict`
    ("killed", "not reached", or "completed" without a target). Raises TrialFailed."""
    with running(lab, workdir, target) as run:
        try:
            try:
                commands(run)
            finally:
                for proc in run.procs:
                    proc.wait()
            run.verdict = Verifier(run).verify()
        except (AssertionError, subprocess.TimeoutExpired) as exc:
            raise TrialFailed(f"[{context}] {exc}\n(the run's folder is kept: {workdir})") from exc
        run.stray_temp_files = sum(1 for _ in run.repo.rglob(".tmp-*"))
        return run


def kill_and_verify(
    lab: Lab, commands: Commands, workdir: Path, hit: Hit, context: str, summary: Summary
) -> None:
    """One kill, its verdict or its failure added to the summary."""
    try:
        summary.add(hit, trial(lab, commands, workdir, hit, context))
    except TrialFailed as exc:
        summary.add(hit, None, str(exc))


def systematic(workload: Workload, tmp: Path, shard: int = 0, seed: int = 1) -> Summary:
    """Prepare the workload's lab, trace it, and kill it at each chosen hit of this shard (by a
    hash, `shard_of`, so shards whose traces differ a little still split the hits between them);
    failures are collected (up to MAX_FAILURES) into the summary."""
    started = time.monotonic()
    lab = Lab(tmp / "lab", name=workload.name, seed=seed)
    workload.prepare(lab)
    lab.freeze()
    full = full_mode()
    summary = Summary(
        workload.name, "full" if full else "ci", seed, shard=f"{shard + 1}/{workload.shards}"
    )
    context = f"workload {workload.name}, seed {seed}"
    hits = trial(lab, workload.commands, tmp / "trace", None, context + ", no kill").hits()
    summary.count_hits(hits)
    only = os.environ.get(ONLY_ENV)
    if only:
        mine = [Hit.parse(only)] if shard == 0 else []
    else:
        mine = [h for h in choose(hits, full) if shard_of(h, workload.shards, full) == shard]
    for n, hit in enumerate(mine):
        replay = f"{ONLY_ENV}='{hit}' pytest tests/robustness -k {workload.name}"
        where = f"{context}, kill {hit} (replay: {replay})"
        kill_and_verify(lab, workload.commands, tmp / f"kill{n:04}", hit, where, summary)
        if len(summary.failures) >= MAX_FAILURES:
            break
    summary.seconds = time.monotonic() - started
    summary.record()
    return summary


Planner = Callable[[random.Random], tuple[Commands, str]]
"""From a trial's RNG: the commands of the trial and a description of them."""


def random_trials(lab: Lab, plan: Planner, tmp: Path, seed: int, trials: int) -> Summary:
    """`trials` random trials on a prepared lab; trial t uses seed `seed + t`, which replays its
    plan and its choice of process, point and k (CAIRN_ROBUSTNESS_ONLY replays the exact hit
    when the concurrent processes' interleaving changed the trace)."""
    started = time.monotonic()
    lab.freeze()
    summary = Summary(lab.name, f"random x{trials}", seed)
    only = os.environ.get(ONLY_ENV)
    for t in range(trials):
        trial_seed = seed + t
        rng = random.Random(trial_seed)
        commands, described = plan(rng)
        context = f"workload {lab.name}, random trial seed {trial_seed} ({described})"
        try:
            hits = trial(lab, commands, tmp / f"trace{t}", None, context + ", no kill").hits()
        except TrialFailed as exc:
            summary.failures.append(str(exc))
            continue
        summary.count_hits(hits)
        process = rng.choice(sorted({h.process for h in hits}))
        hit = Hit.parse(only) if only else rng.choice([h for h in hits if h.process == process])
        replay = (
            f"CAIRN_ROBUSTNESS_SEED={trial_seed} CAIRN_ROBUSTNESS_TRIALS=1 {ONLY_ENV}='{hit}' "
            "pytest tests/robustness -k random"
        )
        where = f"{context}, kill {hit} (replay: {replay})"
        print(f"random trial seed {trial_seed}: {described}; kill {hit}")
        kill_and_verify(lab, commands, tmp / f"kill{t}", hit, where, summary)
        if len(summary.failures) >= MAX_FAILURES:
            break
    summary.seconds = time.monotonic() - started
    summary.record()
    return summary
