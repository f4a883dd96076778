"""Success criteria through a real ``orchestrion serve``: a malformed criterion is refused
with its line, the DORA example's criteria decide its outcome, and the execution resource,
the journal and ``orchestrion status --server`` show how each criterion ended; in scale-out,
where an orchestrator process judges the run, the API shows the same."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster import Cluster
from test_api_server import CLI, REFERENCE, Server, free_port, until

pytestmark = pytest.mark.slow

DORA = (REFERENCE / "dora-compliance-assessment.yaml").read_text(encoding="utf-8")
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    teams = {"ORCHESTRION_TEAMS_FILE": str(REFERENCE.parent / "teams.yaml")}
    running = Server(tmp_path, tmp_path / "o.db", env=teams)
    try:
        yield running
    finally:
        running.stop()


def _run_dora(client: httpx.Client, documents: list[str]) -> str:
    submitted = client.post("/v1/workflow", content=DORA, headers=YAML)
    assert submitted.status_code == 201, submitted.text
    assert not any("success_criteria" in w for w in submitted.json()["warnings"])
    execution_id = str(submitted.json()["execution_id"])
    triggered = client.post(
        f"/v1/workflow/trigger/{execution_id}", json={"input_params": {"documents": documents}}
    )
    assert triggered.status_code == 202, triggered.text
    return execution_id


def test_the_dora_criteria_decide_and_are_shown(server: Server, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        passing = _run_dora(client, ["policy.pdf", "ict-risk.pdf"])
        failing = _run_dora(client, ["memo.pdf"])
        done = until(client, passing, "COMPLETED", "FAILED")
        failed = until(client, failing, "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done["error"]
        assert [(c["condition"], c["required"], c["passed"]) for c in done["success_criteria"]] == [
            ("all_tasks_completed", True, True),
            ("compliance_score >= 0.7", True, True),
            ("no_critical_gaps", False, True),
        ]
        assert failed["status"] == "FAILED"
        assert failed["error"]["category"] == "success_criteria"
        assert failed["error"]["criteria"] == ["compliance_score >= 0.7"]
        score = failed["success_criteria"][1]
        assert (score["passed"], score["value"]) == (False, False)
        assert score["detail"].startswith("evaluated to false; compliance_score = 0.")
        assert score["detail"].endswith("(from document_analysis)")
        events = client.get(f"/v1/workflows/{failing}/events", params={"limit": 500}).json()[
            "items"
        ]
        [judged] = [e for e in events if e["type"] == "execution.criteria_evaluated"]
        assert judged["data"]["passed"] is False
        assert judged["data"]["criteria"] == failed["success_criteria"]
        assert events[-1]["type"] == "execution.failed"
    shown = subprocess.run(
        [*CLI, "status", failing, "--server", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert "success criteria:" in shown.stdout, shown.stdout + shown.stderr
    assert "✗ compliance_score >= 0.7 (required): failed" in shown.stdout
    assert "✓ no_critical_gaps (optional): passed" in shown.stdout


def test_a_malformed_criterion_is_refused_with_its_line(server: Server) -> None:
    text = DORA.replace('condition: "no_critical_gaps"', 'condition: "task.nope.outputs.x"')
    with httpx.Client(base_url=server.url, timeout=10) as client:
        refused = client.post("/v1/workflow", content=text, headers=YAML)
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["errors"]
    assert problem["code"] == "unknown_task"
    assert problem["field"] == "workflow.success_criteria[2].condition"
    line = DORA.splitlines().index('    - condition: "no_critical_gaps"') + 1
    assert problem["line"] == line


def test_scale_out_processes_judge_the_same_way(
    tmp_path: Path, postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    teams = str(REFERENCE.parent / "teams.yaml")
    cluster = Cluster.for_test(
        postgres_url, redis_server, redis_prefix, tmp_path / "logs", ORCHESTRION_TEAMS_FILE=teams
    )
    port = free_port()
    try:
        cluster.start("orchestrator-0", "orchestrator")
        cluster.start("worker-0", "worker", "--concurrency", "4")
        cluster.start("reaper-0", "reaper")  # /health is ok only with one
        cluster.start("api", "serve", "--host", "127.0.0.1", "--port", str(port))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(300):
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert cluster.alive()["api"], cluster.log_tail()
                time.sleep(0.1)
            passing = _run_dora(client, ["policy.pdf", "ict-risk.pdf"])
            failing = _run_dora(client, ["memo.pdf"])
            done = until(client, passing, "COMPLETED", "FAILED", timeout=60)
            failed = until(client, failing, "COMPLETED", "FAILED", timeout=60)
        assert done["status"] == "COMPLETED", (done["error"], cluster.log_tail())
        assert [c["passed"] for c in done["success_criteria"]] == [True, True, True]
        assert failed["status"] == "FAILED"
        assert failed["error"]["criteria"] == ["compliance_score >= 0.7"]
        assert [c["passed"] for c in failed["success_criteria"]] == [True, False, True]
    finally:
        cluster.stop()
