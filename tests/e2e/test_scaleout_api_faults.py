"""A real scale-out deployment (``orchestrion serve``, an orchestrator, a worker, a reaper) whose
Redis goes away and comes back, and the answers its control verbs give.

- A start whose hand-over to Redis fails is still a start: the API answers 202 with the
  execution (``PENDING``) instead of a 500, and the orchestrators' sweep of pending starts hands
  it over once Redis answers again, without any process restarting; nothing is made twice.
- Requests that need Redis while it is down answer 503 (a problem document), never 500 with a
  traceback in the log.
- Cancel, pause, resume and retry answer the execution's state after the request.

Redis here is a redis-server of the test's own, on a free port, with an append-only file so a
restart keeps its data (the epoch stays: no "Redis lost its data" recovery hands the start
over instead of the sweep).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster import Cluster

pytestmark = pytest.mark.slow


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_server(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A redis-server that keeps its data across restarts (an append-only file in workdir)."""
    binary = shutil.which("redis-server")
    assert binary is not None
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(workdir)]
    proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("redis-server did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()  # SIGTERM: redis-server flushes its append-only file and exits
    proc.wait(10)


def _definition(effects: Path, seconds: float) -> dict[str, Any]:
    return {
        "name": "faults",
        "dag": {
            "nodes": [
                {
                    "id": "step",
                    "handler": "python",
                    "config": {
                        "function": "crash_effects:keyed_effect",
                        "params": {"effects": str(effects), "seconds": seconds},
                    },
                }
            ]
        },
    }


def _wait_health(base: str, proc: subprocess.Popen[bytes], logs: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError((logs / "api.log").read_text(errors="replace")[-3000:])
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("orchestrion serve did not become healthy")


def _state(base: str, execution_id: str) -> str:
    reply = httpx.get(f"{base}/v1/workflows/{execution_id}", timeout=10)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["status"])


def _until(base: str, execution_id: str, wanted: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(base, execution_id)
        if state in wanted or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


@pytest.fixture
def deployment(tmp_path: Path, postgres_url: str) -> Any:
    if shutil.which("redis-server") is None:
        _unavailable("no redis-server binary to restart")
    redis_port, api_port = _free_port(), _free_port()
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis = _redis_server(redis_port, redis_dir)
    logs = tmp_path / "logs"
    cluster = Cluster.for_test(postgres_url, f"redis://127.0.0.1:{redis_port}/0", "faults", logs)
    holder = {"redis": redis}
    try:
        cluster.start("reaper", "reaper")
        cluster.start("orchestrator-0", "orchestrator")
        cluster.start("worker-0", "worker", "--concurrency", "4")
        cluster.start("api", "serve", "--host", "127.0.0.1", "--port", str(api_port))
        base = f"http://127.0.0.1:{api_port}"
        _wait_health(base, cluster.procs["api"], logs)

        def restart_redis(stop: bool) -> None:
            if stop:
                _stop(holder["redis"])
            else:
                holder["redis"] = _redis_server(redis_port, redis_dir)

        def freeze_redis(frozen: bool) -> None:
            """SIGSTOP: connections are accepted, nothing is answered (a hung server)."""
            holder["redis"].send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

        restart_redis.freeze = freeze_redis  # type: ignore[attr-defined]

        yield base, cluster, restart_redis, logs
    finally:
        if holder["redis"].poll() is None:
            holder["redis"].send_signal(signal.SIGCONT)
        cluster.stop()
        if holder["redis"].poll() is None:
            _stop(holder["redis"])


@pytest.mark.timeout(240)
def test_a_start_whose_hand_over_fails_is_accepted_and_swept(
    deployment: Any, tmp_path: Path
) -> None:
    base, cluster, restart_redis, logs = deployment
    effects = tmp_path / "effects"
    effects.mkdir()
    submitted = httpx.post(f"{base}/v1/workflow", json=_definition(effects, 0.0), timeout=30)
    assert submitted.status_code == 201, submitted.text
    untriggered = submitted.json()["execution_id"]
    # With Redis up, a start is handed over and runs.
    first = httpx.post(f"{base}/v1/definitions/faults/executions", json={}, timeout=30)
    assert first.status_code == 202, first.text
    assert _until(base, first.json()["execution_id"], {"COMPLETED"}, 60) == "COMPLETED"

    restart_redis(stop=True)
    try:
        start = httpx.post(f"{base}/v1/definitions/faults/executions", json={}, timeout=60)
        # Accepted (it is recorded and will be handed over), never a 500 the client retries.
        assert start.status_code == 202, start.text
        body = start.json()
        assert body["status"] == "PENDING", body
        swept = body["execution_id"]
        triggered = httpx.post(
            f"{base}/v1/workflow/trigger/{untriggered}",
            json={},
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert triggered.status_code == 202, triggered.text
        assert triggered.json()["status"] == "PENDING"
        # Reading needs only PostgreSQL; a verb Redis must carry answers 503.
        assert _state(base, swept) == "PENDING"
        cancelled = httpx.delete(f"{base}/v1/workflows/{swept}", timeout=60)
        assert cancelled.status_code == 503, cancelled.text
        assert cancelled.headers["content-type"].startswith("application/problem+json")
        assert "Redis" in cancelled.json()["detail"]
        dlq = httpx.get(f"{base}/v1/admin/dlq", timeout=60)
        assert dlq.status_code == 503, dlq.text
    finally:
        restart_redis(stop=False)

    # No process restarts: the orchestrator's sweep hands both starts over.
    assert _until(base, swept, {"COMPLETED", "FAILED"}, 90) == "COMPLETED", cluster.log_tail()
    assert _until(base, untriggered, {"COMPLETED", "FAILED"}, 60) == "COMPLETED"
    listed = httpx.get(f"{base}/v1/workflows", params={"limit": 100}, timeout=30).json()
    items = listed.get("items", listed.get("executions", listed))
    assert len(items) == 3, items  # the first, the swept one, the triggered one: no duplicate
    api_log = (logs / "api.log").read_text(errors="replace")
    assert "Traceback" not in api_log, api_log[-4000:]
    assert cluster.alive()["orchestrator-0"]


@pytest.mark.timeout(240)
def test_control_verbs_answer_the_state_after_the_request(deployment: Any, tmp_path: Path) -> None:
    base, _cluster, _restart, _logs = deployment
    effects = tmp_path / "effects"
    effects.mkdir()
    submitted = httpx.post(f"{base}/v1/workflow", json=_definition(effects, 30.0), timeout=30)
    assert submitted.status_code == 201, submitted.text
    execution_id = submitted.json()["execution_id"]
    started = httpx.post(
        f"{base}/v1/workflow/trigger/{execution_id}",
        json={},
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert started.status_code == 202, started.text
    assert started.json()["status"] in {"PENDING", "RUNNING"}
    assert _until(base, execution_id, {"RUNNING"}, 60) == "RUNNING"

    paused = httpx.post(f"{base}/v1/workflows/{execution_id}/pause", timeout=30)
    assert paused.status_code == 202, paused.text
    assert paused.json()["status"] == "PAUSED", paused.json()
    resumed = httpx.post(f"{base}/v1/workflows/{execution_id}/resume", timeout=30)
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["status"] == "RUNNING", resumed.json()
    cancelled = httpx.delete(f"{base}/v1/workflows/{execution_id}", timeout=30)
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED", cancelled.json()
    assert _state(base, execution_id) == "CANCELLED"
    retried = httpx.post(f"{base}/v1/workflows/{execution_id}/retry", timeout=30)
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "RUNNING", retried.json()
    again = httpx.delete(f"{base}/v1/workflows/{execution_id}", timeout=30)
    assert again.json()["status"] == "CANCELLED", again.json()

    # A decision answers the state after it too: no longer WAITING.
    asked = httpx.post(
        f"{base}/v1/workflow",
        json={"name": "ask", "dag": {"nodes": [{"id": "ask", "handler": "approval"}]}},
        timeout=30,
    )
    assert asked.status_code == 201, asked.text
    ask_id = asked.json()["execution_id"]
    httpx.post(
        f"{base}/v1/workflow/trigger/{ask_id}",
        json={},
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert _until(base, ask_id, {"WAITING"}, 60) == "WAITING"
    approved = httpx.post(f"{base}/v1/workflows/{ask_id}/nodes/ask/approve", json={}, timeout=30)
    assert approved.status_code == 202, approved.text
    assert approved.json()["status"] == "COMPLETED", approved.json()


@pytest.mark.timeout(240)
def test_a_hung_redis_does_not_hold_a_start(deployment: Any, tmp_path: Path) -> None:
    base, cluster, restart_redis, logs = deployment
    effects = tmp_path / "effects"
    effects.mkdir()
    submitted = httpx.post(f"{base}/v1/workflow", json=_definition(effects, 0.0), timeout=30)
    assert submitted.status_code == 201, submitted.text
    restart_redis.freeze(True)
    try:
        # Answered (the hand-over is bounded), accepted: the start is recorded.
        start = httpx.post(f"{base}/v1/definitions/faults/executions", json={}, timeout=30)
        assert start.status_code == 202, start.text
        assert start.json()["status"] == "PENDING"
        swept = start.json()["execution_id"]
        # A verb that must reach an orchestrator: 503, not a request held forever.
        paused = httpx.post(f"{base}/v1/workflows/{swept}/pause", timeout=30)
        assert paused.status_code in (409, 503), paused.text
        cancelled = httpx.delete(f"{base}/v1/workflows/{swept}", timeout=30)
        assert cancelled.status_code == 503, cancelled.text
    finally:
        restart_redis.freeze(False)
    assert _until(base, swept, {"COMPLETED", "FAILED"}, 90) == "COMPLETED", cluster.log_tail()
    api_log = (logs / "api.log").read_text(errors="replace")
    assert "Traceback" not in api_log, api_log[-4000:]
