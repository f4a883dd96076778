"""Outbound events: an engine with sinks publishes every transition through its outbox to a
real local webhook receiver, a real Redis Stream and a real NATS server; a failing receiver
gets the events again with backoff and then they are dead letters in the store; Kafka's
adapter is tested for its encoding and its error path (no broker runs here)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.engine.facade import Engine
from orchestrion.engine.publishing import Publisher
from orchestrion.errors import ConfigurationError
from orchestrion.governance.webhook_signing import verify_github, verify_timestamped
from orchestrion.settings import load_settings
from orchestrion.sinks.config import KafkaSinkConfig, parse_sinks
from orchestrion.sinks.envelope import OutboundEvent
from orchestrion.sinks.kafka import KafkaSink, record_of
from orchestrion.store.outbox import DeliveryStatus
from sink_helpers import EXPECTED, TWO_NODES, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def sinks(*entries: dict[str, Any], **delivery: Any) -> str:
    return json.dumps({"sinks": list(entries), "delivery": {"interval": 0.05, **delivery}})


async def eventually(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sinks.db'}"


@pytest.mark.parametrize("store", ["sqlite", "memory"])
async def test_every_transition_reaches_a_signed_webhook_in_order(
    db: str, store: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = db if store == "sqlite" else "memory://"
    monkeypatch.setenv("HOOK_SECRET", "shh")
    hook = {"name": "hook", "type": "webhook", "url": receiver.url, "secret_env": "HOOK_SECRET"}
    settings = load_settings(database_url=db, sinks=sinks(hook))
    async with Engine(settings=settings) as engine:
        record = await engine.start_execution(TWO_NODES)
        await engine.wait(record.id, timeout=10)
        await eventually(lambda: len(receiver.received) >= len(EXPECTED))
        deadline = time.monotonic() + 5
        while await engine.store.outbox_size() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert await engine.store.outbox_size() == 0
    events = receiver.events()
    assert [e["type"] for e in events] == EXPECTED
    assert len({e["id"] for e in events}) == len(events)
    assert {e["workflow_id"] for e in events} == {record.id}
    assert {e["correlation_id"] for e in events} == {record.correlation_id}
    # a node's events are caused by the record that queued it
    queued_a = next(e for e in events if e["type"] == "node.queued")
    assert events[2]["causation_id"] == queued_a["id"]
    assert events[0]["metadata"]["workflow"] == "pair"
    for request in receiver.received:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        verify_timestamped(
            b"shh", request["body"], headers["x-orchestrion-signature"], time.time(), 60
        )
        verify_github(b"shh", request["body"], headers["x-hub-signature-256"])


async def test_a_failing_webhook_gets_events_again_then_dead_letters_them(db: str) -> None:
    failing = Receiver(statuses=[500] * 1000)
    flaky = Receiver(statuses=[503, 503])
    entries = (
        {"name": "down", "type": "webhook", "url": failing.url, "events": ["execution.*"]},
        {"name": "flaky", "type": "webhook", "url": flaky.url, "events": ["execution.started"]},
    )
    config = sinks(*entries, attempts=3, initial_backoff=0.05, max_backoff=0.1)
    settings = load_settings(database_url=db, sinks=config)
    try:
        async with Engine(settings=settings) as engine:
            record = await engine.start_execution(TWO_NODES)
            await engine.wait(record.id, timeout=10)
            store = engine.store

            async def dead() -> int:
                found = await store.list_deliveries(DeliveryStatus.DEAD, "down")
                return len(found)

            deadline = time.monotonic() + 15
            while await dead() < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            letters = await store.list_deliveries(DeliveryStatus.DEAD)
            assert sorted(d.event["type"] for d in letters) == [
                "execution.completed",
                "execution.started",
            ]
            assert {d.sink for d in letters} == {"down"}
            # each was sent three times: the later one only once the earlier was given up on
            assert all(d.attempts == 3 and d.error == "HTTP 500 from the webhook" for d in letters)
            assert len(failing.statuses) == 1000 - 6
            # the flaky one took its event on the third try: nothing owed to it
            await eventually(lambda: len(flaky.received) == 1)
            assert await store.list_deliveries(sink="flaky") == []
            publisher = engine.publisher
            assert isinstance(publisher, Publisher)
            assert publisher.stats["down"].dead_lettered == 2
            assert publisher.stats["flaky"].failed == 2
            assert publisher.stats["flaky"].published == 1
            # an operator retries a dead letter once the receiver is back
            failing.statuses.clear()
            await publisher.retry_dead(letters[0].id)
            await eventually(lambda: len(failing.received) == 1)
            assert failing.events()[0]["id"] == letters[0].event_id
            # and drops the other one: it is gone, and that sink never gets it
            from orchestrion.engine.deliveries import drop_delivery

            await drop_delivery(store, letters[1].id)
            assert [d.id for d in await store.list_deliveries(DeliveryStatus.DEAD)] == []
            # retention takes dead letters as old as the executions it purges
            failing.statuses[:] = [500] * 100
            await engine.wait((await engine.start_execution(TWO_NODES)).id, timeout=10)
            deadline = time.monotonic() + 15
            while len(await store.list_deliveries(DeliveryStatus.DEAD)) < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            cutoff = time.time() + 1
            await store.purge_executions(cutoff, None, "test", time.time())
            assert await store.list_deliveries(DeliveryStatus.DEAD) == []
    finally:
        failing.close()
        flaky.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_outbox_keeps_events_across_a_kill_9(
    tmp_path: Path, receiver: Receiver, backend: str, request: pytest.FixtureRequest
) -> None:
    """A process with a sink that never answers is killed: the next engine on the database
    publishes everything, to the sink it is configured with."""
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    try:
        hang = {
            "name": "slow",
            "type": "webhook",
            "url": f"http://127.0.0.1:{silent.getsockname()[1]}/",
            "timeout": 60,
        }
        script = (
            "import asyncio, sys\n"
            "from orchestrion.engine.facade import Engine\n"
            "from orchestrion.settings import load_settings\n"
            "async def main():\n"
            f"    settings = load_settings(database_url={url!r}, sinks=sys.argv[1])\n"
            "    async with Engine(settings=settings) as engine:\n"
            f"        record = await engine.start_execution({TWO_NODES!r})\n"
            "        await engine.wait(record.id, timeout=10)\n"
            "        print(record.id, flush=True)\n"
            "        await asyncio.sleep(600)\n"
            "asyncio.run(main())\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", script, sinks(hang, lease=1)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            execution_id = child.stdout.readline().strip()
            assert execution_id
        finally:
            child.kill()  # SIGKILL: no shutdown, no drain
            child.wait(10)
            if child.stdout is not None:
                child.stdout.close()
    finally:
        silent.close()
    hook = {"name": "hook", "type": "webhook", "url": receiver.url}
    settings = load_settings(database_url=url, sinks=sinks(hook, lease=1))
    async with Engine(settings=settings):
        await eventually(lambda: len(receiver.received) >= len(EXPECTED))
    events = [e for e in receiver.events() if e["workflow_id"] == execution_id]
    assert [e["type"] for e in events] == EXPECTED


async def test_events_go_to_a_redis_stream(db: str, redis_server: str, redis_prefix: str) -> None:
    from redis.asyncio import Redis

    stream = f"{redis_prefix}:events"
    entry = {"name": "stream", "type": "redis_stream", "url": redis_server, "stream": stream}
    settings = load_settings(database_url=db, sinks=sinks(entry))
    client = Redis.from_url(redis_server)
    try:
        async with Engine(settings=settings) as engine:
            record = await engine.start_execution(TWO_NODES)
            await engine.wait(record.id, timeout=10)
            deadline = time.monotonic() + 15
            while await client.xlen(stream) < len(EXPECTED) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        entries = await client.xrange(stream)
    finally:
        await client.aclose()
    types = [fields[b"type"].decode() for _, fields in entries]
    assert types == EXPECTED
    first = json.loads(entries[0][1][b"event"])
    assert first["workflow_id"] == record.id
    assert entries[0][1][b"id"].decode() == first["id"]


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A reachable NATS server: the one on 127.0.0.1:4222, or one started here."""
    pytest.importorskip("nats")
    if _answers("127.0.0.1", 4222):
        yield "nats://127.0.0.1:4222"
        return
    binary = shutil.which("nats-server")
    if binary is None:
        reason = "no NATS server on 127.0.0.1:4222 and no nats-server binary"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port)])
    try:
        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def test_events_go_to_nats_subjects(db: str, nats_url: str) -> None:
    import nats

    prefix = f"test{os.getpid()}x{int(time.time() * 1000) % 10**8}"
    got: list[Any] = []
    client = await nats.connect(nats_url)
    try:

        async def collect(message: Any) -> None:
            got.append(message)

        await client.subscribe(f"{prefix}.>", cb=collect)
        await client.flush()
        entry = {"name": "bus", "type": "nats", "servers": [nats_url], "subject": prefix}
        settings = load_settings(database_url=db, sinks=sinks(entry))
        async with Engine(settings=settings) as engine:
            record = await engine.start_execution(TWO_NODES)
            await engine.wait(record.id, timeout=10)
            await eventually(lambda: len(got) >= len(EXPECTED))
    finally:
        await client.close()
    assert [m.subject for m in got] == [f"{prefix}.{t}" for t in EXPECTED]
    first = json.loads(got[0].data)
    assert first["workflow_id"] == record.id
    assert got[0].headers["Nats-Msg-Id"] == first["id"]


