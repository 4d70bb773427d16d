"""What every command needs: the repository location, the passphrase, output and progress.

This is where environment variables are read (CAIRN_REPOSITORY, CAIRN_PASSWORD,
CAIRN_PASSWORD_FILE, CAIRN_PASSWORD_COMMAND, CAIRN_CACHE_DIR, CAIRN_KDF, CAIRN_TOKEN,
CAIRN_TOKEN_FILE, CAIRN_SERVER_FINGERPRINT, CAIRN_LIMIT_UPLOAD, XDG_CONFIG_HOME, and a storage
server's own: CAIRN_WEBDAV_USER, CAIRN_WEBDAV_PASSWORD, CAIRN_WEBDAV_PASSWORD_FILE,
CAIRN_WEBDAV_CA, passed down in `RemoteCredentials.environ`); library code below the CLI never
reads the environment.
"""

from __future__ import annotations

import argparse
import errno
import getpass
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cairn.backends.base import Backend
from cairn.backends.location import (
    RemoteCredentials,
    open_backend,
    remote_credentials,
)
from cairn.backends.wrappers.retrying import DEFAULT_RETRY_FOR
from cairn.backup.filescache import default_cache_dir
from cairn.cli.errors import (
    CacheUnusable,
    InputFileUnreadable,
    NoPassphrase,
    PasswordCommandFailed,
    UsageError,
)
from cairn.cli.output import Output
from cairn.cli.progress import TerminalProgress
from cairn.cli.verbose import VerboseProgress
from cairn.core.clock import Clock, SystemClock
from cairn.core.progress import Progress, SilentProgress
from cairn.core.units import parse_interval, parse_rate
from cairn.crypto.kdf import DEFAULT_KDF, KdfParams
from cairn.repository.localcache import open_cached, private_folder
from cairn.repository.repository import Repository
from cairn.snapshot.select import Unreadable

BackendFactory = Callable[..., Backend]
"""`cairn.backends.location.open_backend`, or a stand-in taking the same arguments."""


