"""The handlers that ship with Orchestrion, as one list for the registry."""

from __future__ import annotations

from orchestrion.handlers import agents, control, http, io, llm, python, subworkflow
from orchestrion.handlers import map as map_handler
from orchestrion.handlers.base import HandlerSpec

__all__ = ["builtin_specs"]


def builtin_specs() -> list[HandlerSpec]:
    """Every built-in handler spec; also registers the example python functions."""
    # Imported for its side effect: the example functions join the python registry.
    from orchestrion.handlers import examples  # noqa: F401

    return [
        io.INPUT_SPEC,
        io.OUTPUT_SPEC,
        io.NOOP_SPEC,
        http.SPEC,
        llm.SPEC,
        python.SPEC,
        control.CONDITION_SPEC,
        control.DELAY_SPEC,
        control.APPROVAL_SPEC,
        map_handler.MAP_SPEC,
        subworkflow.WORKFLOW_SPEC,
        *agents.SPECS,
    ]
