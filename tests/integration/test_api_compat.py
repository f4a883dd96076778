"""The reference descriptions' own APIs, in-process: each documented call as its description
writes it, on the same engine, keys, limits, audit and problem documents as /v1.

The SwarmLite description (``/workflows/start``, ``/workflows/{id}/status``, ``/stop``), the
Kafka-queue engine's (``/workflow``, ``/workflows/{id}`` without ``/v1``) and the
production-grade orchestrator's (``/api/v1/...``).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from test_api import QUICK, SLOW, Api, assert_problem, serving
from test_api_audit import ADMIN, KEYS, OPERATOR, VIEWER
from test_api_audit import serving as audited_serving

from audit_helpers import audited

# The SwarmLite description's curl session, byte for byte.
SWARMLITE_START = {
    "definition": "workflow_id: api_test\ntasks:\n  - id: task1\n    type: python\n"
    '    depends_on: []\n    config:\n      function: "validate_schema"\n  - id: task2\n'
    '    type: python\n    depends_on: [task1]\n    config:\n      function: "clean_dataframe"'
}
SWARMLITE_HEADERS = {"X-Request-Source": "test", "X-Client-ID": "test-client"}
JSON_TYPE = {"Content-Type": "application/json"}

# The Kafka-queue engine description's submit and trigger bodies, as written.
SIMPLE_LLM = {
    "name": "Simple LLM Workflow",
    "dag": {
        "nodes": [
            {
                "id": "get_posts",
                "handler": "call_external_service",
                "config": {"url": "https://api.example.com/posts"},
            },
            {
                "id": "summarize_posts",
                "handler": "call_llm_service",
                "dependencies": ["get_posts"],
                "config": {"prompt": "Summarize the following posts: {{ get_posts.output.data }}"},
            },
            {"id": "output", "handler": "output", "dependencies": ["summarize_posts"]},
        ]
    },
}
SIMPLE_LLM_TRIGGER = {
    "summarize_posts": {
        "prompt": "Recent Posts: {{ get_posts.output.data }}. Task: Summarize this user activity"
    }
}


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


async def settled(api: Api, path: str, *states: str, timeout: float = 20) -> dict[str, Any]:
    """Poll a status route (any surface) until ``status`` is one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        response = await api.client.get(path)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in states:
            return body
        assert time.monotonic() < deadline, f"{path} stayed {body['status']}"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ SwarmLite


