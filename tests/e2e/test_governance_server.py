"""Governance through real processes (issue #6): ``orchestrion serve`` under uvicorn and
``orchestrion run``, with personal data in a run's inputs.

- No log line of the server (its stdout and stderr, at DEBUG) or of ``orchestrion run`` shows
  a value unmasked, though the python node logs its input, the http node's URL holds it and
  the failing nodes' errors repeat it.
- Over HTTP, and through ``orchestrion status --server``, a viewer sees classified outputs and
  error text masked, and an admin sees them as stored; ``orchestrion run`` (the machine's
  owner) shows its own outputs as they are.
- An invalid policy file stops ``serve``, ``worker`` and ``run`` at start with exit 2, the
  message naming each bad field and its line.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import Server
from test_cli import orchestrion

from pii import GOVERNANCE_YAML, PII, assert_no_pii, echo_server, failing, profile

pytestmark = pytest.mark.slow

KEYS = "adm-key:admin,op-key:operator,view-key:viewer"
ADMIN = {"Authorization": "Bearer adm-key"}
OPERATOR = {"Authorization": "Bearer op-key"}
VIEWER = {"Authorization": "Bearer view-key"}
MASKED = {"masked": "pii"}

BAD_POLICY = """\
version: 1
masking:
  kinds:
    - email
    - dna
retention:
  days: 0
"""


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)  # the console wraps long messages


def test_an_invalid_policy_stops_every_process_at_start(tmp_path: Path) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text(BAD_POLICY)
    env = {"ORCHESTRION_GOVERNANCE_FILE": str(policy)}
    workflow = tmp_path / "w.json"
    nodes = [{"id": "a", "handler": "noop"}]
    workflow.write_text(json.dumps({"name": "w", "dag": {"nodes": nodes}}))
    commands = {
        "serve": ["serve", "--port", "0", "--db", str(tmp_path / "s.db")],
        "worker": ["worker", "--redis", "redis://127.0.0.1:1/0"],
        "run": ["run", str(workflow), "--db", str(tmp_path / "r.db")],
    }
    for name, args in commands.items():
        result = orchestrion(*args, env=env)
        message = _one_line(result.stderr)
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert f"invalid governance policy {policy}" in message, (name, message)
        assert "masking.kinds.1 (line 5)" in message and "unknown masking kind 'dna'" in message
        assert "retention.days (line 7)" in message, (name, message)
        assert "Traceback" not in result.stderr


def _run(client: httpx.Client, definition: dict[str, Any]) -> str:
    submitted = client.post("/v1/workflow", json=definition, headers=OPERATOR)
    assert submitted.status_code == 201, submitted.text
    execution_id = str(submitted.json()["execution_id"])
    trigger = client.post(
        f"/v1/workflow/trigger/{execution_id}", json={"input_params": PII}, headers=OPERATOR
    )
    assert trigger.status_code == 202, trigger.text
    deadline = time.monotonic() + 30
    while True:
        body = client.get(f"/v1/workflows/{execution_id}", headers=ADMIN).json()
        if body["status"] in ("COMPLETED", "FAILED"):
            return execution_id
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_a_served_run_logs_no_personal_data_and_masks_it_for_a_viewer(tmp_path: Path) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text(GOVERNANCE_YAML)
    env = {
        "ORCHESTRION_API_KEYS": KEYS,
        "ORCHESTRION_GOVERNANCE_FILE": str(policy),
        "ORCHESTRION_LOG_LEVEL": "DEBUG",
    }
    with echo_server() as url:
        server = Server(tmp_path, tmp_path / "gov.db", env)
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                done = _run(client, profile(url))
                failed = _run(client, failing())

                viewer = client.get(f"/v1/workflows/{done}", headers=VIEWER).json()
                assert viewer["status"] == "COMPLETED", viewer
                assert viewer["nodes"]["card"]["output"] == MASKED
                assert viewer["nodes"]["call"]["output"] == MASKED
                assert viewer["nodes"]["count"]["output"] == "3 items"
                results = client.get(f"/v1/workflows/{done}/results", headers=VIEWER).json()
                assert results["result"] == MASKED  # the output node reads pii: pii too
                failure = client.get(f"/v1/workflows/{failed}", headers=VIEWER).json()
                # A classified node's error quotes its data: its text hidden, its kind kept.
                assert failure["nodes"]["bill"]["error"]["message"] == "[masked: pii]"
                assert failure["nodes"]["bill"]["error"]["category"]
                stream = f"/v1/workflows/{failed}/events/stream"
                sse = client.get(stream, headers=VIEWER).text
                assert "node.failed" in sse
                assert_no_pii(json.dumps([viewer, results, failure]) + sse, "the viewer's view")

                admin = client.get(f"/v1/workflows/{done}", headers=ADMIN).json()
                assert admin["nodes"]["card"]["output"]["card"] == PII["card"]
                assert PII["email"] in client.get(stream, headers=ADMIN).text

                policy_view = client.get("/health/governance", headers=VIEWER).json()
                assert policy_view["source"] == str(policy)
                assert policy_view["policy"]["python"]["allowed_modules"] == [
                    "logging",
                    "ipaddress",
                ]

            # The CLI against the server shows what the API gives its key.
            as_viewer = orchestrion(
                "status", done, "--server", server.url, "--api-key", "view-key", "--json"
            )
            assert as_viewer.returncode == 0, as_viewer.stderr
            shown = json.loads(as_viewer.stdout)
            assert shown["nodes"]["card"]["output"] == MASKED
            assert_no_pii(as_viewer.stdout + as_viewer.stderr, "orchestrion status as a viewer")
            as_admin = orchestrion(
                "status", done, "--server", server.url, "--api-key", "adm-key", "--json"
            )
            assert json.loads(as_admin.stdout)["nodes"]["card"]["output"]["card"] == PII["card"]
        finally:
            assert server.stop() == 0, server.log.read_text()

    log = server.log.read_text()
    lines = server.log_lines()  # every line is JSON
    assert any(line["message"] == "got [email] [phone] card [card] id [ssn]" for line in lines)
    assert "/customers/[email]" in log  # httpx's request line (and the http handler's)
    assert any(
        line.get("node_id") == "bill" and "cannot bill [email]" in line.get("error", "")
        for line in lines
    )  # the node transition log's error field
    assert any(line["level"] == "DEBUG" for line in lines)
    assert_no_pii(log, "the server's log")


def test_orchestrion_run_masks_its_log_lines_and_shows_its_owner_the_outputs(
    tmp_path: Path,
) -> None:
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(PII))
    with echo_server() as url:
        for name, definition in (("profile", profile(url)), ("failing", failing())):
            workflow = tmp_path / f"{name}.json"
            workflow.write_text(json.dumps(definition))
            result = orchestrion(
                "run",
                str(workflow),
                "--db",
                str(tmp_path / "run.db"),
                "--inputs-file",
                str(inputs),
                "--json",
            )
            assert result.returncode == (0 if name == "profile" else 1), result.stderr
            assert_no_pii(result.stderr, f"the log lines of orchestrion run ({name})")
            shown = json.loads(result.stdout)
            if name == "profile":
                assert "got [email] [phone] card [card] id [ssn]" in result.stderr
                assert shown["nodes"]["card"]["output"]["card"] == PII["card"]
            else:
                assert PII["email"] in shown["nodes"]["bill"]["error"]["message"]
