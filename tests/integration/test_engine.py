"""The embedded engine end to end, on the in-memory store and on a real SQLite file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import (
    DefinitionError,
    InvalidTransition,
    PermanentNodeError,
)
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.store.base import ExecutionRecord
from scaleout import engine_for

CALLS: dict[str, int] = {}
SWITCHES: dict[str, bool] = {}


@function("t_count", replace=True)
def t_count(ctx: NodeContext, value: Any = None) -> Any:
    CALLS[ctx.node_id] = CALLS.get(ctx.node_id, 0) + 1
    return value


@function("t_fail_unless", replace=True)
def t_fail_unless(ctx: NodeContext, switch: str, transient: bool = False) -> dict[str, Any]:
    CALLS[ctx.node_id] = CALLS.get(ctx.node_id, 0) + 1
    if not SWITCHES.get(switch):
        if transient:
            raise ConnectionError(f"{switch} is off")
        raise PermanentNodeError(f"{switch} is off")
    return {"ok": True}


@function("t_sleep", replace=True)
async def t_sleep(ctx: NodeContext, seconds: float) -> str:
    CALLS[ctx.node_id] = CALLS.get(ctx.node_id, 0) + 1
    await asyncio.sleep(seconds)
    return "slept"


@function("t_undo", replace=True)
def t_undo(ctx: NodeContext) -> dict[str, str]:
    CALLS[f"undo:{ctx.node_id}"] = CALLS.get(f"undo:{ctx.node_id}", 0) + 1
    return {"undone": ctx.node_id}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    SWITCHES.clear()


@pytest.fixture(params=["memory", "sqlite", "scaleout"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "scaleout":
        return "scaleout"  # PostgreSQL + Redis Streams with a worker (tests/scaleout.py)
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'o.db'}"


@pytest.fixture
async def engine(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    async with engine_for(database_url, request) as engine:
        yield engine


def py(
    node_id: str, function_name: str, deps: list[str] | None = None, **params: Any
) -> dict[str, Any]:
    return {
        "id": node_id,
        "handler": "python",
        "dependencies": deps or [],
        "config": {"function": function_name, "params": params},
    }


def flow(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": extra.pop("name", "t"), "dag": {"nodes": list(nodes)}, **extra}


async def test_data_flows_through_templates_with_native_types(engine: Engine) -> None:
    definition = flow(
        {"id": "input", "handler": "input"},
        {
            "id": "a",
            "handler": "noop",
            "dependencies": ["input"],
            "config": {"value": {"items": [1, 2, 3], "who": "{{ input.user }}"}},
        },
        {
            "id": "b",
            "handler": "noop",
            "dependencies": ["a"],
            "config": {"value": "{{ a.output['items'] }}"},
        },
        {
            "id": "c",
            "handler": "noop",
            "dependencies": ["a"],
            "config": {"value": "hello {{ a.output.who }} x{{ a.output['items'] | length }}"},
        },
        {"id": "output", "handler": "output", "dependencies": ["b", "c"]},
    )
    result = await engine.run(definition, {"user": "ada"})
    assert result.status is ExecutionStatus.COMPLETED
    assert result.result == {"b": [1, 2, 3], "c": "hello ada x3"}
    assert result.nodes["input"].output == {"user": "ada"}


async def test_reference_000_fault_scenario_compensates_and_isolates(engine: Engine) -> None:
    definition = flow(
        {**py("A", "t_count", value=1), "compensate": "t_undo"},
        {
            **py("B", "t_fail_unless", ["A"], switch="b"),
            "compensate": "t_undo",
            "retry": {"max_attempts": 1},
        },
        py("C", "t_count", ["B"]),
        py("D", "t_count"),  # independent branch carries on
    )
    result = await engine.run(definition)
    assert result.status is ExecutionStatus.FAILED
    states = {n: r.state for n, r in result.nodes.items()}
    assert states == {
        "A": NodeState.COMPENSATED,
        "B": NodeState.FAILED,  # its action failed: nothing of it to undo
        "C": NodeState.SKIPPED,
        "D": NodeState.COMPLETED,
    }
    assert "C" not in CALLS
    assert CALLS["undo:A"] == 1 and "undo:B" not in CALLS
    assert result.error is not None and "B" in result.error["message"]
    events = await engine.store.list_events(result.execution_id)
    types = [e.type for e in events]
    assert "execution.compensating" in types and "node.compensated" in types
    assert types[-1] == "execution.failed"


async def test_saga_compensates_in_reverse_topological_order(engine: Engine) -> None:
    definition = flow(
        {**py("a", "t_count"), "compensate": "t_undo"},
        {**py("b", "t_count", ["a"]), "compensate": "t_undo"},
        {**py("c", "t_fail_unless", ["b"], switch="c"), "retry": {"max_attempts": 1}},
    )
    result = await engine.run(definition)
    assert result.status is ExecutionStatus.FAILED
    events = await engine.store.list_events(result.execution_id, types=["node.compensated"])
    assert [e.node_id for e in events] == ["b", "a"]


async def test_transient_failures_are_retried_with_backoff(engine: Engine) -> None:
    definition = flow(
        {
            "id": "f",
            "handler": "python",
            "config": {"function": "flaky", "params": {"failures": 2, "value": "done"}},
            "retry": {"max_attempts": 3, "initial_delay": "10ms", "max_delay": "50ms"},
        },
    )
    result = await engine.run(definition)
    assert result.ok, result.error
    assert result.nodes["f"].attempt == 3
    retries = await engine.store.list_events(result.execution_id, types=["node.retry_scheduled"])
    assert len(retries) == 2
    assert all(e.data and 0 <= e.data["delay"] <= 0.05 for e in retries)


async def test_retries_run_out_with_a_clear_error(engine: Engine) -> None:
    definition = flow(
        {
            **py("x", "t_fail_unless", switch="x", transient=True),
            "retry": {"max_attempts": 2, "initial_delay": 0.01},
        },
    )
    result = await engine.run(definition)
    assert result.status is ExecutionStatus.FAILED
    node = result.nodes["x"]
    assert node.state is NodeState.FAILED and node.attempt == 2
    assert node.error is not None and "x is off" in node.error["message"]
    assert CALLS["x"] == 2


async def test_permanent_errors_are_not_retried(engine: Engine) -> None:
    result = await engine.run(
        flow(
            {
                **py("p", "t_fail_unless", switch="p"),
                "retry": {"max_attempts": 5, "initial_delay": 0.01},
            }
        )
    )
    assert result.status is ExecutionStatus.FAILED
    assert CALLS["p"] == 1


async def test_node_timeout_fails_the_attempt(engine: Engine) -> None:
    definition = flow(
        {**py("slow", "t_sleep", seconds=5), "timeout": "50ms", "retry": {"max_attempts": 1}}
    )
    result = await engine.run(definition, timeout=10)
    assert result.status is ExecutionStatus.FAILED
    assert result.nodes["slow"].error is not None
    assert result.nodes["slow"].error["category"] == "timeout"


async def test_workflow_timeout_fails_the_execution(engine: Engine) -> None:
    definition = flow(
        py("slow", "t_sleep", seconds=5), py("after", "t_count", ["slow"]), timeout="100ms"
    )
    result = await engine.run(definition, timeout=10)
    assert result.status is ExecutionStatus.FAILED
    assert result.error is not None and result.error["category"] == "timeout"
    assert result.nodes["after"].state is NodeState.SKIPPED


async def test_cancel_stops_running_nodes(engine: Engine) -> None:
    record = await engine.start_execution(
        flow(py("slow", "t_sleep", seconds=5), py("after", "t_count", ["slow"]))
    )
    await asyncio.sleep(0.05)
    await engine.cancel(record.id)
    result = await engine.wait(record.id, timeout=5)
    assert result.status is ExecutionStatus.CANCELLED
    assert result.nodes["slow"].state is NodeState.CANCELLED
    assert result.nodes["after"].state is NodeState.CANCELLED
    with pytest.raises(InvalidTransition):
        await engine.cancel(record.id)


async def test_retry_runs_failed_nodes_again_and_keeps_completed_ones(engine: Engine) -> None:
    definition = flow(
        py("first", "t_count", value=1),
        {**py("flip", "t_fail_unless", ["first"], switch="flip"), "retry": {"max_attempts": 1}},
        py("last", "t_count", ["flip"]),
    )
    failed = await engine.run(definition)
    assert failed.status is ExecutionStatus.FAILED
    SWITCHES["flip"] = True
    await engine.retry(failed.execution_id)
    result = await engine.wait(failed.execution_id, timeout=5)
    assert result.ok
    assert CALLS == {"first": 1, "flip": 2, "last": 1}
    assert result.nodes["flip"].attempt == 2


async def test_idempotency_key_returns_the_same_execution(engine: Engine) -> None:
    definition = flow(py("once", "t_count"))
    one = await engine.start_execution(definition, idempotency_key="k-1")
    two = await engine.start_execution(definition, idempotency_key="k-1")
    assert one.id == two.id
    await engine.wait(one.id, timeout=5)
    assert CALLS["once"] == 1


async def test_concurrent_starts_share_commits_and_keys(engine: Engine) -> None:
    """Starts asked for together are created in one batch; a key given by several of them
    still makes one execution, which runs once."""
    definition = await engine.submit(flow(py("once", "t_count")))
    keyed = await asyncio.gather(
        *(engine.start_execution(definition, idempotency_key="k-many") for _ in range(20))
    )
    plain = await asyncio.gather(*(engine.start_execution(definition) for _ in range(30)))
    assert len({record.id for record in keyed}) == 1
    assert len({record.id for record in plain}) == 30
    results = await asyncio.gather(
        *(engine.wait(record.id, timeout=10) for record in [keyed[0], *plain])
    )
    assert all(result.ok for result in results)
    assert CALLS["once"] == 31


async def test_a_start_cancelled_while_its_batch_is_written_still_runs(engine: Engine) -> None:
    """The caller gives up while the execution is being created (an asyncio timeout around
    start_execution, say): the write goes on, so the execution is begun and runs."""
    definition = await engine.submit(flow(py("once", "t_count")))
    start = asyncio.ensure_future(engine.start_execution(definition))
    await asyncio.sleep(0)  # it now waits for the batch write
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    for _ in range(500):
        page, _cursor = await engine.list_executions()
        if page and page[0].status is ExecutionStatus.COMPLETED:
            break
        await asyncio.sleep(0.02)
    assert [record.status for record in page] == [ExecutionStatus.COMPLETED]
    assert CALLS["once"] == 1


async def test_two_step_submit_then_trigger_with_inputs_and_overrides(engine: Engine) -> None:
    definition = await engine.submit(
        flow(
            {"id": "input", "handler": "input"},
            {
                "id": "say",
                "handler": "noop",
                "dependencies": ["input"],
                "config": {"value": "hi {{ input.name }}"},
            },
        )
    )
    record, created = await engine.create_execution(definition.id)
    assert created and record.status is ExecutionStatus.PENDING
    await engine.trigger(record.id, {"name": "bo"}, {"say": {"value": "bye {{ input.name }}"}})
    result = await engine.wait(record.id, timeout=5)
    assert result.nodes["say"].output == "bye bo"
    with pytest.raises(InvalidTransition):
        await engine.trigger(record.id)


async def test_required_inputs_and_unknown_override_nodes_are_rejected(engine: Engine) -> None:
    definition = await engine.submit(
        {
            "name": "needs",
            "inputs": {"who": {"type": "string", "required": True}},
            "dag": {"nodes": [{"id": "n", "handler": "noop"}]},
        }
    )
    record, _ = await engine.create_execution(definition.id)
    with pytest.raises(DefinitionError, match="required input 'who'"):
        await engine.trigger(record.id, {})
    with pytest.raises(DefinitionError, match="no node 'ghost'"):
        await engine.trigger(record.id, {"who": "x"}, {"ghost": {}})
    with pytest.raises(DefinitionError, match="must be of type string"):
        await engine.trigger(record.id, {"who": 5})


async def test_definitions_are_versioned_by_content(engine: Engine) -> None:
    first = await engine.submit(flow(py("a", "t_count"), name="versioned"))
    again = await engine.submit(flow(py("a", "t_count"), name="versioned"))
    changed = await engine.submit(flow(py("b", "t_count"), name="versioned"))
    assert first.id == again.id and first.version == "1"
    assert changed.version == "2"


async def test_pause_holds_new_nodes_until_resume(engine: Engine) -> None:
    record = await engine.start_execution(
        flow(py("slow", "t_sleep", seconds=0.2), py("next", "t_count", ["slow"]))
    )
    await engine.pause(record.id)
    await asyncio.sleep(0.4)
    assert (await engine.node_states(record.id))["next"] is NodeState.PENDING
    assert (await engine.result(record.id)).status is ExecutionStatus.PAUSED
    await engine.resume(record.id)
    result = await engine.wait(record.id, timeout=5)
    assert result.ok and CALLS["next"] == 1


async def test_trigger_rules_and_when_conditions(engine: Engine) -> None:
    definition = flow(
        {**py("bad", "t_fail_unless", switch="bad"), "retry": {"max_attempts": 1}},
        py("good", "t_count", value=1),
        {**py("cleanup", "t_count", ["bad", "good"]), "trigger_rule": "all_done"},
        {**py("on_error", "t_count", ["bad"]), "trigger_rule": "one_failed"},
        {**py("skipped_by_when", "t_count", ["good"]), "when": "{{ good.output == 2 }}"},
        {**py("runs_by_when", "t_count", ["good"]), "when": "good.output == 1"},
    )
    result = await engine.run(definition)
    states = {n: r.state for n, r in result.nodes.items()}
    assert states["cleanup"] is NodeState.COMPLETED
    assert states["on_error"] is NodeState.COMPLETED
    assert states["skipped_by_when"] is NodeState.SKIPPED
    assert states["runs_by_when"] is NodeState.COMPLETED
    assert result.status is ExecutionStatus.FAILED


async def test_events_carry_correlation_and_causation(engine: Engine) -> None:
    result = await engine.run(flow(py("a", "t_count"), py("b", "t_count", ["a"])))
    events = await engine.store.list_events(result.execution_id)
    assert all(e.correlation_id == result.execution_id for e in events)
    by_id = {e.id: e for e in events}
    queued_b = next(e for e in events if e.type == "node.queued" and e.node_id == "b")
    assert queued_b.causation_id is not None
    assert by_id[queued_b.causation_id].type == "node.completed"
    assert by_id[queued_b.causation_id].node_id == "a"
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)


async def test_restart_resumes_unfinished_executions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    definition = flow(
        py("quick", "t_count", value=1),
        py("slow", "t_sleep", ["quick"], seconds=0.3),
        py("end", "t_count", ["slow"]),
    )
    async with Engine(url) as first:
        record = await first.start_execution(definition)
        while (await first.node_states(record.id))["slow"] is not NodeState.RUNNING:
            await asyncio.sleep(0.01)
        await first.stop(grace=0)  # the slow node is cut off mid-run
    assert CALLS == {"quick": 1, "slow": 1}
    async with Engine(url) as second:
        result = await second.wait(record.id, timeout=5)
    assert result.ok
    assert CALLS == {"quick": 1, "slow": 2, "end": 1}
    assert result.nodes["slow"].attempt == 1  # same attempt, same idempotency key


async def test_restart_starts_an_execution_whose_start_was_cut_off(tmp_path: Path) -> None:
    """What kill -9 leaves between creating an execution and committing its start: the row
    is pending, owned by the dead process (lease run out) and triggered. The next engine on
    the file starts it; the CLI's resume lists it."""
    url = f"sqlite:///{tmp_path / 'cut.db'}"
    definition = flow(py("only", "t_count", value=7))
    async with Engine(url) as first:
        stored = await first.submit(definition)
        record = ExecutionRecord(
            id="cut-off",
            definition_id=stored.id,
            status=ExecutionStatus.PENDING,
            created_at=time.time() - 60,
            correlation_id="cut-off",
            owner="engine-of-a-dead-process",
            lease_until=time.time() - 30,
        )
        await first.store.create_execution(record)
    async with Engine(url) as second:
        result = await second.wait("cut-off", timeout=5)
    assert result.ok
    assert CALLS == {"only": 1}


