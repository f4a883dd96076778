"""Events start workflows: Engine.emit and the engine's own workflow.completed / failed events,
embedded (memory, SQLite) and in scale-out mode (PostgreSQL + Redis, an API engine that only
hands starts over to the orchestrator)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.idempotency import event_key
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus
from orchestrion.engine.emitting import EventRefused
from orchestrion.engine.facade import Engine
from orchestrion.engine.following import MAX_CHAIN
from orchestrion.governance.runtime import Governance
from orchestrion.governance.trust import Trust
from orchestrion.store.base import ExecutionFilter, ExecutionRecord
from scaleout import engine_for, scaleout_settings


@pytest.fixture(params=["memory", "sqlite", "scaleout"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return "memory://" if request.param == "memory" else "scaleout"


@pytest.fixture
async def engine(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    async with engine_for(database_url, request) as engine:
        yield engine


def workflow(name: str, *triggers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    nodes = extra.pop("nodes", [{"id": "a", "handler": "noop"}])
    return {"name": name, "triggers": list(triggers), "dag": {"nodes": nodes}, **extra}


def on(event_type: str, **extra: Any) -> dict[str, Any]:
    return {"type": "event", "event_type": event_type, **extra}


async def executions_of(engine: Engine, name: str) -> list[ExecutionRecord]:
    rows, _ = await engine.list_executions(ExecutionFilter(definition_name=name, limit=200))
    return rows


async def eventually(check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_an_event_starts_its_subscribers_with_the_payload_once_per_event_id(
    engine: Engine,
) -> None:
    await engine.submit(
        workflow(
            "review",
            on("policy.updated", name="policy_update", filter="payload.severity == 'high'"),
            inputs={"severity": {"type": "string"}, "doc": {"type": "string"}},
        )
    )
    await engine.submit(workflow("log", on("policy.updated")))
    await engine.submit(workflow("other", on("order.placed")))
    payload = {"severity": "high", "doc": "ict-risk.pdf"}
    first = await engine.emit("policy.updated", payload, event_id="evt-1")
    assert first.event_id == "evt-1"
    assert sorted(e.workflow for e in first.executions) == ["log", "review"]
    again = await engine.emit("policy.updated", payload, event_id="evt-1")
    assert [e.execution_id for e in again.executions] == [e.execution_id for e in first.executions]
    for started in first.executions:
        result = await engine.wait(started.execution_id, timeout=30)
        assert result.status is ExecutionStatus.COMPLETED
        record = await engine.reads.execution(started.execution_id)
        assert record.inputs == payload and record.correlation_id == "evt-1"
        assert record.idempotency_key == event_key("policy.updated", "evt-1", started.workflow)
    assert len(await executions_of(engine, "review")) == 1
    assert await executions_of(engine, "other") == []
    low = await engine.emit("policy.updated", {"severity": "low", "doc": "x"})
    assert [e.workflow for e in low.executions] == ["log"]
    assert [(s.workflow, s.reason) for s in low.skipped] == [("review", "filter")]
    assert low.event_id  # generated
    nobody = await engine.emit("nobody.listens", {"x": 1})
    assert nobody.executions == [] and nobody.skipped == []


async def test_trigger_inputs_are_rendered_from_the_payload_and_bad_payloads_are_reported(
    engine: Engine,
) -> None:
    await engine.submit(
        workflow(
            "mapped",
            on("doc.added", inputs={"path": "{{ payload.file.path }}", "kind": "pdf"}),
            inputs={"path": {"type": "string", "required": True}, "kind": {"type": "string"}},
        )
    )
    emitted = await engine.emit("doc.added", {"file": {"path": "/a.pdf"}, "size": 3})
    [started] = emitted.executions
    record = await engine.reads.execution(started.execution_id)
    assert record.inputs == {"path": "/a.pdf", "kind": "pdf"}
    missing = await engine.emit("doc.added", {"size": 3})
    assert missing.executions == []
    [skip] = missing.skipped
    assert skip.reason == "error" and "file" in skip.message


async def test_a_newer_version_without_the_trigger_unsubscribes_the_name(engine: Engine) -> None:
    await engine.submit(workflow("flip", on("x.happened")))
    assert len((await engine.emit("x.happened", {})).executions) == 1
    await engine.submit(workflow("flip", nodes=[{"id": "b", "handler": "noop"}]))
    assert (await engine.emit("x.happened", {})).executions == []


async def test_bad_events_are_refused_with_what_is_wrong(engine: Engine) -> None:
    with pytest.raises(EventRefused, match="event type"):
        await engine.emit("has space", {})
    with pytest.raises(EventRefused, match="event id"):
        await engine.emit("ok.type", {}, event_id="\x00bad")
    with pytest.raises(EventRefused, match="fired by the engine only"):
        await engine.emit("workflow.completed", {})
    with pytest.raises(EventRefused, match="JSON object"):
        await engine.emit("ok.type", ["not", "a", "mapping"])  # type: ignore[arg-type]


async def test_the_end_of_an_execution_starts_its_followers_once(engine: Engine) -> None:
    boom = {"function": "fail", "params": {"message": "no luck"}}
    failing = [{"id": "boom", "handler": "python", "config": boom, "retry": {"max_attempts": 1}}]
    nightly = await engine.submit(workflow("nightly"))
    broken = await engine.submit(workflow("broken", nodes=failing))
    await engine.submit(
        workflow(
            "after-nightly",
            on(
                "workflow.completed",
                source="nightly",
                inputs={"upstream": "{{ payload.execution_id }}"},
            ),
            inputs={"upstream": {"type": "string"}},
        )
    )
    await engine.submit(workflow("on-failure", on("workflow.failed", source="broken")))
    done = await engine.run(nightly, timeout=30)
    followers = await eventually(lambda: executions_of(engine, "after-nightly"))
    [follower] = followers
    assert follower.inputs == {"upstream": done.execution_id}
    assert follower.correlation_id == done.execution_id
    key = event_key("workflow.completed", done.execution_id, "after-nightly")
    assert follower.idempotency_key == key
    failed = await engine.run(broken, timeout=30)
    assert failed.status is ExecutionStatus.FAILED
    [alert] = await eventually(lambda: executions_of(engine, "on-failure"))
    assert alert.inputs["status"] == "failed" and alert.inputs["error"]
    assert alert.inputs["execution_id"] == failed.execution_id
    await asyncio.sleep(0.3)
    assert len(await executions_of(engine, "after-nightly")) == 1
    assert len(await executions_of(engine, "on-failure")) == 1


async def test_a_classified_workflow_s_end_gives_followers_no_message_to_quote(
    engine: Engine,
) -> None:
    boom = {"function": "fail", "params": {"message": "patient 4711-secret not found"}}
    failing = [
        {
            "id": "lookup",
            "handler": "python",
            "config": boom,
            "retry": {"max_attempts": 1},
            "data_classification": "phi",
        }
    ]
    broken = await engine.submit(workflow("ward", nodes=failing))
    await engine.submit(workflow("paging", on("workflow.failed", source="ward")))
    failed = await engine.run(broken, timeout=30)
    assert failed.status is ExecutionStatus.FAILED
    [alert] = await eventually(lambda: executions_of(engine, "paging"))
    error = alert.inputs["error"]
    assert error["category"] and error["nodes"] == ["lookup"]
    assert "4711" not in str(alert.inputs) and "withheld" in error["message"]
    assert alert.inputs["result"] is None


@pytest.mark.parametrize("database_url", ["memory://"])
async def test_a_loop_of_followers_stops_after_the_longest_chain(engine: Engine) -> None:
    ping = await engine.submit(workflow("ping", on("workflow.completed", source="pong")))
    await engine.submit(workflow("pong", on("workflow.completed", source="ping")))
    await engine.run(ping, timeout=30)

    async def settled() -> bool:
        rows = await executions_of(engine, "ping") + await executions_of(engine, "pong")
        return len(rows) >= MAX_CHAIN + 1 and all(r.status in FINAL_EXECUTION_STATES for r in rows)

    assert await eventually(settled)
    await asyncio.sleep(0.5)
    total = len(await executions_of(engine, "ping")) + len(await executions_of(engine, "pong"))
    assert total == MAX_CHAIN + 1


async def test_followers_that_multiply_stop_at_the_chain_width(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrion.engine import following

    # A followed by B1, B2 and B3, each followed by A: without a bound, 3 ** 8 executions.
    monkeypatch.setattr(following, "MAX_CHAIN_WIDTH", 4)
    names = ["b1", "b2", "b3"]
    ends = [on("workflow.completed", source=name) for name in names]
    await engine.submit(workflow("a", on("kick"), *ends))
    for name in names:
        await engine.submit(workflow(name, on("workflow.completed", source="a")))
    await engine.emit("kick", {})

    async def everyone() -> list[ExecutionRecord]:
        rows = []
        for name in ["a", *names]:
            rows += await executions_of(engine, name)
        return rows

    async def settled() -> bool:  # a, then b1-b3 (width 3), then a three times (width 3)
        rows = await everyone()
        return len(rows) >= 7 and all(r.status in FINAL_EXECUTION_STATES for r in rows)

    assert await eventually(settled)
    await asyncio.sleep(0.5)  # a's three ends would each start three more (width 9 > 4)
    rows = await everyone()
    assert len(rows) == 7
    assert sorted(r.labels.get("chain_width", 1) for r in rows) == [1] + [3] * 6
    assert sorted(r.labels.get("chain_depth", 0) for r in rows) == [0, 1, 1, 1, 2, 2, 2]


async def test_an_api_engine_that_does_not_drive_hands_event_starts_over(
    postgres_url: str, redis_server: str, redis_prefix: str, request: pytest.FixtureRequest
) -> None:
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix)
    async with (
        engine_for("scaleout", request) as orchestrator,
        Engine(settings=settings, drive=False) as api,
    ):
        await api.submit(workflow("handed", on("job.ready")))
        await api.submit(workflow("next", on("workflow.completed", source="handed")))
        emitted = await api.emit("job.ready", {"n": 1}, event_id="job-7")
        [started] = emitted.executions
        result = await api.wait(started.execution_id, timeout=30)
        assert result.status is ExecutionStatus.COMPLETED
        [follower] = await eventually(lambda: executions_of(orchestrator, "next"))
        assert follower.correlation_id == started.execution_id
        again = await api.emit("job.ready", {"n": 1}, event_id="job-7")
        assert [e.execution_id for e in again.executions] == [started.execution_id]


async def test_a_follower_of_untrusted_work_is_untrusted_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trust.db'}"
    async with Engine(url, governance=Governance.load(None, trusted=False)) as service:
        submitted = await service.submit(workflow("from-service"))
    async with Engine(url, governance=Governance.load(None, trusted=True)) as local:
        await local.submit(workflow("mine", on("workflow.completed", source="from-service")))
        mine = await local.submit(workflow("mine-too", on("plain.event")))
        done = await local.run(submitted, timeout=30)
        assert Trust.of((await local.reads.execution(done.execution_id)).trust) is Trust.UNTRUSTED
        [follower] = await eventually(lambda: executions_of(local, "mine"))
        assert Trust.of(follower.trust) is Trust.UNTRUSTED
        [started] = (await local.emit("plain.event", {})).executions
        assert started.definition_id == mine.id
        record = await local.reads.execution(started.execution_id)
        assert Trust.of(record.trust) is Trust.TRUSTED  # one's own event, one's own workflow


async def test_a_workflow_with_two_triggers_for_one_event_starts_once(engine: Engine) -> None:
    await engine.submit(
        workflow(
            "twice",
            on("alert.raised", name="urgent", filter="payload.level > 5"),
            on("alert.raised", name="any"),
        )
    )
    urgent = await engine.emit("alert.raised", {"level": 9})
    assert [(e.workflow, e.trigger) for e in urgent.executions] == [("twice", "urgent")]
    calm = await engine.emit("alert.raised", {"level": 1})
    assert [(e.workflow, e.trigger) for e in calm.executions] == [("twice", "any")]
    assert calm.skipped == []


async def test_the_longest_type_id_and_name_make_one_key_that_fits_every_store(
    engine: Engine,
) -> None:
    name, event_type, event_id = "w" * 200, "t." + "x" * 126, "i:" + "d" * 126
    await engine.submit(workflow(name, on(event_type)))
    first = await engine.emit(event_type, {}, event_id=event_id)
    again = await engine.emit(event_type, {}, event_id=event_id)
    [started] = first.executions
    assert [e.execution_id for e in again.executions] == [started.execution_id]
    record = await engine.reads.execution(started.execution_id)
    assert record.idempotency_key is not None and len(record.idempotency_key) <= 255


async def test_only_the_newest_version_of_each_listener_is_kept_in_memory(
    engine: Engine,
) -> None:
    for version in ("1", "2", "3"):
        await engine.submit({**workflow("versioned", on("v.test")), "version": version})
        emitted = await engine.emit("v.test", {})
        [started] = emitted.executions
        assert started.version == version  # the newest version answers
    subscriptions = engine._events.subscriptions  # what an event reads: one record a name
    assert len(subscriptions._records) == 1 and len(subscriptions._parsed) == 1


async def test_ends_read_each_stored_version_once_and_see_other_writers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reads.db'}"
    async with Engine(url) as engine, Engine(url, resume=False, drive=False) as other:
        store = engine.store
        specs_read: list[str] = []
        get_definition = store.get_definition

        async def counting(definition_id: str) -> Any:
            specs_read.append(definition_id)
            return await get_definition(definition_id)

        store.get_definition = counting  # type: ignore[method-assign]
        big = workflow("big", nodes=[{"id": f"n{i}", "handler": "noop"} for i in range(300)])
        await engine.submit(big)
        for _ in range(3):
            assert (await engine.run(big)).ok
        # Submitted here: its triggers were known without reading it back.
        assert specs_read == []
        # Another writer of the same file stores a follower: seen once the list is old enough.
        after = await other.submit(workflow("after", on("workflow.completed", source="big")))
        await asyncio.sleep(1.1)
        assert (await engine.run(big)).ok
        assert await eventually(lambda: executions_of(engine, "after"))
        # Read for its triggers (and for starting it), never the big definition.
        assert set(specs_read) == {after.id}


async def test_a_stored_definition_submitted_again_keeps_the_list_of_listeners(
    tmp_path: Path,
) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'again.db'}") as engine:
        listener = workflow("listener", on("again.test"))
        await engine.submit(listener)
        await engine.emit("again.test", {})  # an event reads the list afresh
        store = engine.store
        reads: list[str] = []
        heads = store.definition_heads

        async def counting() -> Any:
            reads.append("heads")
            return await heads()

        store.definition_heads = counting  # type: ignore[method-assign]
        for _ in range(3):  # a service submitting its workflow before each execution
            stored = await engine.submit(listener)
            started = await engine.start_execution(stored)
            await engine.wait(started.id, timeout=10)
        await asyncio.sleep(0.05)
        assert reads == []  # nothing changed: the list held is still the list
        newer = await engine.submit(workflow("listener", on("again.test"), version="2"))
        started = await engine.start_execution(newer)
        await engine.wait(started.id, timeout=10)
        await asyncio.sleep(0.05)
        assert reads  # a version stored here is seen at once
        emitted = await engine.emit("again.test", {})
        assert [each.version for each in emitted.executions] == ["2"]


async def test_followers_owed_when_an_engine_stops_start_with_the_next_engine(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'owed.db'}"
    sleep = {"function": "sleep", "params": {"seconds": 0.5}}
    slow = {"id": "a", "handler": "python", "config": sleep}
    first = Engine(url)
    await first.start()
    await first.submit(workflow("lead", on("go.now"), nodes=[slow]))
    await first.submit(workflow("tail", on("workflow.completed", source="lead")))
    [lead] = (await first.emit("go.now", {})).executions
    # The lead ends while the engine stops: its follower cannot start in this engine.
    await first.stop(grace=10)
    assert (await executions_of_url(url, "lead"))[0].status is ExecutionStatus.COMPLETED
    assert await executions_of_url(url, "tail") == []
    async with Engine(url) as second:
        [tail] = await eventually(lambda: executions_of(second, "tail"))
        result = await second.wait(tail.id, timeout=30)
        assert result.status is ExecutionStatus.COMPLETED
        assert (await second.reads.execution(tail.id)).correlation_id == lead.execution_id
    async with Engine(url) as third:  # started once: nothing is owed any more
        await asyncio.sleep(0.2)
        assert len(await executions_of(third, "tail")) == 1


async def executions_of_url(url: str, name: str) -> list[ExecutionRecord]:
    async with Engine(url, resume=False) as reader:
        return await executions_of(reader, name)


async def test_an_event_id_sent_again_with_another_payload_starts_nothing(engine: Engine) -> None:
    from orchestrion.engine.emitting import EventConflict

    await engine.submit(workflow("picky", on("pay.load", filter="payload.x > 1")))
    await engine.submit(workflow("all", on("pay.load")))
    first = await engine.emit("pay.load", {"x": 1}, event_id="p1")
    assert [e.workflow for e in first.executions] == ["all"]
    with pytest.raises(EventConflict, match="event id 'p1' was sent before with another"):
        await engine.emit("pay.load", {"x": 5}, event_id="p1")
    assert await executions_of(engine, "picky") == []
    again = await engine.emit("pay.load", {"x": 1}, event_id="p1")
    assert [(e.execution_id, e.new) for e in again.executions] == [
        (first.executions[0].execution_id, False)
    ]
