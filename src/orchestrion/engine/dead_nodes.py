"""Dead-lettered nodes: nodes that failed for good, read from the store.

A node that failed after its last attempt (its retries exhausted, or an error that is not
retried) in an execution that failed is a dead letter: it waits for a person to rerun the
execution from it (``Engine.retry`` with ``from_node``) or to drop it. Nothing is parked
anywhere: the entries are derived from the node runs of failed executions, so an embedded
(SQLite) and a scale-out (PostgreSQL) deployment list the same ones. Errors are read through
the store, so those of executions encrypted at rest come back decrypted.

A drop is recorded in the journal as a ``control.requested`` event with the verb
``dead_letter_drop`` naming the node run it handled (its attempt and when it failed); no
engine acts on that verb. A later failure of the same node (after a rerun) is a new dead
letter. An entry's id is ``<execution id>.<node id>``.
"""

from __future__ import annotations

import builtins
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.ids import new_event_id
from orchestrion.errors import ExecutionNotFound
from orchestrion.store.base import ExecutionFilter, ExecutionRecord, NodeRunRecord
from orchestrion.store.rules import CONTROL_REQUESTED

if TYPE_CHECKING:
    from orchestrion.store.audit import AuditSigner
    from orchestrion.store.base import Store

__all__ = ["DROP_VERB", "NODE_ENTRY", "ExhaustedNode", "ExhaustedNodes"]

DROP_VERB = "dead_letter_drop"
# <execution id>.<node id>: execution ids are UUIDs, node ids never hold a dot.
NODE_ENTRY = re.compile(r"^([A-Za-z0-9-]{1,64})\.([A-Za-z_][A-Za-z0-9_\-]{0,127})$")
_SCAN = 1000  # failed executions looked at, newest first: a bound on the cost of a listing
_PAGE = 200


@dataclass(slots=True)
class ExhaustedNode:
    """One node that failed for good in a failed execution."""

    execution_id: str
    node_id: str
    workflow: str
    attempt: int
    category: str
    message: str
    failed_at: float

    @property
    def id(self) -> str:
        return f"{self.execution_id}.{self.node_id}"


def _drop_key(node_id: Any, attempt: Any, failed_at: Any) -> tuple[str, int, float] | None:
    try:
        return str(node_id), int(attempt), float(failed_at)
    except (TypeError, ValueError):
        return None


class ExhaustedNodes:
    """Lists, finds and drops dead-lettered nodes of one store (see the module docstring)."""

    def __init__(self, store: Store, audit: AuditSigner | None = None) -> None:
        self.store = store
        self.audit = audit  # with a signer, a drop's journal event is audited with it
        self._names: dict[str, str] = {}

    async def list(
        self, workflow: str | None = None, since: float | None = None
    ) -> list[ExhaustedNode]:
        """Every dead-lettered node, oldest failure first; ``workflow`` keeps those of that
        workflow (by name), ``since`` those that failed at or after it (epoch seconds)."""
        found: list[ExhaustedNode] = []
        cursor: str | None = None
        seen = 0
        while seen < _SCAN:
            flt = ExecutionFilter(
                status=[ExecutionStatus.FAILED],
                definition_name=workflow,
                cursor=cursor,
                limit=min(_PAGE, _SCAN - seen),
            )
            records, cursor = await self.store.list_executions(flt)
            seen += len(records)
            for record in records:
                found.extend(await self._of(record))
            if cursor is None or not records:
                break
        if since is not None:
            found = [node for node in found if node.failed_at >= since]
        found.sort(key=lambda node: (node.failed_at, node.id))
        return found

    async def get(self, entry_id: str) -> ExhaustedNode:
        """Raises ``ExecutionNotFound`` when ``entry_id`` names no dead-lettered node."""
        match = NODE_ENTRY.match(entry_id)
        if match is None:
            raise ExecutionNotFound(f"no dead letter '{entry_id}'")
        execution_id, node_id = match.groups()
        try:
            record = await self.store.get_execution(execution_id)
        except ExecutionNotFound:
            raise ExecutionNotFound(f"no dead letter '{entry_id}'") from None
        for node in await self._of(record):
            if node.node_id == node_id:
                return node
        raise ExecutionNotFound(
            f"no dead letter '{entry_id}' (node {node_id} of execution {execution_id} has not "
            "failed for good, or was retried or dropped)"
        )

    async def drop(self, entry_id: str, by: str | None = None) -> ExhaustedNode:
        """Record that the dead letter was handled, so it is listed no more."""
        node = await self.get(entry_id)
        request = {
            "verb": DROP_VERB,
            "node": node.node_id,
            "attempt": node.attempt,
            "failed_at": node.failed_at,
            "by": by,
        }
        event_id, at = new_event_id(), time.time()
        await self.store.request_control(node.execution_id, event_id, request, at, self.audit)
        return node

    async def _of(self, record: ExecutionRecord) -> builtins.list[ExhaustedNode]:
        if record.status is not ExecutionStatus.FAILED:
            return []
        failed = [
            run
            for run in await self.store.get_node_runs(record.id)
            if run.state is NodeState.FAILED and run.finished_at is not None
        ]
        if not failed:
            return []
        dropped = await self._dropped(record.id)
        workflow = await self._workflow(record.definition_id)
        nodes = []
        for run in failed:
            if (run.node_id, run.attempt, run.finished_at) in dropped:
                continue
            nodes.append(_node(record, run, workflow))
        return nodes

    async def _dropped(self, execution_id: str) -> set[tuple[str, int, float]]:
        keys: set[tuple[str, int, float]] = set()
        after = 0
        while True:
            events = await self.store.list_events(
                execution_id, after_seq=after, limit=1000, types=[CONTROL_REQUESTED]
            )
            for event in events:
                data = event.data or {}
                if data.get("verb") == DROP_VERB:
                    key = _drop_key(data.get("node"), data.get("attempt"), data.get("failed_at"))
                    if key is not None:
                        keys.add(key)
            if len(events) < 1000:
                return keys
            after = events[-1].seq

    async def _workflow(self, definition_id: str) -> str:
        name = self._names.get(definition_id)
        if name is None:
            try:
                name = (await self.store.get_definition(definition_id)).name
            except ExecutionNotFound:
                name = ""
            self._names[definition_id] = name
        return name


def _node(record: ExecutionRecord, run: NodeRunRecord, workflow: str) -> ExhaustedNode:
    error = run.error if isinstance(run.error, dict) else {}
    assert run.finished_at is not None
    return ExhaustedNode(
        execution_id=record.id,
        node_id=run.node_id,
        workflow=workflow,
        attempt=run.attempt,
        category=str(error.get("category") or "error"),
        message=str(error.get("message") or ""),
        failed_at=run.finished_at,
    )
