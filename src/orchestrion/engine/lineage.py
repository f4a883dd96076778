"""Parents and children across processes: who waits for a person, who must stop with whom.

A ``workflow`` node's wait records its child's id in the journal (``node.waiting`` data), so
any process on the database can follow an execution down to the children it waits for,
without having driven it: to list the approvals a parent's run is waiting on, and to cancel
children whose parent was cancelled by another process than the one that started them.

A child's own row names its parent from the moment it is made, a moment before the parent's
wait for it is committed: a process killed in between leaves a child that only its row links
to the parent (``unfinished_children``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrion.core.reasons import DECIDABLE_WAITS, WaitReason
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import FINAL_EXECUTION_STATES, NodeState
from orchestrion.errors import ExecutionNotFound

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine
    from orchestrion.store.base import ExecutionRecord

__all__ = [
    "PendingDecision",
    "ancestors",
    "child_ids",
    "descendants",
    "pending_decisions",
    "unfinished_children",
]


# Nesting deeper than this is refused by the definition limits long before; a cycle of
# records edited by hand must not loop forever.
_MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class PendingDecision:
    """A node waiting for a person, in the execution itself or in one of its descendants."""

    execution_id: str
    node_id: str
    reason: str


async def child_ids(engine: Engine, execution_id: str, node: str | None = None) -> list[str]:
    """Every child an execution's ``workflow`` nodes (or ``node``) started and waited for,
    oldest first."""
    found: list[str] = []
    after, size = 0, 1000
    while True:
        page = await engine.store.list_events(
            execution_id, after_seq=after, limit=size, types=[RecordType.NODE_WAITING]
        )
        for event in page:
            data = event.data or {}
            child = data.get("child_execution_id")
            if (
                data.get("wait_reason") == WaitReason.CHILD
                and isinstance(child, str)
                and child not in found
                and (node is None or event.node_id == node)
            ):
                found.append(child)
        if len(page) < size:
            return found
        after = page[-1].seq


async def unfinished_children(engine: Engine, execution_id: str) -> list[ExecutionRecord]:
    """The unfinished executions whose rows name ``execution_id`` as their parent (read
    through the status index, as a takeover finds its candidates: few rows are unfinished)."""
    unfinished = await engine.store.unfinished_executions()
    return [record for record in unfinished if record.parent_execution_id == execution_id]


async def pending_decisions(
    engine: Engine, execution_id: str, _depth: int = 0
) -> list[PendingDecision]:
    """The nodes waiting for a decision in ``execution_id`` and in the children it waits on."""
    found: list[PendingDecision] = []
    waits_on_child = False
    for run in await engine.store.get_node_runs(execution_id):
        if run.state is not NodeState.WAITING:
            continue
        if run.wait_reason in DECIDABLE_WAITS:
            found.append(PendingDecision(execution_id, run.node_id, run.wait_reason or ""))
        elif run.wait_reason == WaitReason.CHILD:
            waits_on_child = True
    if waits_on_child and _depth < _MAX_DEPTH:
        for child in await child_ids(engine, execution_id):
            try:
                record = await engine.store.get_execution(child)
            except ExecutionNotFound:
                continue
            if record.status not in FINAL_EXECUTION_STATES:
                found.extend(await pending_decisions(engine, child, _depth + 1))
    return found


async def ancestors(engine: Engine, execution_id: str) -> list[str]:
    """The parent chain of an execution, nearest first (empty for a top-level execution)."""
    chain: list[str] = []
    record = await engine.store.get_execution(execution_id)
    while record.parent_execution_id is not None and len(chain) < _MAX_DEPTH:
        if record.parent_execution_id in chain:
            break
        chain.append(record.parent_execution_id)
        record = await engine.store.get_execution(record.parent_execution_id)
    return chain


async def descendants(engine: Engine, execution_id: str) -> list[str]:
    """Every child the execution's ``workflow`` nodes waited for, and theirs, parents first."""
    found: list[str] = []
    level = [execution_id]
    for _ in range(_MAX_DEPTH):
        children = [c for e in level for c in await child_ids(engine, e) if c not in found]
        if not children:
            break
        found.extend(children)
        level = children
    return found
