"""The errors of peer mode (design 20.7): each has its own code, CAIRN-E180 to E189."""

from __future__ import annotations

from cairn.core.errors import CairnError


class PeerError(CairnError):
    """Every error of peer mode."""


class PeerFolderError(PeerError):
    """E180: the peer folder is missing, exists already, or a setting of it is unusable."""


class InvitationUnknown(PeerError):
    """E181: the code's secret is not one this peer issued."""


class InvitationUsed(PeerError):
    """E182: the code was used already (a code pairs once)."""


class InvitationExpired(PeerError):
    """E183: the code is older than its validity."""


class PeerCertificateChanged(PeerError):
    """E184: the peer shows another certificate than the one the code or the pairing pinned."""


class PeerUnreachable(PeerError):
    """E185: the peer does not answer."""


class NotEnoughCopies(PeerError):
    """E186: a backup ended with fewer than `r` complete copies."""


class NoSuchPeer(PeerError):
    """E187: no paired peer of that name."""


class BadInvitationCode(PeerError):
    """E188: the text is not an invitation code."""


class AlreadyPaired(PeerError):
    """E189: a peer of that name or fingerprint is paired already."""


WIRE_ERRORS: dict[str, type[PeerError]] = {
    "CAIRN-E181": InvitationUnknown,
    "CAIRN-E182": InvitationUsed,
    "CAIRN-E183": InvitationExpired,
    "CAIRN-E189": AlreadyPaired,
}
"""The refusals the pairing route answers with, by code, so the joiner raises the same error."""
