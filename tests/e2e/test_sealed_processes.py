"""Encryption at rest through real processes, the SQLite file searched byte by byte after each:

- ``orchestrion keys generate``, then ``orchestrion run`` with the key set: the values of a
  classified execution are in none of the file, while ``orchestrion status`` (another
  process, same key) prints them back and one without the key names the key it lacks;
- ``orchestrion serve`` (uvicorn) with the key: an execution triggered over HTTP with inputs
  and node overrides, one failing with an error that quotes its input; an admin reads the
  plaintext, and neither the file nor the server's log (at DEBUG) holds a value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from test_api_server import Server

from pii import GOVERNANCE_YAML
from sealed_values import Secrets, sqlite_bytes

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]


def orchestrion(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and not k.startswith("ORCHESTRION_")
    }
    full_env["COLUMNS"] = "200"
    full_env.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=full_env)


def workflow(fails: bool) -> dict[str, object]:
    nodes: list[dict[str, object]] = [
        {"id": "input", "handler": "input"},
        {
            "id": "echo",
            "handler": "noop",
            "dependencies": ["input"],
            "config": {"value": "{{ input.marker }} {{ input.email }} {{ input.card }}"},
        },
        {
            "id": "each",
            "handler": "map",
            "dependencies": ["input"],
            "config": {
                "items": "{{ input.items }}",
                "handler": "noop",
                "config": {"value": "{{ item }}"},
            },
        },
        {"id": "flag", "handler": "noop", "data_classification": "pii"},
        {"id": "done", "handler": "output", "dependencies": ["echo", "each", "flag"]},
    ]
    if fails:
        # A standard-library function whose error message quotes its argument.
        nodes.append(
            {
                "id": "parse",
                "handler": "python",
                "dependencies": ["input"],
                "retry": {"max_attempts": 1},
                "config": {
                    "function": "ipaddress:ip_address",
                    "params": {"address": "{{ input.iban }} {{ input.marker }}"},
                },
            }
        )
    return {"name": "sealed-cli-fails" if fails else "sealed-cli", "dag": {"nodes": nodes}}


def test_orchestrion_run_leaves_no_value_readable_in_the_file(tmp_path: Path) -> None:
    secrets = Secrets()
    generated = orchestrion("keys", "generate", "--id", "k1")
    assert generated.returncode == 0, generated.stderr
    key = generated.stdout.strip()
    assert key.startswith("k1:")
    env = {"ORCHESTRION_ENCRYPTION_KEYS": key}
    db = tmp_path / "cli.db"
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(secrets.inputs()))
    runs = {}
    for fails in (False, True):
        definition = tmp_path / f"wf-{fails}.yaml"
        definition.write_text(yaml.safe_dump(workflow(fails)))
        ran = orchestrion(
            "run",
            str(definition),
            "--db",
            str(db),
            "--inputs-file",
            str(inputs),
            "--json",
            env=env,
        )
        assert ran.returncode == (1 if fails else 0), ran.stderr
        runs[fails] = json.loads(ran.stdout)
    ok, failed = runs[False], runs[True]
    assert ok["nodes"]["input"]["output"] == secrets.inputs()  # the local CLI reads it plain
    assert failed["status"] == "FAILED"
    assert secrets.marker in failed["nodes"]["parse"]["error"]["message"]

    found = secrets.found_in(sqlite_bytes(db))
    assert not found, f"{found} readable in the SQLite file written by orchestrion run"

    shown = orchestrion("status", ok["execution_id"], "--db", str(db), "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["nodes"]["echo"]["output"] == f"{secrets.marker} {secrets.email} {secrets.card}"
    assert status["nodes"]["each"]["output"]["results"] == [secrets.marker, secrets.email]
    blind = orchestrion("status", failed["execution_id"], "--db", str(db), "--json")
    assert blind.returncode != 0
    assert "'k1'" in blind.stdout + blind.stderr
    assert not secrets.found_in(blind.stdout + blind.stderr)


def _served_run(
    client: httpx.Client, definition: dict[str, object], body: dict[str, object]
) -> dict[str, object]:
    admin = {"Authorization": "Bearer adm"}
    submitted = client.post("/v1/workflow", json=definition, headers=admin)
    assert submitted.status_code == 201, submitted.text
    execution_id = submitted.json()["execution_id"]
    started = client.post(f"/v1/workflow/trigger/{execution_id}", json=body, headers=admin)
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 30
    while True:
        shown: dict[str, object] = client.get(f"/v1/workflows/{execution_id}", headers=admin).json()
        if shown["status"] in ("COMPLETED", "FAILED"):
            return shown
        assert time.monotonic() < deadline, shown
        time.sleep(0.05)


def test_orchestrion_serve_leaves_no_value_in_its_file_or_its_log(tmp_path: Path) -> None:
    secrets = Secrets()
    policy = tmp_path / "governance.yaml"
    policy.write_text(GOVERNANCE_YAML)  # the service may call ipaddress (it raises, quoting)
    db = tmp_path / "served.db"
    generated = orchestrion("keys", "generate", "--id", "k1")
    assert generated.returncode == 0, generated.stderr
    env = {
        "ORCHESTRION_ENCRYPTION_KEYS": generated.stdout.strip(),
        "ORCHESTRION_API_KEYS": "adm:admin",
        "ORCHESTRION_GOVERNANCE_FILE": str(policy),
        "ORCHESTRION_LOG_LEVEL": "DEBUG",
    }
    server = Server(tmp_path, db, env)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            body = {"input_params": secrets.inputs(), "node_overrides": secrets.overrides()}
            done = _served_run(client, workflow(fails=False), body)
            failed = _served_run(client, workflow(fails=True), body)
    finally:
        assert server.stop() == 0, server.log.read_text()
    assert done["status"] == "COMPLETED", done
    nodes: dict[str, dict[str, object]] = done["nodes"]  # type: ignore[assignment]
    assert nodes["echo"]["output"] == f"{secrets.override} {secrets.marker} {secrets.email}"
    assert nodes["input"]["output"] == secrets.inputs()
    assert failed["status"] == "FAILED"
    parse = failed["nodes"]["parse"]["error"]  # type: ignore[index]
    assert secrets.marker in parse["message"]
    found = secrets.found_in(sqlite_bytes(db))
    assert not found, f"{found} readable in the SQLite file written by orchestrion serve"
    log = server.log.read_text()
    assert '"node_id": "parse"' in log or '"node_id":"parse"' in log  # it logged that node
    found = secrets.found_in(log)
    assert not found, f"{found} readable in the server's log"
