"""Hooks run real commands: exit statuses, timeouts that end the whole process group, output kept
in the log but bounded, commands that cannot start."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from cairn.agent import hooks
from cairn.agent.hooks import OUTPUT_CAP, run_hook
from cairn.agent.spec import HookSpec

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CAIRN_JOB": "home", "CAIRN_HOOK": "before"}


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a container's PID 1 may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int) -> bool:
    for _ in range(200):
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_success_keeps_output_between_an_opening_and_a_closing_line() -> None:
    log = io.BytesIO()
    result = run_hook(HookSpec("before", ("printf", "hello %s\\n", "world")), ENV, log)
    assert result.ok and result.exit_code == 0 and not result.timed_out and result.error == ""
    lines = log.getvalue().decode().splitlines()
    assert lines[0].endswith("hook before started: printf 'hello %s\\n' world")
    assert lines[1] == "hello world"
    assert "hook before ended: exit 0 after" in lines[2]
    assert len(lines) == 3


def test_stdout_and_stderr_are_interleaved_in_order_and_env_is_passed() -> None:
    log = io.BytesIO()
    script = 'echo "one $CAIRN_JOB"; echo two >&2; echo "three $CAIRN_HOOK"'
    result = run_hook(HookSpec("before", script), ENV, log)
    assert result.ok
    assert "\none home\ntwo\nthree before\n" in log.getvalue().decode()


def test_failing_exit_status_is_reported_not_raised() -> None:
    log = io.BytesIO()
    result = run_hook(HookSpec("after", "echo broken >&2; exit 3"), ENV, log)
    assert not result.ok and result.exit_code == 3 and not result.timed_out
    assert result.error == "hook after exited 3: sh -c 'echo broken >&2; exit 3'"
    text = log.getvalue().decode()
    assert "broken\n" in text and "hook after ended: hook after exited 3" in text


def test_stdin_is_empty_so_a_reading_hook_does_not_hang() -> None:
    result = run_hook(HookSpec("before", ("cat",), timeout_s=30), ENV, io.BytesIO())
    assert result.ok and not result.timed_out


def test_timeout_kills_the_hook_and_its_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 1000 & echo $! > {pidfile}; echo started; wait"
    log = io.BytesIO()
    result = run_hook(HookSpec("before", script, timeout_s=1.0), ENV, log)
    assert result.timed_out and result.exit_code is None and not result.ok
    assert result.error.startswith("hook before timed out after 1 s")
    grandchild = int(pidfile.read_text())
    assert wait_gone(grandchild), "the hook's background sleep outlived the timeout"
    text = log.getvalue().decode()
    assert "started\n" in text and "timed out" in text.splitlines()[-1]


def test_a_hook_ignoring_sigterm_is_killed_after_the_grace() -> None:
    log = io.BytesIO()
    result = run_hook(HookSpec("before", "trap '' TERM; sleep 1000", timeout_s=0.5), ENV, log)
    assert result.timed_out and result.exit_code is None


def test_background_leftovers_are_ended_when_the_hook_ends(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    # The leftover redirects its output, so the pipe closes while it still runs.
    script = f"sleep 1000 >/dev/null 2>&1 & echo $! > {pidfile}; echo done"
    result = run_hook(HookSpec("after", script, timeout_s=60), ENV, io.BytesIO())
    assert result.ok
    assert wait_gone(int(pidfile.read_text()))


def test_leftover_holding_the_pipe_does_not_make_the_hook_hang(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 1000 & echo $! > {pidfile}; echo done"
    result = run_hook(HookSpec("after", script, timeout_s=60), ENV, io.BytesIO())
    assert result.ok and not result.timed_out
    assert wait_gone(int(pidfile.read_text()))


def test_huge_output_is_capped_and_the_truncation_noted() -> None:
    log = io.BytesIO()
    total = 50_000_000
    result = run_hook(HookSpec("before", f"head -c {total} /dev/zero | tr '\\0' x"), ENV, log)
    assert result.ok
    data = log.getvalue()
    assert len(data) < OUTPUT_CAP + 1024
    assert b"x" * OUTPUT_CAP + b"\n[" in data and b"x" * (OUTPUT_CAP + 1) not in data
    assert f"output truncated: {total - OUTPUT_CAP} bytes past the first".encode() in data


def test_missing_command_is_a_result_with_an_error() -> None:
    log = io.BytesIO()
    result = run_hook(HookSpec("before", ("/nonexistent/snapshot-lvm", "--now")), ENV, log)
    assert not result.ok and result.exit_code is None and not result.timed_out
    assert "could not start: /nonexistent/snapshot-lvm --now: No such file" in result.error
    assert result.error in log.getvalue().decode()


@pytest.mark.parametrize("run", [(), ("echo", "nul\0byte")])
def test_commands_that_cannot_be_run_are_results_too(run: tuple[str, ...]) -> None:
    result = run_hook(HookSpec("before", run), ENV, io.BytesIO())
    assert not result.ok and "could not start" in result.error


def test_file_that_is_not_executable_is_a_result_with_an_error(tmp_path: Path) -> None:
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result = run_hook(HookSpec("before", (str(script),)), ENV, io.BytesIO())
    assert not result.ok and "Permission denied" in result.error


def test_shell_string_with_pipes_and_quotes() -> None:
    log = io.BytesIO()
    result = run_hook(HookSpec("always", "printf 'a b\\nc d\\n' | grep -c ' '"), ENV, log)
    assert result.ok
    assert "\n2\n" in log.getvalue().decode()


def test_a_hook_killed_by_a_signal_has_no_exit_code() -> None:
    result = run_hook(HookSpec("failure", "kill -9 $$"), ENV, io.BytesIO())
    assert result.exit_code is None and not result.timed_out
    assert "was killed by SIGKILL" in result.error


@pytest.mark.parametrize("run", [("true",), "true"])
def test_hook_argv_runs_strings_through_sh(run: tuple[str, ...] | str) -> None:
    argv = hooks.hook_argv(run)
    assert argv == (["/bin/sh", "-c", "true"] if isinstance(run, str) else ["true"])


class FullLog(io.BytesIO):
    """A log on a full disk: the first line goes in, then every write fails."""

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() > 0:
            raise OSError(28, "No space left on device")
        return super().write(data)


def test_a_failing_log_stops_the_hook_and_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 1000 & echo $! > {pidfile}; echo output; wait"
    with pytest.raises(OSError, match="No space left"):
        run_hook(HookSpec("before", script, timeout_s=60), ENV, FullLog())
    assert wait_gone(int(pidfile.read_text()))
