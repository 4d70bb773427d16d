"""The event-driven triggers (design 15.3) with real files, real inotify and real probes, and
the kernel's watch limit through the trigger's observer seam.

No timing assertions: every wait has a generous deadline, and the debounce tests count wakes,
with bursts whose gaps are far shorter than the debounce.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import FileCreatedEvent, FileSystemEvent
from watchdog.observers.api import BaseObserver, EventEmitter

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


def test_create_modify_and_delete_each_wake_once_quiet(watched, tmp_path: Path) -> None:
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


def test_reading_files_is_not_a_change(watched, tmp_path: Path) -> None:
    root = tmp_path / "home"
    root.mkdir()
    for i in range(20):
        (root / f"f{i}").write_bytes(os.urandom(100))
    _, wakes = watched(root)
    for i in range(20):
        assert len((root / f"f{i}").read_bytes()) == 100  # what a backup does
    os.listdir(root)
    assert wakes.settle(1.5) == []


def test_a_burst_of_changes_wakes_once(watched, tmp_path: Path) -> None:
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


def test_a_new_subfolder_is_watched_too(watched, tmp_path: Path) -> None:
    root = tmp_path / "home"
    root.mkdir()
    _, wakes = watched(root)
    (root / "new" / "deeper").mkdir(parents=True)
    wakes.wait_for(1)
    (root / "new" / "deeper" / "later.txt").write_text("later")
    assert wakes.wait_for(2) == ["change", "change"]


def test_a_path_that_does_not_exist_yet_is_waited_for(watched, tmp_path: Path) -> None:
    wanted = tmp_path / "mnt" / "usb" / "photos"
    _, wakes = watched(wanted)
    (tmp_path / "elsewhere").mkdir()  # beside the way to the path: not a change
    (tmp_path / "elsewhere" / "x").write_text("x")
    assert wakes.settle(1.0) == []
    wanted.mkdir(parents=True)
    wakes.wait_for(1)
    (wanted / "new.jpg").write_bytes(b"jpeg")
    assert wakes.wait_for(2) == ["change", "change"]


def test_a_path_removed_and_made_again_is_watched_again(watched, tmp_path: Path) -> None:
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


# The kernel's watch limit, through the trigger's observer seam: a fake kernel with a budget of
# watches, whose emitters fail as watchdog's inotify emitter fails (a recursive watch is refused
# as a whole, ENOSPC from `schedule`), and whose events the test sends. No inotify, no limit of
# this machine involved.


class FakeKernel:
    """A budget of watches shared by every observer made by `observer()`; `emit` delivers an
    event to every watch whose folder holds it."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.refused = 0
        self.emitters: list[FakeEmitter] = []
        self.lock = threading.Lock()

    def observer(self) -> BaseObserver:
        return BaseObserver(FakeEmitter, kernel=self)

    def emit(self, event: FileSystemEvent) -> None:
        path = Path(os.fsdecode(event.src_path))
        with self.lock:
            emitters = list(self.emitters)
        for emitter in emitters:
            root = Path(emitter.watch.path)
            if path == root or root in path.parents:
                emitter.queue_event(event)

    def watching(self) -> int:
        with self.lock:
            return len(self.emitters)


