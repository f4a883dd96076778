"""``orchestrion up`` as a real process tree on PostgreSQL and Redis: it starts the topology,
runs workflows through the API, heals a ``kill -9`` of a worker, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from orchestrion.cli.app import app
from orchestrion.client import Client

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
GRACE = 2.0  # ORCHESTRION_SHUTDOWN_GRACE of the children
UP_GRACE = GRACE + 3  # what `up` waits for each stop stage (of 3) before SIGKILL

# examples/reference/parallel_processing.json with noop instead of external calls.
FLOW = {
    "name": "parallel-processing-offline",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            *(
                {
                    "id": f"task_{name}",
                    "handler": "noop",
                    "dependencies": ["input"],
                    "config": {"value": "{{ input.user_id }}", "sleep": 0.05},
                }
                for name in "bcd"
            ),
            {"id": "output", "handler": "output", "dependencies": ["task_b", "task_c", "task_d"]},
        ]
    },
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose environment holds ``marker`` (a unique key prefix)."""
    needle = f"ORCHESTRION_REDIS_PREFIX={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


class Up:
    """``orchestrion up`` with its stdout (the table) and stderr (the logs) in files."""

    def __init__(self, folder: Path, env: dict[str, str], *args: str) -> None:
        self.out, self.err = folder / "up.out", folder / "up.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [*CLI, "up", *args], stdout=out, stderr=err, env=env, cwd=folder
            )

    def logs(self) -> str:
        """Everything ``up`` wrote to stderr (its own lines and its children's)."""
        return self.err.read_text(errors="replace")

    def tail(self) -> str:
        return self.logs()[-6000:]

    def table(self, timeout: float = 40) -> dict[str, int]:
        """Role -> pid, once ``up`` has printed its table (the API answered /health)."""
        deadline = time.monotonic() + timeout
        while "API: " not in self.out.read_text():
            assert self.process.poll() is None, f"up exited early:\n{self.tail()}"
            assert time.monotonic() < deadline, f"no table in {timeout}s:\n{self.tail()}"
            time.sleep(0.1)
        rows = re.findall(r"^(\S+)\s+(\d+)$", self.out.read_text(), re.MULTILINE)
        return {role: int(pid) for role, pid in rows}

    def restarted(self, role: str, timeout: float = 15) -> int:
        """The new pid of ``role`` once ``up`` has said it restarted it."""
        deadline = time.monotonic() + timeout
        pattern = re.compile(rf"^up\s+\| .* {re.escape(role)} restarted: pid (\d+)", re.MULTILINE)
        while not (found := pattern.search(self.err.read_text())):
            assert time.monotonic() < deadline, f"{role} not restarted:\n{self.logs()}"
            time.sleep(0.1)
        return int(found.group(1))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_up_runs_heals_a_killed_worker_and_stops_cleanly(
    tmp_path: Path, postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(
        ORCHESTRION_DATABASE_URL=postgres_url,
        ORCHESTRION_REDIS_URL=redis_server,
        ORCHESTRION_REDIS_PREFIX=redis_prefix,
        ORCHESTRION_HEARTBEAT_SECONDS="0.5",
        ORCHESTRION_SHUTDOWN_GRACE=str(GRACE),
        ORCHESTRION_RATE_LIMIT_PER_SECOND="0",
    )
    port = free_port()
    up = Up(
        tmp_path,
        env,
        *("--workers", "2", "--orchestrators", "2", "--worker-concurrency", "8"),
        *("--port", str(port), "--shutdown-grace", str(UP_GRACE)),
    )
    try:
        pids = up.table()
        assert sorted(pids) == sorted(
            ["orchestrator-1", "orchestrator-2", "worker-1", "worker-2", "reaper", "api"]
        ), up.out.read_text()
        assert all(alive(pid) for pid in pids.values())
        # transport=: talk to the port directly, whatever proxy the environment names
        with Client(f"http://127.0.0.1:{port}", transport=httpx.HTTPTransport()) as client:
            first = client.run(FLOW, {"user_id": 7}, timeout=20)
            assert first.ok, first
            assert first.result == {"task_b": 7, "task_c": 7, "task_d": 7}

            # A crash of a worker: `up` starts a new one in its place.
            victim = pids["worker-1"]
            os.kill(victim, signal.SIGKILL)
            second = client.run(FLOW, {"user_id": 8}, timeout=20)
            assert second.ok, second
            assert second.result == {"task_b": 8, "task_c": 8, "task_d": 8}
            replacement = up.restarted("worker-1")
            assert replacement != victim and alive(replacement)
            assert not alive(victim)
            assert re.search(r"worker-1 \(pid \d+\) died: killed by SIGKILL", up.logs())

            # The new worker serves: a third run completes with it in the pool.
            third = client.run(FLOW, {"user_id": 9}, timeout=20)
            assert third.ok, third

        stopping = time.monotonic()
        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(3 * UP_GRACE + 5) == 0, up.logs()
        assert time.monotonic() - stopping < 3 * UP_GRACE, up.logs()
        assert "still running: SIGKILL" not in up.logs()
        assert processes_with(redis_prefix) == []
        assert not any(alive(pid) for pid in [*pids.values(), replacement])
        # the stop order: the API first, the reaper last
        stops = re.findall(r"stopping the (.+) \(SIGTERM\)", up.logs())
        assert stops == ["api", "orchestrators and workers", "reaper"]
    finally:
        up.kill()
        for pid in processes_with(redis_prefix):  # never leave a topology behind
            os.kill(pid, signal.SIGKILL)
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, [], "ORCHESTRION_DATABASE_URL"),
        ({"ORCHESTRION_DATABASE_URL": "sqlite:///x.db"}, [], "postgresql://"),
        ({}, ["--db", "memory://"], "postgresql://"),
        ({"ORCHESTRION_DATABASE_URL": "postgresql://u@h/d"}, [], "ORCHESTRION_REDIS_URL"),
        (
            {"ORCHESTRION_DATABASE_URL": "postgresql://u@h/d"},
            ["--redis", "http://h:6379"],
            "redis://",
        ),
    ],
)
def test_up_names_the_missing_or_wrong_setting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the working tree
    for name in ("ORCHESTRION_DATABASE_URL", "ORCHESTRION_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["up", *args], env=env)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
