"""SIGTERM or Ctrl-C while a long-running command is still starting: a graceful stop.

Until a process has its event loop and its own handlers (a few tenths of a second of imports
and set-up), Python's default would let SIGTERM kill it, with exit status -15: a supervisor
that restarts a process and stops it soon after would see a crash. ``defer`` records such a
signal instead; the command, once running, sees ``requested`` and stops at once, cleanly,
with exit code 0.
"""

from __future__ import annotations

import signal
from types import FrameType

__all__ = ["defer", "requested"]

_received: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)


def defer() -> None:
    """Record SIGTERM and SIGINT from now until the command installs its own handlers."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _remember)


def requested() -> bool:
    """Whether a stop was asked for while the command was starting."""
    return bool(_received)
