"""Which nodes of an execution hold classified data, across parent and child executions.

Masking follows the classification the store's encryption at rest follows (docs/GOVERNANCE.md,
"What is encrypted"), with the policy's masked classifications in place of its encrypted ones:

- a node's own classification, as stored in its definition (inherited ones included);
- a child execution, started by any node of an execution that holds classified data, is
  classified whole at the highest level its parent holds: its inputs are the parent's data;
- a node that started a child holding classified data (a ``workflow`` node, a ``map`` of
  sub-workflows) holds the child's result or quotes its error, so it is classified at the
  child's level, and so is every node that can read it (``definition/reads.py``), as far as
  their stored classification is lower.

What an execution "holds" is the highest of: its definition's classified nodes, what it holds
through its parent, and the levels of its children. ``Lineage`` answers it for one request
(memoised per request); definitions, and finished children, are cached for the process.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrion.core.record_types import RecordType
from orchestrion.core.states import FINAL_EXECUTION_STATES
from orchestrion.definition.model import WorkflowSpec
from orchestrion.definition.reads import readable_nodes
from orchestrion.engine.nesting import DEPTH_CEILING
from orchestrion.engine.reads import EngineReads
from orchestrion.errors import OrchestrionError
from orchestrion.store.base import DefinitionRecord, ExecutionRecord
from orchestrion.store.sealing import child_ids

__all__ = ["Held", "Lineage", "facts_of", "highest"]

RANK = {"public": 0, "internal": 1, "pii": 2, "phi": 3}
# Handlers that start child executions.
_STARTERS = frozenset({"workflow", "map"})
_CACHE_SIZE = 1024
_MAX_DEPTH = DEPTH_CEILING  # parent/child links followed at most: as deep as children go
_WAITING = [RecordType.NODE_WAITING.value]


def highest(levels: Iterable[str | None]) -> str | None:
    """The highest classification of ``levels`` (None when there is none)."""
    best: str | None = None
    for level in levels:
        if level is not None and (best is None or RANK.get(level, 0) > RANK.get(best, 0)):
            best = level
    return best


@dataclass(slots=True)
class _Facts:
    """What masking needs of one definition (definitions never change under their id)."""

    handlers: dict[str, str]
    classifications: dict[str, str]
    spec: dict[str, Any]
    starters: frozenset[str]
    readers: dict[str, tuple[str, ...]] | None = None  # node -> nodes that read it (lazy)

    def read_by(self) -> dict[str, tuple[str, ...]]:
        if self.readers is None:
            reverse: dict[str, list[str]] = {n: [] for n in self.handlers}
            try:
                reads = readable_nodes(WorkflowSpec.model_validate(self.spec))
            except ValueError:  # a stored spec no longer valid: everything reads everything
                reads = {n: tuple(self.handlers) for n in self.handlers}
            for reader, sources in reads.items():
                for source in sources:
                    reverse.setdefault(source, []).append(reader)
            self.readers = {n: tuple(r) for n, r in reverse.items()}
        return self.readers


@dataclass(frozen=True, slots=True)
class Held:
    """An execution's masked nodes (node id -> classification) and, when it is classified
    whole through its parent, that classification."""

    classified: dict[str, str] = field(default_factory=dict)
    whole: str | None = None
    handlers: dict[str, str] = field(default_factory=dict)


_FACTS: OrderedDict[str, _Facts] = OrderedDict()
# Finished executions: the classifications they and their descendants hold (raw, unfiltered).
_DOWN: OrderedDict[str, frozenset[str]] = OrderedDict()


def _remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
    cache[key] = value
    if len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)


def facts_of(definition: DefinitionRecord) -> _Facts:
    found = _FACTS.get(definition.id)
    if found is not None:
        _FACTS.move_to_end(definition.id)
        return found
    nodes = definition.spec.get("dag", {}).get("nodes", [])
    handlers: dict[str, str] = {}
    classifications: dict[str, str] = {}
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, dict) and isinstance(node.get("id"), str):
            handlers[node["id"]] = str(node.get("handler", ""))
            classifications[node["id"]] = str(node.get("data_classification") or "public")
    starters = frozenset(n for n, h in handlers.items() if h in _STARTERS)
    facts = _Facts(handlers, classifications, definition.spec, starters)
    _remember(_FACTS, definition.id, facts)
    return facts


class Lineage:
    """Answers ``Held`` for the executions of one request; ``masks`` is the policy's test."""

    def __init__(self, reads: EngineReads, masks: Callable[[str], bool]) -> None:
        self._reads = reads
        self._masks = masks
        self._records: dict[str, ExecutionRecord | None] = {}
        self._held: dict[tuple[str, str | None], Held] = {}

    async def of(self, record: ExecutionRecord) -> Held:
        return await self._of(record, None, 0)

    async def _of(self, record: ExecutionRecord, without: str | None, depth: int) -> Held:
        key = (record.id, without)
        found = self._held.get(key)
        if found is not None:
            return found
        facts = await self._facts(record.definition_id)
        masks = self._masks
        classified = {n: c for n, c in facts.classifications.items() if masks(c)}
        if facts.starters and depth < _MAX_DEPTH:
            raised = await self._children_levels(record.id, facts, without, depth)
            if raised:
                classified = _raise(facts, classified, raised)
        whole: str | None = None
        if record.parent_execution_id and depth < _MAX_DEPTH:
            parent = await self._record(record.parent_execution_id)
            if parent is not None:
                held = await self._of(parent, record.id, depth + 1)
                whole = highest([held.whole, *held.classified.values()])
        found = Held(classified, whole, facts.handlers)
        self._held[key] = found
        return found

    async def _facts(self, definition_id: str) -> _Facts:
        found = _FACTS.get(definition_id)
        if found is not None:
            return found
        return facts_of(await self._reads.definition(definition_id))

    async def _record(self, execution_id: str) -> ExecutionRecord | None:
        if execution_id in self._records:
            return self._records[execution_id]
        try:
            record: ExecutionRecord | None = await self._reads.execution(execution_id)
        except OrchestrionError:  # erased by retention: nothing of it is shown anyway
            record = None
        self._records[execution_id] = record
        return record

    async def _children_levels(
        self, execution_id: str, facts: _Facts, without: str | None, depth: int
    ) -> dict[str, str]:
        """Starter node -> the highest masked classification its children hold."""
        levels: dict[str, str] = {}
        for node_id, child in await self._children(execution_id, facts):
            if child == without:
                continue
            record = await self._record(child)
            if record is None or not _child_of(record, execution_id, node_id):
                continue  # an output that names another execution: not this node's child
            held = [c for c in await self._down(record, depth + 1) if self._masks(c)]
            level = highest([levels.get(node_id), *held])
            if level is not None:
                levels[node_id] = level
        return levels

    async def _down(self, record: ExecutionRecord, depth: int) -> frozenset[str]:
        """Every classification ``record`` and its descendants hold (policy aside)."""
        cached = _DOWN.get(record.id)
        if cached is not None:
            return cached
        facts = await self._facts(record.definition_id)
        held = set(facts.classifications.values())
        if facts.starters and depth < _MAX_DEPTH:
            for node_id, child in await self._children(record.id, facts):
                found = await self._record(child)
                if found is not None and _child_of(found, record.id, node_id):
                    held |= await self._down(found, depth + 1)
        result = frozenset(held)
        if record.status in FINAL_EXECUTION_STATES:  # its children are settled too
            _remember(_DOWN, record.id, result)
        return result

    async def _children(self, execution_id: str, facts: _Facts) -> list[tuple[str, str]]:
        """(starter node, child id): named in outputs once done, in waits while waiting."""
        found: list[tuple[str, str]] = []
        unnamed = set(facts.starters)
        for run in await self._reads.node_runs(execution_id):
            if run.node_id in facts.starters and isinstance(run.output, dict):
                found.extend((run.node_id, child) for child in child_ids(run.output))
                unnamed.discard(run.node_id)
        if not unnamed:
            return found
        after = 0
        while True:  # a node waiting for (or failed by) its child names it in its wait
            page = await self._reads.events(execution_id, after, 1000, _WAITING)
            for event in page:
                named = (event.data or {}).get("child_execution_id")
                if event.node_id in facts.starters and isinstance(named, str) and named:
                    found.append((event.node_id, named))
            if len(page) < 1000:
                return found
            after = page[-1].seq


def _child_of(record: ExecutionRecord, parent: str, node_id: str) -> bool:
    """Whether ``record`` was started by ``node_id`` of ``parent`` (a map's item by
    ``node[index]``)."""
    node = record.parent_node_id
    if record.parent_execution_id != parent or node is None:
        return False
    return node == node_id or (node.startswith(f"{node_id}[") and node.endswith("]"))


def _raise(facts: _Facts, classified: dict[str, str], raised: dict[str, str]) -> dict[str, str]:
    """``classified`` with each starter raised to its children's level, and every node that
    can read it (transitively) raised as far as its stored classification is lower."""
    out = dict(classified)
    readers = facts.read_by()
    stack = list(raised.items())
    while stack:
        node_id, level = stack.pop()
        own: str = out.get(node_id) or facts.classifications.get(node_id, "public")
        if RANK.get(own, 0) >= RANK.get(level, 0) and node_id in out:
            continue
        out[node_id] = level if RANK.get(level, 0) > RANK.get(own, 0) else own
        stack.extend((reader, level) for reader in readers.get(node_id, ()))
    return out
