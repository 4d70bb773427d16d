"""Is a machine's job keeping to its own schedule? (design 18.4)

A fixed age ("no backup for 26 hours") is wrong both ways: it calls an hourly job that stopped
twenty hours ago fine, and a weekly job stale on its second day. Each result the agent reports
says when the job's next run is due and how far apart its slots are (15.5); the server moves
that instant onto its own clock (`JobState.due_ms`). Against it, with a grace for jitter and
the run's own length (its result arrives when it ends):

- `never`: the job has never reported a saved snapshot (success or warning), whatever the time;
- `on-time`: the next result is not yet overdue;
- `late`: it is overdue, but the slot after it has not passed;
- `missed`: a whole slot more has passed with no result: at least one run did not happen;
- `unscheduled`: nothing to judge by (a continuous job, which runs on changes, or an agent that
  does not report its schedule).

The outcome of the last run is shown beside it: a job that runs on time and fails is on time
and red, since the two say different things (the agent is alive; its backups are not).
"""

from __future__ import annotations

from enum import StrEnum

from cairn.server.jobresults import JobState

GRACE_FLOOR_MS = 15 * 60 * 1000
"""At least a quarter of an hour: the agent's jitter (5 minutes by default) and the report's
way to the server."""
GRACE_SHARE = 20
"""And a twentieth of the period (72 minutes for a daily job), for a machine that woke late."""


class Staleness(StrEnum):
    ON_TIME = "on-time"
    LATE = "late"
    MISSED = "missed"
    NEVER = "never"
    UNSCHEDULED = "unscheduled"


def grace_ms(state: JobState) -> int:
    """How long past its due time a result may arrive and still be on time: the floor, twice
    the last run's length, or a share of the period, whichever is longest."""
    latest = state.latest
    period = latest.period_ms or 0
    return max(GRACE_FLOOR_MS, 2 * (latest.ended_ms - latest.started_ms), period // GRACE_SHARE)


def staleness(state: JobState, now_ms: int) -> Staleness:
    if state.last_success_ms is None:
        return Staleness.NEVER
    due = state.due_ms
    if due is None:
        return Staleness.UNSCHEDULED
    overdue = now_ms - due - grace_ms(state)
    if overdue <= 0:
        return Staleness.ON_TIME
    if state.latest.period_ms is None or overdue <= state.latest.period_ms:
        return Staleness.LATE
    return Staleness.MISSED
