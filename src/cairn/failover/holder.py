"""The lease holder a server runs with `--witness` or `--peer` (design 19.4): whether this server
is the primary now, under which epoch, and the fence every write path asks first.

One thread campaigns for the lease (a standby) or renews it every third of its TTL (the primary).
The primary's right to write ends at its *deadline*: the moment it sent the renewal the witness
last granted, plus the TTL, less the safety margin, on this machine's monotonic clock. The fence
compares that deadline with the clock at every write, so a process that was paused (SIGSTOP, a
frozen VM) past it refuses on waking, before its thread has run again; the witness's own expiry
comes later than the deadline, so a new primary can only exist once this one has stopped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from cairn.core.clock import Clock, epoch_ms
from cairn.failover.client import WitnessClient
from cairn.failover.epochfile import STATUS, EpochRecord, read_epoch, write_epoch, write_json
from cairn.failover.errors import (
    FailoverError,
    LeaseHeld,
    NotPrimaryNow,
    StaleEpochWrite,
    WitnessTokenRefused,
)

log = logging.getLogger("cairn.failover")


class Role(Enum):
    PRIMARY = "primary"
    STANDBY = "standby"


@dataclass(frozen=True, slots=True)
class StandbySettings:
    """How the pair runs (`cairn server serve --peer --witness --pin --lease-ttl`)."""

    data: Path
    holder: str
    """This server's name at the witness: its server id (DATA/server-id)."""
    peer: str | None = None
    witness: str | None = None
    pin: str | None = None
    """'primary', 'standby' or None (symmetric)."""
    ttl_s: float = 10.0

    @property
    def margin_s(self) -> float:
        """The deadline comes this long before the lease's end: it absorbs a clock on this
        machine running up to a quarter slower than the witness's (design 19.4)."""
        return self.ttl_s / 4


