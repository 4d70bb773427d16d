"""Event-driven triggers (design 15.3): file-system changes, the repository becoming reachable.
Interface agreed between the daemon (caller) and this module (owner: agentserver)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class Trigger(Protocol):
    def start(self, wake: Callable[[str], None]) -> None:
        """Begin watching; call `wake(reason)` (from any thread) when a run is wanted."""

    def stop(self) -> None: ...


class ChangeTrigger:
    """Wakes once `debounce_s` passed without a new file-system event under `paths`."""

    def __init__(self, paths: Sequence[str], debounce_s: float) -> None:
        raise NotImplementedError

    def start(self, wake: Callable[[str], None]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class ReachableTrigger:
    """Probes every `probe_s`; wakes when `probe()` turns True after being False (or at start
    when reachable). `reachable` tells the last probe's answer."""

    def __init__(self, probe: Callable[[], bool], probe_s: float) -> None:
        raise NotImplementedError

    @property
    def reachable(self) -> bool:
        raise NotImplementedError

    def start(self, wake: Callable[[str], None]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def probe_repository(location: str, timeout_s: float = 5.0) -> bool:
    """True when the repository's location answers: a server's /v1/health, a local folder's
    existence."""
    raise NotImplementedError
