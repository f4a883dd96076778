"""``orchestrion serve`` as a real uvicorn process: the reference curl sessions, streams,
metrics, JSON logs, and a graceful SIGTERM that leaves unfinished work resumable."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from answering_proxy import AnsweringProxy
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "examples" / "reference"
CLI = [sys.executable, "-m", "orchestrion.cli.app"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``orchestrion serve`` on a free loopback port and a SQLite file, until ``stop``."""

    def __init__(self, folder: Path, db: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"server-{self.port}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        full_env.pop("OPENAI_API_KEY", None)
        full_env.update({"ORCHESTRION_RATE_LIMIT_PER_SECOND": "0", **(env or {})})
        command = [
            *CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--db", str(db),
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=folder
            )
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"server not healthy in {timeout}s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"no exit after {sig!r}:\n{self.log.read_text()}") from None
        return int(self.process.returncode)

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@pytest.fixture
def proxy() -> Iterator[AnsweringProxy]:
    with AnsweringProxy() as running:
        yield running


@pytest.fixture
def proxied_server(tmp_path: Path, proxy: AnsweringProxy) -> Iterator[Server]:
    server = Server(tmp_path, tmp_path / "ref.db", proxy.env())
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log.read_text()


def until(client: httpx.Client, execution_id: str, *states: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/workflows/{execution_id}").json()
        if body["status"] in states:
            return dict(body)
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_reference_001_curl_session(proxied_server: Server) -> None:
    json_header = {"Content-Type": "application/json"}
    with httpx.Client(base_url=proxied_server.url, timeout=10) as client:
        # 1. Submit (the README's body, which examples/reference holds verbatim)
        body = (REFERENCE / "parallel_api_fetcher.json").read_text()
        submitted = client.post("/v1/workflow", content=body, headers=json_header)
        assert submitted.status_code == 201, submitted.text
        answer = submitted.json()
        assert {"workflow_definition_id", "execution_id", "message"} <= set(answer)
        assert answer["message"] == "Workflow submitted successfully"
        execution_id = answer["execution_id"]
        # 2. Trigger
        triggered = client.post(
            f"/v1/workflow/trigger/{execution_id}",
            content='{"input_params": {"user_id": 123}}',
            headers=json_header,
        )
        assert triggered.status_code == 202, triggered.text
        assert triggered.json()["execution_id"] == execution_id
        assert triggered.json()["message"] == "Workflow started successfully"
        # 3. Check status
        status = client.get(f"/v1/workflows/{execution_id}").json()
        assert status["id"] == execution_id and status["state"] in ("RUNNING", "COMPLETED")
        assert status["started_at"]
        assert set(status["node_states"]) == {"input", "get_user", "get_posts", "output"}
        final = until(client, execution_id, "COMPLETED", "FAILED")
        assert final["state"] == "COMPLETED", final
        assert final["nodes"]["input"]["output"] == {"user_id": 123}
        # 4. Results
        results = client.get(f"/v1/workflows/{execution_id}/results").json()
        assert results["completed"] is True
        aggregated = results["results"]["aggregated_results"]
        assert set(aggregated) == {"get_user", "get_posts"}
        assert "api.example.com/user" in json.dumps(aggregated["get_user"])
        # The API table's health check
        health = client.get("/v1/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"


def test_reference_003_curl_session(proxied_server: Server) -> None:
    with httpx.Client(base_url=proxied_server.url, timeout=10) as client:
        body = (REFERENCE / "simple_llm_workflow.json").read_text()
        submitted = client.post(
            "/v1/workflow", content=body, headers={"Content-Type": "application/json"}
        )
        assert submitted.status_code == 201, submitted.text
        assert submitted.json()["status"] == "PENDING"
        execution_id = submitted.json()["execution_id"]
        override = (
            '{\n  "summarize_posts": {\n    "prompt": "Recent Posts: {{ get_posts.output.data }}.'
            ' Task: Summarize this user activity"\n   }\n}'
        )
        triggered = client.post(
            f"/v1/workflow/trigger/{execution_id}",
            content=override,
            headers={"Content-Type": "application/json"},
        )
        assert triggered.status_code == 202, triggered.text
        assert triggered.json() == {
            "execution_id": execution_id,
            "status": "RUNNING",
            "message": "Workflow started successfully",
        }
        final = until(client, execution_id, "COMPLETED", "FAILED")
        assert final["status"] == "COMPLETED", final
        posts = final["nodes"]["get_posts"]
        assert posts["state"] == "COMPLETED"
        assert "Response from https://api.example.com/posts" in json.dumps(posts["output"])
        results = client.get(f"/v1/workflows/{execution_id}/results").json()
        assert results["status"] == "COMPLETED" and results["completed"] is True
        assert results["results"]["final_status"] == "workflow_completed"
        summary = results["results"]["aggregated_results"]["summarize_posts"]["result"]
        assert summary.startswith("LLM generated a summary for the prompt 'Recent Posts: ")
        assert "Response from https://api.example.com/posts" in summary
        assert "Summarize this user activity" in summary
        assert results["message"] == "Results retrieved successfully."


class SseBlocks:
    """The events of a stream's lines, one per blank-line-ended block (comments skipped)."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def feed(self, line: str) -> dict[str, Any] | None:
        if line.startswith(":"):
            return None
        if line:
            key, _, value = line.partition(": ")
            self.fields[key] = value
            return None
        fields, self.fields = self.fields, {}
        if "data" not in fields:
            return None
        event: dict[str, Any] = json.loads(fields["data"])
        assert str(event["seq"]) == fields["id"] and event["type"] == fields["event"]
        return event


def _read_sse(response: httpx.Response, stop: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    blocks = SseBlocks()
    for line in response.iter_lines():
        event = blocks.feed(line)
        if event is not None:
            events.append(event)
            if stop(event):
                break
    return events


def test_streams_metrics_and_json_logs(tmp_path: Path) -> None:
    server = Server(tmp_path, tmp_path / "s.db")
    flow = {
        "name": "streamed",
        "dag": {
            "nodes": [
                {
                    "id": "a",
                    "handler": "python",
                    "config": {"function": "sleep", "params": {"seconds": 0.3}},
                },
                {"id": "b", "handler": "noop", "dependencies": ["a"], "config": {"value": 1}},
            ]
        },
    }
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            execution_id = client.post("/v1/workflow", json=flow).json()["execution_id"]
            with client.stream("GET", "/v1/events/stream") as stream:
                triggered = client.post(
                    f"/v1/workflow/trigger/{execution_id}", headers={"X-Request-ID": "e2e-corr-1"}
                )
                assert triggered.status_code == 202
                events = _read_sse(
                    stream,
                    lambda e: (
                        e["type"] == "execution.completed" and e["execution_id"] == execution_id
                    ),
                )
            mine = [e for e in events if e["execution_id"] == execution_id]
            assert (
                mine[0]["type"] == "execution.started" and mine[-1]["type"] == "execution.completed"
            )
            assert all(e["correlation_id"] == "e2e-corr-1" for e in mine)

            url = f"/v1/workflows/{execution_id}/events/stream"
            resume_after = mine[2]["seq"]
            with client.stream("GET", url, headers={"Last-Event-ID": str(resume_after)}) as stream:
                rest = _read_sse(stream, lambda e: False)  # ends by itself: the run is over
            assert [e["seq"] for e in rest] == [e["seq"] for e in mine if e["seq"] > resume_after]

            text = client.get("/metrics").text
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            assert samples[("orchestrion_executions_total", (("status", "completed"),))] == 1
            assert (
                samples[("orchestrion_node_duration_seconds_count", (("handler", "python"),))] == 1
            )
    finally:
        assert server.stop(signal.SIGINT) == 0, server.log.read_text()
    lines = server.log_lines()  # every line is JSON (the default format of serve)
    assert any("listening on" in line["message"] for line in lines)
    transitions = [line for line in lines if line.get("execution_id") == execution_id]
    # Should it fail again: the transition lines there are, whatever id they carry.
    written = [line for line in lines if line["logger"] == "orchestrion.api.transitions"]
    assert {line.get("node_id") for line in transitions} >= {"a", "b"}, (execution_id, written)
    assert all(line["correlation_id"] == "e2e-corr-1" for line in transitions)
    access = [line for line in lines if line["logger"] == "orchestrion.api.access"]
    trigger = [line for line in access if line.get("request_id") == "e2e-corr-1"]
    assert trigger and trigger[0]["status"] == 202
    assert trigger[0]["route"] == "/v1/workflow/trigger/{execution_id}"
    assert not any("Traceback" in json.dumps(line) for line in lines)


def test_many_streams_share_reads_and_each_get_every_event_once(tmp_path: Path) -> None:
    # Streams woken by one commit share one read of the journal, one view of the execution
    # and one encoding of each event per view: per-execution and global streams, admins and
    # masked viewers, each gets every event of a 25-node chain exactly once, in order, as
    # its caller's own page of the journal shows it.
    keys = {"admin": "stream-admin-key-0123456789", "viewer": "stream-viewer-key-0123456789"}
    api_keys = ",".join(f"{key}:{role}" for role, key in keys.items())
    server = Server(tmp_path, tmp_path / "s.db", env={"ORCHESTRION_API_KEYS": api_keys})
    chain = [
        {
            "id": f"n{i}",
            "handler": "noop",
            "config": {"sleep": 0.01},
            "dependencies": [f"n{i - 1}"] if i else [],
        }
        for i in range(25)
    ]
    admin = {"Authorization": f"Bearer {keys['admin']}"}

    async def scenario() -> tuple[list[tuple[str, list[Any]]], dict[str, list[Any]]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=admin) as client:
            flow = {"name": "watched", "dag": {"nodes": chain}}
            execution_id = (await client.post("/v1/workflow", json=flow)).json()["execution_id"]

            async def watch(path: str, role: str) -> tuple[str, list[Any]]:
                headers = {"Authorization": f"Bearer {keys[role]}"}
                async with (
                    httpx.AsyncClient(base_url=server.url, timeout=30, headers=headers) as mine,
                    mine.stream("GET", path) as stream,
                ):
                    assert stream.status_code == 200
                    seen, blocks = [], SseBlocks()
                    async for line in stream.aiter_lines():
                        event = blocks.feed(line)
                        if event is None or event["execution_id"] != execution_id:
                            continue
                        seen.append(event)
                        if event["type"] == "execution.completed":
                            break
                    return role, seen

            own = f"/v1/workflows/{execution_id}/events/stream"
            watchers = [
                asyncio.create_task(watch(path, role))
                for path in (own, "/v1/events/stream")
                for role in ("admin", "viewer")
                for _ in range(6)
            ]
            await asyncio.sleep(0.5)  # every stream open before the first commit
            triggered = await client.post(f"/v1/workflow/trigger/{execution_id}", json={})
            assert triggered.status_code == 202
            seen = await asyncio.wait_for(asyncio.gather(*watchers), 60)
            journal = {}
            for role, key in keys.items():
                page = await client.get(
                    f"/v1/workflows/{execution_id}/events?limit=1000",
                    headers={"Authorization": f"Bearer {key}"},
                )
                journal[role] = page.json()["items"]
            return list(seen), journal

    try:
        seen, journal = asyncio.run(scenario())
    finally:
        assert server.stop(signal.SIGINT) == 0, server.log.read_text()
    assert len(journal["admin"]) > 50
    assert all(got == journal[role] for role, got in seen)


def _states(db: Path) -> tuple[str, dict[str, tuple[str, int]]]:
    with sqlite3.connect(db) as conn:
        status = conn.execute("SELECT status FROM executions").fetchone()[0]
        nodes = {
            node: (state, attempt)
            for node, state, attempt in conn.execute(
                "SELECT node_id, state, attempt FROM node_runs"
            )
        }
    return status, nodes


SLOW_THEN_FAST = {
    "name": "graceful",
    "dag": {
        "nodes": [
            {
                "id": "slow",
                "handler": "python",
                "config": {"function": "sleep", "params": {"seconds": 2}},
            },
            {
                "id": "after",
                "handler": "noop",
                "dependencies": ["slow"],
                "config": {"value": "done"},
            },
        ]
    },
}


def _start_slow(server: Server) -> str:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        execution_id = str(client.post("/v1/workflow", json=SLOW_THEN_FAST).json()["execution_id"])
        assert client.post(f"/v1/workflow/trigger/{execution_id}").status_code == 202
        deadline = time.monotonic() + 10
        while (
            client.get(f"/v1/workflows/{execution_id}").json()["nodes"]["slow"]["state"]
            != "RUNNING"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    return execution_id


def _finish(server: Server, execution_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        final = until(client, execution_id, "COMPLETED", "FAILED")
        page = client.get(f"/v1/workflows/{execution_id}/events", params={"limit": 1000})
        return final, list(page.json()["items"])


@pytest.mark.parametrize(
    ("grace", "finishes_in_grace"),
    [("5", True), ("0.2", False)],
    ids=["in-flight-node-finishes", "node-past-the-grace-runs-again"],
)
def test_sigterm_is_graceful_and_the_rest_resumes_on_restart(
    tmp_path: Path, grace: str, finishes_in_grace: bool
) -> None:
    db = tmp_path / "graceful.db"
    env = {"ORCHESTRION_SHUTDOWN_GRACE": grace}
    server = Server(tmp_path, db, env)
    execution_id = _start_slow(server)
    stopped_at = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0, server.log.read_text()
    took = time.monotonic() - stopped_at
    status, nodes = _states(db)
    assert status == "running"  # unfinished, resumable
    if finishes_in_grace:
        assert nodes["slow"][0] == "completed" and took >= 1.0  # it was waited for
        assert nodes.get("after", ("pending", 0))[0] in ("pending", "queued")
    else:
        assert nodes["slow"][0] in ("queued", "running") and took < 5
    log = server.log.read_text()
    assert "Traceback" not in log

    restarted = Server(tmp_path, db, env)
    try:
        final, events = _finish(restarted, execution_id)
    finally:
        assert restarted.stop() == 0
    assert final["status"] == "COMPLETED", final
    assert final["nodes"]["after"]["output"] == "done"
    assert final["nodes"]["slow"]["attempt"] == 1  # the same attempt, run again if cut off
    order = [(e["type"], e["node_id"]) for e in events]
    recovered = order.index(("execution.recovered", None))
    slow_done = order.index(("node.completed", "slow"))
    # Finished within the grace: before the restart; cut off: run again after it.
    assert (slow_done < recovered) == finishes_in_grace, order


def test_200_executions_started_at_the_same_moment_are_all_accepted_and_completed(
    tmp_path: Path,
) -> None:
    """200 callers start an execution at once (each on its own connection): every one is
    answered 202 and completes (Prefect's local server answered 503 at 20)."""
    import asyncio

    server = Server(tmp_path, tmp_path / "many.db")
    diamond = {
        "name": "diamond",
        "dag": {
            "nodes": [
                {"id": "a", "handler": "noop"},
                {"id": "b", "handler": "noop", "dependencies": ["a"]},
                {"id": "c", "handler": "noop", "dependencies": ["a"]},
                {"id": "d", "handler": "noop", "dependencies": ["b", "c"]},
            ]
        },
    }

    async def storm() -> tuple[list[int], list[str]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as admin:
            assert (await admin.post("/v1/workflow", json=diamond)).status_code == 201
        pools = [
            httpx.AsyncClient(
                base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=50)
            )
            for _ in range(4)
        ]
        go = asyncio.Event()

        async def start(n: int) -> httpx.Response:
            await go.wait()
            return await pools[n % 4].post("/v1/definitions/diamond/executions", json={})

        callers = [asyncio.create_task(start(n)) for n in range(200)]
        await asyncio.sleep(0.1)
        go.set()
        answers = await asyncio.gather(*callers)
        ids = [r.json()["execution_id"] for r in answers if r.status_code == 202]
        statuses: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while len(statuses) < len(ids) and time.monotonic() < deadline:
            for eid in ids:
                if eid not in statuses:
                    body = (await pools[0].get(f"/v1/workflows/{eid}")).json()
                    if body["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                        statuses[eid] = body["status"]
            await asyncio.sleep(0.1)
        for pool in pools:
            await pool.aclose()
        return [r.status_code for r in answers], [statuses.get(eid, "?") for eid in ids]

    try:
        codes, statuses = asyncio.run(storm())
    finally:
        assert server.stop() == 0, server.log.read_text()
    assert codes == [202] * 200
    assert statuses == ["COMPLETED"] * 200
