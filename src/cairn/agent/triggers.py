"""Event-driven triggers (design 15.3): file-system changes, the repository becoming reachable.

The daemon starts one trigger per job whose schedule is `continuous` or `when_reachable` and is
woken through `wake(reason)`, from the trigger's own thread. A trigger only says "now would be a
good moment": the daemon still applies the job's minimum interval (it knows when the last run
started), its lock and its suspension.

`ChangeTrigger` watches the job's paths with watchdog (inotify on Linux), recursively, and wakes
once `debounce_s` passed without a new event. What it cannot see it counts as a change, so a
lost event costs at most one run too many, never a missed one: a kernel event-queue overflow
(or any other warning watchdog's observers log, such as a new subfolder it could not watch:
every watch is then set anew), and a watch the kernel refuses (the
`fs.inotify.max_user_watches` / `max_user_instances` limits), which is retried every
`retry_s` and wakes each time, so a job without a watch runs about every minimum interval.
Watchdog (7.x) refuses a recursive watch as a whole when the limit is reached at any folder
under it: it removes the watches it had set and raises ENOSPC (or EMFILE) from `schedule`.
A path that does not exist yet is waited for: its nearest existing parent is watched, and
the moment it appears it is watched itself and counts as a change.

`ReachableTrigger` probes every `probe_s` (`probe_repository`: a server's `/v1/health`, a local
repository's folder) and wakes when the answer turns from no to yes, and once at start when the
repository is reachable then, so a laptop back on the network catches up at once.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from cairn.backends.errors import BackendError, CertificateMismatch, ServerUnreachable
from cairn.backends.location import known_servers_path

log = logging.getLogger("cairn.agent.triggers")

CHANGES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
    FileAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
]
"""Events that change what a backup would store. Opening and reading a file are left out: the
backup itself reads every file, and must not trigger the next backup."""

LOST_EVENTS_LOG_S = 60.0
WATCH_LIMITS = (errno.ENOSPC, errno.EMFILE)
"""What inotify answers when the user's watch or instance limit is reached."""


ObserverFactory = Callable[[], BaseObserver]
"""Makes the observer a ChangeTrigger watches with: watchdog's `Observer` (inotify on Linux);
tests give one whose `schedule` fails as the kernel's limits make it fail."""


class Trigger(Protocol):
    def start(self, wake: Callable[[str], None]) -> None:
        """Begin watching; call `wake(reason)` (from any thread) when a run is wanted."""

    def stop(self) -> None: ...


@dataclass(slots=True)
class _Watched:
    """What is being watched for one wanted path: the path itself (recursively, `identity` is
    its device and inode) or, while it does not exist, its nearest existing parent."""

    watch: ObservedWatch
    target: Path
    identity: tuple[int, int]
    waiting: bool


