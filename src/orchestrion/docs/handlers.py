"""The handler reference (docs/HANDLERS.md), generated from the handlers' config models.

    python -m orchestrion.docs.handlers > docs/HANDLERS.md

Each built-in handler's config keys, their types, defaults and whether they are required come
from its pydantic ``config_model``; a test checks the committed file against this output and
checks every example below against the model it illustrates.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import yaml
from pydantic.fields import FieldInfo

from orchestrion.handlers.base import HandlerSpec

__all__ = ["EXAMPLES", "render"]

# One node's config per handler: a test validates each against the handler's config model.
EXAMPLES: dict[str, dict[str, Any]] = {
    "input": {"defaults": {"topic": "sales"}, "required": ["user_id"]},
    "output": {"value": {"summary": "{{ summarize.output.text }}"}},
    "noop": {"value": {"ok": True}, "sleep": 0.1},
    "http": {
        "url": "https://api.example.com/users/{{ input.user_id }}",
        "method": "GET",
        "headers": {"Accept": "application/json"},
        "timeout": 10,
        "expected_status": [200],
    },
    "llm": {
        "prompt": "Summarise: {{ fetch.output.body }}",
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 300,
    },
    "python": {"function": "clean_dataframe", "params": {"columns": ["id", "value"]}},
    "condition": {
        "mode": "first",
        "cases": [{"when": "input.output.amount > 1000", "then": ["manual_review"]}],
        "default": ["auto_approve"],
    },
    "delay": {"seconds": "5m"},
    "approval": {"message": "Release {{ input.version }}?", "timeout": "1h"},
    "map": {
        "items": "{{ fetch.output.users }}",
        "handler": "http",
        "config": {"url": "https://api.example.com/users/{{ item.id }}"},
        "concurrency": 4,
    },
    "workflow": {"workflow": "enrich-user", "inputs": {"user_id": "{{ input.user_id }}"}},
    "policy_analyzer": {"inputs": {"policy": "{{ input.policy }}"}},
    "gap_assessment": {"inputs": {"findings": "{{ policy_analyzer.output }}"}},
    "risk_calculator": {"inputs": {"gaps": "{{ gap_assessment.output }}"}},
    "implementation_planner": {"inputs": {"risks": "{{ risk_calculator.output }}"}},
    "report_generator": {"inputs": {"plan": "{{ implementation_planner.output }}"}},
}

_HEADER = """\
# Handler reference

Every built-in handler, its config keys (the `config:` of a node), their types and defaults,
and an example. Generated from the handlers' config models by
`python -m orchestrion.docs.handlers`; do not edit by hand.

Any config value may be a template (`"{{ input.user_id }}"`, `"{{ fetch.output.body }}"`),
rendered before the handler checks it. Durations are seconds (`30`, `1.5`) or text (`"250ms"`,
`"30s"`, `"5m"`, `"1h30m"`, `"PT5M"`). `orchestrion schema` prints the JSON Schema of the
workflow format, with these configs typed, for editors.
"""


_DURATION = "seconds (30"  # how the Duration type's own schema describes itself


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if str(schema.get("description", "")).startswith(_DURATION):
        return "duration"
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        target: dict[str, Any] = defs.get(name, {})
        if "enum" in target:
            return " | ".join(json.dumps(v) for v in target["enum"])
        return name
    if "anyOf" in schema:
        parts = [_type(part, defs) for part in schema["anyOf"]]
        return " | ".join(dict.fromkeys(p for p in parts if p != "null")) + (
            " | null" if "null" in parts else ""
        )
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type")
    if kind == "array":
        return f"list[{_type(schema.get('items', {}), defs)}]"
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict) and values:
            return f"map[string, {_type(values, defs)}]"
        return "object"
    if isinstance(kind, str):
        return kind
    return "any"


def _factory_default(field: FieldInfo | None) -> str:
    """The default a ``default_factory`` makes: shown for an empty collection, else named."""
    factory = field.default_factory if field is not None else None
    if factory in (dict, list):
        return f"`{json.dumps(factory())}`"
    return "(computed)"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _section(spec: HandlerSpec) -> list[str]:
    lines = [f"## `{spec.name}`", ""]
    if spec.aliases:
        lines += ["Also named: " + ", ".join(f"`{alias}`" for alias in spec.aliases) + ".", ""]
    model = spec.config_model
    about = spec.description or (inspect.getdoc(model) if model is not None else "") or ""
    if about:
        lines += [about.strip(), ""]
    if model is None:
        return [*lines, "No config.", ""]
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, prop in schema.get("properties", {}).items():
        kind = _type(prop, defs)
        if key in required:
            default = "**required**"
        elif "default" in prop:
            default = f"`{json.dumps(prop['default'])}`"
        else:
            default = _factory_default(fields.get(key))
        description = prop.get("description", "")
        if description.startswith(_DURATION):
            description = ""
        lines.append(f"| `{key}` | {_cell(kind)} | {default} | {_cell(description)} |")
    if schema.get("additionalProperties") is not False:
        lines += ["", "Other keys are accepted."]
    example = EXAMPLES.get(spec.name)
    if example is not None:
        node = {"id": "example", "handler": spec.name, "config": example}
        text = yaml.safe_dump([node], sort_keys=False, allow_unicode=True)
        lines += ["", "```yaml", text.rstrip(), "```"]
    return [*lines, ""]


def render(specs: list[HandlerSpec] | None = None) -> str:
    """The whole reference, as Markdown."""
    if specs is None:
        from orchestrion.handlers.builtin import builtin_specs

        specs = builtin_specs()
    lines = [_HEADER, "| handler | also named |", "| --- | --- |"]
    for spec in specs:
        lines.append(f"| [`{spec.name}`](#{spec.name}) | {', '.join(spec.aliases)} |")
    lines.append("")
    for spec in specs:
        lines += _section(spec)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
