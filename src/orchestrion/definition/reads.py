"""What each node can read, and the classification that follows from it.

``readable_nodes`` gives, per node, the node ids whose outputs its templates, conditions,
compensation and handler may see: its dependencies, then the nodes its templates name (all
ancestors when a template indexes ``nodes[...]``, which cannot be resolved statically). The
engine hands a task exactly these outputs.

``propagate_classification`` applies the rule that follows: a node that can read a classified
output holds that data too, so it inherits the highest classification it can read
(``public`` < ``internal`` < ``pii`` < ``phi``), transitively. A node that declares its own
``data_classification`` keeps it: declaring ``public`` on a node that reads ``pii`` is the
author's explicit decision that its output carries none (a count, a yes/no).
"""

from __future__ import annotations

from orchestrion.definition.model import BRANCHING_HANDLER, DataClassification, WorkflowSpec
from orchestrion.templates.rendering import condition_references, template_references

__all__ = ["propagate_classification", "readable_nodes"]

_RANK = {
    DataClassification.PUBLIC: 0,
    DataClassification.INTERNAL: 1,
    DataClassification.PII: 2,
    DataClassification.PHI: 3,
}


def readable_nodes(spec: WorkflowSpec) -> dict[str, tuple[str, ...]]:
    """Node id -> the ids whose outputs it may read, dependencies first (see the docstring)."""
    nodes = spec.dag.nodes
    ids = {node.id for node in nodes}
    parents = {node.id: node.dependencies for node in nodes}
    reads: dict[str, tuple[str, ...]] = {}
    for node in nodes:
        referenced = template_references(node.config)
        if node.when:
            referenced |= condition_references(node.when)
        if node.handler == BRANCHING_HANDLER:
            for case in node.config.get("cases") or ():
                if isinstance(case, dict) and isinstance(case.get("when"), str):
                    referenced |= condition_references(case["when"])
        if "nodes" in referenced:
            referenced |= _ancestors(parents, node.id)
        if node.compensate is not None:
            referenced |= template_references(node.compensate.config)
        extra = sorted((referenced & ids) - set(node.dependencies))
        reads[node.id] = tuple(dict.fromkeys([*node.dependencies, *extra]))
    return reads


def propagate_classification(spec: WorkflowSpec) -> WorkflowSpec:
    """``spec`` with inherited classifications set (the same object when nothing changes)."""
    declared = {
        node.id: node.data_classification
        for node in spec.dag.nodes
        if "data_classification" in node.model_fields_set
    }
    if not any(_RANK[c] > 0 for c in (n.data_classification for n in spec.dag.nodes)):
        return spec  # nothing classified: the common case costs one pass
    reads = readable_nodes(spec)
    effective = {node.id: node.data_classification for node in spec.dag.nodes}
    changed = True
    while changed:  # a fixed point: classifications only rise, so this ends
        changed = False
        for node in spec.dag.nodes:
            if node.id in declared:
                continue
            best = effective[node.id]
            for source in reads[node.id]:
                if source in effective and _RANK[effective[source]] > _RANK[best]:
                    best = effective[source]
            if best is not effective[node.id]:
                effective[node.id] = best
                changed = True
    nodes = [
        node
        if effective[node.id] is node.data_classification
        else node.model_copy(update={"data_classification": effective[node.id]})
        for node in spec.dag.nodes
    ]
    if all(a is b for a, b in zip(nodes, spec.dag.nodes, strict=True)):
        return spec
    return spec.model_copy(update={"dag": spec.dag.model_copy(update={"nodes": tuple(nodes)})})


def _ancestors(parents: dict[str, tuple[str, ...]], node_id: str) -> set[str]:
    seen: set[str] = set()
    stack = list(parents.get(node_id, ()))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(parents.get(current, ()))
    return seen
