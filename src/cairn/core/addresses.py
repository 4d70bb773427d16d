"""Network addresses: which hosts are this machine's own loopback.

Plain HTTP (`cairn://`, `serve --insecure-http`) is allowed only there: on loopback no one else
on the network can read or change the traffic.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and any loopback IP address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
