"""The reference descriptions' own API paths through ``orchestrion serve`` (a real uvicorn
process): each description's calls as its curl examples write them, then the same keys,
required headers and problem documents as /v1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from answering_proxy import AnsweringProxy
from test_api_server import CLI, REFERENCE, Server, free_port

pytestmark = pytest.mark.slow

JSON = {"Content-Type": "application/json"}
# The SwarmLite description's start call, as its curl writes it (headers and body).
SWARMLITE_CURL = (
    '{\n    "definition": "workflow_id: api_test\\ntasks:\\n  - id: task1\\n    type: python'
    '\\n    depends_on: []\\n    config:\\n      function: \\"validate_schema\\"\\n  - id: task2'
    "\\n    type: python\\n    depends_on: [task1]\\n    config:\\n      function: "
    '\\"clean_dataframe\\""\n  }'
)
SWARMLITE_HEADERS = {**JSON, "X-Request-Source": "test", "X-Client-ID": "test-client"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with AnsweringProxy() as proxy:
        env = {**proxy.env(), "ORCHESTRION_REQUIRED_HEADERS": "X-Request-Source,X-Client-ID"}
        running = Server(tmp_path, tmp_path / "compat.db", env)
        try:
            yield running
        finally:
            assert running.stop() == 0, running.log.read_text()


def poll(client: httpx.Client, path: str, *states: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(path).json()
        if body["status"] in states:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_swarmlite_curl_session(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        started = client.post("/workflows/start", content=SWARMLITE_CURL, headers=SWARMLITE_HEADERS)
        assert started.status_code == 202, started.text
        assert started.json()["workflow_id"] == "api_test"
        # `curl http://localhost:8000/workflows/api_test/status`
        status = poll(client, "/workflows/api_test/status", "COMPLETED", "FAILED")
        assert status["status"] == "COMPLETED", status
        assert status["execution_id"] == started.json()["execution_id"]
        assert status["node_states"] == {"task1": "COMPLETED", "task2": "COMPLETED"}
        # its table: the start call needs X-Request-Source and X-Client-ID
        refused = client.post("/workflows/start", content=SWARMLITE_CURL, headers=JSON)
        assert refused.status_code == 400
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "X-Request-Source, X-Client-ID" in refused.json()["detail"]
        stopped = client.post("/workflows/api_test/stop", headers=SWARMLITE_HEADERS)
        assert stopped.status_code == 409, stopped.text  # it has finished: nothing to stop
        for path in ("/health", "/health/governance", "/health/compliance"):
            assert client.get(path).status_code == 200, path


def test_unversioned_curl_session(server: Server) -> None:
    headers = {**JSON, "X-Request-Source": "t", "X-Client-ID": "c"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        body = (REFERENCE / "simple_llm_workflow.json").read_text()
        submitted = client.post("/workflow", content=body, headers=headers)
        assert submitted.status_code == 201, submitted.text
        assert submitted.json()["status"] == "PENDING"
        execution_id = submitted.json()["execution_id"]
        override = (
            '{\n  "summarize_posts": {\n    "prompt": "Recent Posts: {{ get_posts.output.data }}.'
            ' Task: Summarize this user activity"\n   }\n}'
        )
        triggered = client.post(
            f"/workflow/trigger/{execution_id}", content=override, headers=headers
        )
        assert triggered.status_code == 202, triggered.text
        assert triggered.json()["status"] == "RUNNING"
        final = poll(client, f"/workflows/{execution_id}", "COMPLETED", "FAILED")
        assert final["status"] == "COMPLETED", final
        posts = final["nodes"]["get_posts"]
        assert posts["state"] == "COMPLETED"
        assert "Response from https://api.example.com/posts" in json.dumps(posts["output"])
        results = client.get(f"/workflows/{execution_id}/results").json()
        assert results["completed"] is True and results["status"] == "COMPLETED"
        assert results["results"]["final_status"] == "workflow_completed"
        summary = results["results"]["aggregated_results"]["summarize_posts"]["result"]
        assert "Summarize this user activity" in summary
        assert results["message"] == "Results retrieved successfully."


def test_api_v1_curl_session(server: Server) -> None:
    headers = {"X-Request-Source": "t", "X-Client-ID": "c"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        body = (REFERENCE / "parallel_api_fetcher.json").read_text()
        submitted = client.post("/api/v1/workflow", content=body, headers={**JSON, **headers})
        assert submitted.status_code == 201, submitted.text
        execution_id = submitted.json()["execution_id"]
        # `curl -s -X POST .../api/v1/workflow/trigger/{execution_id}`: no body at all
        triggered = client.post(f"/api/v1/workflow/trigger/{execution_id}", headers=headers)
        assert triggered.status_code == 202, triggered.text
        final = poll(client, f"/api/v1/workflow/{execution_id}", "COMPLETED", "FAILED")
        assert final["status"] == "COMPLETED", final
        results = client.get(f"/api/v1/workflow/{execution_id}/results").json()
        assert set(results["results"]["aggregated_results"]) == {"get_user", "get_posts"}
        cancelled = client.delete(f"/api/v1/workflow/{execution_id}", headers=headers)
        assert cancelled.status_code == 409  # already completed
        dlq = client.get("/api/v1/admin/dlq")
        assert dlq.status_code == 200 and dlq.json()["items"] == []
        assert client.get("/metrics").status_code == 200


def test_keys_guard_every_surface(tmp_path: Path) -> None:
    env = {"ORCHESTRION_API_KEYS": "op-key-1:operator,view-key-2:viewer"}
    server = Server(tmp_path, tmp_path / "keys.db", env)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for method, path in [
                ("POST", "/workflows/start"), ("GET", "/workflows/x/status"),
                ("POST", "/workflow"), ("GET", "/workflows/x"),
                ("POST", "/api/v1/workflow"), ("GET", "/api/v1/admin/dlq"),
            ]:  # fmt: skip
                response = client.request(method, path, content=b"{not json")
                assert response.status_code == 401, (path, response.text)
                assert response.json()["instance"] == path
            viewer = {"Authorization": "Bearer view-key-2"}
            refused = client.post(
                "/workflows/start", content=SWARMLITE_CURL, headers={**JSON, **viewer}
            )
            assert refused.status_code == 403
            operator = {**JSON, "Authorization": "Bearer op-key-1"}
            started = client.post("/workflows/start", content=SWARMLITE_CURL, headers=operator)
            assert started.status_code == 202, started.text
            status = client.get("/workflows/api_test/status", headers=viewer)
            assert status.status_code == 200 and status.json()["workflow_id"] == "api_test"
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_reference_variables_configure_serve(tmp_path: Path) -> None:
    """`orchestrion serve` with no option: the SwarmLite description's SERVER_HOST,
    SERVER_PORT and DATABASE_URL and the worker concurrency variable of another design."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRION_")}
    env.update(
        SERVER_HOST="127.0.0.1",
        SERVER_PORT=str(port),
        DATABASE_URL=f"sqlite:///{tmp_path / 'swarmlite.db'}",
        WORKER_CONCURRENCY="3",
        LOG_LEVEL="info",
    )
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [*CLI, "serve"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.05)
        assert health.status_code == 200
        assert health.json()["checks"]["workers"]["info"]["concurrency"] == 3
        assert (tmp_path / "swarmlite.db").is_file()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, (tmp_path / "serve.log").read_text()
        log.close()
