"""What the client returns: small frozen dataclasses read from the API's JSON.

States are UPPERCASE on the wire and become ``ExecutionStatus``/``NodeState`` here; times are
ISO 8601 strings on the wire and epoch seconds here, as in the embedded engine, so that
``Execution.to_result()`` is an ``ExecutionResult``. ``to_dict()`` gives the wire shape back
(UPPERCASE states, ISO 8601 UTC times, ``*_ms``), the one ``ExecutionResult.to_dict()`` and
the CLI's ``--json`` print too.

Field names follow the API: ``execution_id`` and ``status`` are canonical; a body that has only
the reference examples' ``id`` or ``state`` is read as well.

This module gathers them, one import for all: ``execution_models`` (submissions, executions,
their results and pages), ``definition_models``, ``event_models``, ``health`` and
``dead_letter_models``; ``wire`` reads the API's values.
"""

from __future__ import annotations

from orchestrion.client.dead_letter_models import DeadLetter, DeadLetterAction, DeadLetterPage
from orchestrion.client.definition_models import Definition, DefinitionSummary
from orchestrion.client.event_models import FINAL_EVENT_TYPES as FINAL_EVENT_TYPES
from orchestrion.client.event_models import Event, EventPage
from orchestrion.client.execution_models import (
    Accepted,
    Execution,
    ExecutionPage,
    ExecutionResults,
    ExecutionSummary,
    Submission,
)
from orchestrion.client.health import Health
from orchestrion.client.wire import execution_status, node_state, timestamp

# The engine's types the models hold, importable from here as they were before the split.
from orchestrion.core.result import ExecutionResult as ExecutionResult
from orchestrion.core.result import NodeResult as NodeResult
from orchestrion.core.states import FINAL_EXECUTION_STATES as FINAL_EXECUTION_STATES
from orchestrion.core.states import ExecutionStatus as ExecutionStatus
from orchestrion.core.states import NodeState as NodeState
from orchestrion.governance.trust import Trust as Trust

__all__ = [
    "Accepted",
    "DeadLetter",
    "DeadLetterAction",
    "DeadLetterPage",
    "Definition",
    "DefinitionSummary",
    "Event",
    "EventPage",
    "Execution",
    "ExecutionPage",
    "ExecutionResults",
    "ExecutionSummary",
    "Health",
    "Submission",
    "execution_status",
    "node_state",
    "timestamp",
]
