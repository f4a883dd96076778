"""Generated references stay equal to the code: the handler reference and the workflow schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from orchestrion.definition.json_schema import shipped_schema_text
from orchestrion.docs.handlers import EXAMPLES, render
from orchestrion.docs.workflow_schema import render as schema_text
from orchestrion.handlers.builtin import BUILTIN_HANDLERS, builtin_specs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FILES = sorted(
    p
    for folder in (ROOT / "src" / "orchestrion" / "examples", ROOT / "examples" / "plugin-handler")
    for p in folder.rglob("*")
    if p.suffix in (".yaml", ".json")
)


def test_handler_reference_is_generated() -> None:
    committed = (ROOT / "docs" / "HANDLERS.md").read_text(encoding="utf-8")
    assert committed == render(), "run: python -m orchestrion.docs.handlers > docs/HANDLERS.md"


def test_handler_reference_names_every_builtin_and_each_key() -> None:
    text = render()
    for spec in builtin_specs():
        assert f"## `{spec.name}`" in text
        for key in spec.config_model.model_json_schema()["properties"] if spec.config_model else ():
            assert f"| `{key}` |" in text


def test_every_handler_example_is_a_valid_config(validator: Any) -> None:
    assert set(EXAMPLES) == {name for name, *_ in BUILTIN_HANDLERS}
    for name, config in EXAMPLES.items():
        assert validator.is_valid(_node(name, config)), name
        if "{{" not in json.dumps(config):  # no template: the model itself can check it
            spec = next(s for s in builtin_specs() if s.name == name)
            assert spec.config_model is not None
            spec.config_model.model_validate(config)


def test_shipped_schema_is_generated() -> None:
    assert shipped_schema_text() == schema_text(), (
        "run: python -m orchestrion.docs.workflow_schema "
        "> src/orchestrion/definition/workflow.schema.json"
    )


@pytest.fixture(scope="module")
def validator() -> Any:
    return jsonschema_rs.validator_for(json.loads(shipped_schema_text()))


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_schema_accepts_every_example(path: Path, validator: Any) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []


def _node(handler: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"name": "w", "dag": {"nodes": [{"id": "a", "handler": handler, "config": config}]}}


NOOP = {"id": "a", "handler": "noop"}
BROKEN = {
    "http_without_url": _node("http", {"method": "GET"}),
    "http_unknown_key": _node("http", {"url": "https://x.test", "retries": 3}),
    "http_timeout_not_a_number": _node("http", {"url": "https://x.test", "timeout": [1]}),
    "alias_typed_too": _node("call_external_service", {"urll": "https://x.test"}),
    "llm_temperature_text": _node("llm", {"prompt": "hi", "temperature": "hot"}),
    "map_bad_failure_mode": _node("map", {"items": [], "handler": "noop", "on_item_failure": "x"}),
    "python_without_function": _node("python", {"params": {}}),
    "no_nodes": {"name": "w", "dag": {"nodes": []}},
    "unknown_top_level_key": {"name": "w", "dga": {}, "dag": {"nodes": [NOOP]}},
    "bad_node_id": {"name": "w", "dag": {"nodes": [{**NOOP, "id": "1 a"}]}},
    "bad_retry": {"name": "w", "dag": {"nodes": [{**NOOP, "retry": {"max_attempts": 0}}]}},
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_schema_rejects_broken_workflows(name: str, validator: Any) -> None:
    assert not validator.is_valid(BROKEN[name])


def test_templates_are_accepted_for_typed_config_keys(validator: Any) -> None:
    document = _node("http", {"url": "https://x.test", "timeout": "{{ inputs.t }}"})
    assert validator.is_valid(document)


def test_schema_command_prints_the_shipped_schema() -> None:
    from typer.testing import CliRunner

    from orchestrion.cli.app import app

    printed = CliRunner().invoke(app, ["schema"])
    assert printed.exit_code == 0
    assert json.loads(printed.stdout) == json.loads(shipped_schema_text())


def test_every_builtin_config_key_is_described() -> None:
    missing = [
        f"{spec.name}.{key}"
        for spec in builtin_specs()
        if spec.config_model is not None
        for key, prop in spec.config_model.model_json_schema()["properties"].items()
        if not prop.get("description")
    ]
    assert missing == []


def test_every_handler_example_validates_in_a_workflow() -> None:
    """Pasted into a workflow as documented, each example passes `orchestrion validate`
    (templates included: names they read must exist)."""
    from orchestrion.docs.handlers import EXAMPLES
    from orchestrion.handlers.loading import load_definition

    for handler, config in EXAMPLES.items():
        # The upstream nodes the examples read (the agents read the agent before them).
        names = ["summarize", "fetch", "policy_analyzer", "gap_assessment", "risk_calculator"]
        names.append("implementation_planner")
        upstream = [{"id": u, "handler": "noop"} for u in names if u != handler]
        node = {"id": "n", "handler": handler, "config": config}
        node["dependencies"] = [u["id"] for u in upstream]
        # The branches a condition example names are its children in a real workflow.
        branches = {b for c in config.get("cases", []) for b in c.get("then", [])}
        branches.update(config.get("default", []) if handler == "condition" else [])
        children = [{"id": b, "handler": "noop", "dependencies": ["n"]} for b in sorted(branches)]
        spec = {"name": f"example-{handler}", "dag": {"nodes": [*upstream, node, *children]}}
        load_definition(spec)  # raises DefinitionError naming what is wrong
