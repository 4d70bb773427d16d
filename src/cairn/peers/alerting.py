"""The peer status alert told by e-mail or webhook (design 20.5): `peer status --notify FILE`.

The alert is told as the job `peer-copies` of this machine through the notify package's Alerter
(design 15.6), an alert as a failed run and its end as a good one, so its rules apply as they
do for the agent's jobs: tell once, again at most daily while it lasts, tell the recovery. The
Alerter's state file lives in the peer folder, so a monitoring check that runs `peer status`
every few minutes does not mail each time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cairn.core.clock import Clock, epoch_s
from cairn.notify.alerts import Alerter, channel_for
from cairn.notify.config import load_notify_file
from cairn.notify.message import Event, Outcome, RunSummary
from cairn.peers.status import Protection

STATE_FILE = "notify-state.json"
JOB = "peer-copies"


def tell(folder: Path, notify_file: Path, me: str, state: Protection, clock: Clock) -> list[Event]:
    """Send what `state` calls for: the alert, or its recovery once protected again. Short of
    copies but not yet past the threshold says nothing either way. A channel that cannot
    deliver is logged by the Alerter and tried at the next status (it never fails the status)."""
    channels, policy = load_notify_file(notify_file)
    alerter = Alerter(
        [channel_for(c) for c in channels], policy, folder / STATE_FILE, lambda: epoch_s(clock)
    )
    if state.alert:
        outcome = Outcome.FAILURE
        since = datetime.fromtimestamp((state.unprotected_since_ms or 0) / 1000, UTC)
        message = (
            f"{me} has had fewer than {state.wanted} complete copies on its peers since "
            f"{since:%Y-%m-%d %H:%M UTC}; `cairn peer status` there names the peers and why"
        )
    elif state.protected:
        outcome, message = Outcome.SUCCESS, f"{me} is complete on {len(state.confirmed)} peers"
    else:
        return []
    now = epoch_s(clock)
    run = RunSummary(
        job=JOB,
        host=me,
        started=now,
        ended=now,
        outcome=outcome,
        error_code="CAIRN-E190" if state.alert else None,
        message=message,
    )
    return alerter.after_run(run)