class FakeEmitter(EventEmitter):
    def __init__(self, *args: Any, kernel: FakeKernel, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.kernel = kernel
        path = self.watch.path
        self.needed = sum(1 for _ in os.walk(path)) if self.watch.is_recursive else 1

    def on_thread_start(self) -> None:
        with self.kernel.lock:
            if self.needed > self.kernel.free:
                self.kernel.refused += 1
                raise OSError(errno.ENOSPC, "inotify watch limit reached")  # as watchdog 7 says
            self.kernel.free -= self.needed
            self.kernel.emitters.append(self)

    def on_thread_stop(self) -> None:
        with self.kernel.lock:
            if self in self.kernel.emitters:
                self.kernel.emitters.remove(self)
                self.kernel.free += self.needed

    def queue_events(self, timeout: float) -> None:
        self.stopped_event.wait(timeout)


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def _folders(root: Path, count: int) -> Path:
    for i in range(count):
        (root / f"d{i}").mkdir(parents=True)
    return root


def test_a_watch_limit_counts_as_a_change_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Five folders, three watches left: every try is refused and is a change (the job runs at
    its minimum interval), said once; when watches are free again, the watch is set and only
    real changes wake."""
    job = _folders(tmp_path / "job", 4)
    kernel = FakeKernel(free=3)
    trigger = ChangeTrigger([str(job)], 0.05, retry_s=0.1, observer=kernel.observer)
    wakes = Wakes()
    with caplog.at_level(logging.INFO, "cairn.agent.triggers"):
        trigger.start(wakes)
        try:
            assert wakes.wait_for(2) == ["change", "change"]  # refused again and again
            _wait(lambda: kernel.refused >= 3, "three refused tries")
            kernel.free = 100  # the administrator raised fs.inotify.max_user_watches
            _wait(lambda: kernel.watching() == 1, "the watch, once the limit allows it")
            count = len(wakes.settle(0.5))
            kernel.emit(FileCreatedEvent(str(job / "d2" / "new.txt")))
            wakes.wait_for(count + 1)
        finally:
            trigger.stop()
    said = [r.getMessage() for r in caplog.records if "CAIRN-E093" in r.getMessage()]
    assert len(said) == 1, said  # once per streak of refusals, not once a try
    assert f"cannot watch {job}: inotify watch limit reached, it needs 5 watches" in said[0]
    assert "raise fs.inotify.max_user_watches" in said[0]


def test_a_new_folder_watchdog_cannot_watch_is_a_change_and_every_watch_is_set_anew(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Once a watch is set, watchdog only logs a warning for a new subfolder it cannot watch
    and leaves it unwatched: the trigger counts that as a change and sets the watch anew, so
    a watch that no longer fits is refused, said, and retried like any other."""
    job = _folders(tmp_path / "job", 4)
    kernel = FakeKernel(free=5)
    trigger = ChangeTrigger([str(job)], 0.05, retry_s=0.1, observer=kernel.observer)
    wakes = Wakes()
    with caplog.at_level(logging.INFO, "cairn.agent.triggers"):
        trigger.start(wakes)
        try:
            assert kernel.watching() == 1 and wakes.settle(0.3) == []
            (job / "d4").mkdir()
            logging.getLogger("watchdog.observers.inotify").warning(
                "Unable to watch %r: %s", os.fsencode(job / "d4"), "inotify watch limit reached"
            )  # what watchdog 7 logs
            wakes.wait_for(1)
            _wait(lambda: kernel.refused >= 1, "the watch set anew, and refused")
            assert kernel.watching() == 0
        finally:
            trigger.stop()
    assert f"cannot watch {job}: inotify watch limit reached, it needs 6 watches" in caplog.text


# What inotify cannot deliver counts as a change, with the real kernel (in a child process:
# inotify limits and queues are per process, per instance or per user namespace, never this
# test process's)

CHILD = textwrap.dedent(
    """
    import logging, sys, threading, time
    from pathlib import Path
    from cairn.agent.triggers import ChangeTrigger
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    root = Path(sys.argv[1])
    woke = threading.Event()
    trigger = ChangeTrigger([str(root)], 0.2, retry_s=0.5)
    trigger.start(lambda reason: woke.set())
    print("ready", flush=True)
    sys.stdin.readline()
    print("woke" if woke.wait(30) else "slept", flush=True)
    trigger.stop()
    """
)


def _child(root: Path, prefix: list[str], before_go: Callable[[int], None]) -> str:
    """Run CHILD watching `root`; `before_go(pid)` once its watch is set. Its stdout, then its
    log."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    log = root.parent / f"{root.name}.child.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [*prefix, sys.executable, "-c", CHILD, str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    assert process.stdout is not None and process.stdin is not None
    try:
        first = process.stdout.readline()
        before_go(process.pid)
        process.stdin.write("go\n")
        process.stdin.flush()
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return first + out + log.read_text()


QUEUE = Path("/proc/sys/fs/inotify/max_queued_events")


def test_an_event_queue_overflow_counts_as_a_change(tmp_path: Path) -> None:
    """The child is stopped (SIGSTOP) while more events than the kernel queues for one
    instance happen under its folder: whatever this machine's limit, the queue overflows."""
    limit = int(QUEUE.read_text())
    if limit > 1 << 22:
        pytest.skip(f"fs.inotify.max_queued_events is {limit}: too many events to overflow it")
    job = tmp_path / "job"
    job.mkdir()
    a, b = job / "a", job / "b"
    a.touch()
    b.touch()

    def flood(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            _wait(lambda: _state(pid) == "T", "the child to stop")  # its reader thread too
            for i in range(limit // 2 + 100):  # two events a round, never merged (two files)
                os.utime(a, (i, i))
                os.utime(b, (i, i))
        finally:
            os.kill(pid, signal.SIGCONT)

    out = _child(job, [], flood)
    assert out.startswith("ready\nwoke\n"), out
    assert "CAIRN-E092 file-system events were lost" in out, out


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _user_namespace() -> list[str]:
    """A prefix that runs a command in a user namespace of its own, allowed 2 inotify watches
    (user.max_inotify_watches is per user namespace, and its owner may set it)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1)")
    prefix = [
        unshare,
        "-Ur",
        "sh",
        "-c",
        'echo 2 > /proc/sys/user/max_inotify_watches && exec "$@"',
        "-",
    ]
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no user namespace with its own inotify limit here: {probe.stderr!r}")
    return prefix


@pytest.mark.required("unshare: a user namespace with its own inotify limit")
def test_the_kernels_watch_limit_counts_as_a_change_and_is_logged(tmp_path: Path) -> None:
    """The real kernel and watchdog: five folders, two watches allowed in the child's user
    namespace. Watchdog refuses the whole recursive watch (ENOSPC), whichever folder hit the
    limit, and however many watches the rest of this machine uses (fewer only refuses
    sooner)."""
    prefix = _user_namespace()
    job = _folders(tmp_path / "job", 4)
    out = _child(job, prefix, lambda pid: None)
    assert out.startswith("ready\nwoke\n"), out
    assert f"CAIRN-E093 cannot watch {job}: inotify watch limit reached, it needs 5 watches" in out
    assert "raise fs.inotify.max_user_watches" in out, out


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
