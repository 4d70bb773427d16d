"""The event-driven triggers (design 15.3) with real files, real inotify and real probes.

No timing assertions: every wait has a generous deadline, and the debounce tests count wakes,
with bursts whose gaps are far shorter than the debounce.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cairn.agent.triggers import ChangeTrigger, ReachableTrigger, probe_repository

DEADLINE = 30.0
SRC = Path(__file__).resolve().parents[3] / "src"


class Wakes:
    """What a trigger woke the daemon for, in order."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, reason: str) -> None:
        with self._cond:
            self.reasons.append(reason)
            self._cond.notify_all()

    def wait_for(self, count: int, deadline: float = DEADLINE) -> list[str]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.reasons) >= count, deadline)
            assert len(self.reasons) >= count, f"{len(self.reasons)} wakes, wanted {count}"
            return list(self.reasons)

    def settle(self, seconds: float) -> list[str]:
        """The wakes after `seconds` more (to show none came that should not)."""
        time.sleep(seconds)
        with self._cond:
            return list(self.reasons)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Callable[..., tuple[ChangeTrigger, Wakes]]]:
    started: list[ChangeTrigger] = []

    def start(
        *paths: Path, debounce: float = 0.2, retry: float = 60.0
    ) -> tuple[ChangeTrigger, Wakes]:
        trigger = ChangeTrigger([str(p) for p in paths], debounce, retry_s=retry)
        wakes = Wakes()
        trigger.start(wakes)
        started.append(trigger)
        return trigger, wakes

    yield start
    for trigger in started:
        trigger.stop()


