"""Every error Orchestrion raises, in one tree.

    OrchestrionError
    ├── DefinitionError            a workflow definition is malformed or invalid
    │   (carries a list of DefinitionIssue: node, field, line, message)
    ├── ExecutionError             an operation on an execution is not possible
    │   ├── ExecutionNotFound
    │   ├── InvalidTransition      e.g. cancel a completed execution
    │   └── ControlPending         recorded for the process that drives it, not acted on yet
    ├── NodeError                  raised by handlers; the engine classifies it
    │   ├── TransientNodeError     worth retrying (connection reset, 5xx, timeout)
    │   ├── PermanentNodeError     never retried (bad config, 4xx, bad data)
    │   └── PolicyViolation        blocked by governance, never retried
    ├── StoreError                 a database failure, the driver error chained
    ├── DispatchError              the queue (scale-out: Redis) failed, the driver error chained
    ├── ConfigurationError         settings that cannot work
    └── HandlerNotFound            a handler name nobody registered

Driver errors are wrapped with ``raise ... from exc``; ``asyncio.CancelledError`` is never
wrapped: cancellation stays cancellation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "EXECUTION_CATEGORIES",
    "NODE_CATEGORIES",
    "ConfigurationError",
    "ControlPending",
    "DecisionRefused",
    "DecryptionError",
    "DefinitionError",
    "DefinitionIssue",
    "DispatchError",
    "ErrorCategory",
    "ExecutionError",
    "ExecutionNotFound",
    "HandlerNotFound",
    "IdempotencyConflict",
    "InvalidTransition",
    "NodeError",
    "NotRetryable",
    "OrchestrionError",
    "PermanentNodeError",
    "PolicyViolation",
    "ReservedIdempotencyKey",
    "StoreError",
    "TransientNodeError",
    "UnstorableValue",
    "WireError",
    "no_such_node",
]


class ErrorCategory(StrEnum):
    """The kinds of failure the engine and its handlers record as an error's ``category``.

    A handler may name a category of its own (``NodeError(category=...)``); these are the ones
    Orchestrion records, which ``retry_on`` and ``error_handling`` rules match.
    """

    ERROR = "error"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    POLICY_VIOLATION = "policy_violation"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    RATE_LIMITED = "rate_limited"
    HTTP_5XX = "http_5xx"
    HTTP_4XX = "http_4xx"
    UNEXPECTED_STATUS = "unexpected_status"
    TLS = "tls"
    REDIRECTS = "redirects"
    RESPONSE = "response"
    RESPONSE_TOO_LARGE = "response_too_large"
    BAD_RESPONSE = "bad_response"
    CONFIG = "config"
    CONFIGURATION = "configuration"
    VALIDATION = "validation"
    SCHEMA = "schema"
    INPUT = "input"
    OUTPUT = "output"
    TEMPLATE = "template"
    CHILD_FAILED = "child_failed"
    MAP_ITEM = "map_item"
    APPROVAL_TIMEOUT = "approval_timeout"
    REJECTED = "rejected"
    ROUTING = "routing"
    CIRCUIT_OPEN = "circuit_open"
    UNAVAILABLE = "unavailable"
    DELIVERY = "delivery"
    DEAD_LETTER = "dead_letter"
    FLAKY = "flaky"
    CANCELLED = "cancelled"
    NODE_FAILED = "node_failed"
    HALTED = "halted"
    SUCCESS_CRITERIA = "success_criteria"


_EXECUTION_ONLY = frozenset(
    {ErrorCategory.NODE_FAILED, ErrorCategory.HALTED, ErrorCategory.SUCCESS_CRITERIA}
)

EXECUTION_CATEGORIES = _EXECUTION_ONLY | {ErrorCategory.CANCELLED, ErrorCategory.TIMEOUT}
"""The categories of an execution's own error (a failed node, a halt, a failed criterion,
a cancel, its timeout)."""

NODE_CATEGORIES = frozenset(ErrorCategory) - _EXECUTION_ONLY
"""The categories a node's attempt fails with."""


class OrchestrionError(Exception):
    """Root of every error raised by Orchestrion."""


@dataclass(frozen=True, slots=True)
class DefinitionIssue:
    """One problem found in a workflow definition.

    ``node`` is the node id (None for workflow-level problems), ``field`` a dotted path inside
    the node or workflow (``config.url``, ``dependencies[1]``), ``line`` the 1-based source line
    when the definition came from a file.
    """

    message: str
    node: str | None = None
    field: str | None = None
    line: int | None = None
    code: str = "invalid"

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.node is not None:
            where.append(f"node '{self.node}'")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "node": self.node,
            "field": self.field,
            "line": self.line,
        }


