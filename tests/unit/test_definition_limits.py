"""Definition size limits (definition/limits.py): each is refused before the work it would
cost, with a problem naming the limit (and the node), and answers stay short."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrion.definition.limits import DefinitionLimits
from orchestrion.engine.facade import Engine
from orchestrion.errors import DefinitionError
from orchestrion.governance.policy import GovernancePolicy, load_policy
from orchestrion.governance.runtime import Governance
from orchestrion.handlers.loading import load_definition
from orchestrion.settings import load_settings
from orchestrion.store.base import ExecutionFilter


def _nodes(count: int) -> list[dict[str, Any]]:
    return [{"id": f"n{i}", "handler": "noop"} for i in range(count)]


def _workflow(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "w", "dag": {"nodes": nodes}}


def _issues(source: Any, limits: DefinitionLimits | None = None, **kwargs: Any) -> list[Any]:
    with pytest.raises(DefinitionError) as info:
        load_definition(source, limits=limits or DefinitionLimits(), **kwargs)
    return info.value.issues


def test_defaults_match_the_policy_section() -> None:
    assert GovernancePolicy().definitions.limits() == DefinitionLimits()
    assert DefinitionLimits() == DefinitionLimits(1024 * 1024, 10_000, 1_000, 64, 100)


def test_policy_file_sets_the_limits(tmp_path: Path) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\ndefinitions:\n  max_nodes: 5\n  max_problems: 3\n")
    limits = load_policy(policy).policy.definitions.limits()
    assert (limits.max_nodes, limits.max_problems, limits.max_bytes) == (5, 3, 1024 * 1024)


@pytest.mark.parametrize("as_json", [True, False])
def test_text_larger_than_max_bytes_is_refused_unparsed(as_json: bool) -> None:
    nodes = _nodes(100)
    text = json.dumps(_workflow(nodes)) if as_json else "name: w\n" + "#" * 5000 + "\n"
    (issue,) = _issues(text, DefinitionLimits(max_bytes=2048))
    assert issue.code == "limit_exceeded"
    assert "limit of 2048 bytes (definitions.max_bytes)" in issue.message


def test_multibyte_text_counts_bytes() -> None:
    text = "name: w\n# " + "é" * 1500 + "\n"  # 1,500 characters, 3,000 bytes
    (issue,) = _issues(text, DefinitionLimits(max_bytes=2048))
    assert "definitions.max_bytes" in issue.message


def test_file_larger_than_max_bytes_is_refused_unread(tmp_path: Path) -> None:
    file = tmp_path / "big.json"
    file.write_text(json.dumps(_workflow(_nodes(200))))
    (issue,) = _issues(file, DefinitionLimits(max_bytes=1024))
    assert "definitions.max_bytes" in issue.message


@pytest.mark.parametrize("source", ["dict", "json", "yaml"])
def test_too_many_nodes(source: str) -> None:
    data = _workflow(_nodes(11))
    given: Any = data
    if source == "json":
        given = json.dumps(data) + "\n"
    elif source == "yaml":
        given = "name: w\ndag:\n  nodes:\n" + "".join(
            f"    - {{id: n{i}, handler: noop}}\n" for i in range(11)
        )
    (issue,) = _issues(given, DefinitionLimits(max_nodes=10))
    assert issue.message == (
        "the definition has 11 nodes, more than the limit of 10 (definitions.max_nodes)"
    )
    assert issue.code == "limit_exceeded"


def test_the_default_node_limit() -> None:
    (issue,) = _issues(_workflow(_nodes(10_001)))
    assert "limit of 10000 (definitions.max_nodes)" in issue.message


def test_the_duplicate_dependency_attack_is_refused_by_size() -> None:
    nodes = _nodes(3)
    nodes[2]["dependencies"] = ["n0"] * 500_000  # 2.5 MB: 500k repeats of one id
    (issue,) = _issues(json.dumps(_workflow(nodes)))
    assert "more than the limit of 1048576 bytes (definitions.max_bytes)" in issue.message


def test_too_many_dependencies_names_the_node_and_its_line() -> None:
    nodes = _nodes(3)
    nodes[2]["dependencies"] = ["n0"] * 5_000
    text = json.dumps(_workflow(nodes), indent=1)
    (issue,) = _issues(text)
    assert issue.node == "n2" and issue.field == "dependencies"
    assert "5000 dependencies, more than the limit of 1000" in issue.message
    assert "definitions.max_dependencies_per_node" in issue.message
    assert issue.line is not None


def test_reference_dialect_is_bounded_too() -> None:
    tasks = [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop", "depends_on": ["a"] * 5}]
    (issue,) = _issues(
        {"workflow_id": "w", "tasks": tasks}, DefinitionLimits(max_dependencies_per_node=4)
    )
    assert issue.node == "b" and "definitions.max_dependencies_per_node" in issue.message


def test_repeated_dependencies_are_one_issue_per_node() -> None:
    nodes = _nodes(4)
    nodes[2]["dependencies"] = ["n0"] * 999
    nodes[3]["dependencies"] = ["n0", "n1", "n0", "n1", "n1"]
    issues = _issues(_workflow(nodes))
    assert [(i.node, i.code, i.field) for i in issues] == [
        ("n2", "duplicate_dependency", "dependencies[1]"),
        ("n3", "duplicate_dependency", "dependencies[2]"),
    ]
    assert issues[0].message == "dependencies listed more than once: 'n0' (999 times)"
    assert issues[1].message == "dependencies listed more than once: 'n0', 'n1' (3 times)"


def test_a_single_repeat_reads_as_before() -> None:
    nodes = _nodes(2)
    nodes[1]["dependencies"] = ["n0", "n0"]
    (issue,) = _issues(_workflow(nodes))
    assert issue.message == "dependency 'n0' is listed twice"


@pytest.mark.parametrize("where", ["config", "workflow"])
def test_nesting_deeper_than_the_limit(where: str) -> None:
    deep: Any = "x"
    for _ in range(70):
        deep = {"k": deep}
    data = _workflow(_nodes(1))
    if where == "config":
        data["dag"]["nodes"][0]["config"] = deep
    else:
        data["metadata"] = deep
    (issue,) = _issues(data)
    assert "nest more than 64 levels deep" in issue.message
    assert "definitions.max_nesting_depth" in issue.message
    assert issue.field is not None and issue.field.startswith(
        "dag.nodes[0].config" if where == "config" else "metadata"
    )


def test_deep_nesting_within_the_limit_passes_the_check() -> None:
    deep: Any = "x"
    for _ in range(20):
        deep = [deep]
    data = _workflow(_nodes(1))
    data["metadata"] = {"v": deep}
    assert load_definition(data).spec.name == "w"


@pytest.mark.parametrize("source", ["dict", "json"])
def test_problems_are_truncated_with_a_count(source: str) -> None:
    nodes = _nodes(300)
    for node in nodes:
        node["dependencies"] = ["missing"]
    data = _workflow(nodes)
    issues = _issues(data if source == "dict" else json.dumps(data, indent=1))
    assert len(issues) == 101
    assert all(i.code == "unknown_dependency" for i in issues[:100])
    assert issues[-1].code == "more_problems"
    assert issues[-1].message == (
        "200 more problems not listed (at most 100 are: definitions.max_problems)"
    )
    error = DefinitionError(issues)
    assert len(str(error)) < 20_000


def test_max_problems_is_configurable() -> None:
    nodes = _nodes(10)
    for node in nodes:
        node["dependencies"] = ["missing"]
    issues = _issues(_workflow(nodes), DefinitionLimits(max_problems=3))
    assert len(issues) == 4 and issues[-1].message.startswith("7 more problems")


def _governance(tmp_path: Path, name: str, body: str) -> Governance:
    policy = tmp_path / name
    policy.write_text("version: 1\n" + body)
    return Governance.load(policy, environ={})


async def test_stored_definition_is_checked_again_before_a_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    data = _workflow(_nodes(30))
    async with Engine(url) as engine:
        stored = await engine.submit(data)
    strict = _governance(tmp_path, "strict.yaml", "definitions:\n  max_nodes: 10\n")
    async with Engine(url, governance=strict) as engine:
        with pytest.raises(DefinitionError) as info:
            await engine.start_execution(stored)
        with pytest.raises(DefinitionError):
            await engine.create_execution(stored.id)
        assert (await engine.store.list_executions(ExecutionFilter()))[0] == []
    (issue,) = info.value.issues
    assert info.value.source == "stored definition 'w' v1"
    assert "30 nodes, more than the limit of 10 (definitions.max_nodes)" in issue.message


async def test_a_stored_definition_passed_once_is_checked_again_under_a_new_policy(
    tmp_path: Path,
) -> None:
    data = _workflow(_nodes(30))
    async with Engine(f"sqlite:///{tmp_path / 'e.db'}") as engine:
        stored = await engine.submit(data)
        for _ in range(2):  # passed, and remembered as passed
            await engine.create_execution(stored.id)
        engine.use_governance(
            _governance(tmp_path, "strict.yaml", "definitions:\n  max_nodes: 10\n")
        )
        with pytest.raises(DefinitionError) as info:
            await engine.create_execution(stored.id)
        assert len((await engine.store.list_executions(ExecutionFilter()))[0]) == 2
    assert "more than the limit of 10 (definitions.max_nodes)" in info.value.issues[0].message


async def test_engine_submit_applies_its_policy(tmp_path: Path) -> None:
    strict = _governance(tmp_path, "strict.yaml", "definitions:\n  max_nodes: 2\n")
    async with Engine(f"sqlite:///{tmp_path / 'e.db'}", governance=strict) as engine:
        with pytest.raises(DefinitionError) as info:
            await engine.submit(_workflow(_nodes(3)))
    assert "definitions.max_nodes" in info.value.issues[0].message


async def test_a_large_definition_is_compiled_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrion.engine import compiled as compiled_module

    threads: list[str] = []
    build = compiled_module.CompiledWorkflow.build

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return build(*args, **kwargs)

    monkeypatch.setattr(compiled_module.CompiledWorkflow, "build", recording)
    settings = load_settings(gc_freeze=False)  # no freezing of this test process's objects
    async with Engine(f"sqlite:///{tmp_path / 'e.db'}", settings=settings) as engine:
        small = await engine.submit(_workflow(_nodes(3)))
        nodes = _nodes(5_000)
        for i in range(1, len(nodes)):
            nodes[i]["dependencies"] = [f"n{i - 1}"]
        stored = await engine.submit(_workflow(nodes))
        result = await engine.settle((await engine.start_execution(stored)).id)
        assert result.ok and small.id != stored.id
    main = threading.current_thread().name
    assert threads[0] == main  # three nodes: compiled in place
    assert threads[1] != main  # five thousand: in a worker thread


def test_yaml_aliases_are_walked_once_for_depth() -> None:
    # Each level refers to the previous one ten times: 10**5 paths, 6 distinct values (within
    # definitions.max_bytes once expanded).
    lines = ["a0: &a0 [x]"]
    for level in range(1, 6):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append("name: w\ndag: {nodes: [{id: n, handler: noop, config: {value: *a5}}]}")
    started = time.monotonic()
    with pytest.raises(DefinitionError) as info:  # noop has no such key; no limit is broken
        load_definition("\n".join(lines) + "\n")
    assert time.monotonic() - started < 5
    assert all(issue.code != "limit_exceeded" for issue in info.value.issues)
