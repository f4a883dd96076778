"""Recursive and expanding YAML aliases, and nested format widths, through real processes:
``orchestrion serve`` answers 422 at once and keeps answering ``/health``; ``orchestrion
validate`` exits 2 naming the line; a policy file with a recursive alias is refused."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import Server, until
from test_cli import orchestrion

pytestmark = pytest.mark.slow

SELF_NODE = """\
name: x
dag:
  nodes:
    - &n
      id: n
      handler: noop
      config: {self: *n}
"""
SELF_DAG = """\
name: x
dag: &d
  nodes:
    - id: n
      handler: noop
      config: *d
"""
MERGE = """\
name: x
dag:
  nodes:
    - &n
      id: n
      handler: noop
      config:
        <<: *n
"""


def _bomb() -> str:
    """About 500 bytes: six levels of ten aliases, 11 MB once expanded."""
    lines = ["name: x", "dag:", "  nodes:", "    - id: n", "      handler: noop", "      config:"]
    lines.append(f"        l0: &l0 [{', '.join(['xxxxxxxxxx'] * 10)}]")
    for level in range(1, 6):
        lines.append(f"        l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def server(tmp_path: Path) -> Any:
    running = Server(tmp_path, tmp_path / "aliases.db")
    try:
        yield running
    finally:
        # A refused definition leaves no stuck work: the server stops at once, gracefully.
        assert running.stop() == 0, running.log.read_text()


def test_aliases_and_format_widths_over_a_real_server(server: Server) -> None:
    slowest: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as probe_client:
            while not stop.is_set():
                started = time.monotonic()
                assert probe_client.get("/health").status_code == 200
                slowest.append(time.monotonic() - started)
                time.sleep(0.05)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yaml_headers = {"Content-Type": "application/yaml"}
            for text, line, code in (
                (SELF_NODE, 7, "recursive_alias"),
                (SELF_DAG, 6, "recursive_alias"),
                (MERGE, 8, "recursive_alias"),
                (_bomb(), 11, "limit_exceeded"),
            ):
                started = time.monotonic()
                response = client.post("/v1/workflow", content=text, headers=yaml_headers)
                assert time.monotonic() - started < 5, text  # it used to hang for ever
                assert response.status_code == 422, response.text
                (error,) = response.json()["errors"]
                assert error["code"] == code and error["line"] == line, error
            # Nothing was stored.
            assert client.get("/v1/definitions").json()["items"] == []

            # A nested width given as a string: the node fails, priced before it runs.
            template = "{{ '{0:{1}}'.format(1, '>999999999') }}"
            node = {"id": "f", "handler": "noop", "config": {"value": template}}
            definition = {"name": "fmt", "dag": {"nodes": [node]}}
            submitted = client.post("/v1/workflow", json=definition)
            assert submitted.status_code == 201, submitted.text
            execution_id = submitted.json()["execution_id"]
            triggered = client.post(f"/v1/workflow/trigger/{execution_id}", json={})
            assert triggered.status_code == 202, triggered.text
            body = until(client, execution_id, "COMPLETED", "FAILED", timeout=60)
            assert body["status"] == "FAILED", body
            error = body["nodes"]["f"]["error"]
            assert error["category"] == "template", error
            assert "templates.max_output_bytes" in error["message"], error
    finally:
        stop.set()
        prober.join(timeout=15)
    assert slowest, "the probe never answered"
    assert max(slowest) < 2.0, max(slowest)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)  # the console wraps long messages


@pytest.mark.parametrize(("text", "line"), [(SELF_NODE, 7), (SELF_DAG, 6), (MERGE, 8)])
def test_validate_exits_2_naming_the_recursive_alias(tmp_path: Path, text: str, line: int) -> None:
    file = tmp_path / "flow.yaml"
    file.write_text(text)
    result = orchestrion("validate", str(file))
    message = _one_line(result.stderr)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"line {line}" in message and "recursive alias" in message, message
    assert "Traceback" not in result.stderr


def test_a_policy_file_with_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\ndefinitions: &d\n  max_nodes: 10\n  more: *d\n")
    file = tmp_path / "flow.yaml"
    file.write_text("name: x\ndag: {nodes: [{id: a, handler: noop}]}\n")
    result = orchestrion("validate", str(file), env={"ORCHESTRION_GOVERNANCE_FILE": str(policy)})
    message = _one_line(result.stderr)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "recursive alias" in message and "line 4" in message, message
