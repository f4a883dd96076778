"""`orchestrion` writing into a pipe whose reader goes away (`| head -1`), or with stderr
closed: real processes on a SQLite file and on `orchestrion serve`; no traceback, nothing on
stderr, and the exit code the command would have had."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from python_steps import allow_steps
from test_api_server import Server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "orchestrion.cli.app"]
STEPS = """\
import logging
import time

log = logging.getLogger("steps")


def chatty(lines: int) -> list[str]:
    for i in range(lines):
        log.info("line %d of %d %s", i, lines, "x" * 60)
    return [f"item {i} " + "y" * 70 for i in range(lines)]


def slow(lines: int, pause: float) -> int:
    for i in range(lines):
        log.info("slow line %d", i)
        time.sleep(pause)
    return lines
"""
# Every command's output here is larger than a pipe holds (64 KiB): it is still writing when
# the reader has read one line and gone.
CHAIN = 400


def _flow() -> dict[str, object]:
    nodes: list[dict[str, object]] = [{"id": "step-000", "handler": "noop"}]
    for i in range(1, CHAIN):
        nodes.append(
            {"id": f"step-{i:03d}", "handler": "noop", "dependencies": [f"step-{i - 1:03d}"]}
        )
    nodes.append(
        {
            "id": "chatty",
            "handler": "python",
            "dependencies": [f"step-{CHAIN - 1:03d}"],
            "config": {"function": "pipe_steps.chatty", "params": {"lines": 1500}},
        }
    )
    return {"name": "pipe-flow", "dag": {"nodes": nodes}}


def _path(folder: Path) -> str:
    return os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(
        {
            "ORCHESTRION_GOVERNANCE_FILE": str(folder / "governance.yaml"),
            "PYTHONPATH": _path(folder),
            "COLUMNS": "100",
        }
    )
    return env


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pipes")
    allow_steps(folder, "pipe_steps", STEPS)
    (folder / "flow.yaml").write_text(yaml.safe_dump(_flow()))
    ran = subprocess.run(
        [*CLI, "run", "flow.yaml", "--db", "p.db", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
        env=_env(folder),
    )
    assert ran.returncode == 0, ran.stderr
    (folder / "id").write_text(json.loads(ran.stdout)["execution_id"])
    return folder


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[Server]:
    env = {
        "ORCHESTRION_GOVERNANCE_FILE": str(folder / "governance.yaml"),
        "PYTHONPATH": _path(folder),
        "ORCHESTRION_SSE_POLL": "0.2",
    }
    running = Server(folder, folder / "p.db", env)
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def cut(folder: Path, args: list[str], *, read: bool, stream: str = "stdout") -> tuple[int, str]:
    """Run ``orchestrion args``; its ``stream`` a pipe whose reader reads one line (or none,
    ``read=False``) and closes it. The exit code and what the other stream received."""
    env = _env(folder)
    other = folder / "other.txt"
    with other.open("w") as other_file:
        pipes = {"stdout": subprocess.PIPE, "stderr": other_file}
        if stream == "stderr":
            pipes = {"stdout": other_file, "stderr": subprocess.PIPE}
        process = subprocess.Popen([*CLI, *args], text=True, cwd=folder, env=env, **pipes)
    reader = process.stdout if stream == "stdout" else process.stderr
    assert reader is not None
    try:
        if read:
            assert reader.readline()
        reader.close()  # the reader goes away, as `head -1` does
        code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, other.read_text()


def whole(folder: Path, args: list[str]) -> str:
    """What ``orchestrion args`` prints on stderr when its output is read to the end: a
    table's title goes there when stdout is not a terminal."""
    done = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, cwd=folder, env=_env(folder)
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def _id(folder: Path) -> str:
    return (folder / "id").read_text()


# What prints more than a pipe holds: the reader leaves while the command still writes.
LARGE = [
    ["status", "{id}", "--json"],
    ["events", "{id}"],
    ["events", "{id}", "--json"],
    ["logs", "{id}"],
    ["logs", "{id}", "--json"],
    ["logs", "{id}", "chatty", "--follow"],
]
# Every command that prints: the reader leaves before the first write.
EVERY = [
    *LARGE,
    ["status", "{id}"],
    ["list"],
    ["list", "--json"],
    ["dlq", "list"],
    ["dlq", "list", "--json"],
    ["versions", "list", "pipe-flow"],
    ["schedule", "list"],
    ["sinks", "list"],
    ["validate", "flow.yaml"],
    ["graph", "flow.yaml"],
    ["schema"],
    ["version"],
    ["--help"],
]


