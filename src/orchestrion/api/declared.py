"""What a caller without the admin role sees of a stored definition (docs/GOVERNANCE.md,
"Masking").

Definitions are code, but a node's config may hold literal values (a ``noop``'s ``value``,
an ``input`` node's ``defaults``, a request body) that are the very data its classification
protects. So, for a caller whose node outputs are masked, in a definition with nodes of a
masked classification (as stored: inherited classifications included):

- every value in the ``config`` (and the compensation's ``config``) of such a node is replaced
  by ``[masked: <classification>]``, its keys kept (pattern-masked, as every key shown), so
  the shape of the node stays readable;
- the config of its other nodes, and the declared ``inputs`` (defaults, examples), are
  pattern-masked; the inputs' ``default`` values are hidden whole when the ``input`` node is
  classified; so are its triggers' ``inputs`` (and a schedule's, ``routes/schedules.py``);
- the text the definition was submitted as (``source``) is replaced by
  ``[masked: <highest classification>]``: text cannot be masked by structure;
- free text, the descriptions (of the workflow, its nodes, inputs, success criteria, error
  rules, triggers) and the nodes' display names, is pattern-masked.

Ids, handlers, dependencies, conditions and classifications stay as declared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrion.api.lineage import highest
from orchestrion.governance.masking import Masker

__all__ = ["declared", "input_level", "trigger_inputs"]


def declared(
    spec: dict[str, Any], source: str | None, masker: Masker, masks: Callable[[str], bool]
) -> tuple[dict[str, Any], str | None]:
    """``spec`` and ``source`` as a caller with masked outputs sees them."""
    dag = spec.get("dag")
    if not isinstance(dag, dict) or not isinstance(dag.get("nodes"), list):
        return spec, source
    nodes: list[Any] = dag["nodes"]
    levels = [_level(node, masks) for node in nodes]
    top = highest(levels)
    if top is None:
        return spec, source
    shown_nodes = [
        _node(node, level, masker) if isinstance(node, dict) else node
        for node, level in zip(nodes, levels, strict=True)
    ]
    # Free text (descriptions, node names) anywhere in the definition is pattern-masked.
    shown: dict[str, Any] = _described({**spec, "dag": {**dag, "nodes": shown_nodes}}, masker)
    hidden = next(
        (lv for n, lv in zip(nodes, levels, strict=True) if lv and _handler(n) == "input"), None
    )
    inputs = spec.get("inputs")
    if isinstance(inputs, dict):
        shown["inputs"] = _inputs(inputs, hidden, masker)
    for key in ("triggers", "on"):  # a trigger's inputs are the execution's inputs
        triggers = spec.get(key)
        if isinstance(triggers, list):
            shown[key] = [trigger_inputs(t, hidden, masker) for t in triggers]
    return shown, None if source is None else f"[masked: {top}]"


def input_level(spec: dict[str, Any], masks: Callable[[str], bool]) -> str | None:
    """The masked classification of the definition's ``input`` node, if it has one."""
    dag = spec.get("dag")
    nodes = dag.get("nodes") if isinstance(dag, dict) else None
    for node in nodes if isinstance(nodes, list) else ():
        if _handler(node) == "input":
            return _level(node, masks)
    return None


def trigger_inputs(trigger: Any, hidden: str | None, masker: Masker) -> Any:
    """A trigger (or a schedule) with its ``inputs`` hidden whole when the ``input`` node is
    classified (``hidden``), the rest pattern-masked."""
    if not isinstance(trigger, dict):
        return masker.mask_value(trigger)
    shown: dict[str, Any] = masker.mask_value(trigger)
    if hidden is not None and trigger.get("inputs") is not None:
        shown["inputs"] = _hide(trigger["inputs"], hidden, masker)
    return shown


def _handler(node: Any) -> str | None:
    return node.get("handler") if isinstance(node, dict) else None


def _level(node: Any, masks: Callable[[str], bool]) -> str | None:
    if not isinstance(node, dict):
        return None
    level = str(node.get("data_classification") or "public")
    return level if masks(level) else None


def _node(node: dict[str, Any], level: str | None, masker: Masker) -> dict[str, Any]:
    shown = dict(node)
    if isinstance(node.get("name"), str):  # a label, free text like a description
        shown["name"] = masker.mask_text(node["name"])
    if "config" in node:
        shown["config"] = (
            masker.mask_value(node["config"])
            if level is None
            else _hide(node["config"], level, masker)
        )
    compensate = node.get("compensate")
    if isinstance(compensate, dict) and "config" in compensate:
        config = compensate["config"]
        hidden = masker.mask_value(config) if level is None else _hide(config, level, masker)
        shown["compensate"] = {**compensate, "config": hidden}
    return shown


def _inputs(inputs: dict[str, Any], hidden: str | None, masker: Masker) -> dict[str, Any]:
    masked: dict[str, Any] = masker.mask_value(inputs)
    if hidden is None:
        return masked
    return {
        name: {**item, "default": f"[masked: {hidden}]"}
        if isinstance(item, dict) and item.get("default") is not None
        else item
        for name, item in masked.items()
    }


_FREE_TEXT = frozenset({"description", "title", "label"})


def _described(value: Any, masker: Masker) -> Any:
    """``value`` with the text of its descriptions (and titles, labels) pattern-masked."""
    if isinstance(value, dict):
        return {
            key: masker.mask_text(item)
            if key in _FREE_TEXT and isinstance(item, str)
            else _described(item, masker)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_described(item, masker) for item in value]
    return value


def _hide(value: Any, level: str, masker: Masker) -> Any:
    """``value`` with its keys kept (pattern-masked) and every value replaced."""
    if isinstance(value, dict):
        return masker.mask_entries([(k, _hide(v, level, masker)) for k, v in value.items()])
    if isinstance(value, list):
        return [_hide(item, level, masker) for item in value]
    return None if value is None else f"[masked: {level}]"
