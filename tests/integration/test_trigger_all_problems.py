"""A start refused for several reasons at once names every one of them in one answer: the
inputs' problems and the overrides' (an unknown node, a config that does not fit, a secret
moved out of a request field), each naming its input or node and field, so that they are
all fixed at once. Over the API (trigger, start of a stored definition; embedded and
scale-out), the Python API and the client; nothing is stored when the start is refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api import serving
from test_api_scaleout import http_server
from typer.testing import CliRunner

from orchestrion.cli.app import app as cli
from orchestrion.cli.exits import EXIT_INVALID
from orchestrion.client import AsyncClient, InvalidRequest
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.errors import DefinitionError
from orchestrion.settings import load_settings
from scaleout import scaleout_api

FLOW = {
    "name": "many-problems",
    "inputs": {
        "count": {"type": "integer", "required": True},
        "label": {"type": "string"},
    },
    "dag": {
        "nodes": [
            {"id": "wait", "handler": "delay", "config": {"seconds": 0}},
            {"id": "echo", "handler": "noop", "dependencies": ["wait"], "config": {"value": 1}},
        ]
    },
}
INPUTS = {"label": 7, "colour": "red"}  # count missing, label no string, colour undeclared
OVERRIDES = {
    "nosuch": {"value": 2},  # no such node
    "wait": {"seconds": "soon"},  # does not fit the delay's config
    "echo": {"value": "{{ secrets.TOKEN | reverse }}"},  # a secret moved into an output
}
EXPECTED = {
    ("missing_input", None, "inputs.count"),
    ("input_type", None, "inputs.label"),
    ("unknown_input", None, "inputs.colour"),
    ("unknown_node", "nosuch", "overrides"),
    ("secret_field", "echo", "config.value"),
}


def _found(issues: list[Any]) -> set[tuple[Any, Any, Any]]:
    """(code, node, field) of each problem, the config one of ``wait`` reduced to its node."""
    found = set()
    for issue in issues:
        code, node, field = (
            (issue.code, issue.node, issue.field)
            if not isinstance(issue, dict)
            else (issue["code"], issue.get("node"), issue["field"])
        )
        if node == "wait":
            assert field == "config.seconds" and code.startswith("config."), issue
            found.add(("config", node, field))
        else:
            found.add((code, node, field))
    return found


WITH_CONFIG = EXPECTED | {("config", "wait", "config.seconds")}


async def _refused_everywhere(engine: Engine) -> None:
    """The Python API, in whatever mode ``engine`` runs: trigger and the one-call start."""
    definition = await engine.submit(FLOW)
    pending, _ = await engine.create_execution(definition.id)
    with pytest.raises(DefinitionError) as refused:
        await engine.trigger(pending.id, INPUTS, OVERRIDES)
    assert _found(refused.value.issues) == WITH_CONFIG
    assert refused.value.source == "execution inputs and node overrides"
    stored = await engine.store.get_execution(pending.id)
    assert stored.status is ExecutionStatus.PENDING
    assert (stored.inputs, stored.overrides, stored.owner) == ({}, {}, None)

    before = len(await engine.list_executions())
    with pytest.raises(DefinitionError) as refused:
        await engine.start_execution(definition, INPUTS, overrides=OVERRIDES)
    assert _found(refused.value.issues) == WITH_CONFIG
    assert len(await engine.list_executions()) == before  # nothing made

    # One kind of problem alone is named by its own source, as before.
    with pytest.raises(DefinitionError) as refused:
        await engine.trigger(pending.id, {"count": 1}, {"nosuch": {}})
    assert refused.value.source == "node overrides"
    with pytest.raises(DefinitionError) as refused:
        await engine.trigger(pending.id, {}, {"echo": {"value": 3}})
    assert refused.value.source == "execution inputs"


async def test_the_python_api_names_every_problem(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'starts.db'}") as engine:
        await _refused_everywhere(engine)


async def test_scale_out_names_every_problem(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    async with scaleout_api(postgres_url, redis_server, redis_prefix) as api:
        await _refused_everywhere(api)


def _assert_every_problem(answer: httpx.Response) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["type"] == "urn:orchestrion:problem:invalid-input"
    assert problem["title"] == "Invalid input"
    assert problem["detail"].startswith("execution inputs and node overrides: ")
    assert problem["detail"].endswith("problems, listed in errors")
    assert _found(problem["errors"]) == WITH_CONFIG
    for item in problem["errors"]:
        assert set(item) == {"code", "message", "node", "field", "line"}


async def test_the_api_names_every_problem(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        client = api.client
        submitted = await client.post("/v1/workflow", json=FLOW)
        execution_id = submitted.json()["execution_id"]
        trigger = f"/v1/workflow/trigger/{execution_id}"
        body = {"input_params": INPUTS, "node_overrides": OVERRIDES}
        _assert_every_problem(await client.post(trigger, json=body))
        _assert_every_problem(
            await client.post(trigger, json={"input_params": INPUTS, **OVERRIDES})
        )
        shown = (await client.get(f"/v1/workflows/{execution_id}")).json()
        assert shown["status"] == "PENDING"

        listed = (await client.get("/v1/workflows")).json()
        start = f"/v1/definitions/{FLOW['name']}/executions"
        _assert_every_problem(await client.post(start, json=body))
        assert (await client.get("/v1/workflows")).json() == listed  # nothing made

        started = await client.post(trigger, json={"input_params": {"count": 1}})
        assert started.status_code == 202, started.text


def test_the_client_and_the_command_line_list_every_problem(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'client.db'}")
    file = tmp_path / "flow.json"
    file.write_text(json.dumps(FLOW))
    args = ["run", str(file), "-i", "label=7", "-i", "colour=red", "-q"]
    with http_server(settings) as url:

        async def through_client() -> int:
            async with AsyncClient(url) as client:
                submitted = await client.submit(FLOW)
                with pytest.raises(InvalidRequest) as refused:
                    await client.trigger(submitted.execution_id, INPUTS, OVERRIDES)
                assert _found(refused.value.errors) == WITH_CONFIG
                shown = await client.status(submitted.execution_id)
                assert shown.status is ExecutionStatus.PENDING
            return await _count(url)

        before = asyncio.run(through_client())
        ran = CliRunner().invoke(cli, [*args, "--server", url])
        assert ran.exit_code == EXIT_INVALID, ran.output
        for name in ("count", "label", "colour"):
            assert f"inputs.{name}" in ran.output
        # Refused before anything reached the server: no pending execution is left there.
        assert asyncio.run(_count(url)) == before
    ran = CliRunner().invoke(cli, [*args, "--db", str(tmp_path / "local.db")])
    assert ran.exit_code == EXIT_INVALID, ran.output
    assert all(f"inputs.{name}" in ran.output for name in ("count", "label", "colour"))


async def _count(url: str) -> int:
    async with AsyncClient(url) as client:
        return len((await client.list_executions()).items)


async def test_a_one_call_start_refused_stores_nothing(tmp_path: Path) -> None:
    """SwarmLite's ``/workflows/start`` submits and starts in one call: inputs it would be
    refused with are refused before the definition or an execution is stored."""
    async with serving(tmp_path) as api:
        client = api.client
        answer = await client.post(
            "/workflows/start", json={"definition": FLOW, "input_params": INPUTS}
        )
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert problem["type"] == "urn:orchestrion:problem:invalid-input"
        assert _found(problem["errors"]) == {e for e in EXPECTED if e[2].startswith("inputs.")}
        assert (await client.get("/v1/workflows")).json()["items"] == []
        assert (await client.get("/v1/definitions")).json()["items"] == []
        started = await client.post(
            "/workflows/start", json={"definition": FLOW, "input_params": {"count": 2}}
        )
        assert started.status_code == 202, started.text


async def test_many_problems_are_listed_up_to_the_limit(tmp_path: Path) -> None:
    """However many there are, the answer lists ``definitions.max_problems`` (100) of them,
    the inputs' first, and counts the rest."""
    overrides = {f"nosuch{i}": {} for i in range(150)}
    async with Engine(f"sqlite:///{tmp_path / 'many.db'}") as engine:
        with pytest.raises(DefinitionError) as refused:
            await engine.start_execution(FLOW, {}, overrides=overrides)
    issues = refused.value.issues
    assert len(issues) == 101
    assert (issues[0].code, issues[0].field) == ("missing_input", "inputs.count")
    assert issues[-1].code == "more_problems" and issues[-1].message.startswith("51 more")


