"""What ``Client.emit`` returns: the executions an event started, and the workflows it did not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrion.client.wire import execution_status
from orchestrion.core.states import ExecutionStatus

__all__ = ["EmittedEvent", "SkippedTrigger", "TriggeredExecution"]


@dataclass(frozen=True, slots=True)
class TriggeredExecution:
    """An execution the event started (or had started, when it is sent again)."""

    execution_id: str
    workflow: str
    version: str
    definition_id: str
    trigger: str | None
    status: ExecutionStatus

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> TriggeredExecution:
        return cls(
            execution_id=str(data["execution_id"]),
            workflow=str(data["workflow"]),
            version=str(data["version"]),
            definition_id=str(data["definition_id"]),
            trigger=data.get("trigger"),
            status=execution_status(data["status"]),
        )


@dataclass(frozen=True, slots=True)
class SkippedTrigger:
    """A listening workflow the event did not start: ``reason`` is ``filter`` or ``error``."""

    workflow: str
    trigger: str | None
    reason: str
    message: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> SkippedTrigger:
        return cls(
            workflow=str(data["workflow"]),
            trigger=data.get("trigger"),
            reason=str(data["reason"]),
            message=str(data.get("message") or ""),
        )


@dataclass(frozen=True, slots=True)
class EmittedEvent:
    """The 202 answer to an event: its id (generated when not given) and what it did."""

    event_id: str
    event_type: str
    executions: tuple[TriggeredExecution, ...]
    skipped: tuple[SkippedTrigger, ...]
    message: str = ""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> EmittedEvent:
        return cls(
            event_id=str(data["event_id"]),
            event_type=str(data["event_type"]),
            executions=tuple(TriggeredExecution.from_api(x) for x in data.get("executions", [])),
            skipped=tuple(SkippedTrigger.from_api(x) for x in data.get("skipped", [])),
            message=str(data.get("message") or ""),
        )
