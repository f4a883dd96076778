"""Which engine process owns an execution, and whether that owner is still alive.

Every engine has an owner id ``host:pid:nonce``. It claims an execution (a compare-and-swap
in the store) before it drives it and renews the lease while it does, so two processes on one
database never run the same execution. Another process may take an execution over when the
lease has run out, or at once when the owner was a process on this host that no longer exists
(killed with -9, say), which is what makes ``orchestrion resume`` immediate after a crash.
"""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["new_owner_id", "owner_alive_here", "owner_is_dead"]

_HOST = socket.gethostname()


def new_owner_id() -> str:
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive_here(owner: str) -> bool | None:
    """True/False when ``owner`` is a process of this host; None when it is elsewhere."""
    parts = owner.split(":")
    if len(parts) < 3:
        return None
    host, pid_text = ":".join(parts[:-2]), parts[-2]
    if host != _HOST or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_dead(owner: str | None, lease_until: float | None, now: float) -> bool:
    """Whether an execution held by ``owner`` until ``lease_until`` may be taken over."""
    if owner is None:
        return True
    if lease_until is not None and lease_until < now:
        return True
    return owner_alive_here(owner) is False
