"""The verbs a caller sends to an execution from outside it.

One name per verb, shared by the engine that carries a verb out, the requests one process
journals for the process running the execution, the REST routes and the client, so a verb
misspelt anywhere is a type error rather than a request nobody acts on.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CROSS_PROCESS_VERBS", "ControlVerb", "decision_verb"]


class ControlVerb(StrEnum):
    """A request to change a running (or, for retry, an ended) execution."""

    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"
    APPROVE = "approve"
    REJECT = "reject"


CROSS_PROCESS_VERBS = frozenset(
    {
        ControlVerb.CANCEL,
        ControlVerb.PAUSE,
        ControlVerb.RESUME,
        ControlVerb.APPROVE,
        ControlVerb.REJECT,
    }
)
"""The verbs a process journals for the one running the execution: a retry instead takes the
ended execution over."""


def decision_verb(approved: bool) -> ControlVerb:
    """``approve`` or ``reject``."""
    return ControlVerb.APPROVE if approved else ControlVerb.REJECT
