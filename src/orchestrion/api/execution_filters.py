"""The query parameters that pick executions (``GET /v1/workflows``, ``GET
/v1/stats/executions``), declared once, and the store filter they make."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BeforeValidator

from orchestrion.api.models import ExecutionState
from orchestrion.api.params import instant_query, parse_instant
from orchestrion.core.states import ExecutionStatus
from orchestrion.store.base import ExecutionFilter

__all__ = [
    "After",
    "Before",
    "IdPrefix",
    "IdSuffix",
    "StatusQuery",
    "Trigger",
    "Workflow",
    "execution_filter",
]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


StatusQuery = Annotated[
    list[Annotated[ExecutionState, BeforeValidator(_upper)]] | None,
    Query(description="only executions in these states (repeatable)"),
]


def _id_part(where: str) -> Any:
    return Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description=where)


IdPrefix = Annotated[str | None, _id_part("executions whose id starts with this")]
IdSuffix = Annotated[
    str | None,
    _id_part(
        "executions whose id ends with this (an id begins with the time it was made: its"
        " last characters tell apart executions made close together)"
    ),
]
Trigger = Annotated[
    Literal["api", "schedule", "event", "workflow"] | None,
    Query(description="what started them: a client, a schedule, an event, a parent execution"),
]
Workflow = Annotated[str | None, Query(max_length=256, description="definition name")]
After = Annotated[str | None, instant_query("created at or after")]
Before = Annotated[str | None, instant_query("created before")]


def execution_filter(
    status: list[ExecutionState] | None,
    workflow: str | None,
    definition_id: str | None,
    created_after: str | None,
    created_before: str | None,
    id_prefix: str | None,
    id_suffix: str | None,
    trigger: str | None,
) -> ExecutionFilter:
    """The store's filter for the parameters of an executions route."""
    return ExecutionFilter(
        status=[ExecutionStatus(value.lower()) for value in status] if status else None,
        definition_name=workflow,
        definition_id=definition_id,
        created_after=parse_instant(created_after, "created_after"),
        created_before=parse_instant(created_before, "created_before"),
        # Ids are lower-case hexadecimal, as UUIDs are written; a UUID read aloud or copied
        # in capitals is the same id.
        id_prefix=None if id_prefix is None else id_prefix.lower(),
        id_suffix=None if id_suffix is None else id_suffix.lower(),
        trigger=trigger,
    )
