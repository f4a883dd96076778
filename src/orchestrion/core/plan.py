"""A validated workflow compiled into index arrays, so the state machine never searches.

Built once per definition version and shared by every execution of it: node ids map to dense
integers, parents and children are tuples of those integers, and the topological order is
precomputed (compensation walks it backwards). Routing rules are nodes of the plan
(``definition/routing.py``: ``with_routing``), and error handling rules are resolved per node
(``definition/error_rules.py``), so the machine only looks them up.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrion.definition.model import (
    BRANCHING_HANDLER,
    NodeSpec,
    RetryPolicy,
    TriggerRule,
    WorkflowSpec,
)
from orchestrion.definition.routing import ROUTING_HANDLER, with_routing

if TYPE_CHECKING:
    from orchestrion.definition.error_rules import ErrorAction

__all__ = ["Plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    """The graph of one workflow definition, by node index."""

    spec: WorkflowSpec
    ids: tuple[str, ...]
    index: dict[str, int]
    nodes: tuple[NodeSpec, ...]
    parents: tuple[tuple[int, ...], ...]
    children: tuple[tuple[int, ...], ...]
    roots: tuple[int, ...]
    topo_order: tuple[int, ...]
    topo_rank: tuple[int, ...]
    retry: tuple[RetryPolicy, ...]
    timeout: tuple[float | None, ...]
    trigger_rule: tuple[TriggerRule, ...]
    branching: tuple[bool, ...]  # condition nodes: their output names the children that run
    routing: tuple[bool, ...] = ()  # the nodes of routing rules
    watchers: tuple[int, ...] = ()  # routing nodes on the run: skipped when nothing else is left
    on_error: tuple[tuple[tuple[frozenset[str], ErrorAction], ...], ...] = ()  # per node

    def error_action(self, i: int, category: str) -> ErrorAction | None:
        """The error handling rule that decides a failure of ``category`` of node ``i``."""
        if not self.on_error:
            return None
        for categories, action in self.on_error[i]:
            if category in categories or "*" in categories:
                return action
        return None

    @classmethod
    def build(cls, spec: WorkflowSpec) -> Plan:
        """Compile ``spec``; it must already be validated (no unknown deps, no cycles)."""
        spec = with_routing(spec)
        nodes = spec.dag.nodes
        ids = tuple(node.id for node in nodes)
        index = {node_id: i for i, node_id in enumerate(ids)}
        parents = tuple(tuple(index[dep] for dep in node.dependencies) for node in nodes)
        children_lists: list[list[int]] = [[] for _ in nodes]
        for child, node_parents in enumerate(parents):
            for parent in node_parents:
                children_lists[parent].append(child)
        children = tuple(tuple(c) for c in children_lists)
        topo = _topological_order(parents, children)
        routing = tuple(node.handler == ROUTING_HANDLER for node in nodes)
        rank = [0] * len(nodes)
        for position, i in enumerate(topo):
            rank[i] = position
        return cls(
            spec=spec,
            ids=ids,
            index=index,
            nodes=nodes,
            parents=parents,
            children=children,
            roots=tuple(i for i, p in enumerate(parents) if not p),
            topo_order=tuple(topo),
            topo_rank=tuple(rank),
            retry=tuple(spec.effective_retry(node) for node in nodes),
            timeout=tuple(spec.effective_timeout(node) for node in nodes),
            trigger_rule=tuple(node.trigger_rule for node in nodes),
            branching=tuple(node.handler == BRANCHING_HANDLER for node in nodes),
            routing=routing if any(routing) else (),  # () keeps the hot path to one test
            watchers=tuple(
                i for i, node in enumerate(nodes) if routing[i] and not node.dependencies
            ),
            on_error=_on_error(spec, routing),
        )

    def __len__(self) -> int:
        return len(self.ids)


def _on_error(
    spec: WorkflowSpec, routing: tuple[bool, ...]
) -> tuple[tuple[tuple[frozenset[str], ErrorAction], ...], ...]:
    if not spec.error_handling:
        return ()
    from orchestrion.definition.error_rules import error_actions  # here: few have rules

    rules = error_actions(spec)
    shared = rules.get("*", [])
    return tuple(
        () if routing[i] else tuple(sorted([*rules.get(node.id, ()), *shared], key=_rule_order))
        for i, node in enumerate(spec.dag.nodes)
    )


def _rule_order(entry: tuple[frozenset[str], ErrorAction]) -> int:
    return entry[1].rule


def _topological_order(
    parents: tuple[tuple[int, ...], ...], children: tuple[tuple[int, ...], ...]
) -> list[int]:
    """Kahn's algorithm, stable in definition order; raises if a cycle slipped through."""
    remaining = [len(p) for p in parents]
    ready = deque(i for i, count in enumerate(remaining) if count == 0)
    order: list[int] = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for child in children[i]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    if len(order) != len(parents):
        raise ValueError("workflow graph has a cycle; validate the definition before planning")
    return order
