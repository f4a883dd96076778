"""Parents and children across processes: who waits for a person, who must stop with whom.

A ``workflow`` node's wait records its child's id in the journal (``node.waiting`` data), so
any process on the database can follow an execution down to the children it waits for,
without having driven it: to list the approvals a parent's run is waiting on, and to cancel
children whose parent was cancelled by another process than the one that started them.

A child's own row names its parent from the moment it is made, a moment before the parent's
wait for it is committed: a process killed in between leaves a child that only its row links
to the parent (``unfinished_children``). So the children of a node still queued or running
(its wait not committed, or a ``map`` awaiting its items' children) are read from those rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrion.core.reasons import DECIDABLE_WAITS, WaitReason
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import FINAL_EXECUTION_STATES, NodeState
from orchestrion.engine.nesting import DEPTH_CEILING
from orchestrion.errors import ExecutionNotFound

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine
    from orchestrion.store.base import ExecutionRecord, NodeRunRecord

__all__ = [
    "PendingDecision",
    "ancestors",
    "child_ids",
    "descendants",
    "pending_decisions",
    "started_by",
    "started_by_node",
    "unfinished_children",
]


_UNDER_WAY = frozenset({NodeState.QUEUED, NodeState.RUNNING})

# Nesting deeper than this is never made (``nesting.py``); a cycle of records edited by hand
# must not loop forever.
_MAX_DEPTH = DEPTH_CEILING


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


def started_by(child: ExecutionRecord) -> str:
    """The parent's node whose run started ``child`` (a map item's child names ``node[i]``)."""
    return started_by_node(child.parent_node_id or "")


def started_by_node(node_id: str) -> str:
    """The node of the plan a node id names: ``node`` for a map item's ``node[i]``."""
    return node_id.split("[", 1)[0]


async def unfinished_children(engine: Engine, execution_id: str) -> list[ExecutionRecord]:
    """The unfinished executions whose rows name ``execution_id`` as their parent (read
    through the status index, as a takeover finds its candidates: few rows are unfinished)."""
    unfinished = await engine.store.unfinished_executions()
    return [record for record in unfinished if record.parent_execution_id == execution_id]


async def pending_decisions(
    engine: Engine, execution_id: str, _depth: int = 0, _rows: _Rows | None = None
) -> list[PendingDecision]:
    """The nodes waiting for a decision in ``execution_id`` and in the children it waits on."""
    rows = _rows or _Rows(engine)
    found: list[PendingDecision] = []
    waits_on_child = False
    runs = await engine.store.get_node_runs(execution_id)
    for run in runs:
        if run.state is not NodeState.WAITING:
            continue
        if run.wait_reason in DECIDABLE_WAITS:
            found.append(PendingDecision(execution_id, run.node_id, run.wait_reason or ""))
        elif run.wait_reason == WaitReason.CHILD:
            waits_on_child = True
    if _depth >= _MAX_DEPTH:
        return found
    children: list[str] = []
    for child in await child_ids(engine, execution_id) if waits_on_child else []:
        try:
            record = await engine.store.get_execution(child)
        except ExecutionNotFound:
            continue
        if record.status not in FINAL_EXECUTION_STATES:
            children.append(child)
    children.extend(c for c in await rows.under_way(execution_id, runs) if c not in children)
    for child in children:
        found.extend(await pending_decisions(engine, child, _depth + 1, rows))
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
    """Every child the execution's ``workflow`` nodes waited for, and theirs, parents first;
    with the unfinished children of its nodes still under way (see the module docstring)."""
    found: list[str] = []
    rows = _Rows(engine)
    level = [execution_id]
    for _ in range(_MAX_DEPTH):
        children: list[str] = []
        for member in level:
            runs = await engine.store.get_node_runs(member)
            for child in [*await child_ids(engine, member), *await rows.under_way(member, runs)]:
                if child not in found and child not in children:
                    children.append(child)
        if not children:
            break
        found.extend(children)
        level = children
    return found


class _Rows:
    """The unfinished executions by the parent their rows name, read once (when first
    needed) for a whole walk down the lineage."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._by_parent: dict[str, list[ExecutionRecord]] | None = None

    async def under_way(self, execution_id: str, runs: list[NodeRunRecord]) -> list[str]:
        """The unfinished children whose rows name a node of ``execution_id`` that ``runs``
        show still queued or running (a map item's child names ``node[i]``)."""
        nodes = {run.node_id for run in runs if run.state in _UNDER_WAY}
        if not nodes:
            return []
        if self._by_parent is None:
            self._by_parent = {}
            for record in await self._engine.store.unfinished_executions():
                if record.parent_execution_id is not None:
                    self._by_parent.setdefault(record.parent_execution_id, []).append(record)
        return [
            record.id
            for record in self._by_parent.get(execution_id, [])
            if started_by(record) in nodes
        ]
