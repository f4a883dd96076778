"""What an attempt's failure is called: the ``ErrorInfo`` of an exception, and its kinds.

Transient failures may pass on a retry (the node's retry policy decides); permanent ones
will not. The scrubbing layer then removes secrets from the message and traceback.
"""

from __future__ import annotations

import asyncio
import logging
import traceback

from pydantic import ValidationError

from orchestrion.core.events import ErrorInfo, wait_seconds
from orchestrion.dispatch.base import TaskMessage
from orchestrion.errors import ErrorCategory, HandlerNotFound, NodeError

__all__ = ["NodeTimeout", "classify", "is_cancel", "retryable"]

logger = logging.getLogger("orchestrion.execution.executor")

_MAX_TRACEBACK = 4000


class NodeTimeout(Exception):
    """The attempt ran past the node's timeout."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"node timed out after {seconds:g}s")


def is_cancel(exc: BaseException) -> bool:
    """Whether ``exc`` is a cancel of the running task (a cancel, a shutdown) rather than a
    ``CancelledError`` the attempt raised itself (a future someone else cancelled, read by a
    function): that one is a failure of the attempt, which would else never end."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def classify(task: TaskMessage, exc: BaseException) -> ErrorInfo:
    """The failure ``exc`` ended ``task``'s attempt with, as stored and shown; never raises,
    so an exception that cannot describe itself still fails its node."""
    try:
        return _classify(task, exc)
    except Exception as broke:  # e.g. a __str__, or an errors() of a subclass, that raises
        kind = type(exc).__name__
        return ErrorInfo(
            ErrorCategory.ERROR,
            f"{kind}: <the exception could not be described: {type(broke).__name__}>",
            transient=True,
            type=kind,
        )


def _classify(task: TaskMessage, exc: BaseException) -> ErrorInfo:
    kind = type(exc).__name__
    if isinstance(exc, NodeTimeout):
        return ErrorInfo(ErrorCategory.TIMEOUT, str(exc), transient=True, type="TimeoutError")
    if isinstance(exc, NodeError):
        details = exc.details
        asked = details.get("retry_after") if isinstance(details, dict) else None
        retry_after = wait_seconds(asked)
        return ErrorInfo(exc.category, str(exc), exc.transient, kind, retry_after=retry_after)
    if isinstance(exc, ValidationError):
        violations = [e["msg"] for e in exc.errors() if e["type"] == "policy_violation"]
        if violations:
            return ErrorInfo(
                ErrorCategory.POLICY_VIOLATION, "; ".join(violations), type="PolicyViolation"
            )
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        return ErrorInfo(
            ErrorCategory.CONFIG, f"invalid config for handler '{task.handler}': {problems}"
        )
    if isinstance(exc, HandlerNotFound):
        return ErrorInfo(ErrorCategory.CONFIG, str(exc))
    tb = "".join(traceback.format_exception(exc))[-_MAX_TRACEBACK:]
    logger.debug("node %s attempt %s raised %s", task.node_id, task.attempt, kind)
    return ErrorInfo(ErrorCategory.ERROR, f"{kind}: {exc}", transient=True, type=kind, traceback=tb)


def retryable(exc: BaseException) -> bool:
    """Whether ``classify`` calls ``exc`` transient: only those count against a circuit.

    A permanent error (a 4xx, a policy violation, bad data) is an answer from a downstream
    that works.
    """
    if isinstance(exc, NodeError):
        return exc.transient
    return not isinstance(exc, ValidationError | HandlerNotFound)
