"""Whether the peer is up and able to lead: what holds a standby pinned with `--pin standby`
back from campaigning (design 19.4).

The peer's `/v1/health` is public and read without checking its certificate: its answer can only
make a pinned standby hold back (never let anything write), and the witness still decides who
leads.
"""

from __future__ import annotations

import httpx


def peer_can_lead(peer: str, timeout: float = 2.0) -> bool:
    """The peer answers, and says it is the primary or reaches the witness."""
    try:
        answer = httpx.get(f"https://{peer}/v1/health", verify=False, timeout=timeout).json()  # noqa: S501
    except (httpx.HTTPError, ValueError):
        return False
    standby = answer.get("standby") if isinstance(answer, dict) else None
    if not isinstance(standby, dict):
        return False
    return standby.get("role") == "primary" or standby.get("witness_reachable") is True