async def test_a_secret_outside_a_request_field_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A noop's value is its output: a secret there would be stored (tests/integration/
    # test_secret_flow.py covers every field and transform).
    monkeypatch.setenv("ORCHESTRION_SECRET_API_TOKEN", "s3cr3t-value-123")
    db = tmp_path / "secrets.db"
    node = {"id": "echo", "handler": "noop", "config": {"value": "{{ secrets.API_TOKEN }}"}}
    async with Engine(f"sqlite:///{db}") as engine:
        with pytest.raises(DefinitionError) as info:
            await engine.run(flow(node))
    assert [(i.node, i.field) for i in info.value.issues] == [("echo", "config.value")]
    for path in tmp_path.iterdir():
        assert b"s3cr3t-value-123" not in path.read_bytes()


async def test_missing_secret_fails_the_node_naming_it(engine: Engine) -> None:
    result = await engine.run(
        flow(
            {
                "id": "n",
                "handler": "http",
                "config": {
                    "url": "http://127.0.0.1:9/",
                    "headers": {"Authorization": "Bearer {{ secrets.NOPE }}"},
                },
                "retry": {"max_attempts": 1},
            }
        )
    )
    assert result.status is ExecutionStatus.FAILED
    error = result.nodes["n"].error
    assert error is not None and "NOPE" in error["message"]