class LeaseHolder:
    """The role, the epoch and the fence of one server."""

    def __init__(
        self,
        settings: StandbySettings,
        witness: WitnessClient | None,
        clock: Clock,
        peer_can_lead: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self._witness = witness
        self._clock = clock
        self._peer_can_lead = peer_can_lead
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        seen = read_epoch(settings.data)
        self._seen = seen.epoch
        self.role = Role.STANDBY
        self.epoch = seen.epoch
        self._deadline: float | None = None
        self._granted_sent: float | None = None
        self.forced = False
        self.witness_reachable: bool | None = None
        self.last_event = "started as standby"
        self.refused_stale = 0
        self.refused_not_primary = 0
        self._adopt_forced(seen)

    # -- the fence ---------------------------------------------------------------------------

    def check_write(self, sent_epoch: int | None) -> int:
        """The epoch this write is made under, or why it may not be made (design 19.4)."""
        with self._lock:
            if sent_epoch is not None and sent_epoch < self.epoch:
                self.refused_stale += 1
                raise StaleEpochWrite(
                    f"the write carried epoch {sent_epoch}, older than this server's "
                    f"{self.epoch}: its sender follows a former primary"
                )
            if not self._leads():
                self.refused_not_primary += 1
                raise NotPrimaryNow(
                    f"this server is not the primary now (role {self._role_now().value}, "
                    f"epoch {self.epoch}); retry: the pair's primary takes writes"
                )
            if sent_epoch is not None and sent_epoch > self.epoch:
                self.refused_stale += 1
                raise NotPrimaryNow(
                    f"the write carried epoch {sent_epoch}, newer than this server's "
                    f"{self.epoch}: another server leads now"
                )
            return self.epoch

    def is_writable(self) -> bool:
        """Whether scheduled work (GC) may write now: the fence's answer, without counting."""
        with self._lock:
            return self._leads()

    def _leads(self) -> bool:
        if self.role is not Role.PRIMARY:
            return False
        return self._deadline is None or self._clock.monotonic() < self._deadline

    def _role_now(self) -> Role:
        return Role.PRIMARY if self._leads() else Role.STANDBY

    # -- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lease-holder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop; a primary that stops on purpose releases its lease, so its peer need not wait
        out the TTL."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            leading, epoch = self._leads(), self.epoch
            self._demote("stopped")
        if leading and self._witness is not None:
            try:
                self._witness.release(epoch)
            except FailoverError as exc:
                log.warning("standby: could not release the lease at stop: %s", exc)
        self.write_status()
        if self._witness is not None:
            self._witness.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop must outlive anything one round meets
                log.exception("standby: a round failed")
            self._stop.wait(self.settings.ttl_s / 3)

    def tick(self) -> None:
        """One round: renew (the primary), campaign (a standby), or take up a forced epoch."""
        with self._lock:
            if self.role is Role.PRIMARY and not self._leads():
                self._demote("its lease's deadline passed before a renewal was granted")
        if self._witness is None:
            self._adopt_forced(read_epoch(self.settings.data))
        elif self.role is Role.PRIMARY:
            self._renew(self._witness)
        elif self._may_campaign():
            self._campaign(self._witness)
        self.write_status()

    def _may_campaign(self) -> bool:
        """A standby pinned as such holds back while its peer is up and able to lead."""
        return self.settings.pin != "standby" or not self._peer_can_lead()

    def _renew(self, witness: WitnessClient) -> None:
        try:
            grant = witness.renew(self.epoch, self.settings.ttl_s)
        except LeaseHeld as exc:
            with self._lock:
                self._demote(f"the witness refused the renewal: {exc}")
            self._saw(exc.epoch)
            return
        except FailoverError as exc:
            self._unreachable(exc)
            return
        with self._lock:
            self.witness_reachable = True
            if self.role is Role.PRIMARY and grant.epoch == self.epoch:
                self._deadline = grant.sent + grant.ttl_s - self.settings.margin_s
                self._granted_sent = grant.sent

    def _campaign(self, witness: WitnessClient) -> None:
        try:
            grant = witness.acquire(self.settings.ttl_s)
        except LeaseHeld as exc:
            self.witness_reachable = True
            self.last_event = f"standby: {exc}"
            self._saw(exc.epoch)
            return
        except FailoverError as exc:
            self._unreachable(exc)
            return
        self.witness_reachable = True
        if grant.epoch <= self._seen:
            self.last_event = (
                f"the witness granted epoch {grant.epoch}, not above the {self._seen} this "
                "server has seen: it will not lead (was the witness's data folder replaced?)"
            )
            log.error("standby: %s", self.last_event)
            return
        self._saw(grant.epoch)  # on disk before the first write under it
        with self._lock:
            deadline = grant.sent + grant.ttl_s - self.settings.margin_s
            if self._clock.monotonic() >= deadline:
                self.last_event = "the grant came too late to use"
                return
            self.role, self.epoch, self._deadline = Role.PRIMARY, grant.epoch, deadline
            self._granted_sent = grant.sent
            self.last_event = f"became primary with epoch {grant.epoch}"
        log.warning("standby: %s", self.last_event)

    def _unreachable(self, exc: FailoverError) -> None:
        self.witness_reachable = False
        self.last_event = f"witness: {exc}"
        level = logging.ERROR if isinstance(exc, WitnessTokenRefused) else logging.WARNING
        log.log(level, "standby: %s", exc)

    def _demote(self, why: str) -> None:
        """Called under the lock: from now on every write is refused."""
        if self.role is Role.PRIMARY:
            self.last_event = f"demoted at epoch {self.epoch}: {why}"
            log.warning("standby: %s", self.last_event)
        self.role, self._deadline, self._granted_sent = Role.STANDBY, None, None

    def _saw(self, epoch: int) -> None:
        if epoch > self._seen:
            write_epoch(self.settings.data, EpochRecord(epoch))
            self._seen = epoch

    def _adopt_forced(self, record: EpochRecord) -> None:
        """Without a witness, `standby promote --force` is the one way to lead."""
        if self._witness is None and record.forced and record.epoch >= self.epoch:
            with self._lock:
                if self.role is not Role.PRIMARY:
                    self.role, self.epoch, self._deadline = Role.PRIMARY, record.epoch, None
                    self.forced = True
                    self.last_event = f"promoted by hand (--force) to epoch {record.epoch}"
                    log.warning("standby: %s", self.last_event)
            self._seen = max(self._seen, record.epoch)

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock.monotonic()
            sent = self._granted_sent
            return {
                "role": self._role_now().value,
                "epoch": self.epoch,
                "epoch_seen": self._seen,
                "lease_age_s": None if sent is None else round(now - sent, 3),
                "deadline_in_s": None if self._deadline is None else round(self._deadline - now, 3),
                "forced": self.forced,
                "peer": self.settings.peer,
                "witness": self.settings.witness,
                "witness_reachable": self.witness_reachable,
                "pin": self.settings.pin,
                "ttl_s": self.settings.ttl_s,
                "refused_stale_epoch": self.refused_stale,
                "refused_not_primary": self.refused_not_primary,
                "last_event": self.last_event,
            }

    def write_status(self) -> None:
        """`DATA/standby-status.json`, for `cairn server standby status` on the same machine."""
        status = {**self.status(), "pid": os.getpid(), "written_ms": epoch_ms(self._clock)}
        try:
            write_json(self.settings.data / STATUS, status)
        except OSError as exc:
            log.warning("standby: cannot write %s: %s", STATUS, exc)