@dataclass
class Context:
    """Everything a command may use; built once in main()."""

    args: argparse.Namespace
    output: Output
    clock: Clock = field(default_factory=SystemClock)
    backend_factory: BackendFactory = open_backend
    """Opens the storage a location names: the one seam a harness replaces (tests/robustness
    runs every command over a file system that fails on purpose)."""
    _repo: Repository | None = None
    _cache: Path | bool | None = None

    @property
    def location(self) -> str:
        location: str | None = self.args.repo or os.environ.get("CAIRN_REPOSITORY")
        if not location:
            raise UsageError("no repository given: use -r PATH or set CAIRN_REPOSITORY")
        return location

    def passphrase(
        self, prompt: str = "passphrase for the repository: ", confirm: bool = False
    ) -> bytes:
        """The repository's passphrase. An empty one only with --insecure-no-password (as
        restic): anyone who can read the storage could then read the backups."""
        secret, source = self._passphrase_from_sources()
        if getattr(self.args, "insecure_no_password", False):
            if secret:
                raise UsageError(
                    f"--insecure-no-password was given, and a passphrase too ({source}): "
                    "use one or the other"
                )
            return b""
        if secret is None:
            secret = ask_passphrase(prompt, confirm)
        if not secret:
            raise UsageError(f"{source} gives an empty passphrase. {EMPTY_HELP}")
        return secret

    def _passphrase_from_sources(self) -> tuple[bytes | None, str]:
        """The passphrase an option or the environment gives (None: none), and its source."""
        file = self.args.password_file or os.environ.get("CAIRN_PASSWORD_FILE")
        command = self.args.password_command or os.environ.get("CAIRN_PASSWORD_COMMAND")
        if file:
            return read_secret_file(file, "password file"), f"the password file {file}"
        if command:
            return run_password_command(command), "the password command"
        env = os.environ.get("CAIRN_PASSWORD")
        return (env.encode() if env is not None else None), "CAIRN_PASSWORD"

    def open_repository(
        self, load_index: bool = True, session: str | None = None, cache: bool = True
    ) -> Repository:
        """Open the repository once per command; the index is loaded on request. A command that
        writes names its `session`: its lock is saved before the index is loaded. A repository
        on a server is read through the local cache (design 14.12) unless `cache` is False
        (check: it judges storage) or --no-cache is given."""
        if self._repo is None:
            backend = self.backend_factory(
                self.location,
                remote=self.remote_credentials(),
                upload_limit=self.upload_limit(),
                retry_for=self.retry_for(),
            )
            base = self.cache_dir() if cache and not backend.capabilities.local else None
            if base is None:
                self._repo = Repository.open(backend, self.passphrase(), self.clock)
            else:
                self._repo = open_cached(backend, self.passphrase(), self.clock, base, self._warn)
            if session is not None:
                self._repo.begin_session(session)
            if load_index:
                self.load_index(self._repo)
        return self._repo

    def remote_credentials(self) -> RemoteCredentials:
        """Token and certificate pin for a server location (CAIRN_TOKEN, CAIRN_TOKEN_FILE,
        --token-file; CAIRN_SERVER_FINGERPRINT to require a certificate before first use)."""
        return remote_credentials(self.args.token_file, os.environ)

    def upload_limit(self) -> int | None:
        """Bytes a second for every upload of this process (`--limit-upload` of `backup`, or
        CAIRN_LIMIT_UPLOAD for any command that writes); None or 0: no limit."""
        text = getattr(self.args, "limit_upload", None) or os.environ.get("CAIRN_LIMIT_UPLOAD")
        if not text:
            return None
        try:
            return parse_rate(text) or None
        except ValueError as exc:
            raise UsageError(f"upload limit: {exc}; examples: 5MiB/s, 512KiB/s") from exc

    def retry_for(self) -> float:
        """Seconds a server that does not answer is retried (`--retry-for`, else
        CAIRN_RETRY_FOR, else 60 s; design 14.9)."""
        text = getattr(self.args, "retry_for", None) or os.environ.get("CAIRN_RETRY_FOR")
        if not text:
            return DEFAULT_RETRY_FOR
        try:
            return parse_interval(text)
        except ValueError as exc:
            raise UsageError(f"--retry-for/CAIRN_RETRY_FOR: {exc}") from exc

    def load_index(self, repo: Repository) -> None:
        """Load the index, leaving out what storage lost; say what was left out."""
        repo.load_index()
        for problem in repo.damaged:
            self.output.text(f"warning: {problem} (skipped; run `cairn check`)")
        for pack in repo.forget_missing_packs():
            self.output.text(
                f"warning: pack {pack.short()} is missing from storage (run `cairn check`); "
                "a backup stores what it held again"
            )

    def _warn(self, message: str) -> None:
        self.output.text(f"warning: {message}")

    @property
    def verbosity(self) -> int:
        """How many -v were given (0: the usual output; never with --json or --quiet)."""
        if self.args.json or self.args.quiet:
            return 0
        return int(getattr(self.args, "verbose", 0) or 0)

    def warn(self, message: str) -> None:
        """A warning on stderr: shown with --json too, and never mixed into a listing."""
        print(f"warning: {message}", file=sys.stderr)

    def skip_damaged(self, snapshot: Unreadable, outcome: str = "left out") -> None:
        """Say that a snapshot that cannot be read was left out (select.Skip): one damaged
        snapshot must not block the others, nor pass unnoticed."""
        self.warn(
            f"snapshot {snapshot.name.short()} cannot be read ({snapshot.error}); {outcome}. "
            "Run `cairn check`"
        )

    def progress(self, verb: str) -> Progress:
        inner: Progress = (
            SilentProgress()
            if self.args.json or self.args.quiet or not sys.stderr.isatty()
            else TerminalProgress(verb)
        )
        return VerboseProgress(inner, self.output) if self.verbosity else inner

    def cache_dir(self) -> Path | None:
        """The local cache folder, made (0700) when missing; None with --no-cache. One named by
        --cache-dir or CAIRN_CACHE_DIR that cannot be used is an error that names it; the
        default one is left out with a warning (commands work without it, only slower)."""
        if self.args.no_cache:
            return None
        if self._cache is None:
            self._cache = self._usable_cache_dir()
        return self._cache if isinstance(self._cache, Path) else None

    def _usable_cache_dir(self) -> Path | bool:
        if self.args.cache_dir:
            path, source = Path(self.args.cache_dir), "--cache-dir"
        elif os.environ.get("CAIRN_CACHE_DIR"):
            path, source = Path(os.environ["CAIRN_CACHE_DIR"]), "CAIRN_CACHE_DIR"
        else:
            path, source = default_cache_dir(), ""
        try:
            private_folder(path)
            if not os.access(path, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "not writable")
        except OSError as exc:
            why = f"cannot use the cache folder {path}: {exc.strerror or exc}"
            if source:
                raise CacheUnusable(f"{why} (from {source})") from exc
            self.warn(f"{why}; going on without a cache (--cache-dir names another)")
            return False
        return path

    def kdf(self) -> KdfParams:
        """argon2id cost for new keys: CAIRN_KDF="t=3,m=65536,p=4" overrides the default."""
        spec = os.environ.get("CAIRN_KDF")
        if not spec:
            return DEFAULT_KDF
        try:
            values = dict(part.split("=", 1) for part in spec.split(","))
            params = KdfParams(int(values["t"]), int(values["m"]), int(values["p"]))
            params.validate()
        except (KeyError, ValueError) as exc:
            raise UsageError(f"CAIRN_KDF must look like t=3,m=65536,p=4 ({exc})") from exc
        return params

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()


EMPTY_HELP = (
    "Cairn refuses an empty passphrase: give one, or pass --insecure-no-password to every "
    "command (anyone who can read the repository's storage can then read its data)"
)


def ask_passphrase(prompt: str, confirm: bool) -> bytes:
    """Ask on the terminal (twice with `confirm`); NoPassphrase when there is none."""
    if not sys.stdin.isatty():
        raise NoPassphrase(
            "no passphrase given: set CAIRN_PASSWORD, or use --password-file or --password-command"
        )
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != first:
        raise UsageError("the passphrases do not match")
    return first.encode()


def read_secret_file(file: str, what: str) -> bytes:
    """The first line of a file that holds a secret (b"" for an empty file); a file that cannot
    be read is InputFileUnreadable, naming it and why."""
    try:
        lines = Path(file).read_bytes().splitlines()
    except OSError as exc:
        raise InputFileUnreadable(f"cannot read the {what} {file}: {exc.strerror or exc}") from exc
    return lines[0] if lines else b""


def run_password_command(command: str) -> bytes:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise PasswordCommandFailed(
            f"the password command {command!r} is malformed: {exc}"
        ) from exc
    try:
        done = subprocess.run(argv, capture_output=True, check=False, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise PasswordCommandFailed(
            f"the password command {command!r} gave no answer within 60 s"
        ) from exc
    except OSError as exc:
        raise PasswordCommandFailed(
            f"the password command {command!r} cannot be run: {exc.strerror or exc}"
        ) from exc
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        why = f": {said[-1]}" if said else ""
        raise PasswordCommandFailed(
            f"the password command {command!r} exited with status {done.returncode}{why}"
        )
    lines = done.stdout.splitlines()
    return lines[0] if lines else b""