async def test_swarmlite_start_then_status_by_workflow_id_as_in_its_curl(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        started = await api.client.post(
            "/workflows/start", json=SWARMLITE_START, headers=SWARMLITE_HEADERS
        )
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["workflow_id"] == "api_test" and body["version"] == "1"
        assert body["status"] in ("RUNNING", "COMPLETED")
        execution_id = body["execution_id"]

        # `curl http://localhost:8000/workflows/api_test/status`: the workflow's name
        status = await settled(api, "/workflows/api_test/status", "COMPLETED")
        assert status["execution_id"] == execution_id and status["workflow_id"] == "api_test"
        assert status["node_states"] == {"task1": "COMPLETED", "task2": "COMPLETED"}
        by_id = await api.client.get(f"/workflows/{execution_id}/status")
        assert by_id.status_code == 200 and by_id.json()["execution_id"] == execution_id
        # the same execution as /v1 sees it
        v1 = (await api.client.get(f"/v1/workflows/{execution_id}")).json()
        assert v1["status"] == "COMPLETED" and v1["workflow"] == "api_test"

        # a second start of the same workflow: its name now reads the newer execution
        again = await api.client.post(
            "/workflows/start", json=SWARMLITE_START, headers=SWARMLITE_HEADERS
        )
        newer = again.json()["execution_id"]
        assert newer != execution_id
        status = await settled(api, "/workflows/api_test/status", "COMPLETED")
        assert status["execution_id"] == newer


async def test_swarmlite_start_takes_yaml_json_text_or_an_object(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        for definition in (json.dumps(QUICK), QUICK):
            response = await api.client.post(
                "/workflows/start",
                json={"definition": definition, "input_params": {"name": "ada"}},
            )
            assert response.status_code == 202, response.text
            execution_id = response.json()["execution_id"]
            done = await settled(api, f"/workflows/{execution_id}/status", "COMPLETED")
            assert done["inputs"] == {"name": "ada"}


async def test_swarmlite_stop_cancels_by_name_then_409(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        started = await api.client.post("/workflows/start", json={"definition": SLOW})
        assert started.status_code == 202, started.text
        stopped = await api.client.post("/workflows/slow/stop")
        assert stopped.status_code == 202, stopped.text
        assert stopped.json()["status"] == "CANCELLED"
        assert stopped.json()["execution_id"] == started.json()["execution_id"]
        assert_problem(await api.client.post("/workflows/slow/stop"), 409)


async def test_swarmlite_errors_are_problem_documents(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        missing = assert_problem(await api.client.get("/workflows/nothing-here/status"), 404)
        assert "no workflow is named 'nothing-here'" in missing["detail"]
        assert_problem(await api.client.post("/workflows/nothing-here/stop"), 404)
        no_definition = assert_problem(await api.client.post("/workflows/start", json={}), 422)
        assert "definition" in json.dumps(no_definition["errors"])
        extra = assert_problem(
            await api.client.post("/workflows/start", json={"definition": "x", "dag": 1}), 422
        )
        assert "dag" in json.dumps(extra["errors"])
        cyclic = "workflow_id: c\ntasks:\n  - id: a\n    type: python\n    depends_on: [a]\n"
        invalid = assert_problem(
            await api.client.post("/workflows/start", json={"definition": cyclic}), 422
        )
        assert invalid["errors"] and any(e.get("node") == "a" for e in invalid["errors"])
        big = "workflow_id: b\n# " + "x" * 1_100_000 + "\ntasks: []\n"
        too_large = assert_problem(
            await api.client.post("/workflows/start", json={"definition": big}), 413
        )
        assert "definitions.max_bytes" in too_large["detail"]
        deep = '{"definition": ' + "[" * 100_000 + "]" * 100_000 + "}"
        nested = assert_problem(
            await api.client.post("/workflows/start", content=deep, headers=JSON_TYPE), 422
        )
        assert nested["errors"][0]["code"] == "too_deep"
        for path in ("/workflow", "/api/v1/workflow"):  # a definition body: the policy's bound
            deep_dag = '{"name": "d", "dag": ' + "[" * 100_000 + "]" * 100_000 + "}"
            response = await api.client.post(path, content=deep_dag, headers=JSON_TYPE)
            assert response.status_code in (413, 422), response.text
            assert_problem(response, response.status_code)
        get_start = assert_problem(await api.client.get("/workflows/start"), 405)
        assert get_start["detail"].endswith("allowed: POST")
        wrong_type = await api.client.post(
            "/workflows/start", content="definition: x", headers={"Content-Type": "text/yaml"}
        )
        assert_problem(wrong_type, 415)


async def test_swarmlite_idempotency_key_gives_the_same_execution(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        body = {**SWARMLITE_START, "idempotency_key": "order-42"}
        first = await api.client.post("/workflows/start", json=body)
        second = await api.client.post("/workflows/start", json=body)
        assert first.status_code == second.status_code == 202, second.text
        assert first.json()["execution_id"] == second.json()["execution_id"]
        assert second.json()["message"] == "Workflow was already started"
        header = await api.client.post(
            "/workflows/start", json=SWARMLITE_START, headers={"Idempotency-Key": "order-42"}
        )
        assert header.json()["execution_id"] == first.json()["execution_id"]


async def test_swarmlite_required_headers_as_its_table_says(tmp_path: Path) -> None:
    async with serving(tmp_path, required_headers="X-Request-Source,X-Client-ID") as api:
        refused = assert_problem(
            await api.client.post("/workflows/start", json=SWARMLITE_START), 400
        )
        assert refused["detail"] == "missing required headers: X-Request-Source, X-Client-ID"
        accepted = await api.client.post(
            "/workflows/start", json=SWARMLITE_START, headers=SWARMLITE_HEADERS
        )
        assert accepted.status_code == 202, accepted.text
        # status is a read: no required headers, as the description's table says
        await settled(api, "/workflows/api_test/status", "COMPLETED")


# ------------------------------------------------------------------ unversioned


async def test_unversioned_submit_trigger_status_results_as_written(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        submitted = await api.client.post("/workflow", json=SIMPLE_LLM)
        assert submitted.status_code == 201, submitted.text
        assert submitted.json()["status"] == "PENDING"
        execution_id = submitted.json()["execution_id"]
        triggered = await api.client.post(
            f"/workflow/trigger/{execution_id}", json=SIMPLE_LLM_TRIGGER
        )
        assert triggered.status_code == 202, triggered.text
        assert triggered.json()["execution_id"] == execution_id
        assert triggered.json()["status"] in ("RUNNING", "FAILED", "COMPLETED")
        status = await api.client.get(f"/workflows/{execution_id}")
        assert status.status_code == 200
        nodes = status.json()["nodes"]
        assert set(nodes) == {"get_posts", "summarize_posts", "output"}
        # a node with nothing out yet shows {}, as the description's example does
        assert nodes["output"]["state"] in ("PENDING", "SKIPPED", "CANCELLED")
        assert nodes["output"]["output"] == {}
        results = await api.client.get(f"/workflows/{execution_id}/results")
        assert results.status_code == 200
        assert {"execution_id", "status", "completed", "results", "message"} <= set(results.json())
        await api.client.delete(f"/v1/workflows/{execution_id}")  # the host does not resolve

        # a run to its end: results as the description shows them
        quick = (await api.client.post("/workflow", json=QUICK)).json()["execution_id"]
        await api.client.post(f"/workflow/trigger/{quick}", json={"input_params": {"name": "a"}})
        done = await settled(api, f"/workflows/{quick}", "COMPLETED")
        assert done["nodes"]["greet"]["state"] == "COMPLETED"
        results = (await api.client.get(f"/workflows/{quick}/results")).json()
        assert results["completed"] is True
        assert results["results"]["final_status"] == "workflow_completed"


async def test_unversioned_errors_are_problem_documents(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        assert_problem(await api.client.get("/workflows/no-such-id"), 404)
        assert_problem(await api.client.get("/workflows/no-such-id/results"), 404)
        assert_problem(await api.client.post("/workflow/trigger/no-such-id"), 404)
        cyclic = {"name": "c", "dag": {"nodes": [{"id": "a", "handler": "noop",
                                                  "dependencies": ["a"]}]}}  # fmt: skip
        assert_problem(await api.client.post("/workflow", json=cyclic), 422)
        pending = (await api.client.post("/workflow", json=QUICK)).json()["execution_id"]
        unknown = assert_problem(
            await api.client.post(f"/workflow/trigger/{pending}", json={"nope": {"a": 1}}), 422
        )
        assert "nope" in json.dumps(unknown)


# ------------------------------------------------------------------ /api/v1


async def test_api_v1_submit_trigger_status_results_cancel(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        submitted = await api.client.post("/api/v1/workflow", json=SLOW)
        assert submitted.status_code == 201, submitted.text
        execution_id = submitted.json()["execution_id"]
        triggered = await api.client.post(f"/api/v1/workflow/trigger/{execution_id}")
        assert triggered.status_code == 202 and triggered.json()["status"] == "RUNNING"
        deadline = time.monotonic() + 10
        while True:  # queued for a moment, then running (it sleeps far longer than this)
            status = await api.client.get(f"/api/v1/workflow/{execution_id}")
            assert status.status_code == 200, status.text
            if status.json()["node_states"] == {"nap": "RUNNING"} or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert status.json()["node_states"] == {"nap": "RUNNING"}
        results = await api.client.get(f"/api/v1/workflow/{execution_id}/results")
        assert results.status_code == 200 and results.json()["completed"] is False
        cancelled = await api.client.delete(f"/api/v1/workflow/{execution_id}")
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "CANCELLED"
        assert_problem(await api.client.delete(f"/api/v1/workflow/{execution_id}"), 409)
        assert_problem(await api.client.get("/api/v1/workflow/no-such-id"), 404)


async def test_api_v1_dead_letter_admin(tmp_path: Path) -> None:
    failing = {
        "name": "failing",
        "dag": {"nodes": [{"id": "boom", "handler": "python",
                           "config": {"function": "fail", "params": {"message": "no"}}}]},
    }  # fmt: skip
    async with serving(tmp_path) as api:
        execution_id = (await api.client.post("/api/v1/workflow", json=failing)).json()[
            "execution_id"
        ]
        await api.client.post(f"/api/v1/workflow/trigger/{execution_id}")
        await settled(api, f"/api/v1/workflow/{execution_id}", "FAILED")
        listed = await api.client.get("/api/v1/admin/dlq")
        assert listed.status_code == 200, listed.text
        ids = [item["id"] for item in listed.json()["items"]]
        assert ids == [f"{execution_id}.boom"]
        dropped = await api.client.delete(f"/api/v1/admin/dlq/{ids[0]}")
        assert dropped.status_code == 202 and dropped.json()["action"] == "dropped"
        assert (await api.client.get("/api/v1/admin/dlq")).json()["items"] == []
        assert_problem(await api.client.post(f"/api/v1/admin/dlq/{ids[0]}/retry"), 404)


# ------------------------------------------------------------------ shared policy


async def test_every_surface_needs_a_key_before_its_body_is_read(tmp_path: Path) -> None:
    async with serving(tmp_path, api_keys=KEYS) as api:
        calls = [
            ("POST", "/workflows/start"), ("GET", "/workflows/api_test/status"),
            ("POST", "/workflows/x/stop"), ("POST", "/workflow"),
            ("POST", "/workflow/trigger/x"), ("GET", "/workflows/x"),
            ("GET", "/workflows/x/results"), ("POST", "/api/v1/workflow"),
            ("GET", "/api/v1/workflow/x"), ("DELETE", "/api/v1/workflow/x"),
            ("GET", "/api/v1/admin/dlq"), ("GET", "/api/v1/nowhere"),
        ]  # fmt: skip
        for method, path in calls:
            # a body that is not even JSON: the 401 comes before anything reads it
            response = await api.client.request(method, path, content=b"{not json")
            problem = assert_problem(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert problem["instance"] == path
        viewer = await api.client.post(
            "/workflows/start", json=SWARMLITE_START, headers=bearer(VIEWER)
        )
        assert "operator role" in assert_problem(viewer, 403)["detail"]
        operator_dlq = await api.client.get("/api/v1/admin/dlq", headers=bearer(OPERATOR))
        assert_problem(operator_dlq, 403)
        started = await api.client.post(
            "/workflows/start", json=SWARMLITE_START, headers=bearer(OPERATOR)
        )
        assert started.status_code == 202, started.text
        read = await api.client.get("/workflows/api_test/status", headers=bearer(VIEWER))
        assert read.status_code == 200


async def test_every_surface_is_rate_limited(tmp_path: Path) -> None:
    async with serving(tmp_path, rate_limit_per_second=0.01, rate_limit_burst=2) as api:
        for path in ("/workflows/x/status", "/workflows/x"):
            assert (await api.client.get(path)).status_code == 404
        limited = await api.client.get("/api/v1/workflow/x")
        assert_problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1


async def test_compatibility_calls_are_audited_as_their_v1_verbs(tmp_path: Path) -> None:
    async with audited_serving(tmp_path, audited()) as (client, _engine):
        headers = bearer(OPERATOR, **SWARMLITE_HEADERS)
        started = await client.post("/workflows/start", json=SWARMLITE_START, headers=headers)
        assert started.status_code == 202, started.text
        submitted = await client.post("/api/v1/workflow", json=QUICK, headers=headers)
        assert submitted.status_code == 201
        page = await client.get("/v1/audit", params={"action": "api."}, headers=bearer(ADMIN))
        records = page.json()["records"]
    actions = [(r["action"], r["details"]["route"], r["outcome"]) for r in records]
    assert ("api.start_workflow", "/workflows/start", "202") in actions
    assert ("api.submit_workflow", "/api/v1/workflow", "201") in actions
    start = next(r for r in records if r["action"] == "api.start_workflow")
    assert start["execution_id"] == started.json()["execution_id"]
    assert start["details"]["client_id"] == "test-client"
