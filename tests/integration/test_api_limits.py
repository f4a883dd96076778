"""Definition limits through the REST API in-process: 413 for a definition text over
``definitions.max_bytes``, 422 naming the limit (and the node) otherwise, answers of at most
``definitions.max_problems`` issues, and stored definitions checked again before they run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from test_api import assert_problem, node, serving


def _workflow(nodes: list[dict[str, Any]], name: str = "w") -> dict[str, Any]:
    return {"name": name, "dag": {"nodes": nodes}}


def _chain(count: int) -> list[dict[str, Any]]:
    return [node(f"n{i}", deps=(f"n{i - 1}",) if i else ()) for i in range(count)]


async def test_a_definition_over_max_bytes_gets_413(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        deps = ["n0"] * 500_000  # the 2.5 MB attack: one id repeated
        big = _workflow([node("n0"), {"id": "n1", "handler": "noop", "dependencies": deps}])
        response = await api.client.post("/v1/workflow", json=big)
        problem = assert_problem(response, 413)
        assert "limit of 1048576 bytes (definitions.max_bytes)" in problem["detail"]
        assert len(response.content) < 2_000

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(300):
                yield b" " * 4096

        response = await api.client.post(
            "/v1/workflow", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "definitions.max_bytes" in assert_problem(response, 413)["detail"]
        yaml_text = "name: w\n# " + "x" * 1_100_000 + "\ndag: {nodes: [{id: a, handler: noop}]}\n"
        response = await api.client.post(
            "/v1/workflow", content=yaml_text, headers={"Content-Type": "application/yaml"}
        )
        assert_problem(response, 413)


async def test_too_many_nodes_or_dependencies_get_422_naming_the_limit(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        response = await api.client.post("/v1/workflow", json=_workflow(_chain(10_001)))
        problem = assert_problem(response, 422)
        (error,) = problem["errors"]
        assert error["code"] == "limit_exceeded"
        assert (
            "10001 nodes, more than the limit of 10000 (definitions.max_nodes)"
            in (error["message"])
        )
        nodes = _chain(2)
        nodes.append(node("fan", deps=tuple(f"d{i}" for i in range(1_001))))
        problem = assert_problem(await api.client.post("/v1/workflow", json=_workflow(nodes)), 422)
        (error,) = problem["errors"]
        assert error["node"] == "fan" and error["field"] == "dependencies"
        assert "definitions.max_dependencies_per_node" in error["message"]
        deep: Any = 1
        for _ in range(80):
            deep = [deep]
        nested = _workflow([node("a", value=deep)])
        problem = assert_problem(await api.client.post("/v1/workflow", json=nested), 422)
        assert "definitions.max_nesting_depth" in problem["errors"][0]["message"]


async def test_problems_are_truncated_and_repeats_reported_once(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        nodes = [node(f"n{i}", deps=("missing",)) for i in range(400)]
        response = await api.client.post("/v1/workflow", json=_workflow(nodes))
        problem = assert_problem(response, 422)
        assert len(problem["errors"]) == 101
        assert problem["errors"][-1]["message"].startswith("300 more problems not listed")
        assert len(response.content) < 40_000
        repeats = [node("a"), {"id": "b", "handler": "noop", "dependencies": ["a"] * 999}]
        response = await api.client.post("/v1/workflow", json=_workflow(repeats))
        (error,) = assert_problem(response, 422)["errors"]
        assert error["message"] == "dependencies listed more than once: 'a' (999 times)"
        assert len(response.content) < 2_000


async def test_a_stored_definition_obeys_the_limits_in_force(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        execution_id = await api.submit(_workflow(_chain(30), name="thirty"))
    policy = tmp_path / "strict.yaml"
    policy.write_text("version: 1\ndefinitions:\n  max_nodes: 10\n  max_bytes: 4096\n")
    async with serving(tmp_path, governance_file=policy) as api:
        for response in (
            await api.client.post(f"/v1/workflow/trigger/{execution_id}", json={}),
            await api.client.post("/v1/definitions/thirty/executions", json={}),
        ):
            problem = assert_problem(response, 422)
            assert "30 nodes, more than the limit of 10 (definitions.max_nodes)" in json.dumps(
                problem["errors"]
            )
        listed = await api.client.get("/v1/workflows")
        assert [item["execution_id"] for item in listed.json()["items"]] == [execution_id]
        response = await api.client.post("/v1/workflow", json=_workflow(_chain(100)))
        assert "limit of 4096 bytes" in assert_problem(response, 413)["detail"]


async def test_unknown_override_nodes_are_truncated_too(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        execution_id = await api.submit(_workflow(_chain(2)))
        overrides = {f"ghost{i}": {"value": 1} for i in range(50_000)}
        response = await api.client.post(
            f"/v1/workflow/trigger/{execution_id}", json={"node_overrides": overrides}
        )
        problem = assert_problem(response, 422)
        assert len(problem["errors"]) == 101
        assert problem["errors"][-1]["message"].startswith("49900 more problems not listed")
        assert len(response.content) < 40_000


async def test_recursive_or_expanding_yaml_aliases_get_422_naming_the_line(
    tmp_path: Path,
) -> None:
    cycles = [
        ("name: x\ndag:\n  nodes:\n    - &n\n      id: n\n      handler: noop\n"
         "      config: {self: *n}\n", 7),
        ("name: x\ndag: &d\n  nodes:\n    - id: n\n      handler: noop\n      config: *d\n", 6),
        ("&r\nname: x\ndag: {nodes: [{id: n, handler: noop, config: {all: *r}}]}\n", 3),
        ("name: x\ndag:\n  nodes:\n    - &n\n      id: n\n      handler: noop\n"
         "      config:\n        <<: *n\n", 8),
    ]  # fmt: skip
    levels = ["l0: &l0 [" + ", ".join(["xxxxxxxxxx"] * 10) + "]"]
    levels += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 6)]
    bomb = "\n".join(["name: x", *levels, "dag: {nodes: [{id: n, handler: noop}]}"]) + "\n"
    async with serving(tmp_path) as api:
        headers = {"Content-Type": "application/yaml"}
        for text, line in cycles:
            response = await api.client.post("/v1/workflow", content=text, headers=headers)
            (error,) = assert_problem(response, 422)["errors"]
            assert error["code"] == "recursive_alias" and error["line"] == line, error
            assert "recursive alias" in error["message"]
        response = await api.client.post("/v1/workflow", content=bomb, headers=headers)
        (error,) = assert_problem(response, 422)["errors"]
        assert error["code"] == "limit_exceeded", error
        assert "more than 1048576 bytes (definitions.max_bytes)" in error["message"]
        assert (await api.client.get("/v1/definitions")).json()["items"] == []
