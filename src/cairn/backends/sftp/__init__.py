"""A backend on an SSH server's SFTP subsystem (OpenSSH), with paramiko (docs/design.md 6.3).

``sftp:user@host:/path`` (restic's form; a path without a leading slash is relative to the login
folder) and ``sftp://user@host:port/path`` (the path is absolute, as in any URL). The layout under
the path is the local backend's (docs/design.md section 2), so a folder copied with rsync opens
either way.

The parts: `address` parses locations; `login` connects, checks the host key against
known_hosts and logs in as OpenSSH's client would; `wire` sends the SFTP requests, pipelined;
`listing` lists many folders at once; `backend` is `SftpBackend` itself.

Deviations and choices:

- ``save`` writes a temporary file in the target folder, checks its size, fsyncs it
  (``fsync@openssh.com``) and publishes it with the plain SFTP rename, which OpenSSH's server does
  with link() and unlink(): atomic, and it refuses to replace an object another writer published
  meanwhile (``posix-rename@openssh.com`` would replace it silently). A refused rename then
  compares the bytes: the same succeed, others raise AlreadyExists. The folder is fsynced after
  the rename. Requests that do not wait on each other's answers go out together: a save is four
  round trips plus its writes (open; writes, fsync, fstat, close; rename and the folder's open;
  the folder's fsync and close).
- Objects over `RESUMABLE_ABOVE` go up under a temporary name derived from their own (``.part-``
  + name): a save after a broken one finds the part, checks its last bytes against what it would
  send, sends only the rest from there, and reads the whole part back to verify it before the
  rename (capability ``resumable_writes``). Concurrent saves of one object share its part and
  write the same bytes at the same offsets; a part is removed only when it holds bytes the object
  cannot have, never because another save is still writing it, so no save publishes a part that
  another had only begun.
- Writes are pipelined by this package, not by paramiko: paramiko's pipelined file drops the
  error answers of writes still in flight when the file is closed, which would hide a full disk.
- A failed write on a full disk comes back as SFTP's generic "Failure"; ``statvfs@openssh.com``
  then tells StorageFull from other failures.
- Each of up to `CONNECTIONS` threads uses its own SSH connection from a small pool; a connection
  that failed is dropped, never reused. AES-GCM is asked for first (`login.CIPHERS_FIRST`).
"""

from cairn.backends.sftp.address import SftpAddress, parse_address
from cairn.backends.sftp.backend import (
    CONNECTIONS,
    PART_PREFIX,
    RESUMABLE_ABOVE,
    TEMP_PREFIX,
    SftpBackend,
)
from cairn.backends.sftp.login import SftpCredentials, connect, fingerprint

__all__ = [
    "CONNECTIONS",
    "PART_PREFIX",
    "RESUMABLE_ABOVE",
    "TEMP_PREFIX",
    "SftpAddress",
    "SftpBackend",
    "SftpCredentials",
    "connect",
    "fingerprint",
    "parse_address",
]
