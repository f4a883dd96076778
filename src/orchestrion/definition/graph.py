"""A workflow's DAG as text diagrams: Mermaid (``flowchart``) and Graphviz DOT.

Each node is labelled with its id and handler; edges run from a dependency to its dependent.
Ids are never written raw into the diagram syntax: Mermaid gets generated ids with quoted
labels, DOT gets quoted and escaped ids, so any node id is safe.
"""

from __future__ import annotations

from orchestrion.definition.model import WorkflowSpec

__all__ = ["to_dot", "to_mermaid"]


def _mermaid_text(text: str) -> str:
    # Mermaid labels are quoted; entity codes keep quotes and markup characters literal.
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def to_mermaid(spec: WorkflowSpec, *, direction: str = "TD") -> str:
    """The DAG as a Mermaid flowchart."""
    keys = {node.id: f"n{i}" for i, node in enumerate(spec.dag.nodes)}
    lines = [f"flowchart {direction}"]
    for node in spec.dag.nodes:
        label = f"{_mermaid_text(node.id)}<br/><i>{_mermaid_text(node.handler)}</i>"
        lines.append(f'    {keys[node.id]}["{label}"]')
    for node in spec.dag.nodes:
        for dep in node.dependencies:
            if dep in keys:
                lines.append(f"    {keys[dep]} --> {keys[node.id]}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(spec: WorkflowSpec, *, rankdir: str = "LR") -> str:
    """The DAG as a Graphviz digraph."""
    lines = [
        f"digraph {_dot_quote(spec.name)} {{",
        f"    rankdir={rankdir};",
        "    node [shape=box, style=rounded];",
    ]
    ids = {node.id for node in spec.dag.nodes}
    for node in spec.dag.nodes:
        label = _dot_quote(f"{node.id}\n({node.handler})")
        lines.append(f"    {_dot_quote(node.id)} [label={label}];")
    for node in spec.dag.nodes:
        for dep in node.dependencies:
            if dep in ids:
                lines.append(f"    {_dot_quote(dep)} -> {_dot_quote(node.id)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