async def test_when_condition_can_read_a_grandparent(engine: Engine) -> None:
    result = await engine.run(
        flow(
            {"id": "a", "handler": "noop", "config": {"value": {"go": True}}},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
            {
                "id": "c",
                "handler": "noop",
                "dependencies": ["b"],
                "when": "a.output.go",
                "config": {"value": "ran"},
            },
        )
    )
    assert result.ok, result.error
    assert result.nodes["c"].output == "ran"


async def test_two_engines_on_one_database_never_share_an_execution(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with Engine(url) as first, Engine(url) as second:
        record = await first.start_execution(flow(py("slow", "t_sleep", seconds=0.3)))
        await second.pause(record.id)  # asked of the engine that runs it, which does it
        assert not second.is_live(record.id) and first.is_live(record.id)
        await second.stop()  # its heartbeat would not take the execution over either
        await first.resume(record.id)
        result = await first.wait(record.id, timeout=5)
    assert result.ok and CALLS == {"slow": 1}


async def frozen_engine(url: str, executions: int = 1) -> tuple[Engine, list[str], Any]:
    """An engine that started ``executions`` slow runs and froze (no heartbeat, no loop, as
    a hung process would), left until its leases ran out; with the settings it used."""
    from orchestrion.settings import load_settings

    fast = load_settings(lease_seconds=0.5)
    first = Engine(url, settings=fast)
    await first.start()
    definition = flow(py("slow", "t_sleep", seconds=0.2), py("end", "t_count", ["slow"]))
    ids = [(await first.start_execution(definition)).id for _ in range(executions)]
    assert first._recovery.heartbeat_task is not None and first._loop.task is not None
    first._recovery.heartbeat_task.cancel()
    first._loop.task.cancel()
    await asyncio.sleep(0.7)
    return first, ids, fast


async def test_an_expired_lease_is_taken_over(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    first, (execution_id,), fast = await frozen_engine(url)
    async with Engine(url, settings=fast) as second:
        result = await second.wait(execution_id, timeout=5)
    assert result.ok
    await first.stop(grace=0)


async def test_an_execution_taken_over_while_an_engine_resumes_leaves_the_others_running(
    postgres_url: str,
) -> None:
    """Resuming many executions can outlast the first claims' leases: another engine takes
    one over before the recovery commits. The commit is refused (PostgreSQL checks the
    owner of every execution a commit writes) for that one only; the engine starts, runs
    the others, and leaves the stolen one to its new owner."""
    import time

    from orchestrion.store.factory import open_store

    url = postgres_url
    first, (stolen, kept), fast = await frozen_engine(url, 2)
    store = open_store(url)
    real_commit = store.commit
    takeovers = []

    async def commit_after_a_takeover(batch: Any) -> None:
        if stolen in batch.correlation and not takeovers:  # the intruder claims first
            now = time.time()
            assert await store.claim_execution(stolen, "intruder", now + 60, second.owner, now)
            takeovers.append(stolen)
        await real_commit(batch)

    store.commit = commit_after_a_takeover  # type: ignore[method-assign]
    second = Engine(store=store, settings=fast)
    async with second:
        result = await second.wait(kept, timeout=5)
        assert result.ok
        assert takeovers == [stolen] and not second.is_live(stolen)
        assert (await second.store.get_execution(stolen)).owner == "intruder"
    await first.stop(grace=0)


async def test_an_engine_that_fails_to_resume_leaves_nothing_behind(tmp_path: Path) -> None:
    """A store that fails in the middle of the start: the engine gives back what it claimed
    and a new engine on the same database starts and runs everything."""
    from orchestrion.errors import StoreError
    from orchestrion.store.factory import open_store

    url = f"sqlite:///{tmp_path / 'abort.db'}"
    first, (execution_id,), fast = await frozen_engine(url)
    store = open_store(url)

    async def broken_commit(batch: Any) -> None:
        raise StoreError("disk I/O error")

    store.commit = broken_commit  # type: ignore[method-assign]
    broken = Engine(store=store, settings=fast)
    with pytest.raises(StoreError, match="disk I/O"):
        await broken.start()
    assert not broken.is_live(execution_id)
    check = open_store(url)
    await check.open()
    assert (await check.get_execution(execution_id)).owner is None  # given back
    await check.close()
    async with Engine(url, settings=fast) as second:
        assert (await second.wait(execution_id, timeout=5)).ok
    await first.stop(grace=0)


async def test_rerun_of_one_node_runs_it_and_its_downstream_again(engine: Engine) -> None:
    definition = flow(
        py("a", "t_count", value=1),
        py("b", "t_count", ["a"], value=2),
        py("c", "t_count", ["b"], value=3),
        py("side", "t_count", ["a"], value=4),
    )
    first = await engine.run(definition)
    assert first.ok
    await engine.retry(first.execution_id, from_node="b")
    again = await engine.wait(first.execution_id, timeout=5)
    assert again.ok
    assert CALLS == {"a": 1, "b": 2, "c": 2, "side": 1}
    assert again.nodes["b"].attempt == 2 and again.nodes["a"].attempt == 1
    with pytest.raises(DefinitionError) as unknown:
        await engine.retry(first.execution_id, from_node="ghost")
    [issue] = unknown.value.issues
    assert (issue.code, issue.node, issue.field) == ("unknown_node", "ghost", "from_node")


async def test_results_read_wait_times_only_for_executions_that_may_have_waited(
    engine: Engine,
) -> None:
    journal_reads: list[str] = []
    list_events = engine.store.list_events

    async def counting(execution_id: str | None = None, *args: Any, **kwargs: Any) -> Any:
        journal_reads.append(execution_id or "")
        return await list_events(execution_id, *args, **kwargs)

    engine.store.list_events = counting  # type: ignore[method-assign]
    quick = flow(py("a", "t_count"), py("b", "t_count", ["a"]), name="quick")
    records = [await engine.start_execution(quick) for _ in range(5)]
    results = [await engine.wait(record.id, timeout=30) for record in records]
    results.append(await engine.wait(records[0].id, timeout=30))  # ended: read from the store
    assert all(result.ok and result.nodes["b"].waited is None for result in results)
    assert not {record.id for record in records} & set(journal_reads)
    # One that waited: its wait time is read and given.
    waits = flow(
        {"id": "pause", "handler": "delay", "config": {"seconds": 0.05}},
        py("after", "t_count", ["pause"]),
        name="waits",
    )
    record = await engine.start_execution(waits)
    result = await engine.wait(record.id, timeout=30)
    assert result.ok
    assert result.nodes["pause"].waited is not None and result.nodes["pause"].waited > 0
    assert record.id in journal_reads


async def test_a_retried_execution_that_waited_gives_its_wait_times(engine: Engine) -> None:
    definition = flow(
        py("gate", "t_fail_unless", switch="gate_open"),
        {"id": "pause", "handler": "delay", "dependencies": ["gate"], "config": {"seconds": 0.05}},
        name="retried",
    )
    record = await engine.start_execution(definition)
    first = await engine.wait(record.id, timeout=30)
    assert first.status is ExecutionStatus.FAILED  # ended here without waiting
    assert (await engine.wait(record.id, timeout=30)).status is ExecutionStatus.FAILED
    SWITCHES["gate_open"] = True
    await engine.retry(record.id)
    await engine.wait(record.id, timeout=30)
    again = await engine.wait(record.id, timeout=30)  # ended: read from the store
    assert again.ok, again.error
    assert again.nodes["pause"].waited is not None and again.nodes["pause"].waited > 0
