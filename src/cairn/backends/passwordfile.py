"""The password file of a storage login (CAIRN_FTP_, CAIRN_SFTP_, CAIRN_WEBDAV_PASSWORD_FILE).

One reader for the three backends, so they agree on what a password file is: its first line,
without the line break ("" for an empty file). The CLI reads the repository's own passphrase file
with `cli.context.read_secret_file`; backends cannot import the CLI, hence this one.
"""

from __future__ import annotations

from pathlib import Path

from cairn.backends.errors import BackendError


def read_password_file(file: str, what: str, error: type[BackendError]) -> str:
    """The first line of `file`; a file that cannot be read raises `error` (each backend's own
    type, so its documented code stays), naming the `what` password file and why."""
    try:
        lines = Path(file).read_text().splitlines()
    except OSError as exc:
        raise error(f"cannot read the {what} password file {file}: {exc.strerror or exc}") from exc
    return lines[0] if lines else ""
