"""Server errors: each is an HTTP status and a stable code the client turns into a typed error.

```
ServerError
├── BadRequest          400  the request is malformed (a bad name, a length that does not match)
├── Unauthenticated     401  no token, or one that is unknown, wrong or revoked
│   ├── TokenExpired    401  a valid token past its expiry      (neither counts as a guess
│   └── TokenRevoked    401  the right secret of a revoked token  for the throttle, 14.3)
├── Forbidden           403  the token's role may not do this
├── NoSuchObject        404  no such object, tenant or route (one answer for all three)
├── Conflict            409  an object of that name holds other bytes, or the name exists
├── TooLarge            413  the body is larger than the server accepts
├── Throttled           429  too many failed logins from this address
├── QuotaExceeded       507  the tenant's quota would be passed
├── ServerFull          507  the server's disk is full
│   └── DataFolderFull  507  … found by the server's database (also an sqlite3.OperationalError)
├── Overloaded          503  too many requests at once; retry after a moment
├── NotPrimary          503  a write to a server that is not the pair's primary now (design 19)
└── StaleEpoch          409  a write that carried an older epoch than the server's (design 19)
ServerSetupError             the server cannot start (its data folder, database, certificate)
├── NoDataFolder             --data names no server data folder (only serve and init make one)
└── ListenFailed             serve cannot bind its address (in use, not this machine's, no right)
AuditBehind                  the database holds changes newer than the audit log's last entry
```
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, ClassVar

from cairn.core.errors import CairnError


class ServerError(CairnError):
    """A request the server refuses; `status` and `code` go on the wire."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "CAIRN-E069"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": str(self), **self.details}


class BadRequest(ServerError):
    status, code = 400, "CAIRN-E068"


class Unauthenticated(ServerError):
    status, code = 401, "CAIRN-E061"


class TokenExpired(Unauthenticated):
    """The right secret, past the token's expiry: said only to whoever holds the secret."""

    status, code = 401, "CAIRN-E075"


class TokenRevoked(Unauthenticated):
    """The right secret of a revoked token: said only to whoever holds the secret, and not
    counted as a guess by the throttle (its holder is a client to stop, not an attacker)."""


class Forbidden(ServerError):
    status, code = 403, "CAIRN-E062"


class NoSuchObject(ServerError):
    status, code = 404, "CAIRN-E034"


class Conflict(ServerError):
    status, code = 409, "CAIRN-E036"


class TooLarge(ServerError):
    status, code = 413, "CAIRN-E068"


class Throttled(ServerError):
    status, code = 429, "CAIRN-E064"


class QuotaExceeded(ServerError):
    status, code = 507, "CAIRN-E065"


class ServerFull(ServerError):
    status, code = 507, "CAIRN-E030"


class DataFolderFull(ServerFull, sqlite3.OperationalError):
    """SQLite found the disk of the data folder full ("database or disk is full").

    Still an `sqlite3.OperationalError`, so code that tolerates a failed database write (the
    chunk table, which is rebuilt later) goes on tolerating it; everything else gets a typed error
    that the CLI maps to CAIRN-E030 and the routes answer with 507. The folder is in the message
    for the administrator, never in the answer to a client."""

    def __init__(self, folder: Path, cause: BaseException) -> None:
        super().__init__(f"the server's data folder {folder} is on a full disk: {cause}")
        self.folder = folder

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": "the server's disk is full; try again later"}


class Overloaded(ServerError):
    status, code = 503, "CAIRN-E066"


class ServerSetupError(CairnError):
    """The server cannot start: its data folder, database or certificate is unusable."""


class NoDataFolder(ServerSetupError):
    """--data names a folder that is not a server data folder: a typing mistake must not make a
    new, empty server (only `serve` and `init` create one)."""


class ListenFailed(ServerSetupError):
    """`serve` could not bind its address: in use, not an address of this machine, or a port
    below 1024 without the right to it. Nothing was announced or made."""


class AuditBehind(CairnError):
    """The database holds a change (a tenant, a token, a snapshot's arrival) made after the audit
    log's newest entry: records were lost (a server older than this check, or a kill in between)
    or entries were removed from the end."""


class AuditBroken(CairnError):
    """The audit log's hash chain does not verify: it was edited, or entries were removed."""


class DamageFound(CairnError):
    """A scrub found stored objects whose bytes do not hash to their names."""


class NotPrimary(ServerError):
    """A write to a server of a pair that is not the primary now (a standby, or demoted when its
    lease's deadline passed): retryable, the client tries again (Retry-After), design 19.4."""

    status, code = 503, "CAIRN-E163"


class StaleEpoch(ServerError):
    """A write that carried (`Cairn-Epoch`) an epoch older than the server's: its sender follows
    a former primary; counted, each one a split brain prevented (design 19.4)."""

    status, code = 409, "CAIRN-E164"
