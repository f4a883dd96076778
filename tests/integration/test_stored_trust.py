"""Work submitted through the service stays untrusted wherever it runs later (in-process).

Two engines share one SQLite file, as ``orchestrion serve`` and an administrator's
``orchestrion retry`` / ``resume`` / ``run`` do: the service's (untrusted governance, as
``create_app`` makes it) and a local one (trusted). A python node whose function is a
template (``{{ input.fn }}``) passes submission and fails as a policy violation in the
service; the local engine must fail it the same way on every path (retry, re-run from a node,
recovery on start, a stored definition run by record, a trigger, a child, a compensation, a
map item) and never call the function. A probe module on ``sys.path`` writes a marker file
when called, and ``os:system`` is given ``touch <marker>``: the marker never appears. The
positive side: one's own definition handed to the local engine still runs any function.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.result import ExecutionResult
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.governance.runtime import Governance
from orchestrion.governance.trust import Trust

POLICY = """\
version: 1
python:
  allowed_modules: [json]
"""
PROBE = """\
from pathlib import Path


def touch(command: str) -> str:
    Path(command.split(" ", 1)[1]).write_text("ran")
    return "touched"
"""
FUNCTIONS = ["os:system", "trust_probe:touch", "trust_probe.touch"]


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "governance.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the probe (or ``touch``) would write; the probe module put on ``sys.path``."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "trust_probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(modules))
    return tmp_path / "marker"


Opener = Callable[..., Any]


@pytest.fixture
def engines(tmp_path: Path, policy: Path) -> Opener:
    """``open_engine(trusted, resume=False)``: an engine on the shared SQLite file."""

    @asynccontextmanager
    async def open_engine(trusted: bool, *, resume: bool = False) -> AsyncIterator[Engine]:
        governance = Governance.load(policy, trusted=trusted)
        async with Engine(
            f"sqlite:///{tmp_path / 'shared.db'}", governance=governance, resume=resume
        ) as engine:
            yield engine

    return open_engine


def python_node(node_id: str = "run", deps: tuple[str, ...] = ("input",)) -> dict[str, Any]:
    return {
        "id": node_id,
        "handler": "python",
        "dependencies": list(deps),
        "config": {"function": "{{ input.fn }}", "params": {"command": "{{ input.command }}"}},
        "retry": {"max_attempts": 1},
    }


def flow(name: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "dag": {"nodes": [{"id": "input", "handler": "input"}, *nodes]}}


def inputs(fn: str, marker: Path) -> dict[str, Any]:
    return {"fn": fn, "command": f"touch {marker}"}


def assert_refused(result: ExecutionResult, node: str = "run") -> None:
    assert result.status is ExecutionStatus.FAILED, result
    error = result.nodes[node].error
    assert error is not None, result
    if error["category"] == "map_item":  # a map names the item, then the item's error
        assert "policy_violation" in error["message"], error
    else:
        assert error["category"] == "policy_violation", error
    assert result.trust is Trust.UNTRUSTED


async def submitted(open_engine: Opener, spec: dict[str, Any], params: dict[str, Any]) -> str:
    """Run ``spec`` through the service's engine to its end; the execution's id."""
    async with open_engine(False) as service:
        record = await service.start_execution(spec, params)
        result = await service.wait(record.id, timeout=30)
    assert_refused(result)
    return record.id


@pytest.mark.parametrize("fn", FUNCTIONS)
async def test_local_retry_and_rerun_keep_the_service_s_trust(
    engines: Opener, marker: Path, fn: str
) -> None:
    execution_id = await submitted(engines, flow("tmpl", python_node()), inputs(fn, marker))
    async with engines(True) as local:
        assert (await local.store.get_execution(execution_id)).trust is Trust.UNTRUSTED
        await local.retry(execution_id)
        assert_refused(await local.wait(execution_id, timeout=30))
        await local.retry(execution_id, from_node="run")
        assert_refused(await local.wait(execution_id, timeout=30))
        await local.retry(execution_id, from_node="input")
        result = await local.wait(execution_id, timeout=30)
        assert_refused(result)
        assert result.nodes["run"].attempt >= 1
    assert not marker.exists()


async def test_recovery_on_start_keeps_the_service_s_trust(engines: Opener, marker: Path) -> None:
    spec = flow(
        "slow",
        {"id": "later", "handler": "delay", "dependencies": ["input"], "config": {"seconds": 0.5}},
        python_node(deps=("later",)),
    )
    async with engines(False) as service:
        record = await service.start_execution(spec, inputs("trust_probe:touch", marker))
        # Stopped while the timer runs: the execution is left for whoever starts next.
    async with engines(True, resume=True) as local:
        result = await local.wait(record.id, timeout=30)
    assert_refused(result)
    assert not marker.exists()


async def test_a_stored_definition_run_locally_is_untrusted_but_one_s_own_copy_is_not(
    engines: Opener, marker: Path
) -> None:
    spec = flow("tmpl", python_node())
    async with engines(False) as service:
        stored = await service.submit(spec)
    assert stored.trust is Trust.UNTRUSTED
    async with engines(True) as local:
        by_record = await local.start_execution(
            await local.store.find_definition("tmpl"), inputs("trust_probe:touch", marker)
        )
        assert_refused(await local.wait(by_record.id, timeout=30))
        # A record object that claims more than its stored row gets the row's level.
        forged = replace(stored, trust=Trust.TRUSTED)
        by_forged = await local.start_execution(forged, inputs("trust_probe:touch", marker))
        assert_refused(await local.wait(by_forged.id, timeout=30))
        assert not marker.exists()
        # The same content handed over as one's own: trusted, and the definition row is
        # still the service's (untrusted) one.
        own = await local.run(spec, inputs("trust_probe:touch", marker), timeout=30)
        assert own.ok, own.error
        assert own.trust is Trust.TRUSTED
        assert (await local.store.find_definition("tmpl")).trust is Trust.UNTRUSTED
    assert marker.read_text() == "ran"


async def test_a_trusted_pending_execution_triggered_by_the_service_becomes_untrusted(
    engines: Opener, marker: Path
) -> None:
    async with engines(True) as local:
        definition = await local.submit(flow("tmpl", python_node()))
        assert definition.trust is Trust.TRUSTED
        pending, _ = await local.create_execution(definition.id)
        assert pending.trust is Trust.TRUSTED
    async with engines(False) as service:
        await service.trigger(pending.id, inputs("os:system", marker))
        assert_refused(await service.wait(pending.id, timeout=30))
    async with engines(True) as local:
        assert (await local.store.get_execution(pending.id)).trust is Trust.UNTRUSTED
        await local.retry(pending.id)
        assert_refused(await local.wait(pending.id, timeout=30))
    assert not marker.exists()


async def test_a_child_of_an_untrusted_parent_is_untrusted(engines: Opener, marker: Path) -> None:
    child = flow("child", python_node())
    parent = flow(
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
    async with engines(True) as local:
        assert (await local.submit(child)).trust is Trust.TRUSTED  # one's own child
    async with engines(False) as service:
        record = await service.start_execution(parent, inputs("trust_probe:touch", marker))
        result = await service.wait(record.id, timeout=30)
    assert result.nodes["sub"].error is not None
    assert result.nodes["sub"].error["category"] == "child_failed"
    async with engines(True) as local:
        await local.retry(record.id)
        result = await local.wait(record.id, timeout=30)
        assert result.status is ExecutionStatus.FAILED
        assert result.nodes["sub"].error is not None
        assert result.nodes["sub"].error["category"] == "child_failed"
        children, _ = await local.list_executions()
        kids = [r for r in children if r.parent_execution_id == record.id]
        assert len(kids) == 2
        for kid in kids:
            assert kid.trust is Trust.UNTRUSTED
            assert_refused(await local.result(kid.id))
        assert not marker.exists()
        # Positive: one's own parent, run locally, has a trusted child that may run anything.
        own = await local.run(parent, inputs("trust_probe:touch", marker), timeout=30)
        assert own.ok, own.error
        assert own.trust is Trust.TRUSTED
    assert marker.exists()


async def test_compensation_keeps_the_service_s_trust(engines: Opener, marker: Path) -> None:
    spec = flow(
        "saga",
        {
            "id": "pay",
            "handler": "noop",
            "dependencies": ["input"],
            "compensate": {
                "handler": "python",
                "config": {
                    "function": "{{ input.fn }}",
                    "params": {"command": "{{ input.command }}"},
                },
            },
        },
        {
            "id": "ship",
            "handler": "python",
            "dependencies": ["pay"],
            "config": {"function": "json:loads", "params": {"s": "not json"}},
            "retry": {"max_attempts": 1},
        },
    )
    async with engines(False) as service:
        record = await service.start_execution(spec, inputs("trust_probe:touch", marker))
        assert (await service.wait(record.id, timeout=30)).status is ExecutionStatus.FAILED
    async with engines(True) as local:
        await local.retry(record.id, from_node="pay")
        result = await local.wait(record.id, timeout=30)
        events = await local.store.list_events(record.id)
    assert result.trust is Trust.UNTRUSTED
    # Compensated twice (by the service, then by the local re-run): refused both times.
    failed = [e for e in events if e.type == "node.compensation_failed"]
    assert [(e.node_id, (e.data or {})["error"]["category"]) for e in failed] == [
        ("pay", "policy_violation"),
        ("pay", "policy_violation"),
    ]
    assert "node.compensated" not in {e.type for e in events}
    assert not marker.exists()


async def test_map_over_python_keeps_the_service_s_trust(engines: Opener, marker: Path) -> None:
    spec = flow(
        "fanout",
        {
            "id": "run",
            "handler": "map",
            "dependencies": ["input"],
            "config": {
                "items": [1, 2],
                "handler": "python",
                "config": {
                    "function": "{{ input.fn }}",
                    "params": {"command": "{{ input.command }}"},
                },
            },
            "retry": {"max_attempts": 1},
        },
    )
    execution_id = await submitted(engines, spec, inputs("trust_probe:touch", marker))
    async with engines(True) as local:
        await local.retry(execution_id)
        assert_refused(await local.wait(execution_id, timeout=30))
        # Positive: the same map from one's own definition calls the function.
        own = await local.run(spec, inputs("trust_probe:touch", marker), timeout=30)
        assert own.ok, own.error
    assert marker.exists()


async def test_one_s_own_run_and_its_retry_stay_trusted(engines: Opener, marker: Path) -> None:
    async with engines(True) as local:
        result = await local.run(
            flow("own", python_node()), inputs("trust_probe:touch", marker), timeout=30
        )
        assert result.ok, result.error
        assert result.trust is Trust.TRUSTED
        assert marker.read_text() == "ran"
        marker.unlink()
        await local.retry(result.execution_id, from_node="run")
        again = await local.wait(result.execution_id, timeout=30)
        assert again.ok, again.error
    assert marker.read_text() == "ran"


async def test_the_service_does_not_run_one_s_own_execution_trusted(
    engines: Opener, marker: Path
) -> None:
    """A trusted execution retried by an untrusted process runs under its allowlist: the
    stricter of the two levels holds."""
    async with engines(True) as local:
        result = await local.run(
            flow("own", python_node()), inputs("trust_probe:touch", marker), timeout=30
        )
        assert result.ok
    marker.unlink()
    async with engines(False) as service:
        await service.retry(result.execution_id, from_node="run")
        again = await service.wait(result.execution_id, timeout=30)
        # One's own stored definition started by the service: its inputs are the caller's.
        own = await service.store.find_definition("own")
        assert own.trust is Trust.TRUSTED
        started = await service.start_execution(own, inputs("trust_probe:touch", marker))
        assert_refused(await service.wait(started.id, timeout=30))
    assert again.status is ExecutionStatus.FAILED
    assert again.trust is Trust.TRUSTED  # the execution's level; the process's is lower
    assert again.nodes["run"].error is not None
    assert again.nodes["run"].error["category"] == "policy_violation"
    assert not marker.exists()


async def test_concurrent_trusted_and_untrusted_attempts_do_not_share_an_allowlist(
    engines: Opener, marker: Path, tmp_path: Path
) -> None:
    """One trusted engine runs both levels at once: each attempt gets its own allowlist."""
    async with engines(False) as service:
        stored = await service.submit(flow("tmpl", python_node()))
    own_marker = tmp_path / "own"
    async with engines(True) as local:
        theirs = [
            await local.start_execution(stored, inputs("trust_probe:touch", marker))
            for _ in range(5)
        ]
        mine = [
            await local.start_execution(
                flow("own", python_node()), inputs("trust_probe:touch", own_marker)
            )
            for _ in range(5)
        ]
        results = await asyncio.gather(*(local.wait(r.id, timeout=30) for r in theirs + mine))
    for result in results[:5]:
        assert_refused(result)
    assert all(r.ok for r in results[5:])
    assert not marker.exists()
    assert own_marker.exists()