MISSHAPEN = {
    "input_params": INPUTS,
    "node_overrides": {"wait": "soon", "nosuch": {"value": 2}},  # an override no object
    "echo": 5,  # reference 003's top-level form, no object either
}
MISSHAPEN_FOUND = {
    ("dict_type", "wait", "body.node_overrides.wait"),
    ("dict_type", "echo", "body.echo"),
    ("missing_input", None, "inputs.count"),
    ("input_type", None, "inputs.label"),
    ("unknown_input", None, "inputs.colour"),
    ("unknown_node", "nosuch", "overrides"),
}


def _located(problem: dict[str, Any]) -> set[tuple[Any, Any, Any]]:
    return {(e["code"], e["node"], e["field"]) for e in problem["errors"]}


async def test_a_misshapen_body_is_refused_with_every_other_problem(tmp_path: Path) -> None:
    """An override (or the inputs) that is no object no longer hides the start's other
    problems: one 422 lists the shape's, each at its field path, and the inputs' and the
    other overrides' problems; nothing is started or made."""
    async with serving(tmp_path) as api:
        client = api.client
        submitted = await client.post("/v1/workflow", json=FLOW)
        execution_id = submitted.json()["execution_id"]
        trigger = f"/v1/workflow/trigger/{execution_id}"
        answer = await client.post(trigger, json=MISSHAPEN)
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert problem["type"] == "urn:orchestrion:problem:invalid-input"
        assert problem["detail"].startswith("execution inputs and node overrides: 6 problems")
        assert _located(problem) == MISSHAPEN_FOUND
        shaped = {e["field"]: e["message"] for e in problem["errors"]}
        assert shaped["body.node_overrides.wait"] == (
            "an override must be an object of config keys, not a string"
        )

        answer = await client.post(
            trigger, json={"input_params": [1], "node_overrides": {"nosuch": {}}}
        )
        assert answer.status_code == 422, answer.text
        assert _located(answer.json()) == {
            ("dict_type", None, "body.input_params"),
            ("missing_input", None, "inputs.count"),
            ("unknown_node", "nosuch", "overrides"),
        }
        assert (await client.get(f"/v1/workflows/{execution_id}")).json()["status"] == "PENDING"

        listed = (await client.get("/v1/workflows")).json()
        start = f"/v1/definitions/{FLOW['name']}/executions"
        body = {"input_params": INPUTS, "node_overrides": {"wait": [], "nosuch": {}}}
        answer = await client.post(start, json=body)
        assert answer.status_code == 422, answer.text
        assert ("dict_type", "wait", "body.node_overrides.wait") in _located(answer.json())
        assert ("missing_input", None, "inputs.count") in _located(answer.json())
        assert (await client.get("/v1/workflows")).json() == listed  # nothing made
        # An unknown execution is still named first, whatever the body's shape.
        answer = await client.post("/v1/workflow/trigger/nosuch-execution", json=MISSHAPEN)
        assert answer.status_code == 404, answer.text
        started = await client.post(trigger, json={"input_params": {"count": 1}})
        assert started.status_code == 202, started.text


def test_the_client_hears_every_problem_of_a_misshapen_body(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'shapes.db'}")
    with http_server(settings) as url:

        async def through_client() -> None:
            async with AsyncClient(url) as client:
                submitted = await client.submit(FLOW)
                overrides: Any = {"wait": "soon", "nosuch": {"value": 2}}
                with pytest.raises(InvalidRequest) as refused:
                    await client.trigger(submitted.execution_id, INPUTS, overrides)
                found = {(e["code"], e.get("node"), e["field"]) for e in refused.value.errors}
                assert found == MISSHAPEN_FOUND - {("dict_type", "echo", "body.echo")}

        asyncio.run(through_client())
