"""A target's own credentials (design 17.9): a file of `NAME=value` lines laid over the server's
environment for every open of that target, so two targets of one kind can log in differently.

The target's spec keeps the file's path only, never a secret; the file is read at every open,
so a rotated secret is taken at the next run. Only the backends' own variable names are taken
(a typo must not fall back silently to the server's environment), and a file others can read
is refused, as `ssh` refuses such a private key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from cairn.replication.model import Target
from cairn.replication.targets import BadTargetSetting, TargetError

KNOWN_NAMES: dict[str, tuple[str, ...]] = {
    "SFTP": (
        "CAIRN_SFTP_KEY",
        "CAIRN_SFTP_KNOWN_HOSTS",
        "CAIRN_SFTP_PASSWORD",
        "CAIRN_SFTP_PASSWORD_FILE",
        "CAIRN_SFTP_NO_AGENT",
    ),
    "S3": (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CA_BUNDLE",
    ),
    "FTP": ("CAIRN_FTP_PASSWORD", "CAIRN_FTP_PASSWORD_FILE", "CAIRN_FTP_CA"),
    "Cairn server": ("CAIRN_TOKEN", "CAIRN_TOKEN_FILE", "CAIRN_SERVER_FINGERPRINT"),
    "WebDAV": (
        "CAIRN_WEBDAV_USER",
        "CAIRN_WEBDAV_PASSWORD",
        "CAIRN_WEBDAV_PASSWORD_FILE",
        "CAIRN_WEBDAV_CA",
    ),
}
_KNOWN = frozenset(name for names in KNOWN_NAMES.values() for name in names)
MAX_BYTES = 64 * 1024
"""A credentials file is a few lines; anything bigger is not one."""


class CredentialsFileUnusable(TargetError):
    """A target's credentials file cannot be read, is not a regular file, or others can read
    it (CAIRN-E127)."""


def read_credentials(path: str | Path) -> dict[str, str]:
    """The variables of a credentials file; raises CredentialsFileUnusable for a file that
    cannot be used and BadTargetSetting (CAIRN-E120) for a line that is not a known
    `NAME=value`."""
    text = _read_private(Path(path))
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or name not in _KNOWN:
            what = f"unknown name {name!r}" if sep else "no NAME=value"
            raise BadTargetSetting(
                f"{path}, line {number}: {what}; a credentials file takes only "
                f"{', '.join(sorted(_KNOWN))}"
            )
        found[name] = value
    return found


def _read_private(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CredentialsFileUnusable(
            f"cannot read the credentials file {path}: {exc.strerror or exc}"
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CredentialsFileUnusable(f"the credentials file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise CredentialsFileUnusable(
                f"the credentials file {path} has mode {stat.S_IMODE(info.st_mode):04o}: others "
                f"can read the secrets in it; run `chmod 600 {path}` (it is refused, as ssh "
                "refuses such a private key)"
            )
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise CredentialsFileUnusable(f"the credentials file {path} is over 64 KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CredentialsFileUnusable(f"the credentials file {path} is not UTF-8 text") from exc


def target_environ(target: Target, base: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The environment `target` opens with: `base` (the server's, by default) with its
    credentials file laid over it, read now."""
    environ = os.environ if base is None else base
    if target.credentials is None:
        return environ
    return {**environ, **read_credentials(target.credentials)}
