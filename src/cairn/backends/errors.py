"""Backend errors, classified by what the caller should do.

```
BackendError
├── NotFound                  the object does not exist
├── AlreadyExists             save() of a name that holds different bytes
├── PermissionDenied          the backend refuses the operation (read-only, role)
│   └── RoleForbidden         a Cairn server: the token's role does not allow it
├── StorageFull               no space or quota left: stop, free space, retry later
│   └── QuotaExceeded         a Cairn server: the tenant's quota
├── ListingIncomplete         a listing could not be completed: never act on it as if whole
├── ForeignLocation           the location holds something else (other files, a file): no repository
├── AuthenticationFailed      a Cairn server: the token is unknown, wrong or revoked
│   └── TokenExpired          a Cairn server: the token is past its expiry
├── CertificateMismatch       a Cairn server: not the certificate pinned for it
├── StorageLoginRefused       SFTP, S3, WebDAV, FTP: the credentials were refused
├── HostKeyUnknown            SFTP: the host key is not in known_hosts, or differs from it
├── ContainerMissing          S3: the bucket does not exist (a missing folder is NotFound)
├── StorageTlsFailed          S3, WebDAV, FTPS: the TLS handshake or certificate check failed
├── GarbledAnswer             the storage server answered something that is not its protocol
├── KnownServersUnusable      the file of pinned certificates cannot be read or written
└── TransientBackendError     worth retrying (timeouts, resets, throttling, 5xx)
    ├── ServerUnreachable     a Cairn server: no answer
    └── Busy                  the storage is overloaded and said when to come back
        ├── Throttled         a Cairn server: too many failed logins from this address
        └── ServerNotPrimary  a Cairn server of a pair: not the primary now (E163)
StaleEpochRefused             a Cairn server of a pair: the write carried an old epoch (E164)
```

The Cairn server's refusals live here, not beside the remote backend, so that a command can name
them (cli/errors.py) without loading an HTTP client it does not use.
"""

from cairn.core.errors import CairnError


class BackendError(CairnError):
    """A storage operation failed."""


class NotFound(BackendError):
    """The object does not exist."""


class AlreadyExists(BackendError):
    """An object of that name exists with different bytes."""


class PermissionDenied(BackendError):
    """The backend refuses this operation."""


class StorageFull(BackendError):
    """No space (or quota) is left on the backend."""


class ListingIncomplete(BackendError):
    """A listing could not be completed; acting on it as if whole could delete live data."""


class ForeignLocation(BackendError):
    """The location holds something other than a repository: files of another kind, or a file
    where the repository's folder belongs. Init refuses it; opening it is no repository."""


class TransientBackendError(BackendError):
    """A failure that may go away on retry."""


class Busy(TransientBackendError):
    """The storage is overloaded and asked to be called again in `retry_after` seconds (HTTP 503
    or 429 with Retry-After). Not a fault of the request: a retrying wrapper waits as asked, for
    as long as its patience lasts, without counting it as a failed attempt."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# ---- a Cairn server's refusals (backends/remote.py) ----------------------------------------


class AuthenticationFailed(BackendError):
    """The server did not accept the token (unknown, wrong or revoked)."""


class TokenExpired(AuthenticationFailed):
    """The server knows the token, but it is past the expiry it was issued with."""


class RoleForbidden(PermissionDenied):
    """The token's role does not allow this operation (a backup token deleting, say)."""


class Throttled(Busy):
    """Too many failed logins from this address: the server waits before it listens again (a
    machine with a good token behind the same address waits too)."""


class ServerNotPrimary(Busy):
    """A server of a pair that is not the primary now refused a write (503, CAIRN-E163): retried
    like any overloaded server, and named when the retries run out (design 19.4)."""


class StaleEpochRefused(BackendError):
    """A server of a pair refused a write that carried an older epoch than its own (409,
    CAIRN-E164): the writer follows a former primary (design 19.4)."""


class QuotaExceeded(StorageFull):
    """The tenant's quota on the server would be passed; the message says how much is used."""


class ServerUnreachable(TransientBackendError):
    """No answer from the server (refused, timed out, reset, DNS)."""


class CertificateMismatch(BackendError):
    """The server shows a certificate other than the one pinned for it."""


class KnownServersUnusable(BackendError):
    """The known-servers file (pinned certificates) cannot be read or written."""


class MalformedAnswer(BackendError):
    """The server's answer to a chunk query is not whole records (a server bug)."""


# ---- storage servers other than Cairn's (sftp, s3, webdav, ftp) ----------------------------


class StorageLoginRefused(BackendError):
    """The storage server refused the credentials (a key, a password, an access key)."""


class HostKeyUnknown(BackendError):
    """An SSH host key is not in known_hosts, or differs from the one there. The message carries
    the key's fingerprint so the user can check it and add it; it is never trusted silently."""


class ContainerMissing(BackendError):
    """The bucket a location names does not exist (a missing folder inside it is NotFound)."""


class StorageTlsFailed(BackendError):
    """The TLS handshake with the storage server failed, or its certificate did not verify."""


class GarbledAnswer(BackendError):
    """The storage server answered, but not in its protocol (a proxy page, a truncated reply)."""


class FtpSetupError(BackendError):
    """An FTP location cannot be used as given: a password in the location, no password set,
    an unreadable password file or CA file (CAIRN-E111)."""
