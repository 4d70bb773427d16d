"""When to tell (design 15.6): failure, recovery, repeat while failing, silence, summary report.

Interface agreed between the agent (caller) and this module (owner: notify). The agent calls
`after_run` after every run, `tick` about once a minute; the Alerter keeps what it has told in
`state_file` (JSON) so a restart neither repeats nor forgets an alert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cairn.notify.message import AlertPolicy, Channel, Event, RunSummary


class Alerter:
    def __init__(
        self,
        channels: Sequence[Channel],
        policy: AlertPolicy,
        state_file: Path,
        now: Callable[[], float],
    ) -> None:
        raise NotImplementedError

    def after_run(self, run: RunSummary) -> list[Event]:
        """Send what this run calls for (failure, recovery); returns the events sent."""
        raise NotImplementedError

    def tick(
        self, last_success: dict[str, float | None], history: Sequence[RunSummary]
    ) -> list[Event]:
        """Silence alerts (job → time of its last success, None: never) and a due summary report
        (over `history`, the runs since the last report)."""
        raise NotImplementedError


def channel_for(spec: object) -> Channel:
    """The Channel that carries events for an EmailSpec or a WebhookSpec."""
    raise NotImplementedError