async def test_an_unreachable_nats_server_owes_the_events() -> None:
    from orchestrion.sinks.nats import NatsSink

    config = parse_sinks(
        json.dumps(
            {
                "sinks": [
                    {"name": "n", "type": "nats", "servers": ["nats://127.0.0.1:1"], "timeout": 1}
                ]
            }
        )
    )
    sink = NatsSink(config.sinks[0])  # type: ignore[arg-type]
    event = _event()
    outcomes = await sink.publish([event, event])
    await sink.close()
    assert len(outcomes) == 2 and all(o is not None for o in outcomes)


def test_nats_options_carry_credentials_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrion.sinks.nats import NatsSink, subject_of

    monkeypatch.setenv("NATS_PASSWORD", "pw")
    entry = {"name": "n", "type": "nats", "user": "u", "password_env": "NATS_PASSWORD", "tls": True}
    config = parse_sinks(json.dumps({"sinks": [entry]}))
    options = NatsSink(config.sinks[0]).options()  # type: ignore[arg-type]
    assert (options["user"], options["password"]) == ("u", "pw")
    assert options["tls"].verify_mode.name == "CERT_REQUIRED"
    with pytest.raises(ConfigurationError, match="user and password_env go together"):
        parse_sinks(json.dumps({"sinks": [{"name": "n", "type": "nats", "user": "u"}]}))
    assert subject_of("orchestrion.events", "node.completed") == "orchestrion.events.node.completed"
    assert subject_of("p", "a b*>") == "p.a_b__"


