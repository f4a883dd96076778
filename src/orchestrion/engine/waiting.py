"""How long each node's current attempt waited on a person or a timer, from the journal.

A node that waits (an approval, a delay, a child workflow) keeps its attempt and its first
start, so its duration includes the wait; ``waited`` says how much of it was waiting. Each
``node.waiting`` record opens a wait; ``node.woken`` closes it, or the node's end (a decision
completes or fails it at once). A wait still open is counted up to ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from orchestrion.core.record_types import RecordType
from orchestrion.core.states import NodeState
from orchestrion.store.base import EventRecord, NodeRunRecord

__all__ = ["WAIT_EVENT_TYPES", "waited_seconds"]

WAIT_EVENT_TYPES: list[str] = [RecordType.NODE_WAITING, RecordType.NODE_WOKEN]


def waited_seconds(
    events: Iterable[EventRecord], runs: Mapping[str, NodeRunRecord], now: float
) -> dict[str, float]:
    """Seconds each node's current attempt spent waiting (nodes that never waited: absent)."""
    total: dict[str, float] = {}
    open_since: dict[str, float] = {}
    for event in events:
        node = event.node_id
        run = runs.get(node) if node is not None else None
        if node is None or run is None or event.attempt != run.attempt:
            continue
        if event.type == RecordType.NODE_WAITING:
            open_since[node] = event.at
            total.setdefault(node, 0.0)
        elif event.type == RecordType.NODE_WOKEN and node in open_since:
            total[node] += max(0.0, event.at - open_since.pop(node))
    for node, since in open_since.items():
        run = runs[node]
        if run.state is NodeState.WAITING:
            end = now
        elif run.finished_at is not None:
            end = run.finished_at
        else:
            continue  # woken and running again: the close is in flight
        total[node] += max(0.0, end - since)
    return total
