"""Where the audit trail's signed checkpoints go to syslog: the address the policy names.

The policy checks the address when it loads (``anchors.syslog``); the anchor writer in the
store opens it.
"""

from __future__ import annotations

import socket

__all__ = ["syslog_address"]


def syslog_address(address: str) -> tuple[int, str | tuple[str, int]]:
    """``/dev/log`` (a Unix socket path) or ``host:port`` (UDP) as a socket family and
    address; ``ValueError`` naming what is wrong."""
    if address.startswith("/"):
        return socket.AF_UNIX, address
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected a socket path (/dev/log) or host:port, got {address!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port))