def _event() -> OutboundEvent:
    return OutboundEvent.build(
        event_id="e1",
        event_type="node.completed",
        execution_id="x1",
        at=0.0,
        data={"state": "completed", "error": {"$enc": "aes-256-gcm", "k": "x"}},
        correlation_id="c1",
        causation_id="q1",
        workflow="w",
        version="1",
        node_id="a",
        attempt=1,
    )


def test_an_outbound_event_has_the_reference_shape_and_never_a_sealed_value() -> None:
    event = _event()
    body = json.loads(event.body)
    assert set(body) == {
        "id", "type", "workflow_id", "timestamp", "source", "data",
        "correlation_id", "causation_id", "metadata",
    }  # fmt: skip
    assert body["timestamp"] == "1970-01-01T00:00:00+00:00"
    assert body["data"]["error"] == "[sealed]"
    assert body["metadata"] == {
        "schema_version": 1, "execution_id": "x1", "workflow": "w", "version": "1",
        "node_id": "a", "attempt": 1,
    }  # fmt: skip


def test_kafka_records_are_keyed_by_execution_with_id_headers() -> None:
    record = record_of(_event())
    assert record["key"] == b"x1"
    assert json.loads(record["value"])["id"] == "e1"
    assert dict(record["headers"]) == {
        "orchestrion-event-id": b"e1",
        "orchestrion-event-type": b"node.completed",
    }


