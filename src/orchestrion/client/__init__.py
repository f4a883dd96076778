"""Clients of the Orchestrion REST API (``orchestrion serve``, docs/API.md), sync and async.

    from orchestrion.client import Client, NotFound

    with Client("http://127.0.0.1:8000", api_key="k1") as client:
        execution = client.run("flow.yaml", {"user_id": 123}, timeout=60)
        print(execution.status, execution.result)  # ExecutionStatus.COMPLETED {...}
        print(execution.to_dict())  # the shape of the embedded engine's result.to_dict()
        for event in client.stream_events(execution.execution_id):
            print(event.seq, event.type, event.node_id)

``AsyncClient`` has the same methods as coroutines. Results are small dataclasses
(``orchestrion.client.models``) with the engine's ``ExecutionStatus``/``NodeState``; errors are
``ApiError`` subclasses (``orchestrion.client.errors``) that also derive from the engine's own
errors where they mean the same (``NotFound`` is an ``ExecutionNotFound``, ``Conflict`` an
``InvalidTransition``, ``InvalidDefinition`` a ``DefinitionError``).
"""

from __future__ import annotations

from orchestrion.client.aio import AsyncClient
from orchestrion.client.emit_models import EmittedEvent, SkippedTrigger, TriggeredExecution
from orchestrion.client.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeout,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidDefinition,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from orchestrion.client.inputs_models import RenderedInputs
from orchestrion.client.log_models import LogLine, LogPage
from orchestrion.client.models import (
    Accepted,
    DeadLetter,
    DeadLetterAction,
    DeadLetterPage,
    Definition,
    DefinitionSummary,
    Event,
    EventPage,
    Execution,
    ExecutionPage,
    ExecutionResults,
    ExecutionSummary,
    Health,
    Submission,
)
from orchestrion.client.sync import Client

__all__ = [
    "Accepted",
    "ApiConnectionError",
    "ApiError",
    "ApiTimeout",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "DeadLetter",
    "DeadLetterAction",
    "DeadLetterPage",
    "Definition",
    "DefinitionSummary",
    "EmittedEvent",
    "Event",
    "EventPage",
    "Execution",
    "ExecutionPage",
    "ExecutionResults",
    "ExecutionSummary",
    "Forbidden",
    "Health",
    "InvalidDefinition",
    "InvalidRequest",
    "LogLine",
    "LogPage",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RenderedInputs",
    "ServerError",
    "ServiceUnavailable",
    "SkippedTrigger",
    "Submission",
    "TriggeredExecution",
    "Unauthorized",
    "UnsupportedMediaType",
]
