"""What the engine keeps for each execution it drives, and for each event posted to it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from orchestrion.core.events import Command, Event, Record
from orchestrion.core.machine import ExecutionMachine
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.compiled import CompiledWorkflow
from orchestrion.store.base import ExecutionRecord

__all__ = ["IN_FLIGHT", "Action", "LiveExecution", "Posted"]

IN_FLIGHT = frozenset({NodeState.QUEUED, NodeState.RUNNING})


@dataclass(slots=True)
class LiveExecution:
    """An execution the loop is driving: its machine, output cache, timers and waiters."""

    record: ExecutionRecord
    compiled: CompiledWorkflow
    machine: ExecutionMachine
    outputs: dict[str, Any]
    done: asyncio.Future[ExecutionStatus]
    timers: dict[tuple[str, int, str], asyncio.TimerHandle] = field(default_factory=dict)
    deadline: asyncio.TimerHandle | None = None
    queued_event: dict[str, str] = field(default_factory=dict)
    # Whether the journal may hold a ``node.waiting`` record of it (False only for one
    # started here that never waited since): its result then needs no wait times read.
    waited: bool = True
    # What was committed of it, as the store's rows hold it: each node's last record and
    # every execution record, in order. An execution started here that never waited has its
    # result built from these (``engine/live_result.py``) instead of read back.
    node_records: dict[str, Record] = field(default_factory=dict)
    execution_records: list[Record] = field(default_factory=list)


@dataclass(slots=True)
class Posted:
    """An event waiting in the loop's inbox, with what its commit must resolve."""

    execution_id: str
    event: Event
    cause: str | None
    ack: asyncio.Future[None] | None = None
    # From a stream (``deliver``): when the execution is not driven here by the time the
    # turn runs (a failed commit dropped it), the entry must stay unacknowledged.
    redeliverable: bool = False


Action = tuple[LiveExecution, Command, str | None]
"""A command to act on after the commit: (execution, command, id of the record it follows)."""
