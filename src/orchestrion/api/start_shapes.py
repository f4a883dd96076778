"""The shape of a start's body, checked with the start's other problems: one 422 lists all.

A trigger (or a start of a stored definition) whose ``input_params`` is no object, or whose
override of a node is no object, used to be refused by the body's validation alone, naming
that one problem; the inputs' and the other overrides' problems came only with the next
try. The body's models take any JSON value there (their schema still says "object"), and
``start_parts`` splits what was sent into the parts of the right shape and one issue per
part of the wrong one, naming its field path as the body's validation did
(``body.input_params``, ``body.node_overrides.fetch``, or a top-level node key
``body.fetch``). ``refuse`` then asks the engine to check the parts
that are well shaped (``Engine.check_start``) and raises one ``DefinitionError`` with the
shape issues and the engine's together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrion.engine.facade import Engine
from orchestrion.engine.trigger_checks import INPUTS, OVERRIDES
from orchestrion.errors import DefinitionError, DefinitionIssue

__all__ = ["StartParts", "body_fields", "refuse", "start_parts"]

_JSON_NAMES = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}


@dataclass(slots=True)
class StartParts:
    """A start body's inputs and overrides of the right shape, and the issues of the rest."""

    inputs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    issues: list[DefinitionIssue] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # INPUTS, OVERRIDES: whose shape is off


def _what(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    return _JSON_NAMES.get(type(value), type(value).__name__)


def start_parts(inputs: Any, overrides: Any, extra: Mapping[str, Any]) -> StartParts:
    """Split a body's ``input_params``, ``node_overrides`` and top-level node keys
    (``extra``, reference 003's form) by shape: every misshapen one is an issue."""
    parts = StartParts()
    misshapen = 0  # issues of the overrides
    if isinstance(inputs, dict):
        parts.inputs = inputs
    else:
        message = f"input_params must be an object of input names to values, not {_what(inputs)}"
        parts.issues.append(DefinitionIssue(message, field="body.input_params", code="dict_type"))
        parts.sources.append(INPUTS)
    patches = [(node, f"body.{node}", patch) for node, patch in extra.items()]
    if isinstance(overrides, dict):
        patches += [(n, f"body.node_overrides.{n}", patch) for n, patch in overrides.items()]
    else:
        message = (
            f"node_overrides must be an object of node ids to overrides, not {_what(overrides)}"
        )
        parts.issues.append(DefinitionIssue(message, field="body.node_overrides", code="dict_type"))
        misshapen += 1
    for node, path, patch in patches:
        if isinstance(patch, dict):
            parts.overrides[node] = {**parts.overrides.get(node, {}), **patch}
        else:
            message = f"an override must be an object of config keys, not {_what(patch)}"
            parts.issues.append(DefinitionIssue(message, node=node, field=path, code="dict_type"))
            misshapen += 1
    if misshapen:
        parts.sources.append(OVERRIDES)
    return parts


async def refuse(engine: Engine, definition_id: str, parts: StartParts) -> None:
    """Raise the ``DefinitionError`` of a start with misshapen parts: theirs, and whatever
    the engine finds wrong with the parts of the right shape, in one list."""
    issues, sources = list(parts.issues), list(parts.sources)
    try:
        await engine.check_start(definition_id, parts.inputs, parts.overrides)
    except DefinitionError as exc:
        issues += exc.issues
        sources += [source for source in exc.sources if source not in sources]
    order = {INPUTS: 0, OVERRIDES: 1}
    sources.sort(key=lambda source: order.get(source, 2))
    raise DefinitionError(
        issues, source=" and ".join(sources), sources=tuple(sources), request=True
    )


def body_fields(body: Any) -> tuple[Any, Any, Mapping[str, Any]]:
    """A start body model's ``input_params``, ``node_overrides`` and top-level node keys."""
    return body.input_params, body.node_overrides, body.model_extra or {}