class _Producer:
    """Stands in for aiokafka's producer where no broker runs: records what it is sent."""

    def __init__(self, fail_on: str | None = None, **options: Any) -> None:
        self.options = options
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail_on = fail_on

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, **record: Any) -> asyncio.Future[None]:
        self.sent.append((topic, record))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_on is not None and record["headers"][0][1] == self.fail_on.encode():
            future.set_exception(RuntimeError("NotLeaderForPartitionError"))
        else:
            future.set_result(None)
        return future


async def test_kafka_sink_sends_each_event_and_answers_per_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "pw")
    config = KafkaSinkConfig(
        name="k",
        type="kafka",
        bootstrap_servers=("b1:9092",),
        topic="wf-events",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username="orchestrion",
        password_env="KAFKA_PASSWORD",
    )
    made: list[_Producer] = []

    def make(**options: Any) -> _Producer:
        made.append(_Producer(fail_on="e2", **options))
        return made[-1]

    sink = KafkaSink(config, producer=make)
    second = OutboundEvent.from_payload({**_event().payload, "id": "e2"})
    outcomes = await sink.publish([_event(), second])
    assert outcomes[0] is None
    assert outcomes[1] == "RuntimeError: NotLeaderForPartitionError"
    [producer] = made
    assert producer.options["acks"] == "all" and producer.options["enable_idempotence"]
    assert producer.options["sasl_plain_password"] == "pw"
    assert producer.options["ssl_context"].verify_mode.name == "CERT_REQUIRED"
    assert [topic for topic, _ in producer.sent] == ["wf-events", "wf-events"]


async def test_kafka_options_are_ones_aiokafka_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    aiokafka = pytest.importorskip("aiokafka")
    monkeypatch.setenv("KAFKA_PASSWORD", "pw")
    config = KafkaSinkConfig(
        name="k",
        type="kafka",
        bootstrap_servers=("127.0.0.1:1",),
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        username="u",
        password_env="KAFKA_PASSWORD",
    )
    producer = aiokafka.AIOKafkaProducer(**KafkaSink(config).options())  # no broker needed
    try:
        assert producer.client._security_protocol == "SASL_SSL"
    finally:
        await producer.stop()


async def test_kafka_sink_without_a_broker_owes_every_event() -> None:
    pytest.importorskip("aiokafka")
    config = KafkaSinkConfig(name="k", type="kafka", bootstrap_servers=("127.0.0.1:1",), timeout=2)
    sink = KafkaSink(config)
    outcomes = await sink.publish([_event()])
    await sink.close()
    assert outcomes[0] is not None
    assert "Kafka" in outcomes[0] or "Error" in outcomes[0]


def test_a_bad_sinks_document_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match=r"sinks\.0\.webhook\.url"):
        parse_sinks('{"sinks": [{"name": "x", "type": "webhook", "url": "ftp://h"}]}')
    kafka = '{"sinks": [{"name": "k", "type": "kafka", "bootstrap_servers": ["b:9092"],'
    with pytest.raises(ConfigurationError, match="needs username and password_env"):
        parse_sinks(kafka + ' "security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}]}')
    with pytest.raises(ConfigurationError, match="needs sasl_mechanism"):
        parse_sinks(kafka + ' "security_protocol": "SASL_PLAINTEXT"}]}')
    with pytest.raises(ConfigurationError, match="two sinks are named 'x'"):
        parse_sinks("sinks:\n  - {name: x, type: nats}\n  - {name: x, type: nats}\n")
    monkeypatch.delenv("MISSING_SECRET", raising=False)
    hook = {"name": "h", "type": "webhook", "url": "http://h", "secret_env": "MISSING_SECRET"}
    with pytest.raises(ConfigurationError, match="MISSING_SECRET is not set"):
        Engine(settings=load_settings(database_url="memory://", sinks=sinks(hook)))


