"""The handlers that ship with Orchestrion, known by name and imported on first use.

A run that uses only ``noop`` and ``condition`` does not pay for importing the http, llm,
python and agent handlers (and what they import): the registry knows every built-in name and
alias from the table below and loads a spec the first time it is looked up. A test checks the
table against the specs themselves.
"""

from __future__ import annotations

import importlib
from functools import partial
from typing import TYPE_CHECKING

from orchestrion.handlers.base import HandlerSpec

if TYPE_CHECKING:
    from orchestrion.handlers.registry import HandlerRegistry

__all__ = ["BUILTIN_HANDLERS", "INTERNAL_HANDLERS", "builtin_specs", "register_builtins"]

# name, aliases, module under orchestrion.handlers, attribute holding the spec (a tuple of
# specs for the demo agents, searched by name).
BUILTIN_HANDLERS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("input", (), "io", "INPUT_SPEC"),
    ("output", (), "io", "OUTPUT_SPEC"),
    ("noop", (), "io", "NOOP_SPEC"),
    ("http", ("call_external_service",), "http", "SPEC"),
    ("llm", ("llm_service", "call_llm_service"), "llm", "SPEC"),
    ("python", (), "python", "SPEC"),
    ("condition", (), "control", "CONDITION_SPEC"),
    ("delay", ("timer", "sleep_until"), "control", "DELAY_SPEC"),
    ("approval", ("human_approval",), "control", "APPROVAL_SPEC"),
    ("map", ("foreach",), "map", "MAP_SPEC"),
    ("workflow", ("subworkflow", "child_workflow"), "subworkflow", "WORKFLOW_SPEC"),
    ("policy_analyzer", (), "agents", "SPECS"),
    ("gap_assessment", (), "agents", "SPECS"),
    ("risk_calculator", (), "agents", "SPECS"),
    ("implementation_planner", (), "agents", "SPECS"),
    ("report_generator", (), "agents", "SPECS"),
)


# Handlers the engine makes nodes of (a definition's `routing:` rules), never written in a
# definition: registered with the others, but not documented or offered as a node's handler.
INTERNAL_HANDLERS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("routing", (), "routing", "ROUTING_SPEC"),
)


def _load(name: str, module: str, attribute: str) -> HandlerSpec:
    found = getattr(importlib.import_module(f"orchestrion.handlers.{module}"), attribute)
    if module == "python":
        # Imported for its side effect: the example functions join the python registry.
        importlib.import_module("orchestrion.handlers.examples")
    specs: tuple[HandlerSpec, ...] = found if isinstance(found, tuple) else (found,)
    return next(spec for spec in specs if spec.name == name)


def register_builtins(registry: HandlerRegistry) -> None:
    """Make every built-in handler known to ``registry``, each imported on first lookup."""
    for name, aliases, module, attribute in (*BUILTIN_HANDLERS, *INTERNAL_HANDLERS):
        registry.register_lazy(name, aliases, partial(_load, name, module, attribute))


def builtin_specs() -> list[HandlerSpec]:
    """Every built-in handler spec, imported now."""
    return [_load(name, module, attr) for name, _aliases, module, attr in BUILTIN_HANDLERS]
