"""The README's commands, run as written, top to bottom, offline, so the README cannot drift.

Every ```bash block of README.md is either run here or listed in ``NOT_RUN`` with the reason;
a new block must be one or the other. The commands run in the repository's root with the
installed ``orchestrion`` first on PATH, against a database of their own (the default one,
through ``ORCHESTRION_DATABASE_URL``) and a real ``orchestrion serve`` on a free port; the
only edits are the port, the server's database file, and the ids the commands print.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api_server import Server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)
BIN = Path(sys.executable).parent

# A block's first command names it.
NOT_RUN = {
    "orchestrion migrate": "the scale-out processes need PostgreSQL, Redis and docker; "
    "tests/e2e/test_topology.py runs them",
    "orchestrion serve --port 8000 --db state.db &": "a schedule firing every 10 s in the "
    "background; tests/e2e/test_schedules_server.py runs the same commands on an "
    "every-second schedule",
}
NOT_RUN_LINES = {
    "./scripts/test": "the whole suite: CI runs it on its own",
}


def _commands(block: str) -> list[str]:
    """The block's commands, continuation lines joined."""
    joined = block.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip()]


def _first(block: str) -> str:
    return _commands(block)[0].split("#")[0].strip()


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    for name in list(env):
        if name.startswith("ORCHESTRION_") or name in ("OPENAI_API_KEY", "DEMO_DB"):
            env.pop(name)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ORCHESTRION_DATABASE_URL"] = f"sqlite:///{tmp_path / 'orchestrion.db'}"
    env["COLUMNS"] = "200"
    return env


def _bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield _environment(tmp_path)


def test_every_bash_block_is_run_or_says_why_not() -> None:
    firsts = [_first(block) for block in BLOCKS]
    known = {"./scripts/demo", "source .venv/bin/activate"}
    known |= {"orchestrion serve --port 8000 --db state.db"}
    known |= {"export ORCHESTRION_TEAMS_FILE=examples/teams.yaml"}
    known |= {"ORCHESTRION_TEAMS_FILE=examples/teams.yaml orchestrion emit policy.updated"}
    known |= {'orchestrion versions list "DORA Compliance Assessment"'}
    known |= {"curl -X POST localhost:8000/v1/workflow -H 'Content-Type: application/yaml'"}
    known |= {"export ORCHESTRION_ENCRYPTION_KEYS=$(orchestrion keys generate --id k1 2>/dev/null)"}
    known |= {"orchestrion emit policy.updated"}
    for first in firsts:
        starts = " ".join(first.split()[:8])
        assert any(starts.startswith(" ".join(k.split()[:8])) for k in known | set(NOT_RUN)), (
            f"a README bash block this test does not know: {first!r}"
        )


def _block(start: str) -> str:
    found = [b for b in BLOCKS if _first(b).startswith(start)]
    assert len(found) == 1, (start, [_first(b) for b in BLOCKS])
    return found[0]


def _script(block: str) -> str:
    lines = []
    for command in _commands(block):
        if any(command.startswith(skip) for skip in NOT_RUN_LINES):
            continue
        lines.append(command)
    return "\n".join(lines)


def test_the_quick_start_and_governance_commands_run_as_written(
    env: dict[str, str], tmp_path: Path
) -> None:
    demo = _bash(_script(_block("./scripts/demo")), env)
    assert demo.returncode == 0, demo.stdout + demo.stderr

    first_steps = _script(_block("source .venv/bin/activate"))
    # `source .venv/bin/activate` is the worktree's own venv: the installed one is on PATH.
    first_steps = first_steps.replace("source .venv/bin/activate", "true")
    listed = _bash("orchestrion list --json", env)
    newest = json.loads(listed.stdout)[0]["execution_id"]
    ran = _bash(first_steps.replace("<execution-id>", newest), env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert newest in ran.stdout

    governed = _bash(_script(_block("export ORCHESTRION_ENCRYPTION_KEYS")), env)
    assert governed.returncode == 0, governed.stdout + governed.stderr
    assert "audit trail ok" in governed.stdout


def test_the_success_criteria_example_runs_as_written(env: dict[str, str]) -> None:
    ran = _bash(_script(_block("export ORCHESTRION_TEAMS_FILE=examples/teams.yaml")), env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    first, second = ran.stdout.split("success criteria:")[1:]
    assert "✓ compliance_score >= 0.7 (required): passed" in first
    assert "✗ compliance_score >= 0.7 (required): failed" in second
    assert "exit 1: the required criterion compliance_score >= 0.7 failed" in second


def test_the_service_walk_through_runs_as_written_against_a_real_server(
    env: dict[str, str], tmp_path: Path
) -> None:
    walk_through = [b for b in BLOCKS if _first(b) == "orchestrion serve --port 8000 --db state.db"]
    assert len(walk_through) == 1, [_first(b) for b in BLOCKS]
    serve_line = _commands(walk_through[0])[0].split("#")[0]
    assert serve_line.split()[:2] == ["orchestrion", "serve"]
    server = Server(tmp_path, tmp_path / "state.db", env)
    port = server.port
    try:
        commands = [
            c.replace("localhost:8000", f"127.0.0.1:{port}")
            for c in _commands(_block("curl -X POST localhost:8000/v1/workflow"))
        ]
        execution_id = None
        for command in commands:
            if execution_id is not None:
                command = command.replace("<execution_id>", execution_id)
            assert "<" not in command.split("#")[0], command
            # curl as written, but failing on an HTTP error (as a reader would notice one)
            checked = re.sub(r"^curl ", "curl -sS --fail-with-body --max-time 60 ", command)
            done = _bash(checked, env)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            if execution_id is None:
                execution_id = json.loads(done.stdout)["execution_id"]
            if "/results" in command or command.startswith("orchestrion status"):
                assert "churn" in done.stdout or "completed" in done.stdout.lower(), done.stdout
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_the_events_walk_through_runs_as_written(env: dict[str, str]) -> None:
    ran = _bash(_script(_block("orchestrion emit policy.updated")), env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.count("event evt-1 (policy.updated): the event started 1 execution(s)") == 1
    again = "event evt-1 (policy.updated): this event was delivered before: it started 1"
    assert ran.stdout.count(again) == 1, ran.stdout  # the README's "nothing new"
    assert "skipped policy-review (filter)" in ran.stdout
    assert "notify-after-review" in ran.stdout and "policy-review" in ran.stdout


def test_the_routing_and_versions_examples_run_as_written(env: dict[str, str]) -> None:
    routed = _bash(
        _script(_block("ORCHESTRION_TEAMS_FILE=examples/teams.yaml orchestrion emit")), env
    )
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert "the event started 1 execution(s)" in routed.stdout
    assert "routing-1" in routed.stdout and "waiting" in routed.stdout
    assert "escalation for compliance_officer" in routed.stderr  # the log sink
    assert "exit 1: approved; then its success criteria failed it" in routed.stdout
    versions = _bash(_script(_block('orchestrion versions list "DORA Compliance Assessment"')), env)
    assert versions.returncode == 0, versions.stdout + versions.stderr
    assert "activated DORA Compliance Assessment version 1.0.0" in versions.stdout
    assert '"status": "deprecated"' in versions.stdout
