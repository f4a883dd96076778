"""The `orchestrion` command as a user runs it: real processes, real files, real HTTP proxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from answering_proxy import AnsweringProxy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
REFERENCE = EXAMPLES / "reference"
CLI = [sys.executable, "-m", "orchestrion.cli.app"]


def orchestrion(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    full_env.pop("OPENAI_API_KEY", None)
    full_env["COLUMNS"] = "200"
    full_env.update(env or {})
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, env=full_env, cwd=cwd
    )


@pytest.fixture
def proxy() -> Iterator[AnsweringProxy]:
    with AnsweringProxy() as running:
        yield running


def test_demo_workflow_runs_and_exits_zero(tmp_path: Path) -> None:
    result = orchestrion("run", str(EXAMPLES / "demo.yaml"), "--db", str(tmp_path / "d.db"))
    assert result.returncode == 0, result.stderr
    assert "completed" in result.stdout
    assert "flaky_enrichment" in result.stderr  # live progress lines go to stderr


def test_json_output_and_inputs(tmp_path: Path) -> None:
    result = orchestrion(
        "run",
        str(EXAMPLES / "demo.yaml"),
        "--db",
        str(tmp_path / "d.db"),
        "-i",
        "topic=churn",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "COMPLETED"
    assert data["nodes"]["input"]["output"] == {"topic": "churn"}
    assert data["nodes"]["flaky_enrichment"]["attempt"] == 3

    listed = orchestrion("list", "--db", str(tmp_path / "d.db"), "--json")
    assert listed.returncode == 0
    assert [row["execution_id"] for row in json.loads(listed.stdout)] == [data["execution_id"]]
    status = orchestrion("status", data["execution_id"], "--db", str(tmp_path / "d.db"), "--json")
    assert json.loads(status.stdout)["status"] == "COMPLETED"


BAD_DEFINITIONS = {
    "cycle": (
        "name: c\ndag:\n  nodes:\n"
        "    - {id: a, handler: noop, dependencies: [c]}\n"
        "    - {id: b, handler: noop, dependencies: [a]}\n"
        "    - {id: c, handler: noop, dependencies: [b]}\n",
        "cycle",
    ),
    "unknown_dependency": (
        "name: u\ndag:\n  nodes:\n    - {id: a, handler: noop, dependencies: [ghost]}\n",
        "ghost",
    ),
    "duplicate_id": (
        "name: d\ndag:\n  nodes:\n    - {id: a, handler: noop}\n    - {id: a, handler: noop}\n",
        "duplicate",
    ),
    "bad_template": (
        "name: t\ndag:\n  nodes:\n    - id: a\n      handler: noop\n"
        "      config: {value: '{{ a.output.x '}\n",
        "template",
    ),
    "non_ancestor_template": (
        "name: t\ndag:\n  nodes:\n    - {id: a, handler: noop}\n    - id: b\n"
        "      handler: noop\n      config: {value: '{{ a.output }}'}\n",
        "upstream",
    ),
    "unknown_key": (
        "name: k\ndag:\n  nodes:\n    - {id: a, handler: noop, retries: 3}\n",
        "retries",
    ),
    "malformed_yaml": ("name: m\ndag:\n  nodes: [\n    - id: a\n", "line"),
    "unknown_handler": ("name: h\ndag:\n  nodes:\n    - {id: a, handler: teleport}\n", "teleport"),
    "bad_duration": (
        "name: t\ndag:\n  nodes:\n    - {id: a, handler: noop, timeout: soon}\n",
        "duration",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DEFINITIONS))
def test_bad_definitions_exit_2_with_a_clear_error_and_store_nothing(
    case: str, tmp_path: Path
) -> None:
    text, fragment = BAD_DEFINITIONS[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    db = tmp_path / "bad.db"
    result = orchestrion("run", str(path), "--db", str(db))
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert not db.exists()
    validated = orchestrion("validate", str(path))
    assert validated.returncode == 2 and fragment in validated.stderr.lower()


def test_failed_execution_exits_1_and_retry_after_fix(tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    module = tmp_path / "mods" / "fixme.py"
    module.parent.mkdir()
    module.write_text(
        "import os\n"
        "def step(path):\n"
        "    if not os.path.exists(path):\n"
        "        from orchestrion.errors import PermanentNodeError\n"
        "        raise PermanentNodeError('not fixed yet')\n"
        "    return 'fixed'\n"
    )
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: fix\ndag:\n  nodes:\n    - {id: a, handler: noop, config: {value: 1}}\n"
        "    - id: b\n      handler: python\n      dependencies: [a]\n"
        f"      config: {{function: 'fixme:step', params: {{path: '{flag}'}}}}\n"
    )
    env = {"PYTHONPATH": str(module.parent)}
    db = str(tmp_path / "f.db")
    failed = orchestrion("run", str(flow), "--db", db, "--json", env=env)
    assert failed.returncode == 1
    data = json.loads(failed.stdout)
    assert data["status"] == "FAILED"
    assert "not fixed yet" in data["nodes"]["b"]["error"]["message"]
    flag.write_text("ok")
    retried = orchestrion("retry", data["execution_id"], "--db", db, "--json", env=env)
    assert retried.returncode == 0, retried.stderr
    after = json.loads(retried.stdout)
    assert after["nodes"]["b"]["output"] == "fixed"
    assert after["nodes"]["a"]["attempt"] == 1


def test_graph_prints_mermaid_and_dot() -> None:
    mermaid = orchestrion("graph", str(REFERENCE / "parallel_processing.json"))
    assert mermaid.returncode == 0 and "task_b" in mermaid.stdout
    assert mermaid.stdout.lstrip().startswith(("graph", "flowchart"))
    dot = orchestrion("graph", str(REFERENCE / "parallel_processing.json"), "--format", "dot")
    assert dot.returncode == 0 and "digraph" in dot.stdout


def test_reference_000_reliable_workflow_runs_as_written(tmp_path: Path) -> None:
    result = orchestrion(
        "run", str(REFERENCE / "reliable_workflow.yaml"), "--db", str(tmp_path / "r.db"), "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["workflow"] == "reliable_sample"
    assert all(node["state"] == "COMPLETED" for node in data["nodes"].values())


@pytest.mark.parametrize(
    "example",
    [
        "parallel_api_fetcher.json",
        "linear_processing.json",
        "parallel_processing.json",
        "llm_analysis.json",
        "simple_llm_workflow.json",
    ],
)
def test_http_examples_fail_cleanly_without_network_and_complete_through_a_proxy(
    example: str, tmp_path: Path, proxy: AnsweringProxy
) -> None:
    db = str(tmp_path / "h.db")
    offline = orchestrion("run", str(REFERENCE / example), "--db", db, "--json")
    assert offline.returncode == 1
    data = json.loads(offline.stdout)
    failed = [n for n in data["nodes"].values() if n["state"] == "FAILED"]
    assert failed and all(n["attempt"] == 3 for n in failed)
    assert all("could not connect" in n["error"]["message"] for n in failed)

    online = orchestrion(
        "run",
        str(REFERENCE / example),
        "--db",
        db,
        "--json",
        env=proxy.env(),
    )
    assert online.returncode == 0, online.stdout + online.stderr
    data = json.loads(online.stdout)
    assert data["status"] == "COMPLETED"
    assert proxy.seen  # the calls really went through the proxy
    assert all(call["headers"].get("Idempotency-Key") for call in proxy.seen)


def test_reference_003_results_show_the_llm_summary_of_the_proxied_posts(
    tmp_path: Path, proxy: AnsweringProxy
) -> None:
    result = orchestrion(
        "run",
        str(REFERENCE / "simple_llm_workflow.json"),
        "--db",
        str(tmp_path / "s.db"),
        "--json",
        env=proxy.env(),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    summary = data["result"]["summarize_posts"]["result"]
    assert "Response from https://api.example.com/posts" in summary


def test_reference_004_dora_workflow_runs_with_its_required_input(tmp_path: Path) -> None:
    path = REFERENCE / "dora-compliance-assessment.yaml"
    given = ("-i", 'documents=["a.pdf"]')
    nobody = orchestrion("run", str(path), "--db", str(tmp_path / "x.db"), *given)
    assert nobody.returncode == 2  # its routing rules name teams this process does not know
    assert "unknown team 'compliance_officer'" in nobody.stderr, nobody.stderr
    teams = {"ORCHESTRION_TEAMS_FILE": str(REFERENCE.parent / "teams.yaml")}
    missing = orchestrion("run", str(path), "--db", str(tmp_path / "x.db"), env=teams)
    assert missing.returncode == 2
    assert "documents" in missing.stderr
    result = orchestrion(
        "run",
        str(path),
        "--db",
        str(tmp_path / "x.db"),
        "--json",
        "-i",
        'documents=["ict-policy.pdf", "bcp.pdf"]',
        env=teams,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["nodes"]["report_generation"]["state"] == "COMPLETED"
    assert "compliance_report" in data["nodes"]["report_generation"]["output"]


def test_rerun_from_a_node_runs_it_and_its_downstream_again(tmp_path: Path) -> None:
    flow = tmp_path / "three.yaml"
    flow.write_text(
        "name: three\ndag:\n  nodes:\n    - {id: a, handler: noop, config: {value: 1}}\n"
        "    - {id: b, handler: noop, dependencies: [a], config: {value: 2}}\n"
        "    - {id: c, handler: noop, dependencies: [b], config: {value: 3}}\n"
    )
    db = str(tmp_path / "t.db")
    first = json.loads(orchestrion("run", str(flow), "--db", db, "--json").stdout)
    again = orchestrion("retry", first["execution_id"], "--from-node", "b", "--db", db, "--json")
    assert again.returncode == 0, again.stderr
    nodes = json.loads(again.stdout)["nodes"]
    assert [nodes[n]["attempt"] for n in "abc"] == [1, 2, 2]
