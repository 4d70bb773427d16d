"""Errors of the standby and the witness, each with its documented code (docs/errors.md).

```
FailoverError
├── WitnessUnreachable   E160  the witness did not answer (network, TLS, its certificate)
├── LeaseHeld            E161  the witness refused: another holder has the lease
├── WitnessTokenRefused  E162  the witness refused the token
├── WitnessRequestBad    E167  the witness refused a malformed request (name, holder, TTL)
├── WitnessSetupError    E165  the witness cannot start (its data folder, its address)
└── StandbyUsage         E166  the standby's options or `standby promote` do not fit
NotPrimary (server)      E163  503: this server is not the primary now; retry (design 19.4)
StaleEpoch (server)      E164  409: a write carried an older epoch than the server's
```
"""

from __future__ import annotations

from cairn.core.errors import CairnError


class FailoverError(CairnError):
    """The root of the standby's errors."""


class WitnessUnreachable(FailoverError):
    """The witness did not answer in time, or its certificate is not the one pinned."""


class LeaseHeld(FailoverError):
    """Another holder has the lease (or the renewal named an epoch that is no longer current)."""

    def __init__(self, message: str, holder: str | None, epoch: int) -> None:
        super().__init__(message)
        self.holder = holder
        self.epoch = epoch


class WitnessTokenRefused(FailoverError):
    """The witness does not know the token sent."""


class WitnessRequestBad(FailoverError):
    """The witness refused the request's form: a bad lease name, holder or TTL."""


class WitnessSetupError(FailoverError):
    """The witness cannot use its data folder or its address."""


class StandbyUsage(FailoverError):
    """The standby's options do not fit together, or `standby promote` was refused."""


class WriteRefused(FailoverError):
    """The fence refused a write; the server answers it with its own error (design 19.4)."""


class NotPrimaryNow(WriteRefused):
    """This server is not the primary now (a standby, or demoted): retry, the pair decides."""


class StaleEpochWrite(WriteRefused):
    """The write carried an epoch older than this server's: its sender follows an old primary."""
