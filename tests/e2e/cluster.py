"""A scale-out topology of real processes for end-to-end tests: orchestrators, workers, reaper.

Each process is ``python -m orchestrion.cli.app <role>`` with the test's PostgreSQL database,
Redis and key prefix in its environment, so tests can SIGKILL and restart any of them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from python_steps import allow_steps

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine

__all__ = ["Cluster", "settle", "steps_cluster"]

HERE = Path(__file__).parent
CLI = [sys.executable, "-m", "orchestrion.cli.app"]


@dataclass
class Cluster:
    """Processes by name (``orchestrator-0``, ``worker-1``...); logs go to ``logs``."""

    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    args: dict[str, list[str]] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    kills: int = 0

    @classmethod
    def for_test(
        cls, database_url: str, redis_url: str, prefix: str, logs: Path, **extra: str
    ) -> Cluster:
        env = dict(os.environ)
        env.update(
            ORCHESTRION_DATABASE_URL=database_url,
            ORCHESTRION_REDIS_URL=redis_url,
            ORCHESTRION_REDIS_PREFIX=prefix,
            ORCHESTRION_HEARTBEAT_SECONDS="0.5",
            ORCHESTRION_LEASE_SECONDS="3",
            ORCHESTRION_REAPER_INTERVAL="0.3",
            ORCHESTRION_SHUTDOWN_GRACE="2",
            ORCHESTRION_LOG_LEVEL="WARNING",
            PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
        )
        env.update(extra)
        logs.mkdir(parents=True, exist_ok=True)
        if "ORCHESTRION_GOVERNANCE_FILE" not in env:
            # Scale-out processes run only allowlisted python modules: the tests' effects.
            policy = logs / "governance.yaml"
            policy.write_text("version: 1\npython:\n  allowed_modules: [crash_effects]\n")
            env["ORCHESTRION_GOVERNANCE_FILE"] = str(policy)
        return cls(env, logs)

    def start(self, name: str, *args: str) -> None:
        self.args[name] = list(args)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        self.procs[name] = subprocess.Popen(
            [*CLI, *args, "--log-format", "console"],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        log.close()
        self.started[name] = time.monotonic()

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` and start it again at once (a crash and a supervisor's restart)."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.kills += 1
        self.start(name, *self.args[name])

    def names(self, role: str) -> list[str]:
        return [name for name in self.procs if name.startswith(role)]

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    def stop(self) -> dict[str, int | None]:
        """SIGTERM everything, SIGKILL what is left after 10 s; the exit codes.

        A process restarted a moment ago is first given time (up to 30 s) to install its
        SIGTERM handler: a SIGTERM while the interpreter still imports kills any Python
        program, and that is not what the exit codes are checked for.
        """
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            while proc.poll() is None and not _handles_sigterm(proc.pid):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(5)
        return codes

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"== {path.name}\n" + "\n".join(tail))
        return "\n".join(out)


def _handles_sigterm(pid: int) -> bool:
    """Whether process ``pid`` catches SIGTERM (its ``SigCgt`` mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # gone, or no /proc: nothing to wait for
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return True


def steps_cluster(
    database_url: str,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    source: str,
) -> Cluster:
    """A cluster whose processes (and this one, which checks imports on submit) run the node
    functions of ``module`` (written from ``source`` into ``tmp_path``), and only those;
    none started yet."""
    policy = allow_steps(tmp_path, module, source)
    monkeypatch.syspath_prepend(str(tmp_path))  # submitting checks the function imports
    return Cluster.for_test(
        database_url,
        redis_url,
        prefix,
        tmp_path / "logs",
        ORCHESTRION_GOVERNANCE_FILE=str(policy),
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(HERE), os.environ.get("PYTHONPATH", "")]),
    )


async def settle(api: Engine, execution_id: str, cluster: Cluster, within: float) -> Any:
    """The record of ``execution_id`` once it completed or failed, read through ``api``
    (within ``within`` s, else the test fails with the processes' last log lines)."""
    deadline = time.monotonic() + within
    while True:
        record = await api.reads.execution(execution_id)
        if record.status in (ExecutionStatus.FAILED, ExecutionStatus.COMPLETED):
            return record
        assert time.monotonic() < deadline, (record.status, cluster.log_tail())
        await asyncio.sleep(0.1)