def _args(folder: Path, command: list[str], server: Server | None = None) -> list[str]:
    args = [part.format(id=_id(folder)) for part in command]
    if command[0] in ("validate", "graph", "schema", "version", "--help"):
        return args
    return [*args, "--server", server.url] if server else [*args, "--db", "p.db"]


@pytest.mark.parametrize("command", LARGE, ids=" ".join)
def test_a_reader_that_leaves_after_one_line_is_no_failure(
    folder: Path, command: list[str]
) -> None:
    args = _args(folder, command)
    code, stderr = cut(folder, args, read=True)
    assert (code, stderr) == (0, whole(folder, args))


@pytest.mark.parametrize("command", EVERY, ids=" ".join)
def test_a_reader_gone_before_the_output_is_no_failure(folder: Path, command: list[str]) -> None:
    args = _args(folder, command)
    code, stderr = cut(folder, args, read=False)
    assert (code, stderr) == (0, whole(folder, args))


@pytest.mark.parametrize("command", [c for c in EVERY if c[0] not in ("--help",)], ids=" ".join)
def test_a_reader_gone_on_a_server_is_no_failure(
    folder: Path, server: Server, command: list[str]
) -> None:
    read = command in LARGE
    args = _args(folder, command, server)
    code, stderr = cut(folder, args, read=read)
    assert (code, stderr) == (0, whole(folder, args))


def test_a_run_whose_reader_left_still_ends_with_its_executions_code(folder: Path) -> None:
    code, stderr = cut(folder, ["run", "flow.yaml", "--db", "run.db"], read=True)
    assert code == 0  # its progress is on stderr: that and nothing else
    assert stderr.splitlines()[-1] == "… 341 more nodes"  # what the table left out
    assert stderr.splitlines()[-2] == "pipe-flow v1"  # the table's title, not one of its rows
    assert stderr.splitlines()[-3].endswith("chatty  completed"), stderr[-500:]
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    failing = folder / "failing.yaml"
    failing.write_text(
        "name: failing\ndag:\n  nodes:\n    - id: bad\n      handler: python\n"
        "      retry: {max_attempts: 1}\n"
        "      config: {function: pipe_steps.chatty, params: {lines: nope}}\n"
    )
    code, stderr = cut(folder, ["run", "failing.yaml", "--db", "run.db"], read=False)
    assert code == 1 and "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_closed_stderr_keeps_the_exit_code_and_prints_nothing_else(folder: Path) -> None:
    code, stdout = cut(folder, ["status", "0000abcd", "--db", "p.db"], read=False, stream="stderr")
    assert (code, stdout) == (5, "")  # not found, said on the stderr nobody reads
    # `run` prints its progress on stderr: the execution goes on and ends, its table printed.
    code, stdout = cut(folder, ["run", "flow.yaml", "--db", "run.db"], read=True, stream="stderr")
    assert code == 0 and "completed" in stdout


def test_logs_follow_stops_when_its_reader_leaves(folder: Path, server: Server) -> None:
    flow = {
        "name": "slow-logger",
        "dag": {
            "nodes": [
                {
                    "id": "slow",
                    "handler": "python",
                    "config": {
                        "function": "pipe_steps.slow",
                        "params": {"lines": 40, "pause": 0.2},
                    },
                }
            ]
        },
    }
    with httpx.Client(base_url=server.url, timeout=10) as client:
        submitted = client.post("/v1/workflow", json=flow)
        assert submitted.status_code == 201, submitted.text
        execution_id = str(submitted.json()["execution_id"])
        assert client.post(f"/v1/workflow/trigger/{execution_id}", json={}).status_code == 202
        started = time.monotonic()
        args = ["logs", execution_id, "--follow", "--server", server.url]
        code, stderr = cut(folder, args, read=True)
        assert (code, stderr) == (0, "")
        # It stopped at its next line, not when the node ended (8 s of lines).
        assert time.monotonic() - started < 6
        assert client.get(f"/v1/workflows/{execution_id}").json()["status"] == "RUNNING"
