"""Engine records, with the context metrics and logs need, delivered off the engine loop.

The engine's record listener must be quick and cannot await; the metrics and the node log
need more than a record carries (the node's handler, the execution's correlation id). So the
listener only queues ``(execution_id, records)``; ``RecordFeed.run`` (a task of the app's
lifespan) resolves an ``ExecutionInfo`` from the store, cached, and hands both to each sink.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrion.core.events import Record
from orchestrion.engine.facade import Engine
from orchestrion.errors import HandlerNotFound

__all__ = ["ExecutionInfo", "RecordFeed", "RecordSink"]

logger = logging.getLogger(__name__)

_MAX_QUEUED = 100_000
_MAX_CACHED = 4096


@dataclass(frozen=True, slots=True)
class ExecutionInfo:
    """What sinks know of an execution: its correlation id, workflow and node handlers, and
    whether its values are sealed at rest (then sinks must not write them out either)."""

    execution_id: str
    correlation_id: str | None = None
    workflow: str | None = None
    handlers: dict[str, str] = field(default_factory=dict)
    sealed: bool = False

    def handler(self, node_id: str) -> str:
        return self.handlers.get(node_id, "unknown")


RecordSink = Callable[[ExecutionInfo, list[Record]], None]

# An execution's id, its records, and its correlation and definition ids when known.
_Queued = tuple[str, list[Record], tuple[str, str] | None]


class RecordFeed:
    """Queue records from the engine's listener; ``run`` delivers them to the sinks."""

    def __init__(self, engine: Engine, sinks: list[RecordSink]) -> None:
        self.engine = engine
        self.sinks = sinks
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(_MAX_QUEUED)
        self._executions: OrderedDict[str, ExecutionInfo] = OrderedDict()
        self._definitions: OrderedDict[str, tuple[str, dict[str, str]]] = OrderedDict()
        self.dropped = 0

    def listener(self, execution_id: str, records: list[Record]) -> None:
        """The engine record listener (runs inside the engine loop: never blocks)."""
        if not records:  # a turn that stored only node log lines: no transition to report
            return
        # The execution's ids from its live record while the engine drives it here: the
        # store is then not read for them (a read per execution, at every one's first turn).
        ids = None
        if execution_id not in self._executions:
            record = self.engine.live_record(execution_id)
            if record is not None and record.correlation_id is not None:
                ids = (record.correlation_id, record.definition_id)
        try:
            self._queue.put_nowait((execution_id, records, ids))
        except asyncio.QueueFull:
            # Metrics and logs fall behind rather than slowing the engine down.
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                logger.warning("record feed is full; %d batch(es) dropped", self.dropped)

    async def run(self) -> None:
        """Deliver queued records until cancelled."""
        while True:
            execution_id, records, ids = await self._queue.get()
            info = await self._info(execution_id, ids)
            for sink in self.sinks:
                try:
                    sink(info, records)
                except Exception:  # one broken sink must not stop the others
                    logger.exception("record sink failed")

    async def drain(self) -> None:
        """Deliver what is queued now (at shutdown, after the engine stopped)."""
        while not self._queue.empty():
            execution_id, records, ids = self._queue.get_nowait()
            info = await self._info(execution_id, ids)
            for sink in self.sinks:
                try:
                    sink(info, records)
                except Exception:
                    logger.exception("record sink failed")

    async def _info(self, execution_id: str, ids: tuple[str, str] | None) -> ExecutionInfo:
        info = self._executions.get(execution_id)
        if info is not None and info.correlation_id is not None:
            self._executions.move_to_end(execution_id)
            if not info.sealed and self._sealed(execution_id):  # it met a classified child
                info = self._executions[execution_id] = replace(info, sealed=True)
            return info
        try:
            if ids is None:
                record = await self.engine.reads.execution(execution_id)
                ids = (record.correlation_id or "", record.definition_id)
            correlation_id, definition_id = ids
            workflow, handlers = await self._definition(definition_id)
        except Exception:  # context only enriches metrics and logs: never fail on it
            logger.debug("no context for execution %s", execution_id, exc_info=True)
            return ExecutionInfo(execution_id)
        info = ExecutionInfo(
            execution_id, correlation_id or None, workflow, handlers, self._sealed(execution_id)
        )
        self._executions[execution_id] = info
        while len(self._executions) > _MAX_CACHED:
            self._executions.popitem(last=False)
        return info

    def _sealed(self, execution_id: str) -> bool:
        return self.engine.reads.sealed(execution_id)

    async def _definition(self, definition_id: str) -> tuple[str, dict[str, str]]:
        cached = self._definitions.get(definition_id)
        if cached is not None:
            return cached
        definition = await self.engine.reads.definition(definition_id)
        nodes: list[dict[str, Any]] = definition.spec.get("dag", {}).get("nodes", [])
        handlers = {str(node["id"]): self._canonical(str(node["handler"])) for node in nodes}
        cached = self._definitions[definition_id] = (definition.name, handlers)
        while len(self._definitions) > _MAX_CACHED:
            self._definitions.popitem(last=False)
        return cached

    def _canonical(self, name: str) -> str:
        try:
            return self.engine.registry.canonical_name(name)
        except HandlerNotFound:
            return name
