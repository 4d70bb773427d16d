"""kill -9 at a random crash point while several clients write at once (RELIABILITY.md R1, random).

Each trial starts from the same repository: two snapshots of w0 and a deletion record from an
earlier prune that the next prune sweeps. From the trial's seed: 2 to N writers back up their own
folders at once (w0 and w1 hold the same files, so they race to store the same chunks), and now
and then a `forget --keep-last 1 --prune` runs among them. The trial runs once traced, then again
with one process killed at one (point, k) drawn from the trace, and is verified like the
systematic pass. CAIRN_ROBUSTNESS_TRIALS (default 3), CAIRN_ROBUSTNESS_SEED (default: random,
printed) and CAIRN_ROBUSTNESS_WRITERS (default 3) size the run.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.robustness.killharness import Commands, Lab, Run, random_trials
from tests.robustness.trees import evolve, make_tree

pytestmark = pytest.mark.slow


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _prepare(lab: Lab, writers: int) -> None:
    lab.tool().run("init", "--pack-size", "64KiB")
    for i in range(writers):
        make_tree(lab.source(f"w{i}"), lab.seed + (i if i > 1 else 0))
    w0 = lab.sources["w0"]
    lab.backup("w0")
    evolve(w0, lab.seed, 2)
    lab.backup("w0")
    lab.forget("--keep-last", "1", "--prune")  # leaves a deletion record to sweep
    evolve(w0, lab.seed, 3)
    lab.backup("w0")
    lab.may_vanish = set(lab.snapshots)  # the trial's forget keeps only the newest of w0


def _planner(writers: int) -> Callable[[random.Random], tuple[Commands, str]]:
    def plan(rng: random.Random) -> tuple[Commands, str]:
        count = rng.randint(2, writers)
        jobs: list[tuple[str, tuple[str, ...]]] = [
            (f"backup-w{i}", ("backup", "--json", f"w{i}")) for i in range(count)
        ]
        if rng.random() < 0.5:
            jobs.append(("forget-prune", ("forget", "--keep-last", "1", "--prune", "--json")))
        rng.shuffle(jobs)

        def commands(run: Run) -> None:
            for label, args in jobs:
                if args[0] == "backup":
                    args = (*args[:2], str(run.lab.sources[args[2]]))
                run.start(label, *args)

        return commands, "started at once: " + ", ".join(label for label, _ in jobs)

    return plan


def test_random_kills_among_concurrent_writers_lose_nothing(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    writers = _setting("CAIRN_ROBUSTNESS_WRITERS", 3)
    trials = _setting("CAIRN_ROBUSTNESS_TRIALS", 3)
    seed = _setting("CAIRN_ROBUSTNESS_SEED", random.SystemRandom().randrange(1 << 32))
    print(f"random kills: seed {seed}, {trials} trials, up to {writers} writers")
    lab = Lab(tmp_path / "lab", name="concurrent-writers")
    _prepare(lab, writers)
    summary = random_trials(lab, _planner(writers), tmp_path, seed, trials)
    record_property("kill_harness", summary.line())
    summary.assert_clean()
