"""Work submitted through a real ``orchestrion serve`` stays untrusted under the local CLI.

The service and an administrator's CLI share one SQLite file. Definitions whose python
function is a template (``{{ input.fn }}``) pass submission and fail as policy violations in
the service; then, with the server stopped (or killed with SIGKILL mid-run), ``orchestrion
retry``, ``retry --from-node``, ``resume`` and ``run <stored name>`` run them again as real
processes, which are trusted: each must fail the node the same way and never call the
function. The function is ``os:system`` with ``touch <marker>`` or a probe module (on
``PYTHONPATH`` of every process) that writes the marker: it must never appear. The positive
side: ``orchestrion run`` of one's own file calls any importable function, and so does its
retry.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import CLI, Server, until

pytestmark = pytest.mark.slow

POLICY = "version: 1\npython:\n  allowed_modules: [json]\n"
PROBE = """\
from pathlib import Path


def touch(command: str) -> str:
    Path(command.split(" ", 1)[1]).write_text("ran")
    return "touched"
"""
CALL = {"function": "{{ input.fn }}", "params": {"command": "{{ input.command }}"}}


def flow(name: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "dag": {"nodes": [{"id": "input", "handler": "input"}, *nodes]}}


def python_node(deps: tuple[str, ...] = ("input",)) -> dict[str, Any]:
    return {
        "id": "run",
        "handler": "python",
        "dependencies": list(deps),
        "config": CALL,
        "retry": {"max_attempts": 1},
    }


PLAIN = flow("tmpl", python_node())
MAPPED = flow(
    "fanout",
    {
        "id": "run",
        "handler": "map",
        "dependencies": ["input"],
        "config": {"items": [1, 2], "handler": "python", "config": CALL},
        "retry": {"max_attempts": 1},
    },
)
SAGA = flow(
    "saga",
    {
        "id": "pay",
        "handler": "noop",
        "dependencies": ["input"],
        "compensate": {"handler": "python", "config": CALL},
    },
    {
        "id": "ship",
        "handler": "python",
        "dependencies": ["pay"],
        "config": {"function": "json:loads", "params": {"s": "not json"}},
        "retry": {"max_attempts": 1},
    },
)
CHILD = flow("child", python_node())
PARENT = flow(
    "parent",
    {
        "id": "sub",
        "handler": "workflow",
        "dependencies": ["input"],
        "config": {
            "workflow": "child",
            "inputs": {"fn": "{{ input.fn }}", "command": "{{ input.command }}"},
        },
        "retry": {"max_attempts": 1},
    },
)


class Site:
    """A folder with the policy, the probe module, the database and the marker."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db = folder / "shared.db"
        self.marker = folder / "marker"
        modules = folder / "modules"
        modules.mkdir()
        (modules / "trust_probe.py").write_text(PROBE)
        policy = folder / "governance.yaml"
        policy.write_text(POLICY)
        self.env = {"ORCHESTRION_GOVERNANCE_FILE": str(policy), "PYTHONPATH": str(modules)}

    def inputs(self, fn: str, marker: Path | None = None) -> dict[str, str]:
        return {"fn": fn, "command": f"touch {marker or self.marker}"}

    def server(self) -> Server:
        return Server(self.folder, self.db, self.env)

    def cli(self, *args: str, code: int | None = 1) -> list[dict[str, Any]]:
        """Run the CLI on the shared database; its JSON documents (one per result)."""
        return self.remote(*args, "--db", str(self.db), code=code)

    def remote(self, *args: str, code: int | None = 1) -> list[dict[str, Any]]:
        """Run the CLI with ``args`` (and ``--json``); its JSON documents."""
        env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        env.update(self.env)
        done = subprocess.run(
            [*CLI, *args, "--json"],
            env=env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if code is not None:
            assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
        decoder = json.JSONDecoder()
        documents, text = [], done.stdout.strip()
        while text:
            document, end = decoder.raw_decode(text)
            documents.append(document)
            text = text[end:].strip()
        return documents

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return list(conn.execute(sql, params))


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def submit(client: httpx.Client, spec: dict[str, Any], inputs: dict[str, str]) -> str:
    submitted = client.post("/v1/workflow", json=spec)
    assert submitted.status_code == 201, submitted.text
    execution_id = str(submitted.json()["execution_id"])
    triggered = client.post(f"/v1/workflow/trigger/{execution_id}", json={"input_params": inputs})
    assert triggered.status_code == 202, triggered.text
    return execution_id


def refused(result: dict[str, Any], node: str = "run") -> None:
    """A CLI or API result whose ``node`` failed as a policy violation, untrusted."""
    assert result["status"].lower() == "failed", result
    assert result["trust"] == "untrusted", result
    error = result["nodes"][node]["error"]
    assert error is not None and "policy_violation" in json.dumps(error), error


def compensation_errors(site: Site, execution_id: str) -> list[str]:
    rows = site.rows(
        "SELECT data FROM events WHERE execution_id = ? AND type = 'node.compensation_failed'"
        " ORDER BY seq",
        execution_id,
    )
    return [json.loads(data)["error"]["category"] for (data,) in rows]


@pytest.mark.parametrize("fn", ["os:system", "trust_probe:touch"])
def test_service_work_stays_untrusted_under_local_retry_rerun_and_run_by_name(
    site: Site, fn: str
) -> None:
    own_marker = site.folder / "own-child"
    child_file = site.folder / "child.json"
    child_file.write_text(json.dumps(CHILD))
    # One's own child definition, run locally: trusted, it may call the probe.
    [own] = site.cli(
        "run", str(child_file), "-i", f"fn={fn}", "-i", f"command=touch {own_marker}", code=0
    )
    assert own["trust"] == "trusted" and own["status"] == "COMPLETED"
    assert own_marker.exists()
    own_marker.unlink()

    server = site.server()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            ids = {
                name: submit(client, spec, site.inputs(fn))
                for name, spec in [
                    ("plain", PLAIN),
                    ("map", MAPPED),
                    ("saga", SAGA),
                    ("parent", PARENT),
                ]
            }
            for name, execution_id in ids.items():
                body = until(client, execution_id, "FAILED", "COMPLETED", timeout=60)
                assert body["trust"] == "untrusted", body
                if name in ("plain", "map"):
                    refused(body)
            definition = client.get("/v1/definitions/tmpl").json()
            assert definition["trust"] == "untrusted", definition
            # The client and the CLI on --server show it too.
            refused(site.remote("status", ids["plain"], "--server", server.url, code=0)[0])
    finally:
        assert server.stop() == 0, server.log.read_text()

    # Retry, re-run from a node and from the start: refused each time.
    for name in ("plain", "map"):
        refused(site.cli("retry", ids[name])[0])
        refused(site.cli("retry", ids[name], "--from-node", "run")[0])
        refused(site.cli("retry", ids[name], "--from-node", "input")[0])
        refused(site.cli("status", ids[name], code=0)[0])
    # The stored definition, run by name by a trusted process: untrusted.
    refused(site.cli("run", "tmpl", "-i", f"fn={fn}", "-i", f"command=touch {site.marker}")[0])
    # A compensation run again by the local re-run: refused as by the service.
    [saga] = site.cli("retry", ids["saga"], "--from-node", "pay")
    assert saga["trust"] == "untrusted"
    assert compensation_errors(site, ids["saga"]) == ["policy_violation"] * 2
    # A child started by the local retry of an untrusted parent: untrusted, although its
    # definition is one's own and the retrying process is trusted.
    [parent] = site.cli("retry", ids["parent"])
    assert parent["status"] == "FAILED" and parent["trust"] == "untrusted"
    children = site.rows(
        "SELECT id, trust, status FROM executions WHERE parent_execution_id = ?", ids["parent"]
    )
    assert [(trust, status) for _, trust, status in children] == [("untrusted", "failed")] * 2
    for child_id, _, _ in children:
        refused(site.cli("status", child_id, code=0)[0])
    assert site.rows("SELECT trust FROM definitions WHERE name = 'child'") == [("trusted",)]
    assert not site.marker.exists()
    assert not own_marker.exists()


def test_resume_after_kill_9_of_the_server_keeps_the_service_s_trust(site: Site) -> None:
    slow = flow(
        "slow",
        {"id": "later", "handler": "delay", "dependencies": ["input"], "config": {"seconds": 2}},
        python_node(deps=("later",)),
    )
    server = site.server()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            execution_id = submit(client, slow, site.inputs("trust_probe:touch"))
            deadline = time.monotonic() + 30
            while client.get(f"/v1/workflows/{execution_id}").json()["nodes"]["later"][
                "state"
            ] not in ("waiting", "WAITING"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        server.stop(signal.SIGKILL)
    [(status, trust)] = site.rows("SELECT status, trust FROM executions WHERE id = ?", execution_id)
    assert (status, trust) == ("waiting", "untrusted")
    [result] = site.cli("resume")
    assert result["execution_id"] == execution_id
    refused(result)
    assert not site.marker.exists()


def test_one_s_own_file_runs_any_function_and_so_does_its_retry(site: Site) -> None:
    own = site.folder / "own.json"
    own.write_text(json.dumps(PLAIN))
    args = ("-i", "fn=trust_probe:touch", "-i", f"command=touch {site.marker}")
    [result] = site.cli("run", str(own), *args, code=0)
    assert result["trust"] == "trusted" and result["status"] == "COMPLETED"
    assert site.marker.read_text() == "ran"
    site.marker.unlink()
    [again] = site.cli("retry", result["execution_id"], "--from-node", "run", code=0)
    assert again["trust"] == "trusted" and again["status"] == "COMPLETED"
    assert site.marker.read_text() == "ran"
    # By name it is the stored definition that runs, and this one was stored as one's own.
    site.marker.unlink()
    [by_name] = site.cli("run", "tmpl", *args, code=0)
    assert by_name["trust"] == "trusted"
    assert site.marker.read_text() == "ran"


def test_run_of_an_unknown_name_says_what_is_missing(site: Site) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    done = subprocess.run(
        [*CLI, "run", "no-such-flow", "--db", str(site.db)],
        env={**env, **site.env},
        cwd=site.folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    said = " ".join(done.stderr.split())  # the console wraps long lines
    assert "no file 'no-such-flow', and no stored workflow definition named 'no-such-flow'" in said
