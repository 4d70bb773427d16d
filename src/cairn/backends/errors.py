"""Backend errors, classified by what the caller should do.

```
BackendError
├── NotFound                  the object does not exist
├── AlreadyExists             save() of a name that holds different bytes
├── PermissionDenied          the backend refuses the operation (read-only, role)
├── StorageFull               no space or quota left: stop, free space, retry later
├── ListingIncomplete         a listing could not be completed: never act on it as if whole
└── TransientBackendError     worth retrying (timeouts, resets, throttling, 5xx)
    └── Busy                  the storage is overloaded and said when to come back
```
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


class TransientBackendError(BackendError):
    """A failure that may go away on retry."""


class Busy(TransientBackendError):
    """The storage is overloaded and asked to be called again in `retry_after` seconds (HTTP 503
    or 429 with Retry-After). Not a fault of the request: a retrying wrapper waits as asked, for
    as long as its patience lasts, without counting it as a failed attempt."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
