"""What stops a replication run, or is reported by one (design 17.4 to 17.7). Each carries its
documented code (docs/errors.md), which the run's report records beside the message."""

from __future__ import annotations

from typing import ClassVar

from cairn.core.errors import CairnError


class ReplicationError(CairnError):
    """A replication run to a target cannot go on."""

    code: ClassVar[str] = "CAIRN-E001"


class MassDeletionRefused(ReplicationError):
    """A mirror target's due deletions pass its threshold (count or bytes per run): nothing is
    deleted and the target stops until the operator raises the threshold (17.5)."""

    code = "CAIRN-E131"


class TargetCorrupt(ReplicationError):
    """What the target holds after a save is not what was sent: another size, or bytes that do
    not hash to the name on read-back (17.6)."""

    code = "CAIRN-E132"


class SourceLooksEmpty(ReplicationError):
    """A tenant's storage on the server has no `config` while the journal says it held objects
    (an unmounted or emptied data folder): no deletion is propagated from it (17.5)."""

    code = "CAIRN-E133"


DAMAGED_AT_SOURCE = "CAIRN-E134"
"""The code of an object the server holds that does not hash to its name: reported in a run's
report, never sent (17.4)."""


def describe(exc: BaseException) -> str:
    """The text a run's report keeps for the error that ended it: its code when it has one,
    else its class, then the message."""
    code = getattr(exc, "code", None)
    label = code if isinstance(code, str) else type(exc).__name__
    return f"{label}: {exc}"


class StateSealError(CairnError):
    """The server's sealed state on a target (design 17.15) cannot be used."""

    code: ClassVar[str] = "CAIRN-E148"


class WrongStatePassphrase(StateSealError):
    """The passphrase does not open the state key wrapped in the sealed state."""

    code = "CAIRN-E145"


class NoServerState(StateSealError):
    """The location holds no sealed server state (or none under the server ID given)."""

    code = "CAIRN-E146"


class ServerIdNeeded(StateSealError):
    """Several servers' states at the location and no --server-id, or the location's kind cannot
    list its folders."""

    code = "CAIRN-E147"


class StateSealDamaged(StateSealError):
    """The sealed state is damaged or not a server state, or no state key is set."""

    code = "CAIRN-E148"


class CopiedObjectsDamaged(StateSealError):
    """Objects read from a target during restore-from do not hash to their names."""

    code = "CAIRN-E149"
