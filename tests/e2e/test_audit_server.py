"""The audit trail of ``orchestrion serve`` as a real uvicorn process: API actions over real
HTTP are recorded with the key id, client id, source and remote address, and the trail
verifies over HTTP and from the CLI afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from audit_helpers import AUDIT_ENV

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
ADMIN, OPERATOR = "srv-admin-key", "srv-operator-key"
FLOW = {"name": "served", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_served_api_actions_are_audited_and_verify(tmp_path: Path) -> None:
    db = tmp_path / "served.db"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(
        {
            **AUDIT_ENV,
            "COLUMNS": "200",
            "ORCHESTRION_API_KEYS": f"{ADMIN}:admin,{OPERATOR}:operator",
            "ORCHESTRION_RATE_LIMIT_PER_SECOND": "0",
        }
    )
    log = (tmp_path / "server.log").open("wb")
    command = [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not healthy"
            time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=10) as client:
            headers = {
                "Authorization": f"Bearer {OPERATOR}",
                "X-Client-ID": "nightly-batch",
                "X-Request-Source": "scheduler",
            }
            submitted = client.post("/v1/workflow", json=FLOW, headers=headers)
            assert submitted.status_code == 201, submitted.text
            execution_id = submitted.json()["execution_id"]
            admin = {"Authorization": f"Bearer {ADMIN}"}
            page = client.get("/v1/audit", params={"action": "api."}, headers=admin).json()
            (record,) = page["records"]
            assert record["actor"] == "key:" + hashlib.sha256(OPERATOR.encode()).hexdigest()[:8]
            assert record["execution_id"] == execution_id and record["outcome"] == "201"
            details = record["details"]
            assert (details["client_id"], details["request_source"]) == (
                "nightly-batch",
                "scheduler",
            )
            assert details["remote"] == "127.0.0.1"
            verified = client.get("/v1/audit/verify", headers=admin).json()
            assert verified["ok"] is True and verified["records"] >= 2

        # The CLI through the server, with the server's keys (none in the CLI's environment).
        remote = {**env, "ORCHESTRION_AUDIT_KEYS": ""}
        via = ["--server", url, "--api-key", ADMIN]
        checked = subprocess.run(
            [*CLI, "audit", "verify", *via], capture_output=True, text=True, env=remote
        )
        assert checked.returncode == 0, checked.stderr
        assert "audit trail ok" in checked.stdout
        listed = subprocess.run(
            [*CLI, "audit", "list", "--action", "api.submit", "--json", *via],
            capture_output=True,
            text=True,
            env=remote,
        )
        assert [r["execution_id"] for r in json.loads(listed.stdout)] == [execution_id]
        export = tmp_path / "served.jsonl"
        exported = subprocess.run(
            [*CLI, "audit", "export", "--output", str(export), *via],
            capture_output=True,
            text=True,
            env=remote,
        )
        assert exported.returncode == 0, exported.stderr
        offline = subprocess.run(
            [*CLI, "audit", "verify", "--file", str(export)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert offline.returncode == 0, offline.stderr
        denied = subprocess.run(
            [*CLI, "audit", "verify", "--server", url, "--api-key", OPERATOR],
            capture_output=True,
            text=True,
            env=remote,
        )
        assert denied.returncode == 6 and "403" in denied.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
        log.close()
    cli = subprocess.run(
        [*CLI, "audit", "verify", "--db", str(db)], capture_output=True, text=True, env=env
    )
    assert cli.returncode == 0, cli.stderr
    for part in tmp_path.glob("served.db*"):  # the file and any WAL left: only key ids
        assert OPERATOR.encode() not in part.read_bytes()
