"""The witness's compare-and-swap rules (design 19.3) and the holder's fence (19.4), on a frozen
clock: every expiry here is the clock moved by hand, never a wait."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cairn.core.clock import FrozenClock
from cairn.failover.epochfile import EpochRecord, read_epoch, write_epoch
from cairn.failover.errors import LeaseHeld, NotPrimaryNow, StaleEpochWrite, WitnessRequestBad
from cairn.failover.holder import LeaseHolder, Role, StandbySettings
from cairn.failover.leases import LeaseTable


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def table(tmp_path: Path, clock: FrozenClock) -> LeaseTable:
    return LeaseTable(tmp_path / "witness.db", clock)


def test_a_free_lease_is_granted_with_the_next_epoch(table: LeaseTable) -> None:
    assert table.read("pair").epoch == 0
    lease = table.acquire("pair", "a", 10)
    assert (lease.holder, lease.epoch, lease.remaining_s) == ("a", 1, 10)


def test_a_held_lease_is_refused_to_another_holder(table: LeaseTable) -> None:
    table.acquire("pair", "a", 10)
    with pytest.raises(LeaseHeld) as refused:
        table.acquire("pair", "b", 10)
    assert (refused.value.holder, refused.value.epoch) == ("a", 1)


def test_only_one_of_two_candidates_wins(table: LeaseTable) -> None:
    won = []
    for holder in ("a", "b"):
        with contextlib.suppress(LeaseHeld):
            won.append(table.acquire("pair", holder, 10))
    assert [lease.holder for lease in won] == ["a"]


def test_renewal_by_the_holder_keeps_the_epoch(table: LeaseTable, clock: FrozenClock) -> None:
    table.acquire("pair", "a", 10)
    clock.advance(9)
    lease = table.renew("pair", "a", 1, 10)
    assert (lease.epoch, lease.remaining_s) == (1, 10)
    clock.advance(9)  # 18 s after the grant, 9 after the renewal: still held
    with pytest.raises(LeaseHeld):
        table.acquire("pair", "b", 10)


def test_an_expired_lease_goes_to_a_new_holder_with_epoch_plus_one(
    table: LeaseTable, clock: FrozenClock
) -> None:
    table.acquire("pair", "a", 10)
    clock.advance(10)
    lease = table.acquire("pair", "b", 10)
    assert (lease.holder, lease.epoch) == ("b", 2)
    with pytest.raises(LeaseHeld, match="b holds it"):
        table.renew("pair", "a", 1, 10)


def test_an_expired_lease_is_not_renewed_even_by_its_holder(
    table: LeaseTable, clock: FrozenClock
) -> None:
    table.acquire("pair", "a", 10)
    clock.advance(10)
    with pytest.raises(LeaseHeld, match="expired"):
        table.renew("pair", "a", 1, 10)
    assert table.acquire("pair", "a", 10).epoch == 2  # acquired again: a new epoch


def test_a_renewal_naming_an_old_epoch_is_refused(table: LeaseTable) -> None:
    table.acquire("pair", "a", 10)
    table.acquire("pair", "a", 10)  # the same holder again: epoch 2 fences its epoch-1 writes
    with pytest.raises(LeaseHeld, match="epoch 1 is not the current 2"):
        table.renew("pair", "a", 1, 10)


def test_release_frees_the_lease_and_keeps_the_epoch(table: LeaseTable) -> None:
    table.acquire("pair", "a", 10)
    with pytest.raises(LeaseHeld):
        table.release("pair", "b", 1)
    freed = table.release("pair", "a", 1)
    assert (freed.holder, freed.epoch) == (None, 1)
    assert table.acquire("pair", "b", 10).epoch == 2


def test_leases_of_two_pairs_are_apart(table: LeaseTable) -> None:
    table.acquire("one", "a", 10)
    assert table.acquire("two", "b", 10).epoch == 1


def test_the_epoch_survives_a_restart_and_a_held_lease_counts_from_it(
    tmp_path: Path, clock: FrozenClock
) -> None:
    first = LeaseTable(tmp_path / "w.db", clock)
    first.acquire("pair", "a", 10)
    first.close()
    clock.advance(100)  # the witness was down long past the TTL
    again = LeaseTable(tmp_path / "w.db", clock)
    with pytest.raises(LeaseHeld):  # counted from the restart: never shorter than the holder's
        again.acquire("pair", "b", 10)
    clock.advance(10)
    assert again.acquire("pair", "b", 10).epoch == 2


@pytest.mark.parametrize(
    ("name", "holder", "ttl"), [("Pair", "a", 10), ("pair", "a b", 10), ("pair", "a", 0.5)]
)
def test_malformed_requests_are_refused(
    table: LeaseTable, name: str, holder: str, ttl: float
) -> None:
    with pytest.raises(WitnessRequestBad):
        table.acquire(name, holder, ttl)


def _holder(tmp_path: Path, clock: FrozenClock) -> LeaseHolder:
    return LeaseHolder(StandbySettings(data=tmp_path, holder="a", peer="b:1"), None, clock)


def test_a_standby_refuses_every_write(tmp_path: Path, clock: FrozenClock) -> None:
    holder = _holder(tmp_path, clock)
    assert holder.role is Role.STANDBY
    with pytest.raises(NotPrimaryNow):
        holder.check_write(None)
    assert holder.status()["refused_not_primary"] == 1


def test_a_forced_promotion_leads_and_fences_older_epochs(
    tmp_path: Path, clock: FrozenClock
) -> None:
    write_epoch(tmp_path, EpochRecord(4, forced=True))
    holder = _holder(tmp_path, clock)
    assert holder.check_write(None) == 4
    assert holder.check_write(4) == 4
    with pytest.raises(StaleEpochWrite):
        holder.check_write(3)
    with pytest.raises(NotPrimaryNow):
        holder.check_write(5)
    assert holder.status()["refused_stale_epoch"] == 2
    assert read_epoch(tmp_path) == EpochRecord(4, forced=True)


def test_the_cli_names_the_witness_token_file_as_the_witness_does() -> None:
    from cairn.cli import witness_cmd
    from cairn.failover import witness

    assert witness_cmd.TOKEN == witness.TOKEN
