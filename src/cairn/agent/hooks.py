"""Commands before and after a job (design 15.4). Interface agreed between the runner (caller)
and this module (owner: hooks).

A hook runs in a session of its own with stdin from /dev/null; its stdout and stderr share one
pipe, copied into the run's log as they come, up to `OUTPUT_CAP` bytes (the rest is read and
dropped, so a chatty hook neither blocks nor fills the disk). Past its timeout, and when its main
process ends, its process group is ended (procgroup.end_group).
"""

from __future__ import annotations

import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from cairn.agent.procgroup import GRACE_S, end_group
from cairn.agent.spec import HookSpec
from cairn.core.clock import SYSTEM_CLOCK, utc_now

OUTPUT_CAP = 1024 * 1024
"""Bytes of one hook's output kept in the log."""

_DRAIN_S = 1.0
"""How long to wait for the pipe to close once the group is dead (a process that left the group
with setsid may still hold it open: we stop reading rather than wait for it)."""


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
    `log`. Never raises for a command that fails or cannot start: the result says so.

    `env` is the hook's whole environment (the runner passes its own plus CAIRN_JOB, CAIRN_HOOK
    and CAIRN_OUTCOME)."""
    argv = hook_argv(spec.run)
    log_line(log, f"hook {spec.when} started: {describe(spec.run)}")
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
    except (OSError, ValueError, IndexError) as e:  # ValueError: a NUL; IndexError: no argv
        why = (e.strerror if isinstance(e, OSError) else None) or str(e) or "empty command"
        error = f"hook {spec.when} could not start: {describe(spec.run)}: {why}"
        log_line(log, error)
        return HookResult(spec, None, False, time.monotonic() - started, error)
    copier = _OutputCopier(log)
    try:
        timed_out = _supervise(process, spec.timeout_s, copier)
    except BaseException:  # the agent is stopping (or the log failed): the hook stops with it
        end_group(process, GRACE_S)
        if process.stdout is not None:
            process.stdout.close()
        raise
    result = _result(spec, process.returncode, timed_out, time.monotonic() - started)
    copier.finish()
    log_line(log, _closing_line(result, copier.dropped))
    return result


def hook_argv(run: tuple[str, ...] | str) -> list[str]:
    return ["/bin/sh", "-c", run] if isinstance(run, str) else list(run)


def describe(run: tuple[str, ...] | str) -> str:
    return f"sh -c {shlex.quote(run)}" if isinstance(run, str) else shlex.join(run)


class _OutputCopier:
    """Copies a hook's output into the log, keeping the first OUTPUT_CAP bytes."""

    def __init__(self, log: BinaryIO) -> None:
        self.log = log
        self.kept = 0
        self.dropped = 0
        self.ends_with_newline = True

    def write(self, data: bytes) -> None:
        keep = data[: max(0, OUTPUT_CAP - self.kept)]
        if keep:
            self.log.write(keep)
            self.log.flush()
            self.kept += len(keep)
            self.ends_with_newline = keep.endswith(b"\n")
        self.dropped += len(data) - len(keep)

    def finish(self) -> None:
        if not self.ends_with_newline:
            self.log.write(b"\n")
        self.log.flush()


def _supervise(process: subprocess.Popen[bytes], timeout_s: float, out: _OutputCopier) -> bool:
    """Copy output until the pipe closes; end the group at the timeout or once the main process
    ended. Returns whether the timeout struck."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    timed_out = False
    ended_at: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if selector.select(0.05):
                data = os.read(fd, 65536)
                if not data:
                    break
                out.write(data)
            now = time.monotonic()
            if ended_at is not None:
                if now - ended_at > _DRAIN_S:
                    break
                continue
            timed_out = now >= deadline
            if timed_out or process.poll() is not None:
                end_group(process, GRACE_S)
                ended_at = time.monotonic()
    process.stdout.close()
    if ended_at is None:  # the pipe closed first: the main process may still be running
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
        end_group(process, GRACE_S)
    return timed_out


def _result(spec: HookSpec, returncode: int, timed_out: bool, duration_s: float) -> HookResult:
    if timed_out:
        error = f"hook {spec.when} timed out after {spec.timeout_s:g} s: {describe(spec.run)}"
        return HookResult(spec, None, True, duration_s, error)
    if returncode == 0:
        return HookResult(spec, 0, False, duration_s)
    if returncode < 0:
        error = f"hook {spec.when} was killed by {_signal_name(-returncode)}: {describe(spec.run)}"
        return HookResult(spec, None, False, duration_s, error)
    error = f"hook {spec.when} exited {returncode}: {describe(spec.run)}"
    return HookResult(spec, returncode, False, duration_s, error)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _closing_line(result: HookResult, dropped: int) -> str:
    status = "exit 0" if result.ok else result.error
    line = f"hook {result.spec.when} ended: {status} after {result.duration_s:.2f} s"
    if dropped:
        line += f"; output truncated: {dropped} bytes past the first {OUTPUT_CAP} dropped"
    return line


def log_line(log: BinaryIO, text: str) -> None:
    """One line of the agent's own in the run's log, stamped with the UTC time."""
    stamp = utc_now(SYSTEM_CLOCK).strftime("%Y-%m-%dT%H:%M:%SZ")
    log.write(f"[{stamp}] {text}\n".encode(errors="replace"))
    log.flush()
