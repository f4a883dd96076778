"""The JSON Schema of workflow files, built from the definition model and the handlers' configs.

Every node's ``config`` is typed by its handler (``if handler is "http" then config is an
HttpConfig``), so an editor completes config keys and flags unknown ones. A config value may
also be a template (``"{{ inputs.n }}"``), rendered before the handler checks it, so each
config key accepts a template string besides its own type. Files in the two other formats
(``workflow_id`` + ``tasks``; ``workflow:`` with agent tasks) are recognised by their top-level
keys and checked for their outline only; ``orchestrion validate`` checks everything.

The schema ships in the package (``workflow.schema.json``, printed by ``orchestrion
schema``); ``orchestrion.docs.workflow_schema`` builds it for the built-in handlers, and a test
keeps the shipped file equal to what that builds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from orchestrion.definition.catalog import HandlerEntry
from orchestrion.definition.error_rules import ErrorRule
from orchestrion.definition.model import PRIORITY_NAMES, WorkflowSpec
from orchestrion.definition.routing import RoutingRule

__all__ = ["SCHEMA_FILE", "SCHEMA_ID", "build_schema", "schema_text", "shipped_schema_text"]

SCHEMA_FILE = "workflow.schema.json"
SCHEMA_ID = "urn:orchestrion:workflow-schema"

# A string holding a Jinja expression or statement: rendered before the config is checked.
_TEMPLATE = {"type": "string", "pattern": r"\{\{|\{%", "description": "a template"}


def _templatable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each property also accepting a template string."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return schema
    typed = {}
    for key, prop in properties.items():
        keep = {k: v for k, v in prop.items() if k in ("title", "description", "default")}
        rest = {k: v for k, v in prop.items() if k not in keep}
        typed[key] = {**keep, "anyOf": [rest, _TEMPLATE]}
    return {**schema, "properties": typed}


def _outline(title: str, required: list[str], description: str) -> dict[str, Any]:
    return {"title": title, "type": "object", "required": required, "description": description}


def _shorthands(node: dict[str, Any], workflow: dict[str, Any]) -> None:
    """The short forms the model's before-validators accept, which its schema cannot show."""
    props = node["properties"]
    props["compensate"]["anyOf"].insert(
        0,
        {
            "type": "string",
            "description": "a handler's name, or else a python function's name (the python"
            " handler)",
        },
    )
    props["priority"] = {
        "default": props["priority"].get("default"),
        "anyOf": [{"type": "integer"}, {"enum": sorted(PRIORITY_NAMES)}],
    }
    workflow["properties"]["version"]["anyOf"].insert(0, {"type": "number"})
    criteria = workflow["properties"]["success_criteria"]["items"]
    workflow["properties"]["success_criteria"]["items"] = {
        "anyOf": [{"type": "string", "description": "the condition, required"}, criteria]
    }


def _lifecycle_rules(defs: dict[str, Any]) -> None:
    """``routing`` and ``error_handling`` entries: kept as mappings by the model (checked by
    ``definition/routing.py`` and ``definition/error_rules.py``), described here as rules."""
    workflow = defs["WorkflowSpec"]["properties"]
    for section, model in (("routing", "RoutingRule"), ("error_handling", "ErrorRule")):
        workflow[section]["items"] = {"$ref": f"#/$defs/{model}"}
    for model, keys in (
        ("RoutingRule", ("approvers", "recipients")),
        ("ErrorRule", ("notify", "tasks")),
    ):
        props = defs[model]["properties"]
        for key in keys:  # one name is shorthand for a list of one
            props[key] = {"anyOf": [{"type": "string"}, props[key]], "default": []}


def build_schema(handlers: Sequence[HandlerEntry]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a workflow file whose nodes use ``handlers``."""
    configs: list[tuple[HandlerEntry, type[BaseModel]]] = [
        (spec, spec.config_model) for spec in handlers if spec.config_model is not None
    ]
    models: list[tuple[type[BaseModel], Any]] = [(WorkflowSpec, "validation")]
    models += [(RoutingRule, "validation"), (ErrorRule, "validation")]
    models += [(model, "validation") for _, model in configs]
    refs, combined = models_json_schema(models, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = combined["$defs"]
    for _, model in configs:
        name = refs[(model, "validation")]["$ref"].rsplit("/", 1)[-1]
        defs[name] = _templatable(defs[name])
    node = defs["NodeSpec"]
    _shorthands(node, defs["WorkflowSpec"])
    _lifecycle_rules(defs)
    node["properties"]["handler"]["examples"] = sorted(
        {name for spec in handlers for name in (spec.name, *spec.aliases)}
    )
    node["allOf"] = [
        {
            "if": {
                "properties": {"handler": {"enum": [spec.name, *spec.aliases]}},
                "required": ["handler"],
            },
            "then": {"properties": {"config": refs[(model, "validation")]}},
        }
        for spec, model in configs
    ]
    canonical = refs[(WorkflowSpec, "validation")]
    defs["TaskListWorkflow"] = _outline(
        "Workflow (workflow_id + tasks)", ["tasks"], "tasks of python functions with depends_on"
    )
    defs["TaskListWorkflow"]["properties"] = {
        "workflow_id": {"type": "string"},
        "tasks": {"type": "array", "items": {"type": "object", "required": ["id"]}},
    }
    defs["AgentWorkflow"] = _outline(
        "Workflow (workflow: with agent tasks)", ["workflow"], "agent tasks with depends_on"
    )
    defs["AgentWorkflow"]["properties"] = {
        "workflow": {"type": "object", "required": ["name"], "properties": {"name": {}}}
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Orchestrion workflow",
        "description": "A workflow definition: name + dag.nodes (or workflow_id + tasks, "
        "or workflow: with tasks).",
        "type": "object",
        "if": {"required": ["workflow"], "properties": {"workflow": {"type": "object"}}},
        "then": {"$ref": "#/$defs/AgentWorkflow"},
        "else": {
            "if": {
                "anyOf": [
                    {"required": ["workflow_id"]},
                    {"required": ["tasks"], "not": {"required": ["dag"]}},
                ]
            },
            "then": {"$ref": "#/$defs/TaskListWorkflow"},
            "else": canonical,
        },
        "$defs": dict(sorted(defs.items())),
    }


def schema_text(handlers: Sequence[HandlerEntry]) -> str:
    """The schema as the shipped file holds it."""
    return json.dumps(build_schema(handlers), indent=2, ensure_ascii=False) + "\n"


def shipped_schema_text() -> str:
    """The schema file shipped in the package."""
    return files("orchestrion.definition").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
