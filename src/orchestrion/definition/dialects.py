"""The workflow formats we accept, detected by shape and converted to the canonical dict.

* ``canonical`` (references 001/003): ``{name, dag: {nodes: [...]}}``, passed through.
* ``swarmlite`` (reference 000): ``{workflow_id, tasks: [{id, type, depends_on, config,
  data_classification}], retry_policy, compensation_handlers}``.
* ``agent_platform`` (reference 004): ``{workflow: {id, name, version, config, triggers,
  tasks: [{id, agent, depends_on, config, inputs, outputs}], routing, error_handling,
  success_criteria}}``.

Conversion never raises: what cannot be converted becomes a ``DefinitionIssue`` located by its
source path, and the canonical model then reports the rest. ``Conversion.source_path`` maps a
path in the canonical dict back to the path the user wrote, for line numbers and field names.
Each converter has its module: ``dialect_swarmlite.py``, ``dialect_agents.py``; the
``Conversion`` they fill is ``conversion.py``.
"""

from __future__ import annotations

from typing import Any

from orchestrion.definition.conversion import Conversion, Dialect, PathPart, SourcePath

__all__ = [
    "UNKNOWN_FORMAT_MESSAGE",
    "Conversion",
    "Dialect",
    "PathPart",
    "SourcePath",
    "convert",
    "detect_dialect",
]


UNKNOWN_FORMAT_MESSAGE = (
    "cannot tell the workflow format: expected `name`+`dag`, `workflow_id`+`tasks`, or `workflow:`"
)


def detect_dialect(data: dict[str, Any]) -> Dialect | None:
    """Which format ``data`` is written in, by its top-level keys; None if it is none of them."""
    if isinstance(data.get("workflow"), dict):
        return "agent_platform"
    if "workflow_id" in data or ("tasks" in data and "dag" not in data):
        return "swarmlite"
    if "dag" in data or "name" in data:
        return "canonical"
    return None


def convert(data: dict[str, Any]) -> Conversion:
    """Detect the dialect of ``data`` and convert it; unknown shapes give one issue."""
    dialect = detect_dialect(data)
    # Each converter is imported when a definition is written in its dialect: a process that
    # loads only canonical definitions does not pay for them at start.
    if dialect == "agent_platform":
        from orchestrion.definition.dialect_agents import AgentPlatform

        return AgentPlatform(data).convert()
    if dialect == "swarmlite":
        from orchestrion.definition.dialect_swarmlite import SwarmLite

        return SwarmLite(data).convert()
    if dialect == "canonical":
        return Conversion("canonical", dict(data))
    conversion = Conversion("canonical", {}, recognised=False)
    conversion.issue(UNKNOWN_FORMAT_MESSAGE, (), code="unknown_format")
    return conversion
