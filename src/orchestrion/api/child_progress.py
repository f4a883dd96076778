"""How far the child executions of an execution's ``workflow`` nodes have got.

A ``workflow`` node names its child in its output once it is done and in its ``node.waiting``
event while it waits, so any process on the database can find it. The execution's detail
shows each such node's child with its status and node counts, so a client (the dashboard's
graph) can draw a sub-workflow as one node with its progress. Nothing here is masked: only
ids, states and counts are shown, never the child's data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrion.api.convert import execution_state
from orchestrion.api.models import ChildProgress
from orchestrion.core.reasons import WaitReason
from orchestrion.core.record_types import RecordType
from orchestrion.core.result import ExecutionResult, NodeResult
from orchestrion.core.states import NodeState
from orchestrion.errors import ErrorCategory, ExecutionNotFound

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine

__all__ = ["MAX_CHILDREN", "child_progress"]

# An execution's detail reads at most this many children (each costs two reads): a workflow
# with more workflow nodes shows the first ones' progress only.
MAX_CHILDREN = 50

_DONE = frozenset({NodeState.COMPLETED, NodeState.SKIPPED})
_FAILED = frozenset({NodeState.FAILED})


async def child_progress(engine: Engine, result: ExecutionResult) -> dict[str, ChildProgress]:
    """Each node of ``result`` that started a child execution -> that child's progress."""
    found = _named_in_outputs(result)
    # A node waiting for its child, or failed by it, names it only in its wait's event.
    unnamed = [
        node_id
        for node_id, node in result.nodes.items()
        if node_id not in found and _names_its_child_in_a_wait(node)
    ]
    if unnamed:
        found.update(await _named_in_waits(engine, result.execution_id, set(unnamed)))
    progress: dict[str, ChildProgress] = {}
    for node_id, child in list(found.items())[:MAX_CHILDREN]:
        try:
            record = await engine.reads.execution(child)
        except ExecutionNotFound:  # erased by retention, or an id the node made up
            continue
        if record.parent_execution_id != result.execution_id or record.parent_node_id != node_id:
            continue  # an output that names another execution: not this node's child
        child_result = await engine.result(child, record=record)
        states = [node.state for node in child_result.nodes.values()]
        progress[node_id] = ChildProgress(
            execution_id=child,
            status=execution_state(child_result.status),
            nodes_total=len(states),
            nodes_done=sum(state in _DONE for state in states),
            nodes_failed=sum(state in _FAILED for state in states),
        )
    return progress


def _names_its_child_in_a_wait(node: NodeResult) -> bool:
    if node.state is NodeState.WAITING:
        return node.wait_reason == WaitReason.CHILD
    failed_by_child = (node.error or {}).get("category") == ErrorCategory.CHILD_FAILED
    return node.state is NodeState.FAILED and failed_by_child


def _named_in_outputs(result: ExecutionResult) -> dict[str, str]:
    found: dict[str, str] = {}
    for node_id, node in result.nodes.items():
        output = node.output
        if node.state is NodeState.WAITING or not isinstance(output, dict):
            continue  # a waiting node's output is an earlier attempt's: its wait names the child
        child = output.get("child_execution_id")
        if isinstance(child, str) and child:
            found[node_id] = child
    return found


async def _named_in_waits(engine: Engine, execution_id: str, nodes: set[str]) -> dict[str, str]:
    """The child each of ``nodes`` waits for: named by its latest ``node.waiting`` event."""
    found: dict[str, str] = {}
    after, size = 0, 1000
    while True:
        page = await engine.reads.events(execution_id, after, size, types=[RecordType.NODE_WAITING])
        for event in page:
            data = event.data or {}
            child = data.get("child_execution_id")
            if event.node_id in nodes and isinstance(child, str) and child:
                found[event.node_id] = child
        if len(page) < size:
            return found
        after = page[-1].seq
