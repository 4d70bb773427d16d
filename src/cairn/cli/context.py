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
import getpass
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cairn.backends.location import (
    RemoteCredentials,
    TokenFileUnreadable,
    open_backend,
    remote_credentials,
)
from cairn.backup.filescache import default_cache_dir
from cairn.cli.errors import NoPassphrase, UsageError
from cairn.cli.output import Output
from cairn.cli.progress import TerminalProgress
from cairn.cli.verbose import VerboseProgress
from cairn.core.clock import Clock, SystemClock
from cairn.core.progress import Progress, SilentProgress
from cairn.core.units import parse_rate
from cairn.crypto.kdf import DEFAULT_KDF, KdfParams
from cairn.repository.localcache import open_cached
from cairn.repository.repository import Repository


@dataclass
class Context:
    """Everything a command may use; built once in main()."""

    args: argparse.Namespace
    output: Output
    clock: Clock = field(default_factory=SystemClock)
    _repo: Repository | None = None

    @property
    def location(self) -> str:
        location: str | None = self.args.repo or os.environ.get("CAIRN_REPOSITORY")
        if not location:
            raise UsageError("no repository given: use -r PATH or set CAIRN_REPOSITORY")
        return location

    def passphrase(
        self, prompt: str = "passphrase for the repository: ", confirm: bool = False
    ) -> bytes:
        secret = self._passphrase_from_sources()
        if secret is not None:
            return secret
        if not sys.stdin.isatty():
            raise NoPassphrase(
                "no passphrase given: set CAIRN_PASSWORD, "
                "or use --password-file or --password-command"
            )
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != first:
            raise UsageError("the passphrases do not match")
        return first.encode()

    def _passphrase_from_sources(self) -> bytes | None:
        file = self.args.password_file or os.environ.get("CAIRN_PASSWORD_FILE")
        command = self.args.password_command or os.environ.get("CAIRN_PASSWORD_COMMAND")
        if file:
            try:
                return Path(file).read_bytes().splitlines()[0] if Path(file).stat().st_size else b""
            except OSError as exc:
                raise UsageError(f"cannot read the password file {file}: {exc.strerror}") from exc
        if command:
            return run_password_command(command)
        env = os.environ.get("CAIRN_PASSWORD")
        return env.encode() if env is not None else None

    def open_repository(
        self, load_index: bool = True, session: str | None = None, cache: bool = True
    ) -> Repository:
        """Open the repository once per command; the index is loaded on request. A command that
        writes names its `session`: its lock is saved before the index is loaded. A repository
        on a server is read through the local cache (design 14.12) unless `cache` is False
        (check: it judges storage) or --no-cache is given."""
        if self._repo is None:
            backend = open_backend(
                self.location, remote=self.remote_credentials(), upload_limit=self.upload_limit()
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
        try:
            return remote_credentials(self.args.token_file, os.environ)
        except TokenFileUnreadable as exc:
            raise UsageError(str(exc)) from exc

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

    def progress(self, verb: str) -> Progress:
        inner: Progress = (
            SilentProgress()
            if self.args.json or self.args.quiet or not sys.stderr.isatty()
            else TerminalProgress(verb)
        )
        return VerboseProgress(inner, self.output) if self.verbosity else inner

    def cache_dir(self) -> Path | None:
        if self.args.no_cache:
            return None
        explicit = self.args.cache_dir or os.environ.get("CAIRN_CACHE_DIR")
        return Path(explicit) if explicit else default_cache_dir()

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


def run_password_command(command: str) -> bytes:
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"the password command failed to run: {exc}") from exc
    if done.returncode != 0:
        raise UsageError(f"the password command exited with status {done.returncode}")
    lines = done.stdout.splitlines()
    return lines[0] if lines else b""
