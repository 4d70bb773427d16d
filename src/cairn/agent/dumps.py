"""Database dumps taken before a backup (design 15.4). Interface agreed between the runner
(caller) and this module (owner: hooks).

Each dump is the database's own tool (`pg_dump`, `pg_dumpall`, `mariadb-dump`/`mysqldump`)
writing plain SQL into the staging folder, which the runner then backs up. Passwords reach the
tools through files in a private temporary folder, never the command line; a dump gets its final
name only once the tool exited 0 and the file is durable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cairn.agent.hooks import log_line
from cairn.agent.procgroup import end_group
from cairn.agent.spec import DumpSpec
from cairn.core.errors import CairnError

STDERR_KEPT = 64 * 1024
"""Bytes of a dump tool's stderr copied into the run's log (its end, where the error is)."""

KINDS = {"postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB"}

_SAFE_NAME = re.compile(rb"[A-Za-z0-9._-]")

_WHAT_TO_DO = (
    "check the dump's host, port, user and password_file in the job's [[job.dump]], that the "
    "database exists and the server runs; the run's log has the tool's whole message"
)


class DumpFailed(CairnError):
    """A dump did not complete; the run fails without a backup."""


@dataclass(frozen=True, slots=True)
class DumpCommand:
    """How to run one dump: the tool's argument vector and environment (no secret in argv)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def take_dumps(specs: Sequence[DumpSpec], staging: Path, log: BinaryIO) -> list[Path]:
    """Dump every database into `staging` (emptied first); returns the files written, which the
    runner adds to the backup. Raises DumpFailed with what to do."""
    names = [dump_file_name(spec) for spec in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DumpFailed(
            f"two dumps of the job would both write {twice[0]}: give each its own database"
        )
    prepare_staging(staging)
    return [take_dump(spec, staging / name, log) for spec, name in zip(specs, names, strict=True)]


def dump_file_name(spec: DumpSpec) -> str:
    """`<kind>-<database>.sql`; bytes of the name other than letters, digits, `.`, `_` and `-`
    become `%XX`, so any database name makes one plain file name."""
    if spec.kind not in KINDS:
        raise DumpFailed(f"unknown dump kind {spec.kind!r}: use one of {', '.join(KINDS)}")
    encoded = spec.database.encode()
    safe = "".join(chr(b) if _SAFE_NAME.fullmatch(bytes([b])) else f"%{b:02X}" for b in encoded)
    return f"{spec.kind}-{safe}.sql"


def prepare_staging(staging: Path) -> None:
    """Create the staging folder, or empty it, with mode 0700: dumps hold the databases' data."""
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(staging, 0o700)
    for entry in staging.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def take_dump(spec: DumpSpec, target: Path, log: BinaryIO) -> Path:
    """Run one dump into `target`; raises DumpFailed."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cairn-dump-") as private:
        try:
            command = dump_command(spec, Path(private))
            log_line(log, f"dump {_label(spec)} started: {' '.join(command.argv)}")
            _run(spec, command, target, Path(private), log)
        except DumpFailed as e:
            log_line(log, str(e))
            raise
    size = target.stat().st_size
    took = time.monotonic() - started
    log_line(log, f"dump {_label(spec)} ended: {size} bytes in {target.name} after {took:.2f} s")
    return target


def dump_command(spec: DumpSpec, private: Path) -> DumpCommand:
    """The command for one dump; its password goes into a 0600 file in `private`."""
    if spec.kind == "postgresql":
        return _postgresql_command(spec, private)
    return _mysql_command(spec, private)


def _postgresql_command(spec: DumpSpec, private: Path) -> DumpCommand:
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    for name, value in (("PGHOST", spec.host), ("PGPORT", spec.port), ("PGUSER", spec.user)):
        if value is not None:
            env[name] = str(value)
    if spec.password_file is not None:
        password = _read_password(spec)
        env.pop("PGPASSWORD", None)  # it would win over the file
        env["PGPASSFILE"] = str(_private_file(private / "pgpass", _pgpass_line(password)))
    if spec.database == "all":
        return DumpCommand(["pg_dumpall", "--no-password", *spec.options], env)
    env["PGDATABASE"] = spec.database  # from the environment a name is never an option or a URL
    return DumpCommand(["pg_dump", "--no-password", "--format=plain", *spec.options], env)


def _pgpass_line(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


def _mysql_command(spec: DumpSpec, private: Path) -> DumpCommand:
    lines = ["[client]"]
    if spec.user is not None:
        lines.append(f"user={_option_value(spec.user)}")
    if spec.password_file is not None:
        lines.append(f"password={_option_value(_read_password(spec))}")
    if spec.host is not None and spec.host.startswith("/"):
        lines.append(f"socket={_option_value(spec.host)}")
    elif spec.host is not None:
        lines.append(f"host={_option_value(spec.host)}")
    if spec.port is not None:
        lines.append(f"port={spec.port}")
    defaults = _private_file(private / "my.cnf", "\n".join(lines) + "\n")
    tool = "mariadb-dump" if shutil.which("mariadb-dump") else "mysqldump"
    argv = [
        tool,
        f"--defaults-extra-file={defaults}",  # must come first
        "--single-transaction",
        "--routines",
        "--triggers",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        *spec.options,
    ]
    argv += ["--all-databases"] if spec.database == "all" else ["--", spec.database]
    return DumpCommand(argv, dict(os.environ))


def _option_value(value: str) -> str:
    """A value for a MySQL option file: double-quoted, with its escapes."""
    if "\n" in value or "\r" in value:
        raise DumpFailed("a MySQL user, password or host cannot contain a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_password(spec: DumpSpec) -> str:
    assert spec.password_file is not None
    try:
        text = Path(spec.password_file).read_text()
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise DumpFailed(
            f"dump of {_label(spec)}: cannot read password_file {spec.password_file}: {why}"
        ) from e
    return text.rstrip("\r\n")


def _private_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _run(spec: DumpSpec, command: DumpCommand, target: Path, private: Path, log: BinaryIO) -> None:
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("xb") as out, (private / "stderr").open("w+b") as err:
            returncode = _wait(spec, command, out, err)
            _copy_tail(err, log)
            if returncode != 0:
                raise _failed(spec, command, f"exited {returncode}", _last_line(err, private))
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
        _fsync_dir(target.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _wait(spec: DumpSpec, command: DumpCommand, out: BinaryIO, err: BinaryIO) -> int:
    try:
        process = subprocess.Popen(
            command.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=command.env,
            start_new_session=True,
        )
    except OSError as e:
        tool = command.argv[0]
        raise DumpFailed(
            f"dump of {_label(spec)} failed: {tool} cannot run ({e.strerror}); install the "
            f"{KINDS[spec.kind]} client tools (Debian: {_package(spec)})"
        ) from e
    try:
        return process.wait(timeout=spec.timeout_s)
    except subprocess.TimeoutExpired:
        end_group(process)
        raise DumpFailed(
            f"dump of {_label(spec)} failed: {command.argv[0]} did not finish within "
            f"{spec.timeout_s:g} s and was stopped; raise the dump's timeout, or look for what "
            "holds locks on the database"
        ) from None
    except BaseException:
        end_group(process)
        raise


def _failed(spec: DumpSpec, command: DumpCommand, how: str, last: str) -> DumpFailed:
    said = f": {last}" if last else ""
    return DumpFailed(
        f"dump of {_label(spec)} failed: {command.argv[0]} {how}{said}; {_WHAT_TO_DO}"
    )


def _copy_tail(err: BinaryIO, log: BinaryIO) -> None:
    size = err.seek(0, os.SEEK_END)
    if not size:
        return
    err.seek(max(0, size - STDERR_KEPT))
    tail = err.read()
    log.write(tail if tail.endswith(b"\n") else tail + b"\n")
    log.flush()


def _last_line(err: BinaryIO, private: Path) -> str:
    """The tool's last line that says something: libpq's closing "password retrieved from file"
    names our private file, which is gone by the time anyone reads the message."""
    err.seek(max(0, err.seek(0, os.SEEK_END) - 4096))
    lines = [line.strip() for line in err.read().decode(errors="replace").splitlines()]
    said = [line for line in lines if line and str(private) not in line]
    return said[-1] if said else ""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _label(spec: DumpSpec) -> str:
    what = "all databases" if spec.database == "all" else f"database {spec.database!r}"
    return f"{KINDS.get(spec.kind, spec.kind)} {what}"


def _package(spec: DumpSpec) -> str:
    return "postgresql-client" if spec.kind == "postgresql" else "mariadb-client"