class DefinitionError(OrchestrionError):
    """A workflow definition cannot be accepted; ``issues`` lists every problem found.

    With ``request``, what was refused is what a request said of a definition that is fine
    (a start's inputs and overrides, a retry's ``from_node``): ``heading`` says "invalid
    request" rather than "invalid workflow definition"."""

    def __init__(
        self,
        issues: list[DefinitionIssue],
        source: str | None = None,
        *,
        sources: tuple[str, ...] | None = None,
        request: bool = False,
    ) -> None:
        self.issues = issues
        self.source = source
        # What was found wrong, each part by itself: a start refused for its inputs and its
        # overrides names both in ``source``, and a caller tells them apart here.
        self.sources = sources if sources is not None else ((source,) if source else ())
        self.heading = "invalid request" if request else "invalid workflow definition"
        head = f"{source}: " if source else ""
        if len(issues) == 1:
            text = f"{head}{self.heading}: {issues[0]}"
        else:
            lines = "\n".join(f"  - {issue}" for issue in issues)
            text = f"{head}{self.heading} ({len(issues)} problems):\n{lines}"
        super().__init__(text)


_NAMED_NODES = 20  # the nodes an unknown node's message lists


def no_such_node(execution_id: str | None, node_id: str, nodes: Iterable[str]) -> str:
    """What to say of ``node_id`` that the definition (of ``execution_id``) does not have:
    the node named, and the nodes there are (the first 20, then how many more)."""
    known = list(nodes)
    shown = ", ".join(known[:_NAMED_NODES])
    more = f" and {len(known) - _NAMED_NODES} more" if len(known) > _NAMED_NODES else ""
    whose = f"execution {execution_id}" if execution_id else "the workflow"
    return f"{whose} has no node '{node_id}' (its nodes: {shown}{more})"


class ExecutionError(OrchestrionError):
    """An operation on an execution cannot be carried out."""


class ExecutionNotFound(ExecutionError):
    """No execution (or definition) with the given id exists."""


class InvalidTransition(ExecutionError):
    """The execution is in a state where the requested operation does not apply."""


class ControlPending(ExecutionError):
    """A control verb recorded for the process that drives the execution, which has not
    acted on it yet: the request stays recorded, and that process carries it out when it
    can (a busy or stopped process), unless it lets the execution go first."""


class IdempotencyConflict(InvalidTransition):
    """The idempotency key of a start already names an execution of another workflow."""


class NodeError(OrchestrionError):
    """Raised by a handler. ``category`` names the kind of failure for humans and metrics."""

    transient: bool = False
    category: str = ErrorCategory.ERROR

    def __init__(self, message: str, *, category: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        if category is not None:
            self.category = category
        self.details = details


class TransientNodeError(NodeError):
    """A failure that may succeed when tried again (network, 5xx, timeout, rate limit)."""

    transient = True
    category = ErrorCategory.TRANSIENT


class PermanentNodeError(NodeError):
    """A failure that will fail again the same way (bad input, 4xx, bad configuration)."""

    transient = False
    category = ErrorCategory.PERMANENT


class PolicyViolation(PermanentNodeError):
    """Blocked by a governance policy; never retried."""

    category = ErrorCategory.POLICY_VIOLATION


class StoreError(OrchestrionError):
    """The state store failed; the driver's exception is chained as ``__cause__``."""


class UnstorableValue(StoreError):
    """A commit holds a value the store cannot write (its encoder or driver refused it):
    writing it again fails again, unlike a store that is away for a while."""


class DispatchError(OrchestrionError):
    """The queue that carries attempts and events could not be reached or answered wrongly
    (scale-out: Redis). Callers catch this, never a driver's own errors.

    ``kind`` names what went wrong in a word an operator can look up: the driver's error
    class (``ConnectionError``, ``ResponseError``...) when one is chained, else this class.
    """

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or type(self).__name__


class ConfigurationError(OrchestrionError):
    """Settings are invalid or inconsistent."""


class HandlerNotFound(OrchestrionError):
    """No handler is registered under the requested name."""


class ReservedIdempotencyKey(OrchestrionError, ValueError):
    """A caller gave an idempotency key with a prefix the engine keeps for the executions it
    starts itself (``event:``, ``schedule:``, ``child:``); nothing was created."""


class DecisionRefused(ExecutionError):
    """The caller may not decide on this node (not among its approvers). ``unidentified``:
    the server has no API keys to tell who the caller is, so no caller may (not a refusal
    of a key: of the server's configuration)."""

    def __init__(self, message: str, *, unidentified: bool = False) -> None:
        super().__init__(message)
        self.unidentified = unidentified


class DecryptionError(StoreError):
    """A stored value that cannot be decrypted: unknown key id, wrong context, or tampered.

    A ``StoreError``: what the store holds cannot be read with this configuration, so the CLI
    and the API report it as they report an unreadable store (the message names the key id).
    """


class WireError(OrchestrionError):
    """A message that cannot be read: not JSON, a newer schema version, or a wrong shape."""


class NotRetryable(OrchestrionError):
    """The letter's payload is not a task message: it can be dropped, not retried."""
