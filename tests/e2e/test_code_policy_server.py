"""No arbitrary code through a real ``orchestrion serve`` (uvicorn) process (issue #6, item 6).

Forbidden python functions are refused at submission; template bombs fail their nodes within
the policy's time limit while the server keeps answering ``/health``; sandbox escapes run
nothing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import Server, until

pytestmark = pytest.mark.slow

POLICY = """\
version: 1
python:
  allowed_modules: []
templates:
  timeout_seconds: 0.5
  max_output_bytes: 100000
"""


@pytest.fixture
def server(tmp_path: Path) -> Any:
    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    running = Server(tmp_path, tmp_path / "gov.db", {"ORCHESTRION_GOVERNANCE_FILE": str(policy)})
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def test_code_policy_over_a_real_server(server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "escaped"
    with httpx.Client(base_url=server.url, timeout=5) as client:
        # 1. Forbidden python functions: 422 naming node and field, nothing imported.
        for name in ("os.system", "subprocess:run", "builtins.__import__", "pickle.loads"):
            definition = {
                "name": "py",
                "dag": {
                    "nodes": [{"id": "run", "handler": "python", "config": {"function": name}}]
                },
            }
            response = client.post("/v1/workflow", json=definition)
            assert response.status_code == 422, response.text
            errors = response.json()["errors"]
            assert [(e["node"], e["field"]) for e in errors] == [("run", "config.function")]

        # 2. Template bombs and escapes: each node fails, the server keeps answering.
        bombs = {
            "loops": "{% for a in input.big %}{% for b in input.big %}{% for c in input.big %}"
            "{% endfor %}{% endfor %}{% endfor %}",
            "macro": "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
            "{% endmacro %}{{ f(60) }}",
            "recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
            "repeat": "{{ 'a' * 10**9 }}",
            "escape": "{{ self.__init__.__globals__['__builtins__']['__import__']('os')"
            f".popen('touch {marker}') }}}}",
            "format": "{{ '{0.__class__.__mro__}'.format('x') }}",
        }
        nodes: list[dict[str, Any]] = [{"id": "input", "handler": "input"}]
        nodes += [
            {"id": name, "handler": "noop", "dependencies": ["input"], "config": {"value": t}}
            for name, t in bombs.items()
        ]
        submitted = client.post("/v1/workflow", json={"name": "bombs", "dag": {"nodes": nodes}})
        assert submitted.status_code == 201, submitted.text
        execution_id = submitted.json()["execution_id"]

        health: list[tuple[float, int]] = []
        stop = threading.Event()

        def probe() -> None:
            with httpx.Client(base_url=server.url, timeout=3) as prober:
                while not stop.is_set():
                    started = time.monotonic()
                    status = prober.get("/health").status_code
                    health.append((time.monotonic() - started, status))
                    time.sleep(0.05)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        started = time.monotonic()
        triggered = client.post(
            f"/v1/workflow/trigger/{execution_id}",
            json={"input_params": {"big": list(range(2000))}},
        )
        assert triggered.status_code == 202, triggered.text
        body = until(client, execution_id, "COMPLETED", "FAILED", timeout=60)
        elapsed = time.monotonic() - started
        stop.set()
        prober.join(10)

    assert body["status"] == "FAILED"
    for name in bombs:
        node = body["nodes"][name]
        assert node["state"] == "FAILED", (name, node)
        assert node["error"]["category"] == "template", (name, node)
    assert "timeout_seconds" in body["nodes"]["loops"]["error"]["message"]
    assert elapsed < 20
    assert not marker.exists()
    assert health and all(status == 200 for _, status in health)
    # A render is stopped after 0.5 s: no health check waited much longer than that.
    assert max(seconds for seconds, _ in health) < 2.5
    assert httpx.get(f"{server.url}/health", timeout=2).status_code == 200
