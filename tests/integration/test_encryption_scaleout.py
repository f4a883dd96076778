"""Encryption in scale-out mode: real PostgreSQL and Redis. The raw tables and every command
sent to Redis (seen through MONITOR) never hold a classified value; the engine still reads
the plaintext; a worker without the key fails the attempt with a configuration error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from orchestrion.cluster.worker import Worker
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.governance.encryption import KeyRing
from orchestrion.governance.runtime import Governance
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.handlers.registry import default_registry
from scaleout import scaleout_engine, scaleout_settings
from sealed_values import monitored, pg_dump

SECRET_IN = "Grace-Hopper-IN-5150"
CARD = "5500-7777-OUT-2718"


@function("t_wire_card", replace=True)
def t_wire_card(ctx: NodeContext, name: str) -> dict[str, Any]:
    return {"holder": name.upper(), "card": "5500-7777-" + "OUT-2718"}


def workflow() -> dict[str, Any]:
    return {
        "name": "kyc-wire",
        "dag": {
            "nodes": [
                {
                    "id": "card",
                    "handler": "python",
                    "data_classification": "pii",
                    "config": {"function": "t_wire_card", "params": {"name": "{{ input.name }}"}},
                },
                {
                    "id": "echo",  # declares nothing, reads the classified output: pii too
                    "handler": "noop",
                    "dependencies": ["card"],
                    "config": {"value": "{{ card.output.card }}"},
                },
            ]
        },
    }


async def test_nothing_classified_in_postgres_or_on_redis(
    postgres_url: str, redis_server: str, redis_prefix: str, env_keys: str
) -> None:
    async with (
        monitored(redis_server) as wire,
        scaleout_engine(postgres_url, redis_server, redis_prefix) as engine,
    ):
        result = await engine.run(workflow(), {"name": SECRET_IN}, timeout=30)
        assert result.status is ExecutionStatus.COMPLETED
        assert result.nodes["card"].output == {"holder": SECRET_IN.upper(), "card": CARD}
        assert result.nodes["echo"].output == CARD  # the template saw the plaintext
    traffic = "\n".join(wire)
    assert "XADD" in traffic.upper() or "EVALSHA" in traffic.upper()
    assert "$enc" in traffic  # sealed payloads did cross
    for secret in (SECRET_IN, SECRET_IN.upper()):
        assert secret not in traffic
    stored = await pg_dump(postgres_url)
    assert "node_runs" in stored
    for secret in (SECRET_IN, SECRET_IN.upper(), CARD):  # echo inherited pii: sealed too
        assert secret not in stored
        assert secret not in traffic
    assert '"kid":"k1"' in stored


async def test_a_worker_without_the_key_fails_the_attempt_clearly(
    postgres_url: str, redis_server: str, redis_prefix: str, env_keys: str
) -> None:
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix)
    blind = Worker(
        redis_server,
        settings,
        default_registry(),
        worker_id="blind",
        governance=Governance.load(environ={}),
    )
    await blind.start()
    try:
        async with (
            monitored(redis_server) as wire,
            scaleout_engine(postgres_url, redis_server, redis_prefix, workers=0) as engine,
        ):
            result = await engine.run(workflow(), {"name": SECRET_IN}, timeout=30)
    finally:
        await blind.stop(grace=0)
    assert result.status is ExecutionStatus.FAILED
    card = result.nodes["card"]
    assert card.state is NodeState.FAILED
    assert card.error is not None
    assert card.error["category"] == "configuration"
    assert "ORCHESTRION_ENCRYPTION_KEYS" in card.error["message"]
    assert "this worker has no encryption key" in card.error["message"]
    traffic = "\n".join(wire)
    assert SECRET_IN not in traffic and SECRET_IN.upper() not in traffic


def with_approval() -> dict[str, Any]:
    definition = workflow()
    definition["name"] = "kyc-review"
    definition["dag"]["nodes"].insert(
        1,
        {
            "id": "review",
            "handler": "approval",
            "dependencies": ["card"],
            "data_classification": "pii",
            "config": {"message": "check {{ card.output.holder }}"},
        },
    )
    definition["dag"]["nodes"][2]["dependencies"] = ["review"]
    return definition


async def test_a_decision_sent_by_the_api_crosses_redis_sealed(
    postgres_url: str, redis_server: str, redis_prefix: str, env_keys: str
) -> None:
    comment = "Approved-For-" + SECRET_IN
    async with scaleout_engine(postgres_url, redis_server, redis_prefix) as engine:
        record = await engine.start_execution(with_approval(), {"name": SECRET_IN})
        waiting = await engine.settle(record.id, timeout=30)
        assert waiting.nodes["review"].state is NodeState.WAITING
        # The API process of scale-out mode drives nothing: it forwards the decision.
        api = Engine(
            settings=scaleout_settings(postgres_url, redis_server, redis_prefix), drive=False
        )
        await api.start()
        try:
            async with monitored(redis_server) as wire:
                await api.decide(record.id, "review", approved=True, by="ops", comment=comment)
                result = await engine.wait(record.id, timeout=30)
        finally:
            await api.stop(0)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.nodes["review"].output["comment"] == comment
    assert result.nodes["echo"].output == CARD
    traffic = "\n".join(wire)
    assert "$enc" in traffic
    assert comment not in traffic and SECRET_IN.upper() not in traffic
    stored = await pg_dump(postgres_url)
    assert comment not in stored and SECRET_IN not in stored


async def test_postgres_restart_resumes_a_half_finished_classified_workflow(
    postgres_url: str,
) -> None:
    ring = f"k1:{KeyRing.generate_key()}"

    def gov() -> Governance:
        return Governance.load(environ={"ORCHESTRION_ENCRYPTION_KEYS": ring})

    async with Engine(postgres_url, governance=gov()) as first:
        record = await first.start_execution(with_approval(), {"name": SECRET_IN})
        waiting = await first.settle(record.id, timeout=20)
        assert waiting.nodes["review"].state is NodeState.WAITING
    stored = await pg_dump(postgres_url)
    assert SECRET_IN not in stored and SECRET_IN.upper() not in stored and CARD not in stored
    async with Engine(postgres_url, governance=gov()) as second:
        await second.decide(record.id, "review", approved=True, by="ops")
        result = await second.wait(record.id, timeout=20)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.nodes["card"].output == {"holder": SECRET_IN.upper(), "card": CARD}
    assert result.nodes["echo"].output == CARD


async def test_a_classified_wait_that_runs_out_is_woken_across_redis(
    postgres_url: str, redis_server: str, redis_prefix: str, env_keys: str
) -> None:
    # A woken attempt is dispatched again with the same number: its guard must differ.
    definition = with_approval()
    definition["dag"]["nodes"][1]["config"].update(timeout=0.05, on_timeout="approve")
    async with scaleout_engine(postgres_url, redis_server, redis_prefix) as engine:
        result = await engine.run(definition, {"name": SECRET_IN}, timeout=30)
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.nodes["review"].output["reason"] == "approved on timeout"
    assert result.nodes["echo"].output == CARD


async def test_an_outcome_sealed_with_a_key_the_orchestrator_lacks_stays_pending(
    postgres_url: str,
    redis_server: str,
    redis_prefix: str,
    env_keys: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The worker already has the next key first (a rotation done in the wrong order).
    ahead = f"k9:{KeyRing.generate_key()},{env_keys}"
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix)
    worker = Worker(
        redis_server,
        settings,
        default_registry(),
        worker_id="ahead",
        governance=Governance.load(environ={"ORCHESTRION_ENCRYPTION_KEYS": ahead}),
    )
    await worker.start()
    try:
        async with scaleout_engine(postgres_url, redis_server, redis_prefix, workers=0) as engine:
            record = await engine.start_execution(workflow(), {"name": SECRET_IN})
            for _ in range(200):
                if worker.completed:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            inbox = engine.settings.redis_prefix + ":inbox:" + engine.owner
            client = Redis.from_url(redis_server)
            pending = await client.xpending(inbox, "orchestrators")
            await client.aclose()
            status = (await engine.result(record.id)).nodes["card"].state
    finally:
        await worker.stop(grace=0)
    assert worker.completed == 1
    # Not dropped: claimed again once the key is here. Two: the attempt's start (its rendered
    # inputs are sealed too) and its outcome.
    assert pending["pending"] == 2
    assert status is not NodeState.COMPLETED
    assert any("'k9'" in r.getMessage() for r in caplog.records)