async def test_a_webhook_sink_obeys_the_url_guard(db: str) -> None:
    hook = {"name": "meta", "type": "webhook", "url": "http://169.254.169.254/latest/meta-data"}
    config = sinks(hook, attempts=1)
    async with Engine(settings=load_settings(database_url=db, sinks=config)) as engine:
        record = await engine.start_execution(TWO_NODES)
        await engine.wait(record.id, timeout=10)
        deadline = time.monotonic() + 10
        letters: list[Any] = []
        while len(letters) < len(EXPECTED) and time.monotonic() < deadline:
            letters = await engine.store.list_deliveries(DeliveryStatus.DEAD)
            await asyncio.sleep(0.05)
    assert len(letters) == len(EXPECTED)
    assert all("URL guard" in (d.error or "") for d in letters)


async def test_scale_out_orchestrators_publish_from_the_postgresql_outbox(
    postgres_url: str, redis_server: str, redis_prefix: str, receiver: Receiver
) -> None:
    from scaleout import scaleout_engine

    hook = {"name": "hook", "type": "webhook", "url": receiver.url}
    extra = {"sinks": sinks(hook)}
    async with scaleout_engine(postgres_url, redis_server, redis_prefix, settings=extra) as one:
        record = await one.start_execution(TWO_NODES)
        await one.wait(record.id, timeout=20)
        await eventually(lambda: len(receiver.received) >= len(EXPECTED))
        deadline = time.monotonic() + 5
        while await one.store.outbox_size() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert await one.store.outbox_size() == 0
    assert [e["type"] for e in receiver.events()] == EXPECTED


async def test_metrics_count_what_each_sink_did(db: str, receiver: Receiver) -> None:
    from orchestrion.observability.metrics import Metrics

    hook = {"name": "hook", "type": "webhook", "url": receiver.url}
    async with Engine(settings=load_settings(database_url=db, sinks=sinks(hook))) as engine:
        metrics = Metrics()
        metrics.watch_sinks(lambda: engine.publisher)
        record = await engine.start_execution(TWO_NODES)
        await engine.wait(record.id, timeout=10)
        # The receiver holds a delivery before its answer reaches the sink, which counts it
        # then: wait for the count itself.
        published = 'orchestrion_sink_events_published_total{sink="hook"} 8.0'
        await eventually(lambda: published in metrics.render().decode())
        text = metrics.render().decode()
    assert published in text
    assert 'orchestrion_sink_events_dead_lettered_total{sink="hook"} 0.0' in text
    assert "orchestrion_outbox_backlog" in text


async def test_a_routing_notice_goes_durably_to_the_sinks_its_addresses_name(
    db: str, receiver: Receiver
) -> None:
    from dataclasses import dataclass, field

    from orchestrion.engine.notice_sinks import SinkNotices

    @dataclass(frozen=True)
    class Notice:  # the shape routing's notices have (key, addresses, to_dict, ...)
        key: str
        kind: str
        execution_id: str
        workflow: str
        message: str
        at: float
        node: str | None = None
        addresses: tuple[str, ...] = ()
        data: dict[str, Any] = field(default_factory=dict)

        def to_dict(self) -> dict[str, Any]:
            return {"key": self.key, "kind": self.kind, "message": self.message,
                    "addresses": list(self.addresses)}  # fmt: skip

    entries = (
        {"name": "ops", "type": "webhook", "url": receiver.url, "events": ["nothing"]},
        {"name": "other", "type": "webhook", "url": receiver.url + "/other", "events": ["x"]},
    )
    async with Engine(settings=load_settings(database_url=db, sinks=sinks(*entries))) as engine:
        record = await engine.start_execution(TWO_NODES)
        await engine.wait(record.id, timeout=10)
        notice = Notice(
            key=f"{record.id}:b:1:escalation",
            kind="escalation",
            execution_id=record.id,
            workflow="pair",
            message="compliance score below 0.7",
            at=time.time(),
            node="b",
            addresses=("sink:ops", "mailto:cfo@example.com", "sink:missing"),
        )
        carrier = SinkNotices(engine)
        receiver.statuses = [503]  # the first try fails: the notice is owed meanwhile
        await carrier.deliver([notice])
        await carrier.deliver([notice])  # given again (a retry): not owed twice
        assert len(await engine.deliveries.list(sink="ops")) == 1
        await eventually(lambda: len(receiver.received) >= 1)
    [event] = receiver.events()
    assert event["type"] == "execution.notice"
    assert event["data"]["kind"] == "escalation"
    assert event["correlation_id"] == record.correlation_id
    assert event["metadata"]["node_id"] == "b"
    assert receiver.received[0]["headers"]["X-Orchestrion-Event"] == "execution.notice"


