"""R8: clocks that disagree or jump never make prune delete what a snapshot needs, and a stale
session never commits (design 13.1, 13.4).

Every machine has its own clock over one true time (repohelpers.World). The server's clock is
right unless a test says otherwise; a client's may be far behind or ahead, or jump while it runs.
The rule these tests pin down: judging a lock ended by a clock may be wrong, so a prune removes a
lock before it acts on that judgement, and a session commits only while its lock is still there
(checked before and after the snapshot is saved) and its lease holds by its own clock, which a
wall clock set back cannot rewind (the monotonic clock counts too).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cairn.backends.base import ObjectKind
from cairn.backends.memory import MemoryBackend
from cairn.core.ids import ObjectName
from cairn.format.lock import LockRecord
from cairn.format.pack import BlobKind
from cairn.format.snapshot import SnapshotBody
from cairn.format.tree import Node, encode_tree
from cairn.repository.check import Checker
from cairn.repository.locks import (
    LEASE_MS,
    SKEW_MS,
    LeaseExpired,
    Session,
    has_ended,
    now_ms,
    read_locks,
)
from cairn.repository.prune import PruneOptions, PruneRunning
from cairn.repository.repository import Repository
from cairn.snapshot.forget import plan_forget, remove_snapshots
from cairn.snapshot.retention import Policy
from tests.support.repohelpers import (
    PASS,
    Gated,
    Killed,
    MachineClock,
    Stoppable,
    World,
    assert_consistent,
    backup,
    chunks,
    files,
    open_repo,
    prune,
    two_snapshots,
)

LEASE_S = LEASE_MS // 1000
SKEW_S = SKEW_MS // 1000
HOUR = 3600
DAY = 24 * HOUR
CONDEMN_AND_SWEEP = PruneOptions(max_unused=0)


class Setup:
    """A repository whose first snapshot was forgotten (its file `old` is left for prune), a
    server with the right time, and a client clock `offset` seconds off."""

    def __init__(self, offset: float = 0) -> None:
        self.world = World()
        self.server = MachineClock(self.world, "server")
        self.client = MachineClock(self.world, "client", offset=offset)
        self.storage = MemoryBackend()
        first, self.second = two_snapshots(self.storage, self.server)
        remove_snapshots(open_repo(self.storage, self.server), [first.hex])

    def snapshots(self) -> list[str]:
        return [i.handle.name for i in self.storage.list(ObjectKind.SNAPSHOT)]


def reuse_forgotten(repo: Repository) -> ObjectName:
    """A backup of the forgotten file: it deduplicates against data prune has condemned."""
    return backup(repo, files(again=chunks(3, 20)))


# ---- a client whose clock is behind, or a prune whose clock is ahead ------------------------


@pytest.mark.parametrize(
    ("behind", "running_for"),
    [
        (SKEW_S + 60, LEASE_S - 30),  # its lease holds by its clock, its lock looks ended
        (HOUR, 0),
        (30 * DAY, 0),
    ],
)
def test_a_client_clock_behind_cannot_make_prune_delete_what_it_commits(
    behind: int, running_for: int, tmp_path: Path
) -> None:
    """The client's fresh lock looks ended to the server: prune removes it and sweeps. The
    client deduplicated against the swept data, so it must not commit (it did, before)."""
    s = Setup(offset=-behind)
    running = open_repo(s.storage, s.client, "backup")  # its index still lists `old`
    s.world.advance(running_for)
    prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    swept = prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    assert swept.swept_packs > 0
    with pytest.raises(LeaseExpired, match="removed by a prune"):
        reuse_forgotten(running)
    running.close()
    assert s.snapshots() == [s.second.hex]
    assert_consistent(s.storage, s.server, tmp_path)


def test_a_prune_clock_ahead_cannot_delete_what_a_running_backup_commits(tmp_path: Path) -> None:
    s = Setup()
    running = open_repo(s.storage, s.client, "backup")
    s.server.jump(DAY)
    prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    with pytest.raises(LeaseExpired, match="removed by a prune"):
        reuse_forgotten(running)
    running.close()
    assert_consistent(s.storage, s.server, tmp_path)


def test_a_session_whose_lock_was_removed_cannot_commit_after_renewing(tmp_path: Path) -> None:
    """Renewing saves a new lock; the session still knows it was judged ended."""
    s = Setup(offset=-HOUR)
    running = open_repo(s.storage, s.client, "backup")
    prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    assert running.session is not None
    running.session.renew()
    assert [lock.record.session for lock in read_locks(s.storage)] == [running.session.id]
    prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    with pytest.raises(LeaseExpired, match="removed by a prune"):
        reuse_forgotten(running)
    running.close()
    assert_consistent(s.storage, s.server, tmp_path)


# ---- a client whose clock is ahead ----------------------------------------------------------


def test_a_client_clock_ahead_keeps_its_data_and_commits(tmp_path: Path) -> None:
    s = Setup(offset=30 * DAY)
    running = open_repo(s.storage, s.client, "backup")
    prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    assert prune(s.storage, s.server, CONDEMN_AND_SWEEP).records_waiting == 1
    reuse_forgotten(running)
    running.close()
    swept = prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    assert swept.kept_packs > 0, "the packs the new snapshot uses are indexed again"
    assert len(s.snapshots()) == 2
    assert_consistent(s.storage, s.server, tmp_path)


def test_a_crashed_client_with_a_clock_ahead_holds_the_sweep_until_its_lock_ends(
    tmp_path: Path,
) -> None:
    """What the design says: a lock ends SKEW after its expiry by the reader's clock. A lock
    dated 30 days ahead keeps condemned data for 30 days (space, never data, is lost)."""
    s = Setup(offset=30 * DAY)
    open_repo(s.storage, s.client, "backup")  # then killed: its lock stays
    prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    [lock] = [lk for lk in read_locks(s.storage) if lk.record.purpose == "backup"]
    s.world.advance((lock.record.expires_ms + SKEW_MS - now_ms(s.server)) / 1000)
    assert prune(s.storage, s.server, CONDEMN_AND_SWEEP).records_waiting == 1
    s.world.advance(1)
    assert prune(s.storage, s.server, CONDEMN_AND_SWEEP).swept_packs > 0
    assert read_locks(s.storage) == []
    assert_consistent(s.storage, s.server, tmp_path)


def test_a_crashed_prune_with_a_clock_ahead_stops_other_prunes_until_its_lock_ends() -> None:
    """A liveness cost of the rule above: prunes refuse to run beside it meanwhile."""
    s = Setup()
    ahead = MachineClock(s.world, "ahead", offset=30 * DAY)
    Session(s.storage, ahead, "prune").acquire(renew_in_background=False)  # then killed
    with pytest.raises(PruneRunning):
        prune(s.storage, s.server)
    s.world.advance(30 * DAY + (LEASE_MS + SKEW_MS) / 1000 + 1)
    prune(s.storage, s.server)


def test_lock_ends_exactly_skew_after_its_expiry_by_the_readers_clock() -> None:
    far = 10**12 + 30 * DAY * 1000
    lock = LockRecord(b"s" * 16, "backup", far, far + LEASE_MS, b"")
    assert not has_ended(lock, far + LEASE_MS + SKEW_MS)
    assert has_ended(lock, far + LEASE_MS + SKEW_MS + 1)
    assert not has_ended(lock, 0), "a lock from the reader's future has not ended"


# ---- a stale session cannot commit ----------------------------------------------------------


def paused_session(clock: MachineClock) -> Session:
    session = Session(MemoryBackend(), clock, "backup")
    session.acquire(renew_in_background=False)
    return session


def test_a_session_paused_until_its_lease_ends_cannot_commit() -> None:
    world = World()
    session = paused_session(MachineClock(world))
    world.advance(LEASE_S - 1)
    session.check_lease()
    world.advance(1)
    with pytest.raises(LeaseExpired, match="lease ran out"):
        session.check_lease()


def test_a_clock_set_back_does_not_make_a_lease_look_fresh() -> None:
    world = World()
    clock = MachineClock(world)
    session = paused_session(clock)
    world.advance(LEASE_S)
    clock.jump(-HOUR)  # by the wall clock alone the lease has 50 minutes to go
    with pytest.raises(LeaseExpired, match="lease ran out"):
        session.check_lease()


def test_a_clock_set_back_does_not_date_the_next_lock_back() -> None:
    world = World()
    clock = MachineClock(world)
    backend = MemoryBackend()
    session = Session(backend, clock, "backup")
    session.acquire(renew_in_background=False)
    [first] = read_locks(backend)
    world.advance(60)
    clock.jump(-HOUR)
    session.renew()
    [second] = read_locks(backend)
    assert second.record.created_ms == first.record.created_ms + 60_000
    session.check_lease()


def test_a_machine_that_slept_sees_its_lease_end_though_its_monotonic_clock_stopped() -> None:
    world = World()
    clock = MachineClock(world)
    session = paused_session(clock)
    clock.suspend(LEASE_S)
    with pytest.raises(LeaseExpired, match="lease ran out"):
        session.check_lease()


def test_a_clock_set_forward_ends_the_lease() -> None:
    world = World()
    clock = MachineClock(world)
    session = paused_session(clock)
    clock.jump(DAY)
    with pytest.raises(LeaseExpired, match="lease ran out"):
        session.check_lease()


def stopped_commit(s: Setup, before: tuple[str, ObjectKind]) -> tuple[Stoppable[ObjectName], Gated]:
    """A client backup of the forgotten file whose commit stops before the change `before`."""
    machine = Gated(s.storage)
    repo = open_repo(machine, s.client, "backup")
    repo.start_writing(connections=1)
    data = chunks(3, 20)
    ids = [repo.store_blob(BlobKind.DATA, c)[0] for c in data]
    sizes = [len(c) for c in data]
    tree = encode_tree([Node(b"again", "file", 0o644, content=ids, sizes=sizes, size=sum(sizes))])
    tree_id, _ = repo.store_blob(BlobKind.TREE, tree)
    body = SnapshotBody(s.client.now().isoformat(), "client", "user", ["/d"], [], tree_id)
    commit = Stoppable(machine, lambda: repo.commit_snapshot(body, {*ids, tree_id}), before=before)
    assert commit.stopped
    return commit, machine


def test_a_commit_that_slept_between_its_check_and_its_save_is_taken_back(tmp_path: Path) -> None:
    """The process passed the lease check, slept past its lease; meanwhile prune removed its
    lock and swept the data it deduplicated against. Saved after waking, the snapshot would
    name missing chunks: the commit checks again after the save and takes it back."""
    s = Setup()
    commit, _ = stopped_commit(s, before=("save", ObjectKind.SNAPSHOT))
    s.world.advance(LEASE_S + SKEW_S + 1)
    prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    assert prune(s.storage, s.server, CONDEMN_AND_SWEEP).swept_packs > 0
    commit.resume()
    assert isinstance(commit.error, LeaseExpired)
    assert s.snapshots() == [s.second.hex]
    assert_consistent(s.storage, s.server, tmp_path)


def test_a_session_that_slept_before_writing_its_index_does_not_name_swept_packs(
    tmp_path: Path,
) -> None:
    """Shrunk from the concurrency model. The commit saved its pack, then slept before the index;
    prune condemned the unindexed pack, removed the stale lock and swept the pack. Waking, the
    session wrote an index naming the deleted pack, and the next backup deduplicated against it:
    an acknowledged snapshot with missing data. Index writes are guarded like the commit."""
    s = Setup()
    commit, _ = stopped_commit(s, before=("save", ObjectKind.INDEX))
    prune(s.storage, s.server, CONDEMN_AND_SWEEP)  # condemns the unindexed pack
    s.world.advance(LEASE_S + SKEW_S + 1)
    assert prune(s.storage, s.server, CONDEMN_AND_SWEEP).swept_packs > 0
    commit.resume()
    assert isinstance(commit.error, LeaseExpired)
    assert_consistent(s.storage, s.server, tmp_path)
    repo = open_repo(s.storage, s.server, "backup")
    reuse_forgotten(repo)
    repo.close()
    assert_consistent(s.storage, s.server, tmp_path)


@pytest.mark.xfail(
    strict=True,
    reason="known window: a commit that slept past its lease between its check and its save, "
    "then was killed before it could take its snapshot back, leaves that snapshot naming "
    "chunks a prune swept meanwhile. Storage offers no conditional write to close it; check "
    "reports the snapshot, and the next backup of the same files stores the chunks again.",
)
def test_a_stale_commit_killed_before_it_takes_its_snapshot_back_leaves_it_whole() -> None:
    s = Setup()
    commit, machine = stopped_commit(s, before=("save", ObjectKind.SNAPSHOT))
    s.world.advance(LEASE_S + SKEW_S + 1)
    prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    prune(s.storage, s.server, CONDEMN_AND_SWEEP)
    commit.resume(before=("remove", ObjectKind.SNAPSHOT))
    assert commit.stopped and machine.pending == ("remove", ObjectKind.SNAPSHOT)
    commit.kill()
    assert isinstance(commit.error, Killed)
    report = Checker(open_repo(s.storage, s.server)).run(read_data=True)
    assert report.errors == []


# ---- times written by other machines ---------------------------------------------------------


def test_a_deletion_record_dated_in_the_future_is_swept_at_once_without_grace(
    tmp_path: Path,
) -> None:
    """The record's time is its writer's clock: only a grace compares it with ours."""
    s = Setup()
    ahead = MachineClock(s.world, "ahead", offset=30 * DAY)
    prune(s.storage, ahead, CONDEMN_AND_SWEEP)
    graced = PruneOptions(max_unused=0, grace_ms=HOUR * 1000)
    assert prune(s.storage, s.server, graced).records_waiting == 1, "a grace waits for it"
    assert prune(s.storage, s.server, CONDEMN_AND_SWEEP).swept_packs > 0
    assert_consistent(s.storage, s.server, tmp_path)


@pytest.mark.parametrize("offset", [-365 * DAY, 365 * DAY])
def test_prune_never_deletes_a_snapshot_whatever_time_it_claims(
    offset: int, tmp_path: Path
) -> None:
    s = Setup(offset=offset)
    repo = open_repo(s.storage, s.client, "backup")
    reuse_forgotten(repo)
    repo.close()
    before = sorted(s.snapshots())
    for _ in range(3):
        prune(s.storage, s.server, CONDEMN_AND_SWEEP)
        s.world.advance(DAY)
    assert sorted(s.snapshots()) == before
    assert_consistent(s.storage, s.server, tmp_path)


def test_a_snapshot_dated_in_the_future_moves_only_its_own_hosts_retention() -> None:
    """keep-within counts from the newest snapshot of a group (design 13.2); groups are per
    host, so a client's wrong clock decides only about that client's snapshots."""
    s = Setup(offset=365 * DAY)
    repo = open_repo(s.storage, s.client, "backup")
    backup(repo, files(again=chunks(3, 20)), host="client")
    repo.close()
    reader = Repository.open(s.storage, PASS, s.server)
    snaps = [reader.read_snapshot(ObjectName.from_hex(n)) for n in s.snapshots()]
    groups = plan_forget(snaps, Policy(within=timedelta(days=7)), ("host",))
    assert [[d.keep for d in g.decisions] for g in groups] == [[True], [True]]
