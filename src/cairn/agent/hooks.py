"""Commands before and after a job (design 15.4). Interface agreed between the runner (caller)
and this module (owner: hooks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from cairn.agent.spec import HookSpec


@dataclass(frozen=True, slots=True)
class HookResult:
    spec: HookSpec
    exit_code: int | None
    """None when it was killed (timeout) or could not start."""
    timed_out: bool
    duration_s: float
    error: str = ""
    """Why it failed, in one line, for the run's message."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run_hook(spec: HookSpec, env: Mapping[str, str], log: BinaryIO) -> HookResult:
    """Run one hook with its timeout (its process group is killed past it); its output goes to
    `log`. Never raises for a command that fails or cannot start: the result says so."""
    raise NotImplementedError
