"""The check a target passes before it is saved, and at any time after (design 17.10): open
the location, connect to it and list it (login, host key, bucket or folder), and run the
capability probe under a scratch prefix.

Each step is reported to `on_step` as it ends, so `cairn server target test` shows every
result, the failed one last. A failure raises: a backend's own error passes through unchanged,
so its code (E037 credentials, E038 host key, E039 bucket …) reaches the user; a failed probe
step is TargetCheckFailed. Nothing here writes outside `<location>/cairn-probe`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cairn.backends.base import Backend, ObjectKind
from cairn.backends.probe import ProbeFailed, probe
from cairn.core.clock import Clock
from cairn.crypto.hashing import object_name
from cairn.replication.targets import TargetError

SCRATCH = "cairn-probe"
_SCHEMES = ("cairn://", "cairns://", "s3:", "ftp://", "ftps://", "sftp:", "webdav:")


class TargetLocationMissing(TargetError):
    """A local or NAS target folder does not exist, or is not a folder (CAIRN-E123)."""


class TargetCheckFailed(TargetError):
    """The target failed a step of the capability probe (CAIRN-E124)."""


class TargetRefused(TargetError):
    """The location can never be a target: inside the server's data folder, `memory:`
    (CAIRN-E125)."""


class Opener(Protocol):
    """`cairn.backends.location.open_backend`, as the check uses it."""

    def __call__(
        self, location: str, create: bool = ..., *, environ: Mapping[str, str] | None = ...
    ) -> Backend: ...


@dataclass(frozen=True, slots=True)
class CheckStep:
    """One step's result: `open`, `connect` or `probe`; `detail` is one line."""

    name: str
    ok: bool
    detail: str
    seconds: float


def check_location(
    location: str,
    opener: Opener,
    clock: Clock,
    *,
    data_folder: Path | None = None,
    environ: Mapping[str, str] | None = None,
    on_step: Callable[[CheckStep], None] = lambda step: None,
) -> list[CheckStep]:
    """Run the steps in order; returns them all when they pass, raises at the first failure
    (after reporting it)."""
    steps: list[CheckStep] = []

    def report(name: str, ok: bool, detail: str, started: float) -> None:
        first_line = detail.strip().splitlines()[0] if detail.strip() else ""
        step = CheckStep(name, ok, first_line, clock.monotonic() - started)
        steps.append(step)
        on_step(step)

    started = clock.monotonic()
    try:
        _refuse(location, data_folder)
        backend = opener(location, environ=environ)
    except Exception as exc:
        report("open", False, str(exc), started)
        raise
    try:
        report("open", True, backend.location(), started)
        _step(report, "connect", lambda: _listing(backend), clock)
    finally:
        backend.close()
    _step(report, "probe", lambda: _probe_at(scratch_location(location), opener, environ), clock)
    return steps


def _step(
    report: Callable[[str, bool, str, float], None],
    name: str,
    action: Callable[[], str],
    clock: Clock,
) -> None:
    started = clock.monotonic()
    try:
        detail = action()
    except ProbeFailed as exc:
        report(name, False, str(exc), started)
        raise TargetCheckFailed(f"{exc}; the target was not saved") from exc
    except Exception as exc:
        report(name, False, str(exc), started)
        raise
    report(name, True, detail, started)


def _listing(backend: Backend) -> str:
    found = sum(1 for _ in backend.list(ObjectKind.CONFIG))
    return "logged in, listed" if not found else f"listed ({found} config object(s) at the top)"


def _probe_at(location: str, opener: Opener, environ: Mapping[str, str] | None) -> str:
    backend = opener(location, True, environ=environ)
    try:
        probe(backend, name_of=lambda data: object_name(data).hex)
    finally:
        backend.close()
        if is_local(location):
            _remove_empty_folders(local_path(location))
    return f"write, read, ranged read, list, refused overwrite, delete at {location}"


def _remove_empty_folders(root: Path) -> None:
    """Leave a local target as the check found it: the probe's layout, if nothing else is in it
    (other backends keep theirs, as the server's own storage probe does)."""
    for folder, _, _ in os.walk(root, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def is_server(location: str) -> bool:
    return location.startswith(("cairn://", "cairns://"))


def is_local(location: str) -> bool:
    return location.startswith("local:") or not location.startswith((*_SCHEMES, "memory:"))


def local_path(location: str) -> Path:
    return Path(location.removeprefix("local:")).expanduser()


def scratch_location(location: str) -> str:
    """`<location>/cairn-probe`, in the location's own syntax; on a Cairn server
    `<location>/cairn-probe/check`, since a copy there is two levels below its area (17.14)."""
    if is_server(location):
        return f"{location.rstrip('/')}/{SCRATCH}/check"
    if is_local(location):
        return str(local_path(location) / SCRATCH)
    if location.endswith(":"):  # sftp:user@host: is the login's home folder
        return location + SCRATCH
    return location.rstrip("/") + "/" + SCRATCH


def _refuse(location: str, data_folder: Path | None) -> None:
    if location.startswith("memory:"):
        raise TargetRefused("memory: keeps nothing past the process; it cannot be a target")
    if not is_local(location):
        return
    path = local_path(location)
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise TargetLocationMissing(
            f"the target folder {path} {what}: make it (or mount the share) first; Cairn never "
            "makes a target's folder, so an unmounted share cannot fill the server's own disk"
        )
    if data_folder is not None:
        resolved, data = path.resolve(), data_folder.resolve()
        if resolved == data or data in resolved.parents or resolved in data.parents:
            raise TargetRefused(
                f"the target folder {path} and the server's data folder {data} overlap: a "
                "target must be another place (another disk, a share, a remote server)"
            )
