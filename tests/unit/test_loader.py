"""The loader: sources (path, text, dict), formats, parse errors with lines, issue collection."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from orchestrion.definition.loader import LIFECYCLE_WARNING, LoadedDefinition
from orchestrion.errors import DefinitionError, DefinitionIssue
from orchestrion.handlers import registry as registry_module
from orchestrion.handlers.base import HandlerSpec, NodeContext
from orchestrion.handlers.loading import load_definition
from orchestrion.handlers.registry import HandlerRegistry


async def _run(ctx: NodeContext, config: Any) -> Any:
    return None


class _Http(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    method: str = "GET"


REGISTRY = HandlerRegistry(
    [
        HandlerSpec("input", _run),
        HandlerSpec("output", _run),
        HandlerSpec("noop", _run),
        HandlerSpec("http", _run, _Http, aliases=("call_external_service",)),
    ]
)

YAML_TEXT = """\
name: demo
version: 3
dag:
  nodes:
    - id: input
      handler: input
    - id: fetch
      handler: http
      dependencies: [input]
      config:
        url: "http://api/{{ input.user_id }}"
    - id: output
      handler: output
      dependencies: [fetch]
"""

DATA: dict[str, Any] = {
    "name": "demo",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop"},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
        ]
    },
}


def _issues(source: Any, **kwargs: Any) -> list[DefinitionIssue]:
    with pytest.raises(DefinitionError) as info:
        load_definition(source, registry=REGISTRY, **kwargs)
    return info.value.issues


# ---------------------------------------------------------------- sources and formats


def test_yaml_text() -> None:
    loaded = load_definition(YAML_TEXT, registry=REGISTRY)
    assert isinstance(loaded, LoadedDefinition)
    assert (loaded.source_format, loaded.dialect, loaded.path) == ("yaml", "canonical", None)
    assert loaded.source_text == YAML_TEXT
    assert loaded.spec.version == "3"
    assert [n.id for n in loaded.spec.dag.nodes] == ["input", "fetch", "output"]
    assert loaded.warnings == []


def test_json_text() -> None:
    loaded = load_definition(json.dumps(DATA), registry=REGISTRY)
    assert loaded.source_format == "json"
    assert loaded.spec.name == "demo"


def test_dict_source_keeps_a_json_text() -> None:
    loaded = load_definition(DATA, registry=REGISTRY)
    assert loaded.source_format == "python"
    assert json.loads(loaded.source_text) == DATA


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_file_paths(tmp_path: Path, suffix: str) -> None:
    file = tmp_path / f"wf{suffix}"
    file.write_text(json.dumps(DATA) if suffix == ".json" else YAML_TEXT, encoding="utf-8")
    for source in (file, str(file)):
        loaded = load_definition(source, registry=REGISTRY)
        assert loaded.path == file
        assert loaded.source_format == ("json" if suffix == ".json" else "yaml")


def test_file_without_known_suffix_is_sniffed(tmp_path: Path) -> None:
    file = tmp_path / "workflow.def"
    file.write_text(json.dumps(DATA), encoding="utf-8")
    assert load_definition(str(file), registry=REGISTRY).source_format == "json"


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(DefinitionError) as info:
        load_definition(str(missing), registry=REGISTRY)
    assert "file not found" in info.value.issues[0].message
    assert info.value.source == str(missing)


def test_errors_name_the_file(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("name: x\ndag: {nodes: [{id: a, handler: nope}]}\n", encoding="utf-8")
    with pytest.raises(DefinitionError) as info:
        load_definition(file, registry=REGISTRY)
    assert str(info.value).startswith(f"{file}: invalid workflow definition")
    assert "line 2, node 'a', field 'handler': unknown handler 'nope'" in str(info.value)


def test_fmt_overrides_detection() -> None:
    # A JSON text forced through YAML still loads (JSON is YAML); YAML forced as JSON fails.
    assert load_definition(json.dumps(DATA), fmt="yaml", registry=REGISTRY).source_format == "yaml"
    issue = _issues(YAML_TEXT, fmt="json")[0]
    assert issue.code == "json_syntax"
    with pytest.raises(ValueError, match="unknown definition format"):
        load_definition(YAML_TEXT, fmt="toml", registry=REGISTRY)


def test_yaml_flow_mapping_is_not_mistaken_for_json() -> None:
    loaded = load_definition(
        "{name: flow, dag: {nodes: [{id: a, handler: noop}]}}", registry=REGISTRY
    )
    assert (loaded.source_format, loaded.spec.name) == ("yaml", "flow")


def test_default_registry_is_used_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_default() -> HandlerRegistry:
        calls.append(1)
        return REGISTRY

    monkeypatch.setattr(registry_module, "default_registry", fake_default)
    assert load_definition(DATA).spec.name == "demo"
    assert calls == [1]


# ---------------------------------------------------------------- parse errors


def test_json_syntax_error_has_line_and_column() -> None:
    text = '{\n  "name": "x",\n  "dag": {"nodes": [\n    {"id": "a" "handler": "noop"}\n  ]}\n}\n'
    (issue,) = _issues(text)
    assert issue.code == "json_syntax"
    assert issue.line == 4
    assert "line 4, column 16" in issue.message


def test_json_issue_lines_come_from_the_text() -> None:
    text = json.dumps(
        {"name": "x", "dag": {"nodes": [{"id": "a", "handler": "noop", "colour": 1}]}}, indent=2
    )
    (issue,) = _issues(text)
    assert (issue.node, issue.field, issue.message) == ("a", "colour", "unknown key 'colour'")
    assert issue.line == text.splitlines().index('        "colour": 1') + 1


def test_json_duplicate_keys() -> None:
    issues = _issues(
        '{"name": "a", "name": "b", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}'
    )
    assert [i.message for i in issues] == ["duplicate key 'name'"]


def test_yaml_syntax_error_has_line() -> None:
    (issue,) = _issues("name: x\ndag:\n  nodes: [\n    {id: a}\n  - b\n")
    assert issue.code == "yaml_syntax"
    assert issue.line == 5
    assert issue.message.startswith("invalid YAML:")


def test_yaml_tab_error() -> None:
    (issue,) = _issues("name: x\ndag:\n\tnodes: []\n")
    assert (issue.code, issue.line) == ("yaml_syntax", 3)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("", "the definition is empty"),
        ("# only a comment\n", "the definition is empty"),
        ("- a\n- b\n", "must be a mapping at the top level, got list"),
        ("just text", "must be a mapping at the top level, got str"),
        ({"what": 1}, "cannot tell the workflow format"),
    ],
)
def test_unusable_documents(source: Any, fragment: str) -> None:
    (issue,) = _issues(source)
    assert fragment in issue.message


# ---------------------------------------------------------------- issue collection


def test_model_and_graph_issues_together() -> None:
    text = textwrap.dedent(
        """\
        name: both
        dag:
          nodes:
            - {id: a, handler: noop, dependencies: [b], retry: {max_attempts: 0}}
            - {id: b, handler: noop, dependencies: [a]}
            - {id: c, handler: noop, dependencies: [zzz], timeout: never}
        """
    )
    issues = _issues(text)
    summary = {(i.node, i.field, i.line) for i in issues}
    assert ("a", "retry.max_attempts", 4) in summary
    assert ("c", "timeout", 6) in summary
    assert ("c", "dependencies[0]", 6) in summary  # unknown dependency of a broken node
    assert any(i.message == "cycle: a -> b -> a" for i in issues)
    # content checks of nodes the model rejected are not repeated
    assert not any("unknown handler" in i.message for i in issues)


def test_issue_to_dict_and_str() -> None:
    (issue,) = _issues("name: x\ndag: {nodes: [{id: a, handler: noop, when: 'x >'}]}\n")
    assert issue.to_dict()["field"] == "when"
    assert str(issue).startswith("line 2, node 'a', field 'when': template syntax error")


def test_non_identifier_keys_are_located() -> None:
    text = (
        "name: x\ndag:\n  nodes:\n    - id: a\n      handler: http\n"
        "      config:\n        url: u\n        x-y: 1\n"
    )
    (issue,) = _issues(text)
    assert (issue.field, issue.line, issue.message) == ("config.x-y", 8, "unknown key 'x-y'")


# ---------------------------------------------------------------- warnings


def test_lifecycle_warning_for_canonical_documents() -> None:
    data = {**DATA, "triggers": [{"type": "schedule"}]}
    assert load_definition(data, registry=REGISTRY).warnings == [LIFECYCLE_WARNING]
    manual = {**DATA, "triggers": [{"type": "manual"}]}
    assert load_definition(manual, registry=REGISTRY).warnings == []


# ---------------------------------------------------------------- YAML aliases


def test_anchors_and_merge_keys_work() -> None:
    text = textwrap.dedent(
        """\
        name: anchors
        dag:
          nodes:
            - &base {id: a, handler: http, config: {url: "http://x"}}
            - <<: *base
              id: b
              dependencies: [a]
        """
    )
    nodes = load_definition(text, registry=REGISTRY).spec.dag.nodes
    assert [(n.id, n.config["url"]) for n in nodes] == [("a", "http://x"), ("b", "http://x")]


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{refs}]")
    lines.append("name: x")
    lines.append("dag: {nodes: [{id: a, handler: noop, config: {x: *l8}}]}")
    (issue,) = _issues("\n".join(lines) + "\n")
    assert issue.code == "limit_exceeded"
    assert "aliases expand the definition" in issue.message


def test_compensate_names_a_handler_or_else_a_python_function() -> None:
    source = {
        "name": "saga",
        "dag": {
            "nodes": [
                {"id": "a", "handler": "noop", "compensate": "noop"},
            ]
        },
    }
    loaded = load_definition(source, registry=REGISTRY)
    (first,) = loaded.spec.dag.nodes
    assert first.compensate is not None and first.compensate.handler == "noop"
    assert first.compensate.config == {}
    assert source["dag"]["nodes"][0]["compensate"] == "noop"  # the caller's dict as given
    with pytest.raises(DefinitionError, match=r"compensate\.config\.url"):
        # A handler's config is checked as for a node: http needs a url.
        load_definition(
            {"name": "s", "dag": {"nodes": [{"id": "a", "handler": "noop", "compensate": "http"}]}},
            registry=REGISTRY,
        )


def test_compensate_with_another_name_is_still_a_python_function() -> None:
    from orchestrion.handlers.loading import load_definition as load_with_defaults

    node = {"id": "a", "handler": "noop", "compensate": "rollback_initialize"}
    loaded = load_with_defaults({"name": "s", "dag": {"nodes": [node]}})
    (only,) = loaded.spec.dag.nodes
    assert only.compensate is not None and only.compensate.handler == "python"
    assert only.compensate.config == {"function": "rollback_initialize"}
