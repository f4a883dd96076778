"""The circuit breaker policy (pure), target hosts, CircuitOpen, and the executor's use of it.

The executor tests use a fake ``CircuitBreakers`` (no Redis): they check what the executor
reports and when; the Redis side is in tests/integration/test_circuit_redis.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrion.core.events import CompensationFailed, NodeFailed, NodeSucceeded, NodeWaiting
from orchestrion.dispatch.base import TaskMessage
from orchestrion.errors import PermanentNodeError, PolicyViolation, TransientNodeError
from orchestrion.execution.circuit import (
    NO_HOST,
    Circuit,
    CircuitOpen,
    CircuitState,
    decide,
    record,
    retry_in,
    target_host,
)
from orchestrion.execution.executor import NodeExecutor
from orchestrion.handlers.base import Controls, HandlerSpec, NodeContext, Resources, Wait
from orchestrion.handlers.builtin import builtin_specs
from orchestrion.handlers.registry import HandlerRegistry

CLOSED, OPEN, HALF = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
OPEN_S = 10.0

# ---------------------------------------------------------------- decide

OPENED = Circuit(OPEN, 5, opened_at=100.0)  # open since 100.0: a probe may go at 110.0


def probing(since: float) -> Circuit:
    """``OPENED`` once its probe went out at ``since``."""
    return Circuit(HALF, 5, 100.0, probe_in_flight=True, probe_started_at=since)


@pytest.mark.parametrize(
    ("circuit", "now", "allowed", "after"),
    [
        pytest.param(Circuit(), 5.0, True, Circuit(), id="closed-lets-through"),
        pytest.param(
            Circuit(CLOSED, failures=3), 5.0, True, Circuit(CLOSED, failures=3), id="closed-failing"
        ),
        pytest.param(OPENED, 105.0, False, OPENED, id="open-fails-fast"),
        pytest.param(OPENED, 109.999, False, OPENED, id="open-just-before-probe"),
        pytest.param(OPENED, 110.0, True, probing(110.0), id="open-elapsed-sends-probe"),
        pytest.param(OPENED, 500.0, True, probing(500.0), id="open-long-elapsed-sends-probe"),
        pytest.param(
            probing(110.0), 110.0, False, probing(110.0), id="half-open-second-caller-refused"
        ),
        pytest.param(
            probing(110.0), 119.9, False, probing(110.0), id="half-open-probe-still-running"
        ),
        pytest.param(
            probing(110.0), 120.0, True, probing(120.0), id="half-open-lost-probe-replaced"
        ),
        pytest.param(
            Circuit(HALF, 5, 100.0), 111.0, True, probing(111.0), id="half-open-without-probe"
        ),
    ],
)
def test_decide(circuit: Circuit, now: float, allowed: bool, after: Circuit) -> None:
    assert decide(circuit, now, OPEN_S) == (allowed, after)


def test_decide_probe_timeout_is_its_own_setting() -> None:
    assert decide(probing(110.0), 120.0, OPEN_S, probe_timeout=60.0) == (False, probing(110.0))
    allowed, circuit = decide(probing(110.0), 170.0, OPEN_S, probe_timeout=60.0)
    assert allowed and circuit.probe_started_at == 170.0


# ---------------------------------------------------------------- record


@pytest.mark.parametrize(
    ("circuit", "ok", "threshold", "after"),
    [
        pytest.param(Circuit(), True, 3, Circuit(), id="closed-success"),
        pytest.param(Circuit(CLOSED, 2), True, 3, Circuit(), id="closed-success-resets"),
        pytest.param(Circuit(), False, 3, Circuit(CLOSED, 1), id="closed-first-failure"),
        pytest.param(Circuit(CLOSED, 1), False, 3, Circuit(CLOSED, 2), id="closed-below-threshold"),
        pytest.param(
            Circuit(CLOSED, 2), False, 3, Circuit(OPEN, 3, opened_at=50.0), id="closed-opens"
        ),
        pytest.param(Circuit(), False, 1, Circuit(OPEN, 1, opened_at=50.0), id="threshold-one"),
        pytest.param(
            Circuit(OPEN, 3, opened_at=40.0),
            False,
            3,
            Circuit(OPEN, 3, opened_at=40.0),
            id="open-late-failure-ignored",
        ),
        pytest.param(
            Circuit(OPEN, 3, opened_at=40.0),
            True,
            3,
            Circuit(OPEN, 3, opened_at=40.0),
            id="open-late-success-ignored",
        ),
        pytest.param(
            Circuit(HALF, 3, 40.0, probe_in_flight=True, probe_started_at=45.0),
            True,
            3,
            Circuit(),
            id="probe-success-closes",
        ),
        pytest.param(
            Circuit(HALF, 3, 40.0, probe_in_flight=True, probe_started_at=45.0),
            False,
            3,
            Circuit(OPEN, 4, opened_at=50.0),
            id="probe-failure-reopens",
        ),
    ],
)
def test_record(circuit: Circuit, ok: bool, threshold: int, after: Circuit) -> None:
    assert record(circuit, ok, 50.0, threshold) == after


@pytest.mark.parametrize(
    ("circuit", "now", "expected"),
    [
        (Circuit(), 0.0, 0.0),
        (Circuit(OPEN, 3, opened_at=100.0), 104.0, 6.0),
        (Circuit(OPEN, 3, opened_at=100.0), 200.0, 0.0),
        (Circuit(HALF, 3, 100.0, probe_in_flight=True, probe_started_at=110.0), 112.5, 7.5),
        (Circuit(HALF, 3, 100.0), 112.5, 0.0),
    ],
)
def test_retry_in(circuit: Circuit, now: float, expected: float) -> None:
    assert retry_in(circuit, now, OPEN_S) == pytest.approx(expected)


def test_whole_cycle() -> None:
    circuit, now = Circuit(), 0.0
    for _ in range(3):
        allowed, circuit = decide(circuit, now, OPEN_S)
        assert allowed
        circuit = record(circuit, False, now, 3)
    assert circuit.state is OPEN
    assert decide(circuit, now + 1, OPEN_S)[0] is False
    allowed, circuit = decide(circuit, now + OPEN_S, OPEN_S)
    assert allowed and circuit.state is HALF
    assert decide(circuit, now + OPEN_S, OPEN_S)[0] is False
    circuit = record(circuit, True, now + OPEN_S, 3)
    assert circuit == Circuit()


# Operations: ("decide", dt) or ("ok"/"fail", dt); results are only recorded for calls that
# were let through, as the executor does.
_OPS = st.lists(
    st.tuples(st.sampled_from(["decide", "ok", "fail"]), st.floats(0, 2 * OPEN_S)), max_size=60
)


@given(ops=_OPS, threshold=st.integers(1, 5))
def test_policy_invariants(ops: list[tuple[str, float]], threshold: int) -> None:
    circuit, now, running = Circuit(), 1000.0, 0
    probes_in_window: list[float] = []
    for op, dt in ops:
        now += dt
        if op == "decide":
            was_half = circuit.state is HALF
            allowed, circuit = decide(circuit, now, OPEN_S)
            if allowed:
                running += 1
                if circuit.state is HALF:
                    # a second probe only once the previous one is presumed lost
                    if was_half and probes_in_window:
                        assert now - probes_in_window[-1] >= OPEN_S
                    probes_in_window.append(now)
            else:
                assert circuit.state in (OPEN, HALF)
                assert retry_in(circuit, now, OPEN_S) > 0
        elif running:
            running -= 1
            circuit = record(circuit, op == "ok", now, threshold)
            if circuit.state is not HALF:
                probes_in_window.clear()
        if circuit.state is CLOSED:
            assert circuit.failures < threshold and circuit.opened_at is None
            assert decide(circuit, now, OPEN_S)[0]
        elif circuit.state is OPEN:
            assert circuit.opened_at is not None and circuit.failures >= 1
        else:
            assert circuit.probe_in_flight and circuit.probe_started_at is not None


# ---------------------------------------------------------------- target_host


@pytest.mark.parametrize(
    ("handler", "config", "host"),
    [
        ("http", {"url": "https://api.example.com/users/1"}, "api.example.com"),
        ("http", {"url": "http://127.0.0.1:8080/x?y=1"}, "127.0.0.1:8080"),
        ("http", {"url": "https://user:secret@API.Example.com:8443/"}, "api.example.com:8443"),
        ("http", {"url": "http://[::1]:9000/"}, "[::1]:9000"),
        ("http", {"url": "http://host:notaport/"}, None),
        ("http", {"url": "not a url"}, None),
        ("http", {"url": 42}, None),
        ("http", {}, None),
        ("llm", {"base_url": "https://api.openai.com/v1"}, "api.openai.com"),
        ("llm", {"url": "https://elsewhere.example/"}, None),
        ("plugin", {"url": "https://api.example.com/"}, "api.example.com"),
        ("noop", {}, None),
    ],
)
def test_target_host(handler: str, config: dict[str, Any], host: str | None) -> None:
    assert target_host(handler, config) == host


def test_circuit_open_is_transient_with_its_category() -> None:
    exc = CircuitOpen("http", "api.example.com", OPEN, 12.345)
    assert isinstance(exc, TransientNodeError)
    assert exc.transient and exc.category == "circuit_open"
    assert "'http'" in str(exc) and "api.example.com" in str(exc) and "12.35 s" in str(exc)
    handler_wide = CircuitOpen("python", NO_HOST, HALF, 1.0)
    assert "every host" in str(handler_wide) and "probe in flight" in str(handler_wide)


# ---------------------------------------------------------------- the executor's side


class FakeBreakers:
    """Records the executor's calls; ``refuse`` / ``broken`` make ``before`` raise."""

    def __init__(self, refuse: bool = False, broken: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.refuse = refuse
        self.broken = broken

    async def before(self, handler: str, target: str | None) -> None:
        self.calls.append(("before", handler, target))
        if self.broken:
            raise ConnectionError("redis is down")
        if self.refuse:
            raise CircuitOpen(handler, target or NO_HOST, OPEN, 3.0)

    async def after(self, handler: str, target: str | None, ok: bool) -> None:
        self.calls.append(("after", handler, target, ok))
        if self.broken:
            raise ConnectionError("redis is down")


def _registry(behaviour: Any) -> HandlerRegistry:
    async def run(ctx: NodeContext, config: Any) -> Any:
        if isinstance(behaviour, BaseException):
            raise behaviour
        return behaviour

    registry = HandlerRegistry(builtin_specs())
    registry.register(HandlerSpec(name="probe", run=run))
    return registry


def _executor(registry: HandlerRegistry, breakers: FakeBreakers) -> NodeExecutor:
    return NodeExecutor(registry, Resources(Controls.unrestricted()), circuits=breakers)


DOWNSTREAM = {"url": "http://downstream.test/x"}


def _task(handler: str = "probe", config: dict[str, Any] | None = None) -> TaskMessage:
    config = DOWNSTREAM if config is None else config
    return TaskMessage("e1", "n1", 1, handler, config, {}, {}, idempotency_key="e1:n1:1")


async def _run(executor: NodeExecutor, task: TaskMessage) -> Any:
    events: list[Any] = []
    await executor.execute(task, lambda _execution, event: events.append(event))
    return events[-1]


@pytest.mark.parametrize(
    ("behaviour", "ok", "event"),
    [
        pytest.param({"x": 1}, True, NodeSucceeded, id="success"),
        pytest.param(Wait("approval"), True, NodeWaiting, id="wait"),
        pytest.param(TransientNodeError("503"), False, NodeFailed, id="transient"),
        pytest.param(RuntimeError("boom"), False, NodeFailed, id="unexpected"),
        pytest.param(ConnectionResetError("reset"), False, NodeFailed, id="connection"),
        pytest.param(PermanentNodeError("404"), True, NodeFailed, id="permanent"),
        pytest.param(PolicyViolation("blocked"), True, NodeFailed, id="policy"),
    ],
)
async def test_executor_reports_outcomes(behaviour: Any, ok: bool, event: type) -> None:
    breakers = FakeBreakers()
    executor = _executor(_registry(behaviour), breakers)
    assert isinstance(await _run(executor, _task()), event)
    assert breakers.calls == [
        ("before", "probe", "downstream.test"),
        ("after", "probe", "downstream.test", ok),
    ]


async def test_executor_timeout_counts_as_failure() -> None:
    async def slow(ctx: NodeContext, config: Any) -> Any:
        import asyncio

        await asyncio.sleep(5)

    registry = HandlerRegistry([HandlerSpec(name="slow", run=slow)])
    breakers = FakeBreakers()
    executor = _executor(registry, breakers)
    task = _task("slow")
    task.timeout = 0.05
    result = await _run(executor, task)
    assert isinstance(result, NodeFailed) and result.error.category == "timeout"
    assert breakers.calls[-1] == ("after", "slow", "downstream.test", False)


async def test_executor_open_circuit_waits_without_calling() -> None:
    """Waiting for a circuit is not an attempt: the node waits until it may call again."""
    called: list[bool] = []

    async def run(ctx: NodeContext, config: Any) -> Any:
        called.append(True)

    breakers = FakeBreakers(refuse=True)
    registry = HandlerRegistry([HandlerSpec(name="probe", run=run)])
    executor = _executor(registry, breakers)
    before = time.time()
    result = await _run(executor, _task())
    assert isinstance(result, NodeWaiting) and result.reason == "circuit"
    assert result.attempt == 1
    assert result.wake_at is not None and before + 3.0 <= result.wake_at <= time.time() + 3.5
    assert result.data == {"handler": "probe", "host": "downstream.test", "circuit": "open"}
    assert not called and breakers.calls == [("before", "probe", "downstream.test")]


async def test_executor_half_open_circuit_looks_again_within_a_second() -> None:
    """While the probe is in flight it may end any moment: the wait is short."""
    from orchestrion.execution.circuit import CircuitOpen, CircuitState
    from orchestrion.execution.circuit_layer import circuit_wait

    wait = circuit_wait(CircuitOpen("http", "api.test", CircuitState.HALF_OPEN, 30.0))
    assert wait.reason == "circuit" and wait.wake_at is not None
    assert wait.wake_at - time.time() <= 1.2


async def test_a_compensation_still_fails_fast_on_an_open_circuit() -> None:
    breakers = FakeBreakers(refuse=True)

    async def run(ctx: NodeContext, config: Any) -> Any:
        return None

    registry = HandlerRegistry([HandlerSpec(name="probe", run=run)])
    executor = _executor(registry, breakers)
    task = _task()
    task.kind = "compensate"
    events: list[Any] = []
    await executor.execute(task, lambda _execution, event: events.append(event))
    (result,) = events
    assert isinstance(result, CompensationFailed) and result.error.category == "circuit_open"


async def test_executor_passes_the_target_host_of_the_validated_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://default.example/v1")
    breakers = FakeBreakers(refuse=True)  # refuse: nothing is sent anywhere
    executor = _executor(HandlerRegistry(builtin_specs()), breakers)
    await _run(executor, _task("http", {"url": "https://{{ 'api' }}.example.com:8443/x"}))
    await _run(executor, _task("llm", {"prompt": "hi", "base_url": "https://llm.example/v1"}))
    # no base_url in the node's config: the model's default counts
    await _run(executor, _task("llm", {"prompt": "hi"}))
    await _run(executor, _task("noop", {}))  # nothing downstream: not guarded
    assert breakers.calls == [
        ("before", "http", "api.example.com:8443"),
        ("before", "llm", "llm.example"),
        ("before", "llm", "default.example"),
    ]


async def test_executor_config_errors_never_reach_the_breaker() -> None:
    breakers = FakeBreakers()
    executor = _executor(HandlerRegistry(builtin_specs()), breakers)
    result = await _run(executor, _task("http", {"url": "ftp://nope"}))
    assert isinstance(result, NodeFailed) and result.error.category == "config"
    assert breakers.calls == []


async def test_executor_fails_open_when_the_breaker_store_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    breakers = FakeBreakers(broken=True)
    executor = _executor(_registry({"x": 1}), breakers)
    assert isinstance(await _run(executor, _task()), NodeSucceeded)
    assert [call[0] for call in breakers.calls] == ["before", "after"]
    assert "not consulted" in caplog.text and "not updated" in caplog.text


async def test_executor_without_breakers_is_unchanged() -> None:
    executor = NodeExecutor(_registry({"x": 1}), Resources(Controls.unrestricted()))
    assert isinstance(await _run(executor, _task()), NodeSucceeded)
