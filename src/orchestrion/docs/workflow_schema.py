"""The JSON Schema of workflow files shipped in the package, built for the built-in handlers.

    python -m orchestrion.docs.workflow_schema > src/orchestrion/definition/workflow.schema.json

A test checks the shipped file against this output (``definition/json_schema.py`` builds it).
"""

from __future__ import annotations

from orchestrion.definition.json_schema import schema_text
from orchestrion.handlers.builtin import builtin_specs

__all__ = ["render"]


def render() -> str:
    """The schema for the built-in handlers, as the shipped file holds it."""
    return schema_text(builtin_specs())


if __name__ == "__main__":
    print(render(), end="")