class ChangeTrigger:
    """Wakes once `debounce_s` passed without a new file-system event under `paths`.

    The minimum interval between runs is the daemon's to apply, not this trigger's.
    """

    def __init__(
        self,
        paths: Sequence[str],
        debounce_s: float,
        retry_s: float = 60.0,
        observer: ObserverFactory = Observer,
    ) -> None:
        self._make_observer = observer
        self._paths = [Path(p).absolute() for p in paths]
        self._debounce_s = debounce_s
        self._retry_s = retry_s
        self._changed = threading.Condition()
        self._last_event: float | None = None
        self._stopping = False
        self._watched: dict[Path, _Watched] = {}
        self._refusing: set[Path] = set()
        self._rebuild = False
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None
        self._handler = _Handler(self)

    def start(self, wake: Callable[[str], None]) -> None:
        self._observer = self._make_observer()
        self._observer.start()
        _lost_events.add(self)
        self._arm(initial=True)
        self._thread = threading.Thread(
            target=self._run, args=(wake,), name="cairn-change-trigger", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        _lost_events.discard(self)
        if self._thread is not None:
            self._thread.join()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()

    def changed(self) -> None:
        """Something under the paths changed (or may have: events were lost)."""
        with self._changed:
            self._last_event = time.monotonic()
            self._changed.notify_all()

    def lost(self) -> None:
        """Events were lost, or a folder could not be watched: a change, and every watch is
        set anew at the next round (a refused one is then retried every `retry_s`)."""
        with self._changed:
            self._rebuild = True
        self.changed()

    def _run(self, wake: Callable[[str], None]) -> None:
        while True:
            with self._changed:
                if self._stopping:
                    return
                self._changed.wait(self._next_timeout())
                if self._stopping:
                    return
                due = self._last_event is not None and self._quiet_for() >= self._debounce_s
                if due:
                    self._last_event = None
            self._arm()
            if due:
                wake("change")

    def _next_timeout(self) -> float:
        if self._last_event is None:
            return self._retry_s
        return max(0.0, min(self._retry_s, self._debounce_s - self._quiet_for()))

    def _quiet_for(self) -> float:
        assert self._last_event is not None
        return time.monotonic() - self._last_event

    def _arm(self, initial: bool = False) -> None:
        """Watch every wanted path as it stands now: itself when it exists (again, if it was
        replaced), else its nearest existing parent. A path that appeared or was replaced is a
        change (not so the first watch: what happened before the agent started is the
        daemon's catch-up); a watch the kernel refuses is a change too, retried at the next
        round."""
        observer = self._observer
        if observer is None:
            return
        with self._changed:
            rebuild, self._rebuild = self._rebuild, False
        for path in self._paths:
            try:
                self._arm_one(observer, path, initial, rebuild)
            except OSError as exc:
                self._refused(path, exc)
            else:
                self._refusing.discard(path)

    def _arm_one(self, observer: BaseObserver, path: Path, initial: bool, rebuild: bool) -> None:
        target, waiting = _nearest_existing(path)
        st = target.stat()
        identity = (st.st_dev, st.st_ino)
        current = self._watched.get(path)
        same = current is not None and (current.target, current.identity) == (target, identity)
        if same and not rebuild and path not in self._refusing:
            return
        if current is not None:
            observer.unschedule(current.watch)
            del self._watched[path]
        watch = observer.schedule(
            self._handler, str(target), recursive=not waiting, event_filter=CHANGES
        )
        self._watched[path] = _Watched(watch, target, identity, waiting)
        if not same and (current is not None or not (initial or waiting)):
            self.changed()  # appeared, vanished or replaced: what a backup holds differs

    def _refused(self, path: Path, exc: OSError) -> None:
        self.changed()
        if path in self._refusing:
            return  # said once per streak of refusals
        self._refusing.add(path)
        if exc.errno in WATCH_LIMITS:
            log.error(
                "CAIRN-E093 cannot watch %s: %s%s; the job runs at its minimum interval until "
                "a watch can be set (raise fs.inotify.max_user_watches or max_user_instances)",
                path,
                exc.strerror or exc,
                _watches_needed(path) if exc.errno == errno.ENOSPC else "",
            )
        else:
            log.error("CAIRN-E093 cannot watch %s: %s; retrying", path, exc.strerror or exc)

    def concerns(self, event: FileSystemEvent) -> bool:
        """True for an event under a wanted path, or one on the way to a path that does not
        exist yet (a parent folder of it made, moved or removed)."""
        names = [Path(os.fsdecode(event.src_path))]
        if event.dest_path:
            names.append(Path(os.fsdecode(event.dest_path)))
        for path in self._paths:
            watched = self._watched.get(path)
            if watched is None:
                continue
            for name in names:
                if name == path or path in name.parents:
                    return True
                if watched.waiting and name in path.parents and name != watched.target:
                    return True  # a folder on the way made, moved or removed
        return False


class _Handler(FileSystemEventHandler):
    def __init__(self, trigger: ChangeTrigger) -> None:
        self._trigger = trigger

    def on_any_event(self, event: FileSystemEvent) -> None:
        if type(event) in CHANGES and self._trigger.concerns(event):
            self._trigger.changed()


def _nearest_existing(path: Path) -> tuple[Path, bool]:
    """`path` if it exists, else its nearest existing parent folder (and True: waiting)."""
    if path.exists():
        return path, False
    for parent in path.parents:
        if parent.is_dir():
            return parent, True
    raise FileNotFoundError(errno.ENOENT, "no parent folder exists", str(path))


def _watches_needed(path: Path) -> str:
    """ ", it needs N watches (one per folder)": what the limit must leave free for `path`
    (watched while waiting for it: its nearest existing parent, one watch)."""
    if not path.is_dir():
        return ""
    folders = sum(1 for _ in os.walk(path))  # symlinks not followed, as watchdog does not
    return f", it needs {folders} watches (one per folder)"


class _LostEvents(logging.Handler):
    """Any warning that watchdog's observers log means events were lost (a queue overflow, a
    new subfolder it could not watch, a watch it could not rebuild): every running
    ChangeTrigger counts it as a change and sets its watches anew."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._triggers: set[ChangeTrigger] = set()
        self._lock = threading.Lock()
        self._installed = False
        self._said_at = -math.inf

    def add(self, trigger: ChangeTrigger) -> None:
        with self._lock:
            self._triggers.add(trigger)
            if not self._installed:
                source = logging.getLogger("watchdog.observers")
                if source.level == logging.NOTSET:
                    source.setLevel(logging.WARNING)  # heard even when the root logger is quieter
                source.addHandler(self)
                self._installed = True

    def discard(self, trigger: ChangeTrigger) -> None:
        with self._lock:
            self._triggers.discard(trigger)

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            triggers = list(self._triggers)
            say = bool(triggers) and time.monotonic() - self._said_at > LOST_EVENTS_LOG_S
            if say:
                self._said_at = time.monotonic()
        if say:  # an overflow comes in floods: once a minute is enough to know
            log.warning(
                "CAIRN-E092 file-system events were lost (%s); counted as a change",
                record.getMessage(),
            )
        for trigger in triggers:
            trigger.lost()


_lost_events = _LostEvents()


class ReachableTrigger:
    """Probes every `probe_s`; wakes when `probe()` turns True after being False (or at start
    when reachable). `reachable` tells the last probe's answer."""

    def __init__(self, probe: Callable[[], bool], probe_s: float) -> None:
        self._probe = probe
        self._probe_s = probe_s
        self._reachable = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def reachable(self) -> bool:
        return self._reachable

    def start(self, wake: Callable[[str], None]) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(wake,), name="cairn-reachable-trigger", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, wake: Callable[[str], None]) -> None:
        while not self._stopping.is_set():
            before = self._reachable
            self._reachable = self._ask()
            if self._reachable and not before and not self._stopping.is_set():
                wake("reachable")
            self._stopping.wait(self._probe_s)

    def _ask(self) -> bool:
        try:
            return bool(self._probe())
        except Exception:  # a probe that breaks must not end the trigger: count it as no
            log.exception("the reachability probe failed")
            return False


def probe_repository(location: str, timeout_s: float = 5.0) -> bool:
    """True when the repository's location answers: a server's /v1/health, a local folder's
    existence."""
    if location.startswith(("cairn://", "cairns://")):
        return _probe_server(location, timeout_s)
    if location == "memory:":
        return True
    path = Path(location.removeprefix("local:")).expanduser()
    try:
        return (path / "config").is_file()  # a removable disk that is plugged in
    except OSError:
        return False


def _probe_server(location: str, timeout_s: float) -> bool:
    try:
        from cairn.backends.remote import KnownServers, check_health, parse_address  # httpx

        address = parse_address(location)
        known = KnownServers(known_servers_path(os.environ))
        check_health(address, known, os.environ.get("CAIRN_SERVER_FINGERPRINT"), timeout_s)
    except CertificateMismatch as exc:
        log.error("CAIRN-E094 %s counts as unreachable: %s", location, exc)
        return False
    except ServerUnreachable as exc:
        log.debug("%s is unreachable: %s", location, exc)
        return False
    except BackendError as exc:
        log.warning("%s counts as unreachable: %s", location, exc)
        return False
    return True
