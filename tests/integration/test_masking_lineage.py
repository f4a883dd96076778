"""What a viewer or an operator sees of classified data, on every route, against an admin:
across parent and child executions, in a classified node's errors and wait data, and in the
literal config of a classified definition (docs/GOVERNANCE.md, "Masking").

The API runs in process (httpx over ASGI) with a real engine: embedded on SQLite, and in
scale-out (PostgreSQL, Redis, a worker), where children are started by the orchestrator and
the API reads what it wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrion.api import create_app
from orchestrion.engine.facade import Engine
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.settings import load_settings
from scaleout import scaleout_engine

KEYS = "adm-key:admin,op-key:operator,view-key:viewer"
ADMIN = {"Authorization": "Bearer adm-key"}
OPERATOR = {"Authorization": "Bearer op-key"}
VIEWER = {"Authorization": "Bearer view-key"}
# No built-in pattern recognises these: only classification hides them.
NAME = "Johnathan Quincy Doe"
DIAGNOSIS = "HIV-positive"
PHI = {"masked": "phi"}
HIDDEN = "[masked: phi]"


@function("mfx_diagnose")
def _diagnose(ctx: NodeContext, patient: str) -> dict[str, str]:
    ctx.logger.warning("diagnosed %s", patient)
    return {"diagnosis": f"{DIAGNOSIS} for {patient}"}


@function("mfx_echo")
def _echo(ctx: NodeContext, note: str) -> dict[str, str]:
    ctx.logger.warning("child got %s", note)
    return {"copy": note}


@function("mfx_explode")
def _explode(patient: str) -> None:
    raise ValueError(f"record of {patient}: diagnosis {DIAGNOSIS}")


def _python(node_id: str, fn: str, deps: list[str], **params: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "handler": "python",
        "dependencies": deps,
        "retry": {"max_attempts": 1},
        "config": {"function": fn, "params": params},
    }


PLAIN_CHILD = {
    "name": "mfx-plain-child",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            _python("echo", "mfx_echo", ["input"], note="{{ input.note }}"),
            {"id": "output", "handler": "output", "dependencies": ["echo"]},
        ]
    },
}

# A classified parent: its child (of a definition without classification) gets its data.
PHI_PARENT = {
    "name": "mfx-phi-parent",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                **_python("lookup", "mfx_diagnose", ["input"], patient="{{ input.patient }}"),
                "data_classification": "phi",
            },
            {
                **_python("explode", "mfx_explode", ["input"], patient="{{ input.patient }}"),
                "data_classification": "phi",
            },
            {
                "id": "child",
                "handler": "workflow",
                "dependencies": ["lookup"],
                "config": {
                    "workflow": "mfx-plain-child",
                    "inputs": {"note": "{{ lookup.output.diagnosis }}"},
                },
            },
            {
                "id": "output",
                "handler": "output",
                "trigger_rule": "all_done",
                "dependencies": ["child", "explode"],
            },
        ]
    },
}

PHI_CHILD = {
    "name": "mfx-phi-child",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                **_python("diag", "mfx_diagnose", ["input"], patient="{{ input.patient }}"),
                "data_classification": "phi",
            },
            {"id": "output", "handler": "output", "dependencies": ["diag"]},
        ]
    },
}

# A parent without classification whose child is classified: its result comes back.
PLAIN_PARENT = {
    "name": "mfx-plain-parent",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                "id": "sub",
                "handler": "workflow",
                "dependencies": ["input"],
                "config": {
                    "workflow": "mfx-phi-child",
                    "inputs": {"patient": "{{ input.patient }}"},
                },
            },
            {
                "id": "report",
                "handler": "noop",
                "dependencies": ["sub"],
                "config": {"value": {"text": "{{ sub.output }}"}},
            },
            {"id": "output", "handler": "output", "dependencies": ["report"]},
        ]
    },
}

APPROVAL = {
    "name": "mfx-approval",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                **_python("lookup", "mfx_diagnose", ["input"], patient="{{ input.patient }}"),
                "data_classification": "phi",
            },
            {
                "id": "ok",
                "handler": "approval",
                "dependencies": ["lookup"],
                "config": {
                    "message": "Release record: {{ lookup.output.diagnosis }}",
                    "approvers": ["admin"],
                },
            },
        ]
    },
}

LITERAL = {
    "name": "mfx-literal",
    "dag": {
        "nodes": [
            {
                "id": "input",
                "handler": "input",
                "config": {"defaults": {"contact": "ada@example.com"}},
            },
            {
                "id": "rec",
                "handler": "noop",
                "dependencies": ["input"],
                "data_classification": "phi",
                "config": {"value": {"patient": NAME, "diagnosis": DIAGNOSIS}},
            },
        ]
    },
}


# A classified input node: what its scheduled trigger passes is that data.
SCHEDULED = {
    "name": "mfx-scheduled",
    "triggers": [
        {
            "type": "scheduled",
            "name": "nightly",
            "schedule": "0 2 * * *",
            "inputs": {"patient": NAME, "contact": "ada@example.com"},
        }
    ],
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input", "data_classification": "phi"},
            {"id": "echo", "handler": "noop", "dependencies": ["input"]},
        ]
    },
}


@dataclass
class Api:
    client: httpx.AsyncClient

    async def get(self, path: str, who: dict[str, str]) -> Any:
        response = await self.client.get(path, headers=who)
        assert response.status_code == 200, response.text
        return response.json()

    async def text(self, path: str, who: dict[str, str]) -> str:
        response = await self.client.get(path, headers=who)
        assert response.status_code == 200, response.text
        return response.text

    async def submit(self, definition: dict[str, Any]) -> str:
        answer = await self.client.post("/v1/workflow", json=definition, headers=OPERATOR)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["execution_id"])

    async def run(self, definition: dict[str, Any], until: tuple[str, ...]) -> str:
        execution_id = await self.submit(definition)
        body = {"input_params": {"patient": NAME}}
        path = f"/v1/workflow/trigger/{execution_id}"
        triggered = await self.client.post(path, json=body, headers=OPERATOR)
        assert triggered.status_code == 202, triggered.text
        await self.wait(execution_id, until)
        return execution_id

    async def wait(self, execution_id: str, until: tuple[str, ...]) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            body: dict[str, Any] = await self.get(f"/v1/workflows/{execution_id}", ADMIN)
            if body["status"] in until:
                return body
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serving(mode: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\n")  # the default masking: pii and phi hidden
    options: dict[str, Any] = {
        "api_keys": KEYS,
        "governance_file": policy,
        "rate_limit_per_second": 0,
        "shutdown_grace": 0,
        "capture_node_logs": True,  # as `orchestrion serve` has it
    }
    async with contextlib.AsyncExitStack() as stack:
        if mode == "embedded":
            settings = load_settings(database_url=f"sqlite:///{tmp_path / 'm.db'}", **options)
            engine = Engine(settings=settings)
            await engine.start()
            stack.push_async_callback(engine.stop, 0)
        else:
            engine = await stack.enter_async_context(
                scaleout_engine(
                    request.getfixturevalue("postgres_url"),
                    request.getfixturevalue("redis_server"),
                    request.getfixturevalue("redis_prefix"),
                    settings=options,
                )
            )
        app = create_app(engine, engine.settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://api")
        yield Api(await stack.enter_async_context(client))


def _hidden(text: str, where: str, *values: str) -> None:
    """Every value a classified node made holds the diagnosis (its output, its error, the
    approval's message, the child's copy of it); ``values``: more that must not show."""
    for value in (DIAGNOSIS, *values):
        assert value not in text, f"{value!r} shown in {where}:\n{text[:3000]}"


async def _child_of(api: Api, parent: str, node: str) -> str:
    detail = await api.get(f"/v1/workflows/{parent}", ADMIN)
    return str(detail["nodes"][node]["output"]["child_execution_id"])


def _routes(execution_id: str, node: str) -> list[str]:
    base = f"/v1/workflows/{execution_id}"
    return [
        base,
        f"{base}/results",
        f"{base}/logs",
        f"{base}/nodes/{node}/logs",
        f"{base}/nodes/{node}/inputs",
        f"{base}/events?limit=1000",
        f"{base}/events/stream",
        f"{base}/logs/stream",
        f"/workflows/{execution_id}",  # the unversioned route the reference clients use
    ]


@pytest.mark.parametrize("mode", ["embedded", "scaleout"])
async def test_viewers_see_no_classified_data_across_parents_children_errors_and_waits(
    mode: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with serving(mode, tmp_path, request) as api:
        await api.submit(PLAIN_CHILD)
        await api.submit(PHI_CHILD)
        parent = await api.run(PHI_PARENT, ("FAILED",))
        child = await _child_of(api, parent, "child")
        plain_parent = await api.run(PLAIN_PARENT, ("COMPLETED",))
        phi_child = await _child_of(api, plain_parent, "sub")
        waiting = await api.run(APPROVAL, ("WAITING",))
        cancelled = await api.client.delete(f"/v1/workflows/{waiting}", headers=OPERATOR)
        assert cancelled.status_code in (200, 202), cancelled.text
        await api.wait(waiting, ("CANCELLED",))

        surfaces = [
            *_routes(parent, "explode"),
            *_routes(child, "echo"),
            *_routes(plain_parent, "report"),
            *_routes(phi_child, "diag"),
            *_routes(waiting, "ok"),
            "/v1/events?limit=1000",
        ]
        # The admin sees the data as stored: the routes do carry it.
        admin = {path: await api.text(path, ADMIN) for path in surfaces}
        for path in (
            f"/v1/workflows/{child}",
            f"/v1/workflows/{child}/logs",
            f"/v1/workflows/{child}/nodes/echo/inputs",
            f"/v1/workflows/{plain_parent}/results",
            f"/v1/workflows/{parent}",
            f"/v1/workflows/{waiting}/events?limit=1000",
        ):
            assert DIAGNOSIS in admin[path], path

        for who in (VIEWER, OPERATOR):
            for path in surfaces:
                # The child of a classified parent is given its data: the inputs too.
                more = (NAME,) if child in path else ()
                _hidden(await api.text(path, who), f"{path} for {who}", *more)

            # The child of a classified parent is classified whole (F1).
            detail = await api.get(f"/v1/workflows/{child}", who)
            assert detail["inputs"] == PHI
            assert {n: v["output"] for n, v in detail["nodes"].items()} == {
                "input": PHI,
                "echo": PHI,
                "output": PHI,
            }
            results = await api.get(f"/v1/workflows/{child}/results", who)
            assert results["result"] == PHI
            logs = await api.get(f"/v1/workflows/{child}/logs", who)
            assert logs["items"] and {line["message"] for line in logs["items"]} == {HIDDEN}

            # The parent of a classified child: the node that ran it, what reads it, the
            # result (F1, the other way).
            detail = await api.get(f"/v1/workflows/{plain_parent}", who)
            outputs = {n: v["output"] for n, v in detail["nodes"].items()}
            assert outputs["sub"] == outputs["report"] == outputs["output"] == PHI
            assert (await api.get(f"/v1/workflows/{plain_parent}/results", who))["result"] == PHI
            rendered = await api.get(f"/v1/workflows/{plain_parent}/nodes/report/inputs", who)
            assert rendered["items"] and rendered["items"][0]["inputs"] == PHI

            # A classified node's error: its kind kept, its text hidden (F2).
            detail = await api.get(f"/v1/workflows/{parent}", who)
            error = detail["nodes"]["explode"]["error"]
            assert error["message"] == HIDDEN and error["type"] == "ValueError"
            assert error["category"] and "transient" in error
            assert detail["error"]["message"] == HIDDEN
            assert detail["error"]["nodes"] == ["explode"]
            events = (await api.get(f"/v1/workflows/{parent}/events?limit=1000", who))["items"]
            failed = [e for e in events if e["type"] == "node.failed"]
            assert [e["data"]["error"]["message"] for e in failed] == [HIDDEN]

            # An approval's message rendered from classified data (F10).
            events = (await api.get(f"/v1/workflows/{waiting}/events?limit=1000", who))["items"]
            wait = next(e for e in events if e["type"] == "node.waiting")
            assert wait["data"]["masked"] == "phi" and "message" not in wait["data"]
            assert wait["data"]["reason"] == "approval"

        admin_wait = json.loads(admin[f"/v1/workflows/{waiting}/events?limit=1000"])["items"]
        message = next(e for e in admin_wait if e["type"] == "node.waiting")["data"]["message"]
        assert message == f"Release record: {DIAGNOSIS} for {NAME}"


async def test_a_classified_nodes_declared_config_is_masked_for_viewers(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with serving("embedded", tmp_path, request) as api:
        await api.submit(LITERAL)
        path = "/v1/definitions/mfx-literal?include_source=true"
        admin = await api.get(path, ADMIN)
        nodes = {n["id"]: n for n in admin["spec"]["dag"]["nodes"]}
        assert nodes["rec"]["config"]["value"]["patient"] == NAME
        assert NAME in admin["source"]
        for who in (VIEWER, OPERATOR):
            shown = await api.get(path, who)
            _hidden(json.dumps(shown), f"the definition for {who}", NAME)
            nodes = {n["id"]: n for n in shown["spec"]["dag"]["nodes"]}
            assert nodes["rec"]["config"] == {"value": {"patient": HIDDEN, "diagnosis": HIDDEN}}
            assert nodes["rec"]["data_classification"] == "phi"
            assert nodes["input"]["config"] == {"defaults": {"contact": "[email]"}}
            assert shown["source"] == HIDDEN


async def test_a_classified_input_nodes_trigger_inputs_are_masked_for_viewers(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with serving("embedded", tmp_path, request) as api:
        await api.submit(SCHEDULED)
        hidden = {"patient": HIDDEN, "contact": HIDDEN}
        admin = await api.get("/v1/definitions/mfx-scheduled", ADMIN)
        assert admin["spec"]["triggers"][0]["inputs"]["patient"] == NAME
        (schedule,) = (await api.get("/v1/schedules", ADMIN))["schedules"]
        assert schedule["inputs"]["patient"] == NAME
        for who in (VIEWER, OPERATOR):
            shown = await api.get("/v1/definitions/mfx-scheduled", who)
            assert shown["spec"]["triggers"][0]["inputs"] == hidden
            assert shown["spec"]["triggers"][0]["schedule"] == "0 2 * * *"
            (schedule,) = (await api.get("/v1/schedules", who))["schedules"]
            assert schedule["inputs"] == hidden
            one = await api.get(f"/v1/schedules/{schedule['id']}", who)
            assert one["inputs"] == hidden


MAP_PARENT = {
    "name": "mfx-map-parent",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                "id": "each",
                "handler": "map",
                "dependencies": ["input"],
                "config": {
                    "items": ["{{ input.patient }}", "Someone Else"],
                    "handler": "workflow",
                    "config": {"workflow": "mfx-phi-child", "inputs": {"patient": "{{ item }}"}},
                },
            },
            {
                "id": "report",
                "handler": "noop",
                "dependencies": ["each"],
                "config": {"value": "{{ each.output }}"},
            },
        ]
    },
}

WAITING_CHILD = {
    "name": "mfx-waiting-child",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                **_python("diag", "mfx_diagnose", ["input"], patient="{{ input.patient }}"),
                "data_classification": "phi",
            },
            {
                "id": "ok",
                "handler": "approval",
                "dependencies": ["diag"],
                "config": {"message": "{{ diag.output.diagnosis }}", "approvers": ["admin"]},
            },
        ]
    },
}


async def test_a_map_of_classified_children_and_a_child_still_running_classify_the_parent(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with serving("embedded", tmp_path, request) as api:
        await api.submit(PHI_CHILD)
        await api.submit(WAITING_CHILD)
        mapped = await api.run(MAP_PARENT, ("COMPLETED",))
        admin = await api.text(f"/v1/workflows/{mapped}", ADMIN)
        assert f"{DIAGNOSIS} for Someone Else" in admin
        waiting_parent = {
            "name": "mfx-waiting-parent",
            "dag": {
                "nodes": [
                    {"id": "input", "handler": "input"},
                    {
                        "id": "sub",
                        "handler": "workflow",
                        "dependencies": ["input"],
                        "config": {
                            "workflow": "mfx-waiting-child",
                            "inputs": {"patient": "{{ input.patient }}"},
                        },
                    },
                ]
            },
        }
        parent = await api.run(waiting_parent, ("WAITING",))
        for who in (VIEWER, OPERATOR):
            detail = await api.get(f"/v1/workflows/{mapped}", who)
            outputs = {n: v["output"] for n, v in detail["nodes"].items()}
            assert outputs["each"] == outputs["report"] == PHI
            _hidden(json.dumps(detail), f"the map's parent for {who}")
            # The child waits: its parent's node names it only in its wait, and holds its data
            # from then on; the child's id stays readable (the dashboard links to it).
            events = (await api.get(f"/v1/workflows/{parent}/events?limit=1000", who))["items"]
            wait = next(e for e in events if e["type"] == "node.waiting" and e["node_id"] == "sub")
            assert wait["data"]["child_execution_id"]
            child = await api.get(f"/v1/workflows/{wait['data']['child_execution_id']}", who)
            assert child["nodes"]["diag"]["output"] == PHI
            _hidden(json.dumps(child), f"the waiting child for {who}")
        await api.client.delete(f"/v1/workflows/{parent}", headers=OPERATOR)
