"""The kill harness's choice of hits (killharness.choose and shard_of): in CI every (process,
point) site is killed exactly once over a workload's shards, even when the shards' traces count
a site's hits differently; the full pass kills at every hit exactly once."""

from __future__ import annotations

import pytest

from tests.robustness.killharness import Hit, choose, shard_of


def _trace(counts: dict[tuple[str, str], int]) -> list[Hit]:
    return [Hit(p, point, k) for (p, point), n in counts.items() for k in range(1, n + 1)]


COUNTS = {
    ("backup", "local.save.publish"): 40,
    ("backup", "local.save.fsync"): 7,
    ("backup", "lock.save"): 1,
    ("prune", "local.remove.dirsync"): 3,
    ("prune", "lock.remove"): 2,
    ("forget", "local.save.publish"): 5,
    **{("sweep", f"point{i}"): i for i in range(1, 30)},
}


def test_ci_kills_each_site_once_at_its_first_middle_or_last_hit() -> None:
    chosen = choose(_trace(COUNTS), full=False)
    assert sorted((h.process, h.point) for h in chosen) == sorted(COUNTS)
    for hit in chosen:
        n = COUNTS[hit.process, hit.point]
        assert hit.k in {1, n} | ({(n + 1) // 2} if n >= 5 else set())
    kinds = {
        "first" if h.k == 1 else "last" if h.k == COUNTS[h.process, h.point] else "middle"
        for h in chosen
        if COUNTS[h.process, h.point] >= 5
    }
    assert kinds == {"first", "middle", "last"}, "across the sites, every kind of hit is killed"
    assert choose(list(reversed(_trace(COUNTS))), full=False) == chosen, "the same on every run"


@pytest.mark.parametrize("shards", [1, 2, 3, 4])
def test_shards_whose_traces_differ_still_kill_every_site_exactly_once(shards: int) -> None:
    killed: list[tuple[str, str]] = []
    for shard in range(shards):
        # each shard traces the workload again: threads may reach a point a time more or less
        counts = {site: n + (shard + len(site[1])) % 2 for site, n in COUNTS.items()}
        hits = choose(_trace(counts), full=False)
        killed += [(h.process, h.point) for h in hits if shard_of(h, shards, False) == shard]
    assert sorted(killed) == sorted(COUNTS)


@pytest.mark.parametrize("shards", [1, 3])
def test_the_full_pass_kills_at_every_hit_exactly_once(shards: int) -> None:
    hits = _trace(COUNTS)
    chosen = choose(hits, full=True)
    killed = [h for shard in range(shards) for h in chosen if shard_of(h, shards, True) == shard]
    assert sorted(killed) == sorted(hits)
