"""Orchestrion changes process-wide state only in a process that is its own.

Embedded in a plain Python program, an engine that starts and runs leaves the log record
factory and the garbage collector's frozen objects as they were; ``orchestrion run`` and
``orchestrion serve`` put in the masking log record factory and freeze the start-up objects
and raise the collector's young threshold while the engine runs (the ``mask_all_logs``,
``gc_freeze`` and ``gc_young_threshold`` settings, which their process turns on). Each program
reports, as it exits, whether the factory was replaced and objects were frozen, and the
young thresholds set in turn.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from test_api_server import free_port

pytestmark = pytest.mark.slow

REPORT = textwrap.dedent(
    """
    import atexit, gc, logging, sys
    original = logging.getLogRecordFactory()
    set_threshold, young = gc.set_threshold, []

    def recorded(*thresholds):
        young.append(str(thresholds[0]))
        set_threshold(*thresholds)

    gc.set_threshold = recorded

    def report():
        replaced = logging.getLogRecordFactory() is not original
        frozen = gc.get_freeze_count() > 0
        print(f"STATE factory={replaced} frozen={frozen} young={','.join(young)}", flush=True)

    atexit.register(report)
    """
)

EMBEDDED = REPORT + textwrap.dedent(
    """
    import asyncio
    from orchestrion import Engine

    async def main(db):
        async with Engine(f"sqlite:///{db}") as engine:
            hello = {"name": "hello", "dag": {"nodes": [{"id": "hello", "handler": "noop"}]}}
            assert (await engine.run(hello)).ok

    asyncio.run(main(sys.argv[1]))
    """
)

# The console script's own entry point, with the arguments given to this program.
COMMAND = REPORT + textwrap.dedent(
    """
    from orchestrion.cli.app import main
    sys.argv = ["orchestrion", *sys.argv[1:]]
    main()
    """
)

HELLO = "name: hello\ndag:\n  nodes:\n    - id: hello\n      handler: noop\n"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRION_")}
    env.pop("OPENAI_API_KEY", None)
    return {**env, "ORCHESTRION_RATE_LIMIT_PER_SECOND": "0", **extra}


def _state(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("STATE ")]
    assert lines, output
    return lines[-1]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({}, "STATE factory=False frozen=False young="),
        ({"ORCHESTRION_MASK_ALL_LOGS": "true"}, "STATE factory=True frozen=False young="),
        ({"ORCHESTRION_GC_FREEZE": "true"}, "STATE factory=False frozen=True young="),
        ({"ORCHESTRION_CAPTURE_NODE_LOGS": "true"}, "STATE factory=True frozen=False young="),
        # Raised while the engine runs, put back when it stops.
        (
            {"ORCHESTRION_GC_YOUNG_THRESHOLD": "20000"},
            "STATE factory=False frozen=False young=20000,700",
        ),
    ],
)
def test_an_embedded_engine_changes_no_process_state_unless_asked(
    tmp_path: Path, setting: dict[str, str], expected: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EMBEDDED, str(tmp_path / "embedded.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(**setting),
    )
    assert done.returncode == 0, done.stderr
    assert _state(done.stdout) == expected


def test_orchestrion_run_masks_logs_freezes_and_raises_the_young_threshold(tmp_path: Path) -> None:
    flow = tmp_path / "hello.yaml"
    flow.write_text(HELLO)
    done = subprocess.run(
        [sys.executable, "-c", COMMAND, "run", str(flow), "--db", str(tmp_path / "run.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # Paused while it starts, back at the engine's start, raised while it runs, put back.
    assert _state(done.stdout) == "STATE factory=True frozen=True young=100000,700,20000,700"


def test_orchestrion_serve_masks_logs_freezes_and_raises_the_young_threshold(
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-c", COMMAND, "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*command, "--db", str(tmp_path / "serve.db")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, log.read_text()
    assert _state(log.read_text()) == "STATE factory=True frozen=True young=100000,700,20000,700"


def test_orchestrion_worker_raises_the_young_threshold_while_it_runs(
    tmp_path: Path, redis_server: str, redis_prefix: str
) -> None:
    log = tmp_path / "worker.log"
    command = [sys.executable, "-c", COMMAND, "worker", "--redis", redis_server]
    with log.open("wb") as out:
        worker = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(ORCHESTRION_REDIS_PREFIX=redis_prefix, ORCHESTRION_LOG_LEVEL="INFO"),
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 30
        while "serving" not in log.read_text():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
    assert _state(log.read_text()).endswith(" young=100000,700,20000,700")
