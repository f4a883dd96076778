"""Bodies of ``POST /v1/events/{event_type}``: what an event started, and what it did not."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrion.api.models import ExecutionState

__all__ = ["EmitResponse", "EventExecution", "EventSkipped"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventExecution(_Out):
    """An execution the event started (or had started: the same event delivered again)."""

    execution_id: str
    workflow: str
    version: str
    definition_id: str
    trigger: str | None
    status: ExecutionState


class EventSkipped(_Out):
    """A workflow listening to the event that it did not start: its ``filter`` was false, or
    the payload did not fit (``error``, with the reason)."""

    workflow: str
    trigger: str | None
    reason: Literal["filter", "error"]
    message: str


class EmitResponse(_Out):
    """The answer to an event: its id (generated when not given) and what it started."""

    event_id: str
    event_type: str
    executions: list[EventExecution]
    skipped: list[EventSkipped]
    message: str