def test_create_modify_and_delete_each_wake_once_quiet(watched, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "home"
    (root / "deep" / "er").mkdir(parents=True)
    _, wakes = watched(root)
    assert wakes.settle(0.5) == []  # watching alone is no change
    target = root / "deep" / "er" / "file.txt"
    target.write_text("one")
    wakes.wait_for(1)
    with target.open("a") as out:
        out.write("two")
    wakes.wait_for(2)
    target.unlink()
    assert wakes.wait_for(3) == ["change"] * 3


def test_reading_files_is_not_a_change(watched, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "home"
    root.mkdir()
    for i in range(20):
        (root / f"f{i}").write_bytes(os.urandom(100))
    _, wakes = watched(root)
    for i in range(20):
        assert len((root / f"f{i}").read_bytes()) == 100  # what a backup does
    os.listdir(root)
    assert wakes.settle(1.5) == []


def test_a_burst_of_changes_wakes_once(watched, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "home"
    root.mkdir()
    _, wakes = watched(root, debounce=2.0)
    for i in range(300):
        folder = root / f"d{i % 7}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i}").write_bytes(b"x" * i)
        if i % 3 == 0:
            (folder / f"f{i}").rename(folder / f"g{i}")
    shutil.rmtree(root / "d3")
    wakes.wait_for(1)
    assert wakes.settle(5.0) == ["change"]


def test_a_new_subfolder_is_watched_too(watched, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "home"
    root.mkdir()
    _, wakes = watched(root)
    (root / "new" / "deeper").mkdir(parents=True)
    wakes.wait_for(1)
    (root / "new" / "deeper" / "later.txt").write_text("later")
    assert wakes.wait_for(2) == ["change", "change"]


def test_a_path_that_does_not_exist_yet_is_waited_for(watched, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wanted = tmp_path / "mnt" / "usb" / "photos"
    _, wakes = watched(wanted)
    (tmp_path / "elsewhere").mkdir()  # beside the way to the path: not a change
    (tmp_path / "elsewhere" / "x").write_text("x")
    assert wakes.settle(1.0) == []
    wanted.mkdir(parents=True)
    wakes.wait_for(1)
    (wanted / "new.jpg").write_bytes(b"jpeg")
    assert wakes.wait_for(2) == ["change", "change"]


def test_a_path_removed_and_made_again_is_watched_again(watched, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "home"
    root.mkdir()
    _, wakes = watched(root)
    shutil.rmtree(root)
    count = len(wakes.wait_for(1))
    root.mkdir()
    count = len(wakes.wait_for(count + 1))
    (root / "back.txt").write_text("back")  # seen: the new folder is watched
    wakes.wait_for(count + 1)


def test_stop_is_prompt_and_ends_the_threads(tmp_path: Path) -> None:
    trigger = ChangeTrigger([str(tmp_path)], 30.0, retry_s=3600.0)
    trigger.start(Wakes())
    before = threading.active_count()
    trigger.stop()
    assert threading.active_count() < before
    assert not any(t.name == "cairn-change-trigger" for t in threading.enumerate())


# What inotify cannot deliver counts as a change (run in a child process: inotify limits are
# per process, per instance or per user namespace, never this test process's)

CHILD = textwrap.dedent(
    """
    import logging, sys, threading, time
    from pathlib import Path
    from cairn.agent.triggers import ChangeTrigger
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    root = Path(sys.argv[1]); mode = sys.argv[2]
    woke = threading.Event()
    trigger = ChangeTrigger([str(root)], 0.2, retry_s=0.5)
    trigger.start(lambda reason: woke.set())
    print("ready", flush=True)
    sys.stdin.readline()
    if mode == "flood":
        for i in range(3000):
            (root / f"f{i}").touch()
    print("woke" if woke.wait(30) else "slept", flush=True)
    trigger.stop()
    """
)


def _child(root: Path, mode: str, prefix: list[str], before_go: Callable[[], None]) -> str:
    """Run CHILD watching `root`; its stdout, then its log."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    log = root.parent / f"{root.name}.child.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [*prefix, sys.executable, "-c", CHILD, str(root), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    assert process.stdout is not None and process.stdin is not None
    try:
        first = process.stdout.readline()
        before_go()
        process.stdin.write("go\n")
        process.stdin.flush()
        out, _ = process.communicate(timeout=120)
    finally:
        before_go()
        if process.poll() is None:
            process.kill()
            process.wait()
    return first + out + log.read_text()


QUEUE = Path("/proc/sys/fs/inotify/max_queued_events")


@pytest.mark.skipif(os.geteuid() != 0, reason="sets fs.inotify.max_queued_events (root only)")
def test_an_event_queue_overflow_counts_as_a_change(tmp_path: Path) -> None:
    """The kernel's queue is made tiny for the child's inotify instance only (the limit is read
    when an instance is made; it is put back as soon as the child's watch is set)."""
    original = QUEUE.read_text()
    QUEUE.write_text("8")
    try:
        (tmp_path / "job").mkdir()
        out = _child(tmp_path / "job", "flood", [], lambda: QUEUE.write_text(original))
    finally:
        QUEUE.write_text(original)
    assert out.startswith("ready\nwoke\n"), out
    assert "CAIRN-E092" in out, out


def _user_namespace() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1)")
    probe = subprocess.run([unshare, "-Ur", "true"], capture_output=True, check=False, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces here: {probe.stderr!r}")
    return [
        unshare,
        "-Ur",
        "sh",
        "-c",
        'echo 2 > /proc/sys/user/max_inotify_watches && exec "$@"',
        "-",
    ]


def test_a_watch_limit_counts_as_a_change_and_is_logged(tmp_path: Path) -> None:
    """In a user namespace of its own the child may set only 2 inotify watches: the job's
    folder holds more, so watching it fails (ENOSPC, as with fs.inotify.max_user_watches)."""
    prefix = _user_namespace()
    for i in range(4):
        (tmp_path / "job" / f"d{i}").mkdir(parents=True)
    out = _child(tmp_path / "job", "quiet", prefix, lambda: None)
    assert out.startswith("ready\nwoke\n"), out
    assert "CAIRN-E093" in out and "3 folders under it could not be watched" in out, out
    assert "max_user_watches" in out, out


# ReachableTrigger with a probe that is a real folder coming and going


def test_reachable_wakes_at_start_and_on_each_return(tmp_path: Path) -> None:
    disk = tmp_path / "usb"
    trigger = ReachableTrigger(lambda: disk.is_dir(), probe_s=0.1)
    wakes = Wakes()
    trigger.start(wakes)
    try:
        assert wakes.settle(0.5) == [] and not trigger.reachable
        disk.mkdir()
        assert wakes.wait_for(1) == ["reachable"]
        assert wakes.settle(0.5) == ["reachable"]  # still there: no second wake
        assert trigger.reachable
        disk.rmdir()
        deadline = time.monotonic() + DEADLINE
        while trigger.reachable and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not trigger.reachable
        disk.mkdir()
        assert wakes.wait_for(2) == ["reachable", "reachable"]
    finally:
        trigger.stop()


def test_reachable_at_start_wakes_once(tmp_path: Path) -> None:
    trigger = ReachableTrigger(lambda: True, probe_s=0.05)
    wakes = Wakes()
    trigger.start(wakes)
    try:
        wakes.wait_for(1)
        assert wakes.settle(0.5) == ["reachable"]
    finally:
        trigger.stop()


def test_a_broken_probe_counts_as_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("probe broke")
        return True

    trigger = ReachableTrigger(probe, probe_s=0.05)
    wakes = Wakes()
    with caplog.at_level(logging.ERROR, "cairn.agent.triggers"):
        trigger.start(wakes)
        try:
            assert wakes.wait_for(1) == ["reachable"]
        finally:
            trigger.stop()
    assert len(calls) >= 3 and "probe failed" in caplog.text


def test_stop_does_not_wait_for_the_next_probe() -> None:
    trigger = ReachableTrigger(lambda: False, probe_s=3600.0)
    trigger.start(Wakes())
    time.sleep(0.2)
    trigger.stop()  # an hour before the next probe: a sleep here would hang the test
    assert not any(t.name == "cairn-reachable-trigger" for t in threading.enumerate())


def test_probe_of_a_local_repository_wants_its_config(tmp_path: Path) -> None:
    disk = tmp_path / "usb" / "cairn"
    assert not probe_repository(str(disk))
    disk.mkdir(parents=True)
    assert not probe_repository(str(disk))  # a folder, but no repository in it (not plugged in)
    (disk / "config").write_bytes(b"c")
    assert probe_repository(str(disk)) and probe_repository(f"local:{disk}")
