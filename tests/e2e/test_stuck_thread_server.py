"""SIGTERM stops ``orchestrion serve`` even when a worker thread never returns: once the
grace period is spent and the app has shut down, the process exits instead of waiting for
the thread (Python would otherwise join it for ever)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
from test_api_server import Server

pytestmark = pytest.mark.slow

STUCK_MODULE = """\
import threading


def block(seconds: float) -> str:
    threading.Event().wait(seconds)  # a function that does not return in time
    return "done"
"""


def test_sigterm_exits_despite_a_stuck_worker_thread(tmp_path: Path) -> None:
    (tmp_path / "stuck_module.py").write_text(STUCK_MODULE)
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\npython:\n  allowed_modules: [stuck_module]\n")
    env = {
        "ORCHESTRION_GOVERNANCE_FILE": str(policy),
        "ORCHESTRION_SHUTDOWN_GRACE": "1",
        "PYTHONPATH": str(tmp_path),
    }
    server = Server(tmp_path, tmp_path / "stuck.db", env)
    try:
        node = {
            "id": "stuck",
            "handler": "python",
            "config": {"function": "stuck_module.block", "params": {"seconds": 600}},
        }
        with httpx.Client(base_url=server.url, timeout=10) as client:
            submitted = client.post("/v1/workflow", json={"name": "s", "dag": {"nodes": [node]}})
            assert submitted.status_code == 201, submitted.text
            execution_id = submitted.json()["execution_id"]
            triggered = client.post(f"/v1/workflow/trigger/{execution_id}", json={})
            assert triggered.status_code == 202, triggered.text
            deadline = time.monotonic() + 30
            while client.get(f"/v1/workflows/{execution_id}").json()["status"] != "RUNNING":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.5)  # the function is now blocked in its thread
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(60)  # a hang would last the function's 600 s
        elapsed = time.monotonic() - started
        log = server.log.read_text()
        assert code == 0, log
        assert elapsed < 30, (elapsed, log)
        assert "busy worker thread" in log, log
    finally:
        server.stop(signal.SIGKILL)
