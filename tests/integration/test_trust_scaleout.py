"""Trust in scale-out mode: PostgreSQL + Redis Streams, workers reading the task streams.

A worker runs each attempt with the stricter of its own level and the task's: a worker built
trusted still applies the allowlist to a task of an untrusted execution, whichever
orchestrator sent it (the service's, or a trusted one retrying it), and to a task whose
``trust`` field is missing; an untrusted worker applies it to every task. The probe writes a
marker file when called: it must never appear for untrusted work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import orchestrion.cluster.sending as redis_dispatch
from orchestrion.cluster.wire import encode_task
from orchestrion.core.result import ExecutionResult
from orchestrion.core.states import ExecutionStatus
from orchestrion.dispatch.base import TaskMessage
from orchestrion.governance.runtime import Governance
from orchestrion.governance.trust import Trust
from scaleout import scaleout_engine

POLICY = "version: 1\npython:\n  allowed_modules: [json]\n"
PROBE = """\
from pathlib import Path


def touch(command: str) -> str:
    Path(command.split(" ", 1)[1]).write_text("ran")
    return "touched"
"""
SPEC = {
    "name": "tmpl",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                "id": "run",
                "handler": "python",
                "dependencies": ["input"],
                "config": {
                    "function": "{{ input.fn }}",
                    "params": {"command": "{{ input.command }}"},
                },
                "retry": {"max_attempts": 1},
            },
        ]
    },
}


@pytest.fixture
def trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Governance:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "trust_probe_scaleout.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(modules))
    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    return Governance.load(policy, trusted=True, environ={})


@pytest.fixture
def cluster(postgres_url: str, redis_server: str, redis_prefix: str) -> Any:
    def open_cluster(engine: Governance, worker: Governance) -> Any:
        return scaleout_engine(
            postgres_url,
            redis_server,
            redis_prefix,
            governance=engine,
            worker_governance=worker,
        )

    return open_cluster


def params(marker: Path) -> dict[str, Any]:
    return {"fn": "trust_probe_scaleout:touch", "command": f"touch {marker}"}


def assert_refused(result: ExecutionResult) -> None:
    assert result.status is ExecutionStatus.FAILED, result
    error = result.nodes["run"].error
    assert error is not None and error["category"] == "policy_violation", error


async def test_a_trusted_worker_refuses_the_service_s_work_on_every_path(
    cluster: Any, trusted: Governance, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    # The service: an untrusted orchestrator; the workers are trusted.
    async with cluster(trusted.untrusted(), trusted) as service:
        record = await service.start_execution(SPEC, params(marker))
        result = await service.wait(record.id, timeout=60)
    assert_refused(result)
    assert result.trust is Trust.UNTRUSTED
    # An administrator's trusted orchestrator retries it: the task says untrusted.
    async with cluster(trusted, trusted) as local:
        await local.retry(record.id)
        assert_refused(await local.wait(record.id, timeout=60))
        await local.retry(record.id, from_node="input")
        assert_refused(await local.wait(record.id, timeout=60))
        stored = await local.store.find_definition("tmpl")
        by_name = await local.start_execution(stored, params(marker))
        assert_refused(await local.wait(by_name.id, timeout=60))
        assert not marker.exists()
        # Positive: one's own definition, on the same trusted workers, runs the probe.
        own = await local.run(SPEC, params(marker), timeout=60)
        assert own.ok, own.error
        assert own.trust is Trust.TRUSTED
    assert marker.read_text() == "ran"


async def test_an_untrusted_worker_runs_nothing_trusted(
    cluster: Any, trusted: Governance, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    async with cluster(trusted, trusted.untrusted()) as local:
        result = await local.run(SPEC, params(marker), timeout=60)
    assert result.trust is Trust.TRUSTED  # the execution is; its worker is not
    assert_refused(result)
    assert not marker.exists()


async def test_a_task_without_its_trust_field_is_run_untrusted(
    cluster: Any, trusted: Governance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message from an orchestrator that predates the field (or one stripped on the way)
    is never taken as trusted by a trusted worker."""

    def without_trust(task: TaskMessage, **envelope: Any) -> str:
        message = json.loads(encode_task(task, **envelope))
        del message["task"]["trust"]
        return json.dumps(message)

    monkeypatch.setattr(redis_dispatch, "encode_task", without_trust)
    marker = tmp_path / "marker"
    async with cluster(trusted, trusted) as local:
        result = await local.run(SPEC, params(marker), timeout=60)
    assert result.trust is Trust.TRUSTED
    assert_refused(result)
    assert not marker.exists()