async def test_a_sink_that_never_answers_holds_neither_the_engine_nor_the_others(
    db: str, receiver: Receiver
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts connections, never answers
    port = silent.getsockname()[1]
    entries = (
        {"name": "silent", "type": "webhook", "url": f"http://127.0.0.1:{port}/", "timeout": 1},
        {"name": "good", "type": "webhook", "url": receiver.url},
    )
    try:
        settings = load_settings(database_url=db, sinks=sinks(*entries))
        async with Engine(settings=settings) as engine:
            began = time.monotonic()
            for _ in range(3):  # three pages, at least: each would wait for the silent one
                record = await engine.start_execution(TWO_NODES)
                await engine.wait(record.id, timeout=10)
            assert time.monotonic() - began < 5  # the engine's own work never waited
            await eventually(lambda: len(receiver.received) >= 3 * len(EXPECTED))
            # one timeout for the first page, then the silent sink rests: not 8 per execution
            assert time.monotonic() - began < 12  # waiting on every event would take 24 s
            # What the silent sink is owed is recorded as each page ends for it, which may
            # be after the good sink had the page (a loaded machine).
            deadline = time.monotonic() + 10
            while True:
                owed = await engine.deliveries.list(sink="silent")
                if len(owed) >= 3 * len(EXPECTED) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert len(owed) == 3 * len(EXPECTED)
            assert all(d.status is DeliveryStatus.RETRY for d in owed)
            assert sum(d.attempts for d in owed) <= 2  # the rest were held back, not tried
    finally:
        silent.close()


async def test_a_slow_webhook_does_not_hold_a_fast_sink(db: str, receiver: Receiver) -> None:
    slow = Receiver(delay=0.3)  # 0.3 s an event: a page of one execution takes 2.4 s
    entries = (
        {"name": "slow", "type": "webhook", "url": slow.url, "concurrency": 1},
        {"name": "fast", "type": "webhook", "url": receiver.url},
    )
    config = sinks(*entries, page_budget=0.5, page=8, initial_backoff=0.05)
    try:
        async with Engine(settings=load_settings(database_url=db, sinks=config)) as engine:
            began = time.monotonic()
            records = [await engine.start_execution(TWO_NODES) for _ in range(4)]
            for record in records:
                await engine.wait(record.id, timeout=10)
            await eventually(lambda: len(receiver.received) >= 4 * len(EXPECTED))
            fast_done = time.monotonic() - began
            # the slow one would need 4 * 8 * 0.3 = 9.6 s: the fast one did not wait for it
            assert fast_done < 7, fast_done
            await eventually(lambda: len(slow.received) >= 4 * len(EXPECTED), timeout=30)
        # every event reached the slow one too, exactly once (held-back ones later)
        for record in records:
            kinds = [e["type"] for e in slow.events() if e["workflow_id"] == record.id]
            assert sorted(kinds) == sorted(EXPECTED)
        assert len(slow.received) == 4 * len(EXPECTED)
    finally:
        slow.close()


async def test_events_leave_with_personal_data_masked(db: str, receiver: Receiver) -> None:
    from orchestrion.governance.runtime import Governance
    from pii import PII, assert_no_pii, failing

    governance = Governance.load(None, environ={})  # the shipped policy: masking on
    hook = {"name": "hook", "type": "webhook", "url": receiver.url}
    settings = load_settings(database_url=db, sinks=sinks(hook))
    async with Engine(settings=settings, governance=governance) as engine:
        record = await engine.start_execution(failing(), PII)
        await engine.wait(record.id, timeout=20)
        await eventually(lambda: any(e["type"] == "execution.failed" for e in receiver.events()))
    failed = [e for e in receiver.events() if e["type"] == "node.failed"]
    assert failed, [e["type"] for e in receiver.events()]
    bill = next(e for e in failed if e["metadata"]["node_id"] == "bill")
    assert bill["data"]["error"]["message"] == "cannot bill [email] [phone] card [card] id [ssn]"
    assert_no_pii(json.dumps(receiver.events()), "outbound events")
