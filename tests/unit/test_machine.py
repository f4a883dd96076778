"""Scenario tests of the execution state machine (orchestrion.core.machine), table-driven.

Every scenario runs through ``machine_driver.Simulator``, which also checks on every single
step that no node changes state or attempt without a record, that the last record of a node in
a step describes the node as it now is, and that a finished execution ignores every event but
``RetryRequested``.
"""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.backoff import retry_delay
from orchestrion.core.control import ABANDONED
from orchestrion.core.events import (
    CancelNode,
    CancelRequested,
    CompensationSucceeded,
    Dispatch,
    ErrorInfo,
    Event,
    ExecutionFinished,
    ExecutionTimedOut,
    NodeFailed,
    NodeSkipped,
    NodeStarted,
    NodeSucceeded,
    NodeWaiting,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    RunCompensation,
    ScheduleTimer,
    Started,
    TimerFired,
    WaitResolved,
)
from orchestrion.core.machine import ExecutionMachine, NodeRun
from orchestrion.core.plan import Plan
from orchestrion.core.states import FINAL_NODE_STATES, ExecutionStatus, NodeState
from orchestrion.definition.model import RetryPolicy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for machine_driver
from machine_driver import (
    HANG,
    OK,
    PERMANENT,
    POLICY,
    SKIP,
    TRANSIENT,
    WAIT,
    WAIT_FAIL,
    Simulator,
    error_for,
    make_spec,
    node,
    replay,
)

S = NodeState
X = ExecutionStatus

EXACT = {"jitter": "none", "initial_delay": 1.0, "multiplier": 2.0, "max_delay": 30.0}


def sim_for(
    nodes: list[dict[str, Any]], script: dict[str, list[str]] | None = None, **kw: Any
) -> Simulator:
    options = {k: kw.pop(k) for k in ("seed", "compensation_failures", "wake_after") if k in kw}
    return Simulator(make_spec(nodes, **kw), script, **options)


def run(
    nodes: list[dict[str, Any]], script: dict[str, list[str]] | None = None, **kw: Any
) -> Simulator:
    return sim_for(nodes, script, **kw).run()


def chain(*ids: str, **fields: Any) -> list[dict[str, Any]]:
    return [node(n, *([ids[k - 1]] if k else []), **fields) for k, n in enumerate(ids)]


def assert_no_op(sim: Simulator, event: Event) -> None:
    before = [(r.state, r.attempt, r.wait_reason, r.compensation) for r in sim.machine.nodes]
    status, pending = sim.status, len(sim.pending)
    step = sim.apply(event)
    assert step.records == [] and step.commands == [], (event, step)
    assert [
        (r.state, r.attempt, r.wait_reason, r.compensation) for r in sim.machine.nodes
    ] == before
    assert sim.status is status
    assert len(sim.pending) == pending


def delays(sim: Simulator, node_id: str) -> list[float]:
    return [
        r.data["delay"]
        for r in sim.records
        if r.node == node_id and r.type == "node.retry_scheduled"
    ]


# ====================================================================== shapes


def test_linear_chain_runs_in_order_and_records_every_transition() -> None:
    sim = run(chain("A", "B", "C"))

    assert sim.status is X.COMPLETED
    assert sim.dispatched() == [("A", 1), ("B", 1), ("C", 1)]
    for d in sim.dispatches:
        assert all(s is S.COMPLETED for s in d.parent_states.values())
    for node_id in "ABC":
        assert sim.record_types(node_id) == ["node.queued", "node.started", "node.completed"]
        [done] = [r for r in sim.records if r.node == node_id and r.type == "node.completed"]
        assert done.has_output and done.output == {"node": node_id, "attempt": 1}
        assert done.started_at is not None and done.finished_at is not None
        assert done.started_at <= done.finished_at
    assert sim.execution_record_types() == ["execution.started", "execution.completed"]
    assert sim.records[-1].type == "execution.completed"
    assert sim.records[-1].status is X.COMPLETED
    assert sim.finished == [ExecutionFinished(X.COMPLETED)]
    assert sim.machine.error is None


def test_a_single_node_workflow() -> None:
    sim = sim_for([node("only")])
    step = sim.start()
    assert [r.type for r in step.records] == ["execution.started", "node.queued"]
    assert step.commands == [Dispatch("only", 1)]
    sim.run()
    assert sim.status is X.COMPLETED


def test_roots_start_at_once_and_in_parallel() -> None:
    sim = sim_for([node("A"), node("B"), node("C"), node("D", "A", "B", "C")])
    step = sim.start()
    assert step.commands == [Dispatch("A", 1), Dispatch("B", 1), Dispatch("C", 1)]
    assert sim.state("D") is S.PENDING


def test_nodes_are_not_dispatched_before_the_start() -> None:
    machine = ExecutionMachine(Plan.build(make_spec([node("A")])))
    assert machine.status is X.PENDING
    step = machine.apply(NodeSucceeded("A", 1, 1.0))
    assert step.records == [] and step.commands == []


@pytest.mark.parametrize("first", ["B", "C"])
def test_diamond_joins_once_whichever_branch_ends_first(first: str) -> None:
    second = "C" if first == "B" else "B"
    sim = sim_for([node("A"), node("B", "A"), node("C", "A"), node("D", "B", "C")])
    sim.start()
    sim.deliver("run", "A")
    assert sim.dispatched() == [("A", 1), ("B", 1), ("C", 1)]
    sim.deliver("run", first)
    assert sim.dispatched("D") == []
    assert sim.state("D") is S.PENDING
    sim.deliver("run", second)
    assert sim.dispatched("D") == [("D", 1)]
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("D") == [("D", 1)]


FAN = ["M1", "M2", "M3", "M4"]
FAN_SPEC = [node("R"), *(node(m, "R") for m in FAN), node("S", *FAN)]


@pytest.mark.parametrize("order", list(itertools.permutations(FAN)), ids="-".join)
def test_fan_in_fires_exactly_once_in_every_arrival_order(order: tuple[str, ...]) -> None:
    sim = sim_for(FAN_SPEC)
    sim.start()
    sim.deliver("run", "R")
    assert sim.dispatched() == [("R", 1), *((m, 1) for m in FAN)]  # fan-out, all at once
    for k, m in enumerate(order):
        sim.deliver("run", m)
        assert sim.dispatched("S") == ([("S", 1)] if k == len(order) - 1 else [])
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("S") == [("S", 1)]


@pytest.mark.parametrize("started", [True, False], ids=["started", "no-started-event"])
def test_fan_in_fires_once_when_results_arrive_in_the_same_instant(started: bool) -> None:
    sim = sim_for(FAN_SPEC)
    sim.start()
    sim.deliver("run", "R")
    at = sim.tick()
    dispatches = []
    for m in reversed(FAN):
        if started:
            sim.apply(NodeStarted(m, 1, at))
        step = sim.apply(NodeSucceeded(m, 1, at))
        dispatches += [c for c in step.commands if isinstance(c, Dispatch)]
    assert dispatches == [Dispatch("S", 1)]


MIXED_FAN = {"M1": OK, "M2": PERMANENT, "M3": SKIP, "M4": OK}


@pytest.mark.parametrize(
    "rule", ["all_success", "all_done", "one_success", "one_failed", "none_failed"]
)
@pytest.mark.parametrize("order", list(itertools.permutations(FAN)), ids="-".join)
def test_fan_in_with_mixed_results_is_decided_once_in_every_order(
    rule: str, order: tuple[str, ...]
) -> None:
    spec = [node("R"), *(node(m, "R") for m in FAN), node("S", *FAN, trigger_rule=rule)]
    sim = sim_for(spec, {m: [o] for m, o in MIXED_FAN.items()}, on_failure="none")
    sim.start()
    sim.deliver("run", "R")
    for m in order:
        sim.deliver("run", m)
    sim.run()
    runs = rule in ("all_done", "one_success", "one_failed")
    assert sim.dispatched("S") == ([("S", 1)] if runs else [])
    assert sim.state("S") is (S.COMPLETED if runs else S.SKIPPED)
    assert len([r for r in sim.records if r.node == "S" and r.state in FINAL_NODE_STATES]) == 1
    assert sim.status is X.FAILED  # M2 failed


# ====================================================================== trigger rules

RULES = ("all_success", "all_done", "one_success", "one_failed", "none_failed")
OUTCOME_OF = {"ok": OK, "failed": PERMANENT, "skipped": SKIP}

# Parent outcomes (delivered left to right) -> does the child run, per rule?
#                                 all_success all_done one_success one_failed none_failed
TRIGGER_TABLE: list[tuple[tuple[str, str], tuple[bool, ...]]] = [
    (("ok", "ok"), (True, True, True, False, True)),
    (("ok", "failed"), (False, True, True, True, False)),
    (("failed", "ok"), (False, True, True, True, False)),
    (("ok", "skipped"), (False, True, True, False, True)),
    (("skipped", "ok"), (False, True, True, False, True)),
    (("failed", "failed"), (False, True, False, True, False)),
    (("failed", "skipped"), (False, True, False, True, False)),
    (("skipped", "failed"), (False, True, False, True, False)),
    (("skipped", "skipped"), (False, True, False, False, True)),
]

SKIP_REASON = {
    "one_success": "no_upstream_success",
    "one_failed": "no_upstream_failure",
    "none_failed": "upstream_failed",
}


@pytest.mark.parametrize(
    ("parents", "rule", "runs"),
    [
        pytest.param(parents, rule, runs, id=f"{rule}-{'-'.join(parents)}")
        for parents, row in TRIGGER_TABLE
        for rule, runs in zip(RULES, row, strict=True)
    ],
)
def test_trigger_rule_table(parents: tuple[str, str], rule: str, runs: bool) -> None:
    spec = [node("P1"), node("P2"), node("X", "P1", "P2", trigger_rule=rule)]
    script = {"P1": [OUTCOME_OF[parents[0]]], "P2": [OUTCOME_OF[parents[1]]]}
    sim = sim_for(spec, script, on_failure="none")
    sim.start()
    sim.deliver("run", "P1")
    sim.deliver("run", "P2")
    sim.run()

    assert sim.dispatched("X") == ([("X", 1)] if runs else [])
    assert sim.state("X") is (S.COMPLETED if runs else S.SKIPPED)
    if not runs:
        [skip] = [r for r in sim.records if r.node == "X"]
        assert skip.type == "node.skipped"
        assert skip.attempt == 0
        if rule == "all_success":
            first_bad = next(p for p in parents if p != "ok")
            reason = "upstream_failed" if first_bad == "failed" else "upstream_skipped"
        else:
            reason = SKIP_REASON[rule]
        assert skip.data == {"reason": reason}
    assert sim.status is (X.FAILED if "failed" in parents else X.COMPLETED)


def oracle(rule: str, outcomes: tuple[str, ...]) -> bool:
    return {
        "all_success": all(o == "ok" for o in outcomes),
        "all_done": True,
        "one_success": "ok" in outcomes,
        "one_failed": "failed" in outcomes,
        "none_failed": "failed" not in outcomes,
    }[rule]


@pytest.mark.parametrize("rule", RULES)
def test_trigger_rules_with_three_parents_every_combination_and_order(rule: str) -> None:
    parents = ("P1", "P2", "P3")
    spec = [*(node(p) for p in parents), node("X", *parents, trigger_rule=rule)]
    for outcomes in itertools.product(OUTCOME_OF, repeat=3):
        for order in itertools.permutations(parents):
            script = {p: [OUTCOME_OF[o]] for p, o in zip(parents, outcomes, strict=True)}
            sim = sim_for(spec, script, on_failure="none")
            sim.start()
            for p in order:
                sim.deliver("run", p)
            sim.run()
            runs = oracle(rule, outcomes)
            assert sim.dispatched("X") == ([("X", 1)] if runs else []), (outcomes, order)


def test_all_success_skips_as_soon_as_a_parent_fails() -> None:
    spec = [node("P1"), node("P2"), node("X", "P1", "P2")]
    sim = sim_for(spec, {"P1": [PERMANENT], "P2": [HANG]})
    sim.start()
    sim.deliver("run", "P1")
    sim.deliver("run", "P2")  # started, never answers
    assert sim.state("X") is S.SKIPPED
    assert sim.state("P2") is S.RUNNING
    assert sim.status is X.RUNNING  # P2 is still going: failure isolation


@pytest.mark.parametrize(
    ("rule", "first", "decided"),
    [
        ("one_success", OK, S.QUEUED),
        ("one_success", PERMANENT, S.PENDING),  # not yet: the other one may succeed
        ("one_failed", PERMANENT, S.QUEUED),
        ("one_failed", OK, S.PENDING),
        ("all_success", SKIP, S.SKIPPED),
        ("none_failed", PERMANENT, S.SKIPPED),
        ("none_failed", SKIP, S.PENDING),
        ("all_done", PERMANENT, S.PENDING),
    ],
)
def test_trigger_rules_decide_as_early_as_they_can(
    rule: str, first: str, decided: NodeState
) -> None:
    spec = [node("P1"), node("P2"), node("X", "P1", "P2", trigger_rule=rule)]
    sim = sim_for(spec, {"P1": [first], "P2": [HANG]})
    sim.start()
    sim.deliver("run", "P1")
    assert sim.state("X") is decided
    if decided is S.QUEUED:  # the late parent does not dispatch it again
        sim.apply(NodeSucceeded("P2", 1, sim.tick()))
        assert sim.dispatched("X") == [("X", 1)]


def test_skipping_propagates_and_other_rules_pick_up_from_there() -> None:
    spec = [
        node("A"),
        node("B", "A"),  # all_success: skipped (upstream_failed)
        node("C", "B"),  # all_success: skipped (upstream_skipped)
        node("D", "C"),  # skipped
        node("E", "C", trigger_rule="all_done"),  # runs: C is done (skipped)
        node("F", "B", trigger_rule="one_failed"),  # B was skipped, not failed
        node("G", "B", trigger_rule="none_failed"),  # skipped parents are fine
        node("H", "A", trigger_rule="one_failed"),  # A failed: runs
        node("I"),  # independent branch carries on
        node("J", "I"),
    ]
    sim = run(spec, {"A": [PERMANENT]}, on_failure="none")
    reasons = {r.node: r.data["reason"] for r in sim.records if r.type == "node.skipped"}
    assert reasons == {
        "B": "upstream_failed",
        "C": "upstream_skipped",
        "D": "upstream_skipped",
        "F": "no_upstream_failure",
    }
    assert {n for n, s in sim.states().items() if s is S.COMPLETED} == {"E", "G", "H", "I", "J"}
    assert sim.status is X.FAILED
    assert sim.machine.error is not None and sim.machine.error["nodes"] == ["A"]


def test_condition_false_skips_the_node_and_its_all_success_dependents() -> None:
    spec = [
        node("A"),
        node("B", "A", when="false"),
        node("C", "B"),
        node("D", "B", trigger_rule="all_done"),
    ]
    sim = run(spec, {"B": [SKIP]})
    assert sim.states() == {"A": S.COMPLETED, "B": S.SKIPPED, "C": S.SKIPPED, "D": S.COMPLETED}
    [b_skip] = [r for r in sim.records if r.node == "B" and r.type == "node.skipped"]
    assert b_skip.data == {"reason": "condition_false"} and b_skip.attempt == 1
    assert sim.status is X.COMPLETED  # a skip is not a failure


def test_a_skip_cascade_through_a_sibling_does_not_dispatch_a_fan_in_twice() -> None:
    # A fails: its child B is skipped, which settles C (all_done, parents A and B) and runs
    # it; C is also A's own child and must not be decided a second time.
    spec = [node("A"), node("B", "A"), node("C", "A", "B", trigger_rule="all_done")]
    for concurrency in (None, 1):
        extra = {} if concurrency is None else {"concurrency": concurrency}
        sim = run(spec, {"A": [PERMANENT]}, on_failure="none", **extra)
        assert sim.dispatched("C") == [("C", 1)]
        assert sim.state("C") is S.COMPLETED
        assert sim.status is X.FAILED


# ====================================================================== retries


def test_retry_then_success_with_exact_exponential_delays() -> None:
    spec = [node("A"), node("B", "A", retry={**EXACT, "max_attempts": 3}), node("C", "B")]
    sim = run(spec, {"B": [TRANSIENT, TRANSIENT, OK]})

    assert sim.status is X.COMPLETED
    assert sim.dispatched("B") == [("B", 1), ("B", 2), ("B", 3)]
    assert sim.machine.nodes[1].attempt == 3
    assert sim.record_types("B") == [
        *("node.queued", "node.started", "node.retry_scheduled") * 2,
        "node.queued",
        "node.started",
        "node.completed",
    ]
    timers = [t for t in sim.timers() if t.node == "B"]
    assert [(t.attempt, t.kind) for t in timers] == [(1, "retry"), (2, "retry")]
    scheduled = [r for r in sim.records if r.type == "node.retry_scheduled"]
    for record, timer, delay in zip(scheduled, timers, (1.0, 2.0), strict=True):
        assert record.state is S.WAITING and record.wait_reason == "retry"
        assert record.data is not None and record.data["delay"] == delay
        assert record.data["error"]["transient"] is True
        assert record.error == record.data["error"]
        assert timer.fire_at == pytest.approx(record.at + delay)
        assert record.wake_at == pytest.approx(timer.fire_at)
    [done] = [r for r in sim.records if r.node == "B" and r.type == "node.completed"]
    assert done.attempt == 3 and done.error is None


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        ({"initial_delay": 1, "multiplier": 3, "max_delay": 10}, [1, 3, 9, 10, 10]),
        ({"initial_delay": 1, "multiplier": 2, "max_delay": 30}, [1, 2, 4, 8, 16]),
        ({"initial_delay": 0.5, "multiplier": 1, "max_delay": 1}, [0.5] * 5),
        ({"initial_delay": 0, "multiplier": 2, "max_delay": 0}, [0] * 5),
        ({"initial_delay": "2s", "multiplier": 10, "max_delay": "1m"}, [2, 20, 60, 60, 60]),
    ],
)
def test_no_jitter_gives_exact_exponential_delays_capped_at_max_delay(
    retry: dict[str, Any], expected: list[float]
) -> None:
    spec = [node("A", retry={**retry, "jitter": "none", "max_attempts": 6})]
    sim = run(spec, {"A": [TRANSIENT] * 5})
    assert delays(sim, "A") == expected
    assert sim.state("A") is S.COMPLETED and sim.machine.nodes[0].attempt == 6


@pytest.mark.parametrize("seed", [0, 1, 2, 42, 12345])
def test_full_jitter_draws_from_the_injected_random(seed: int) -> None:
    retry = {
        "initial_delay": 1,
        "multiplier": 2,
        "max_delay": 5,
        "jitter": "full",
        "max_attempts": 6,
    }
    sim = run([node("A", retry=retry)], {"A": [TRANSIENT] * 5}, seed=seed)
    rng = random.Random(seed)
    policy = RetryPolicy.model_validate(retry)
    expected = [round(retry_delay(policy, n, rng.random()), 6) for n in range(1, 6)]
    assert delays(sim, "A") == expected
    for n, delay in enumerate(delays(sim, "A"), start=1):
        assert 0 <= delay <= min(5, 2 ** (n - 1))


# (node retry policy, outcomes, final state, attempts made, retry timers)
RETRY_TABLE = [
    pytest.param({"max_attempts": 3}, [TRANSIENT] * 5, S.FAILED, 3, 2, id="exhausted"),
    pytest.param({"max_attempts": 1}, [TRANSIENT], S.FAILED, 1, 0, id="max-attempts-1"),
    pytest.param({"max_attempts": 5}, [PERMANENT, OK], S.FAILED, 1, 0, id="permanent-not-retried"),
    pytest.param({"max_attempts": 5}, [TRANSIENT, PERMANENT], S.FAILED, 2, 1, id="then-permanent"),
    pytest.param(
        {"retry_on": ["all"]}, [PERMANENT, OK], S.COMPLETED, 2, 1, id="all-retries-permanent"
    ),
    pytest.param({"retry_on": ["all"]}, [PERMANENT] * 3, S.FAILED, 3, 2, id="all-exhausted"),
    pytest.param(
        {"retry_on": ["all"], "max_attempts": 9}, [POLICY, OK], S.FAILED, 1, 0, id="policy-all"
    ),
    pytest.param({"max_attempts": 9}, [POLICY, OK], S.FAILED, 1, 0, id="policy-default"),
    pytest.param(
        {"retry_on": ["validation"]}, [PERMANENT, OK], S.COMPLETED, 2, 1, id="named-category"
    ),
    pytest.param(
        {"retry_on": ["validation"]}, [TRANSIENT, OK], S.FAILED, 1, 0, id="transient-not-listed"
    ),
    pytest.param(
        {"max_attempts": 4}, [TRANSIENT, TRANSIENT, TRANSIENT, OK], S.COMPLETED, 4, 3, id="last-try"
    ),
]


@pytest.mark.parametrize(("retry", "outcomes", "final", "attempts", "timers"), RETRY_TABLE)
def test_retry_policy_table(
    retry: dict[str, Any], outcomes: list[str], final: NodeState, attempts: int, timers: int
) -> None:
    spec = [node("A", retry={**EXACT, **retry}), node("B", "A")]
    sim = run(spec, {"A": outcomes})
    assert sim.state("A") is final
    assert sim.dispatched("A") == [("A", n) for n in range(1, attempts + 1)]
    assert len([t for t in sim.timers() if t.node == "A"]) == timers
    assert sim.machine.nodes[0].attempt == attempts
    if final is S.FAILED:
        assert sim.status is X.FAILED
        assert sim.state("B") is S.SKIPPED
        [failed] = [r for r in sim.records if r.type == "node.failed"]
        assert failed.attempt == attempts
        assert failed.data == {"error": failed.error}
        assert failed.error is not None and failed.error["message"].startswith(f"A#{attempts}")
        assert sim.machine.error is not None
        assert sim.machine.error["category"] == "node_failed"
        assert sim.machine.error["nodes"] == ["A"]
    else:
        assert sim.status is X.COMPLETED


def test_workflow_default_retry_applies_and_a_node_policy_overrides_it() -> None:
    spec = [node("A"), node("B", retry={"max_attempts": 1})]
    sim = run(
        spec,
        {"A": [TRANSIENT] * 3, "B": [TRANSIENT]},
        defaults={"retry": {**EXACT, "max_attempts": 4}},
    )
    assert sim.state("A") is S.COMPLETED and sim.machine.nodes[0].attempt == 4
    assert sim.state("B") is S.FAILED and sim.machine.nodes[1].attempt == 1


def test_the_builtin_default_is_three_attempts_of_transient_errors() -> None:
    sim = run([node("A")], {"A": [TRANSIENT] * 3})
    assert sim.state("A") is S.FAILED
    assert sim.dispatched("A") == [("A", 1), ("A", 2), ("A", 3)]
    assert all(0 <= d <= 0.5 * 2 ** (n - 1) for n, d in enumerate(delays(sim, "A"), start=1))


def test_a_failure_while_waiting_for_a_person_is_retried_like_any_other() -> None:
    sim = run([node("A", retry=EXACT)], {"A": [WAIT]})
    assert sim.state("A") is S.COMPLETED
    sim = sim_for([node("A", retry=EXACT)], {"A": [WAIT]})
    sim.start()
    sim.deliver("run", "A")
    error = error_for(TRANSIENT, "A", 1)
    step = sim.apply(WaitResolved("A", 1, sim.tick(), error=error))
    assert [r.type for r in step.records] == ["execution.running", "node.retry_scheduled"]
    assert step.commands == [ScheduleTimer("A", 1, pytest.approx(sim.now + 1.0), "retry")]
    sim.run()
    assert sim.dispatched("A") == [("A", 1), ("A", 2)]


# ====================================================================== compensation (saga)


def test_reference_000_fault_scenario() -> None:
    # A -> B -> C; B fails permanently; A and B have compensation handlers.
    spec = [node("A", compensate="undo_a"), node("B", "A", compensate="undo_b"), node("C", "B")]
    sim = run(spec, {"B": [PERMANENT]})

    assert sim.states() == {"A": S.COMPENSATED, "B": S.FAILED, "C": S.SKIPPED}
    assert sim.status is X.FAILED
    assert sim.compensations == ["A"]  # B's action failed: there is nothing of it to undo
    assert sim.machine.nodes[0].compensation == "done"
    assert sim.machine.nodes[1].compensation is None
    assert sim.record_types("B") == ["node.queued", "node.started", "node.failed"]
    compensating = [r for r in sim.records if r.type == "execution.compensating"]
    assert len(compensating) == 1
    assert compensating[0].data == {"nodes": ["A"]} and compensating[0].phase == "compensate"
    [compensated] = [r for r in sim.records if r.type == "node.compensated"]
    assert compensated.node == "A" and compensated.extra == {"compensation": "done"}
    assert sim.execution_record_types() == [
        "execution.started",
        "execution.compensating",
        "execution.failed",
    ]
    assert sim.records[-1].type == "execution.failed"
    assert sim.machine.error is not None and sim.machine.error["nodes"] == ["B"]
    assert sim.finished == [ExecutionFinished(X.FAILED)]


def test_a_failed_node_with_only_its_own_compensation_fails_at_once() -> None:
    sim = run([node("A"), node("B", "A", compensate="undo_b")], {"B": [PERMANENT]})
    assert sim.compensations == []
    assert sim.states() == {"A": S.COMPLETED, "B": S.FAILED}
    assert sim.execution_record_types() == ["execution.started", "execution.failed"]


def test_saga_compensates_one_at_a_time_in_reverse_topological_order() -> None:
    spec = [
        node("A", compensate="undo"),
        node("E", compensate="undo"),  # independent, completed
        node("B", "A", compensate="undo"),
        node("C", "A", compensate="undo"),
        node("N", "A"),  # no compensation handler
        node("D", "B", "C"),
        node("F", "D", compensate="undo"),  # skipped: never ran, nothing to undo
    ]
    sim = sim_for(spec, {"D": [PERMANENT]})
    sim.start()
    while sim.pending:
        sim.deliver_at(0)
        assert len([p for p in sim.pending if p.kind == "compensate"]) <= 1
        if sim.machine.phase == "compensate" and not sim.machine.finished:
            assert sim.status is X.RUNNING
            assert not [p for p in sim.pending if p.kind == "run"]
    assert sim.compensations == ["C", "B", "E", "A"]
    for parent, child in [("A", "B"), ("A", "C")]:
        assert sim.compensations.index(child) < sim.compensations.index(parent)
    assert sim.state("F") is S.SKIPPED and sim.state("N") is S.COMPLETED
    assert sim.state("D") is S.FAILED  # no handler: stays failed
    assert sim.status is X.FAILED


def test_a_failed_compensation_is_recorded_and_the_rest_carries_on() -> None:
    spec = [
        node("A", compensate="undo"),
        node("B", "A", compensate="undo"),
        node("C", "B", compensate="undo"),
        node("D", "C"),
    ]
    sim = run(spec, {"D": [PERMANENT]}, compensation_failures={"B"})
    assert sim.compensations == ["C", "B", "A"]
    assert sim.states() == {"A": S.COMPENSATED, "B": S.COMPLETED, "C": S.COMPENSATED, "D": S.FAILED}
    [failed] = [r for r in sim.records if r.type == "node.compensation_failed"]
    assert failed.node == "B" and failed.state is S.COMPLETED
    assert failed.extra == {"compensation": "failed"}
    assert failed.data == {
        "error": {"category": "compensation", "message": "undo B failed", "transient": False}
    }
    assert sim.machine.nodes[1].compensation == "failed"
    assert sim.machine.nodes[1].error == failed.data["error"]  # shown where errors are shown
    assert failed.error == failed.data["error"]
    assert sim.status is X.FAILED
    assert sim.machine.error is not None
    assert sim.machine.error["nodes"] == ["D"]
    assert sim.machine.error["compensation_failed"] == ["B"]
    assert "compensation failed: B (B: undo B failed)" in sim.machine.error["message"]


def test_on_failure_none_runs_no_compensation() -> None:
    spec = [node("A", compensate="undo"), node("B", "A", compensate="undo"), node("C", "B")]
    sim = run(spec, {"C": [PERMANENT]}, on_failure="none")
    assert sim.compensations == []
    assert sim.states() == {"A": S.COMPLETED, "B": S.COMPLETED, "C": S.FAILED}
    assert sim.execution_record_types() == ["execution.started", "execution.failed"]
    assert sim.status is X.FAILED


def test_a_failure_with_nothing_to_compensate_fails_at_once() -> None:
    sim = run(chain("A", "B"), {"B": [PERMANENT]})
    assert sim.compensations == []
    assert sim.execution_record_types() == ["execution.started", "execution.failed"]


def test_a_completed_execution_compensates_nothing() -> None:
    sim = run([node("A", compensate="undo"), node("B", "A", compensate="undo")])
    assert sim.status is X.COMPLETED and sim.compensations == []


def test_compensation_results_for_the_wrong_node_are_ignored() -> None:
    spec = [node("A", compensate="undo"), node("B", "A", compensate="undo"), node("C", "B")]
    sim = sim_for(spec, {"C": [PERMANENT]})
    sim.start()
    for _ in range(3):
        sim.deliver("run")
    assert sim.compensations == ["B"]
    assert_no_op(sim, CompensationSucceeded("A", sim.tick()))
    sim.run()
    assert sim.compensations == ["B", "A"]


# ====================================================================== cancel


def cancel_fixture() -> Simulator:
    spec = [
        node("A"),  # running, never answers
        node("B"),  # queued, no worker picked it up
        node("C", retry=EXACT),  # in retry backoff
        node("D", "A"),  # pending
        node("E"),  # waiting for an approval
        node("F"),  # completed
    ]
    sim = sim_for(spec, {"A": [HANG], "C": [TRANSIENT], "E": [WAIT]})
    sim.start()
    for n in "ACEF":
        sim.deliver("run", n)
    assert sim.states() == {
        "A": S.RUNNING,
        "B": S.QUEUED,
        "C": S.WAITING,
        "D": S.PENDING,
        "E": S.WAITING,
        "F": S.COMPLETED,
    }
    return sim


def test_cancel_ends_every_live_node_at_once() -> None:
    sim = cancel_fixture()
    step = sim.apply(CancelRequested(sim.tick(), reason="operator said so"))

    assert sim.status is X.CANCELLED
    assert sim.states() == {n: S.CANCELLED for n in "ABCDE"} | {"F": S.COMPLETED}
    cancels = [c for c in step.commands if isinstance(c, CancelNode)]
    assert cancels == [
        CancelNode("A", 1),
        CancelNode("B", 1),
        CancelNode("E", 1),
    ]  # dispatched only
    assert step.commands[-1] == ExecutionFinished(X.CANCELLED)
    assert [(r.type, r.node) for r in step.records] == [
        *(("node.cancelled", n) for n in "ABCED"),  # topological order
        ("execution.cancelled", None),
    ]
    assert all(r.data == {"reason": "operator said so"} for r in step.records)
    assert sim.machine.error == {"category": "cancelled", "message": "operator said so"}


def test_results_after_a_cancel_are_ignored() -> None:
    sim = cancel_fixture()
    sim.apply(CancelRequested(sim.tick()))
    records = len(sim.records)
    sim.run()  # B's worker finishes, C's retry timer fires, E's approval comes in
    assert sim.delivered == 7 and len(sim.records) == records
    for event in (
        NodeSucceeded("A", 1, sim.tick()),
        NodeFailed("A", 1, sim.tick(), error_for(PERMANENT)),
        NodeStarted("D", 1, sim.tick()),
        CancelRequested(sim.tick()),
        PauseRequested(sim.tick()),
        ResumeRequested(sim.tick()),
        ExecutionTimedOut(sim.tick()),
        Started(sim.tick()),
    ):
        assert_no_op(sim, event)
    assert sim.finished == [ExecutionFinished(X.CANCELLED)]


def test_cancel_before_the_start_cancels_every_node() -> None:
    sim = sim_for(chain("A", "B"))
    step = sim.apply(CancelRequested(sim.tick()))
    assert sim.states() == {"A": S.CANCELLED, "B": S.CANCELLED}
    assert not [c for c in step.commands if isinstance(c, CancelNode)]
    assert sim.status is X.CANCELLED
    assert_no_op(sim, Started(sim.tick()))


def test_cancel_after_the_end_is_a_no_op() -> None:
    sim = run(chain("A", "B"))
    assert_no_op(sim, CancelRequested(sim.tick()))
    assert sim.status is X.COMPLETED


def test_cancel_during_compensation_is_recorded_and_the_saga_runs_to_its_end() -> None:
    # The execution has failed and is undoing what completed: a cancel does not leave the
    # saga half done. It is journalled and kept in the execution's error, and the
    # execution ends failed once every compensation ran.
    spec = [node("A", compensate="undo"), node("B", "A", compensate="undo"), node("C", "B")]
    sim = sim_for(spec, {"C": [PERMANENT]})
    sim.start()
    for _ in range(3):
        sim.deliver("run")
    assert sim.machine.phase == "compensate" and sim.compensations == ["B"]
    at = sim.tick()
    step = sim.apply(CancelRequested(at, "stop it"))
    assert [r.type for r in step.records] == ["execution.cancel_requested"]
    assert step.records[0].data is not None and step.records[0].data["reason"] == "stop it"
    assert step.commands == []  # nothing in flight is cancelled: B's compensation runs on
    assert sim.status is X.RUNNING
    again = sim.apply(CancelRequested(sim.tick(), "twice"))  # journalled too, the first kept
    assert [r.type for r in again.records] == ["execution.cancel_requested"]
    sim.run()
    assert sim.compensations == ["B", "A"]
    assert sim.states() == {"A": S.COMPENSATED, "B": S.COMPENSATED, "C": S.FAILED}
    assert sim.finished == [ExecutionFinished(X.FAILED)]
    error = sim.machine.error
    assert error is not None and error["category"] == "node_failed"
    assert error["cancel_requested"] == {"at": at, "reason": "stop it"}
    assert "cancel requested while compensating (stop it)" in error["message"]


def test_a_forced_cancel_during_compensation_abandons_it() -> None:
    spec = [node("A", compensate="undo"), node("B", "A", compensate="undo"), node("C", "B")]
    sim = sim_for(spec, {"C": [PERMANENT]})
    sim.start()
    for _ in range(3):
        sim.deliver("run")
    assert sim.machine.phase == "compensate" and sim.compensations == ["B"]
    sim.apply(CancelRequested(sim.tick(), "stop it"))  # recorded, runs on
    step = sim.apply(CancelRequested(sim.tick(), "stop now", force=True))
    assert [r.type for r in step.records][-1] == "execution.cancelled"
    # B's compensation under way is stopped too (A's never started).
    assert CancelNode("B", 1, compensation=True) in step.commands
    assert sim.status is X.CANCELLED
    sim.run()  # B's compensation still reports back: stale; A's never starts
    assert sim.compensations == ["B"]
    assert sim.finished == [ExecutionFinished(X.CANCELLED)]
    error = sim.machine.error
    assert error is not None and error["message"] == f"stop now; {ABANDONED}"


# ====================================================================== pause / resume


def test_pause_holds_newly_ready_nodes_until_resume() -> None:
    spec = [node("A"), node("B", "A"), node("C", "A"), node("I")]
    sim = sim_for(spec)
    sim.start()
    step = sim.apply(PauseRequested(sim.tick()))
    assert [r.type for r in step.records] == ["execution.paused"] and step.commands == []
    assert sim.status is X.PAUSED
    sim.run()  # A and I (already dispatched) finish while paused
    assert sim.states() == {"A": S.COMPLETED, "B": S.PENDING, "C": S.PENDING, "I": S.COMPLETED}
    assert sim.dispatched() == [("A", 1), ("I", 1)]
    assert_no_op(sim, PauseRequested(sim.tick()))

    step = sim.apply(ResumeRequested(sim.tick()))
    assert [r.type for r in step.records] == ["execution.resumed", "node.queued", "node.queued"]
    assert step.commands == [Dispatch("B", 1), Dispatch("C", 1)]
    sim.run()
    assert sim.status is X.COMPLETED
    assert_no_op(sim, ResumeRequested(sim.tick()))


def test_a_retry_that_comes_due_while_paused_waits_for_resume() -> None:
    sim = sim_for([node("A", retry=EXACT)], {"A": [TRANSIENT]})
    sim.start()
    sim.deliver("run", "A")
    sim.apply(PauseRequested(sim.tick()))
    step = sim.deliver("timer", "A")[0]
    assert step.records == [] and step.commands == []
    assert sim.state("A") is S.WAITING
    step = sim.apply(ResumeRequested(sim.tick()))
    assert step.commands == [Dispatch("A", 2)]
    sim.run()
    assert sim.status is X.COMPLETED


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_retry_held_by_pause_is_released_at_the_concurrency_limit(concurrency: int) -> None:
    # The node in backoff holds its slot; on resume it must go even though the limit is
    # reached (it used to wait for a free slot that only it could free: a deadlock).
    spec = [node(f"A{k}", retry=EXACT) for k in range(concurrency)]
    sim = sim_for(spec, {f"A{k}": [TRANSIENT] for k in range(concurrency)}, concurrency=concurrency)
    sim.start()
    for k in range(concurrency):
        sim.deliver("run", f"A{k}")
    sim.apply(PauseRequested(sim.tick()))
    for k in range(concurrency):
        sim.deliver("timer", f"A{k}")
    step = sim.apply(ResumeRequested(sim.tick()))
    assert step.commands == [Dispatch(f"A{k}", 2) for k in range(concurrency)]
    sim.run()
    assert sim.status is X.COMPLETED


def test_pause_before_the_start_is_ignored_and_a_run_that_ends_while_paused_completes() -> None:
    sim = sim_for([node("A")])
    assert_no_op(sim, PauseRequested(sim.tick()))
    sim.start()
    sim.apply(PauseRequested(sim.tick()))
    sim.run()
    assert sim.status is X.COMPLETED


# ====================================================================== execution timeout


def test_execution_timeout_fails_what_is_in_flight_and_compensates_what_completed() -> None:
    spec = [
        node("A", compensate="undo"),  # completed
        node("B", "A", compensate="undo"),  # running when the timeout comes
        node("C", "B"),  # pending
        node("D", retry=EXACT),  # in retry backoff
    ]
    sim = sim_for(spec, {"B": [HANG], "D": [TRANSIENT]})
    sim.start()
    sim.deliver("run", "A")
    sim.deliver("run", "B")
    sim.deliver("run", "D")
    step = sim.apply(ExecutionTimedOut(sim.tick()))

    assert sim.states() == {"A": S.COMPLETED, "B": S.FAILED, "C": S.SKIPPED, "D": S.FAILED}
    assert [c for c in step.commands if isinstance(c, CancelNode)] == [CancelNode("B", 1)]
    # B's attempt is abandoned, not undone: its action never completed as far as the run knows
    assert step.commands[-1] == RunCompensation("A", 1)
    timeout = {
        "category": "timeout",
        "message": "execution exceeded its timeout",
        "transient": False,
    }
    assert sim.machine.nodes[1].error == timeout
    assert_no_op(sim, NodeSucceeded("B", 1, sim.tick(), "late"))  # its late end changes nothing
    sim.run()
    assert sim.compensations == ["A"]
    assert sim.states() == {"A": S.COMPENSATED, "B": S.FAILED, "C": S.SKIPPED, "D": S.FAILED}
    assert sim.status is X.FAILED
    assert sim.machine.error == timeout
    assert sim.records[-1].data == {"error": timeout}


def test_a_timeout_while_paused_fails_the_execution_even_if_no_node_was_running() -> None:
    sim = sim_for(chain("A", "B"))
    sim.start()
    sim.apply(PauseRequested(sim.tick()))
    sim.run()  # A completes; B is ready but held
    sim.apply(ExecutionTimedOut(sim.tick()))
    assert sim.states() == {"A": S.COMPLETED, "B": S.SKIPPED}
    assert sim.status is X.FAILED
    assert sim.machine.error is not None and sim.machine.error["category"] == "timeout"


def test_a_timeout_while_waiting_compensates_as_running() -> None:
    sim = sim_for([node("A", compensate="undo"), node("B", "A")], {"B": [WAIT]})
    sim.start()
    sim.deliver("run", "A")
    sim.deliver("run", "B")
    assert sim.status is X.WAITING
    step = sim.apply(ExecutionTimedOut(sim.tick()))
    assert [(r.type, r.status) for r in step.records if r.node is None] == [
        ("execution.compensating", X.RUNNING)
    ]
    assert CancelNode("B", 1) in step.commands
    assert sim.status is X.RUNNING
    sim.run()
    assert sim.status is X.FAILED and sim.compensations == ["A"]


@pytest.mark.parametrize("when", ["before-start", "after-end", "during-compensation"])
def test_a_timeout_is_ignored(when: str) -> None:
    spec = [node("A", compensate="undo"), node("B", "A")]
    sim = sim_for(spec, {"B": [PERMANENT]})
    if when == "after-end":
        sim.run()
    elif when == "during-compensation":
        sim.start()
        sim.deliver("run", "A")
        sim.deliver("run", "B")
        assert sim.machine.phase == "compensate"
    assert_no_op(sim, ExecutionTimedOut(sim.tick()))


# ====================================================================== concurrency limit


@pytest.mark.parametrize("limit", [1, 2, 3])
@pytest.mark.parametrize(
    ("shape", "script"),
    [
        ("wide", {}),
        ("wide", {"N1": [TRANSIENT], "N3": [PERMANENT]}),
        ("fan", {}),
        ("fan", {"N2": [TRANSIENT, TRANSIENT]}),
    ],
)
def test_concurrency_limit_is_never_exceeded(
    limit: int, shape: str, script: dict[str, list[str]]
) -> None:
    ids = [f"N{k}" for k in range(6)]
    if shape == "wide":
        spec = [node(n, retry=EXACT) for n in ids]
    else:
        spec = [
            node("R"),
            *(node(n, "R", retry=EXACT) for n in ids),
            node("S", *ids, trigger_rule="all_done"),
        ]
    sim = sim_for(spec, script, concurrency=limit)
    sim.after_step = lambda s, _step: _assert_within(s, limit)
    sim.run()
    assert sim.max_active == limit
    assert sim.machine.finished
    assert all(s in FINAL_NODE_STATES for s in sim.states().values())


def _assert_within(sim: Simulator, limit: int) -> None:
    in_flight = [r for r in sim.machine.nodes if r.state in (S.QUEUED, S.RUNNING, S.WAITING)]
    assert len(in_flight) <= limit


def test_held_nodes_start_by_priority_then_definition_order() -> None:
    spec = [
        node("low", priority="low"),
        node("a", priority=0),
        node("high", priority="high"),
        node("critical", priority="critical"),
        node("b", priority=0),
        node("normal", priority="normal"),
    ]
    sim = run(spec, concurrency=1)
    assert sim.dispatch_order() == ["critical", "high", "normal", "low", "a", "b"]


def test_children_ready_together_start_by_priority() -> None:
    spec = [
        node("A"),
        node("B", "A", priority=1),
        node("C", "A", priority=10),
        node("D", "A", priority=5),
    ]
    sim = run(spec, concurrency=1)
    assert sim.dispatch_order() == ["A", "C", "D", "B"]
    sim = run(spec, concurrency=2)
    assert sim.dispatch_order() == ["A", "C", "D", "B"]


def test_without_a_limit_every_ready_node_starts_at_once() -> None:
    sim = sim_for([node(f"N{k}") for k in range(20)])
    step = sim.start()
    assert len(step.commands) == 20


# ====================================================================== retry of an execution


def test_retrying_a_failed_execution_resumes_from_its_failed_nodes() -> None:
    spec = [node("A"), node("B", "A"), node("C", "B"), node("I")]
    sim = run(spec, {"B": [PERMANENT, OK]}, on_failure="none")
    assert sim.status is X.FAILED and sim.state("C") is S.SKIPPED

    step = sim.apply(RetryRequested(sim.tick()))
    assert [(r.type, r.node) for r in step.records] == [
        ("execution.retried", None),
        ("node.reset", "B"),
        ("node.reset", "C"),
        ("node.queued", "B"),
    ]
    assert step.commands == [Dispatch("B", 2)]  # the attempt number carries on
    assert sim.machine.error is None
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("A") == [("A", 1)] and sim.dispatched("I") == [("I", 1)]
    assert sim.dispatched("B") == [("B", 1), ("B", 2)] and sim.dispatched("C") == [("C", 1)]
    assert sim.finished == [ExecutionFinished(X.FAILED), ExecutionFinished(X.COMPLETED)]


def test_retrying_a_compensated_execution_runs_the_undone_nodes_again() -> None:
    spec = [node("A", compensate="undo_a"), node("B", "A"), node("C", "B")]
    sim = run(spec, {"B": [PERMANENT, OK]})
    assert sim.state("A") is S.COMPENSATED
    sim.apply(RetryRequested(sim.tick()))
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("A") == [("A", 1), ("A", 2)]  # undone, so done again
    assert sim.dispatched("B") == [("B", 1), ("B", 2)]
    assert sim.machine.nodes[0].compensation is None


def test_retrying_a_cancelled_execution() -> None:
    sim = cancel_fixture()
    sim.apply(CancelRequested(sim.tick()))
    sim.run()
    sim.script = {}
    sim.apply(RetryRequested(sim.tick()))
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("F") == [("F", 1)]
    assert sim.machine.nodes[sim.plan.index["A"]].attempt == 2
    assert sim.machine.nodes[sim.plan.index["D"]].attempt == 1


def test_one_success_after_a_retry_runs_at_once_from_a_completed_parent() -> None:
    spec = [node("P1"), node("P2"), node("X", "P1", "P2", trigger_rule="one_success")]
    sim = run(spec, {"P1": [PERMANENT], "P2": [PERMANENT, HANG]}, on_failure="none")
    assert sim.state("X") is S.SKIPPED
    sim.script = {"P1": [OK], "P2": [HANG]}
    sim.dispatch_count.clear()
    sim.apply(RetryRequested(sim.tick()))
    sim.deliver("run", "P1")
    assert sim.dispatched("X") == [("X", 1)]


@pytest.mark.parametrize("when", ["pending", "running", "completed"])
def test_retry_is_only_for_failed_or_cancelled_executions(when: str) -> None:
    sim = sim_for(chain("A", "B"))
    if when == "running":
        sim.start()
    elif when == "completed":
        sim.run()
    assert_no_op(sim, RetryRequested(sim.tick()))


# ====================================================================== stale and duplicate events


def _retrying() -> Simulator:
    """A's first attempt failed; attempt 2 is running."""
    sim = sim_for([node("A", retry=EXACT), node("B", "A")], {"A": [TRANSIENT, HANG]})
    sim.start()
    sim.deliver("run", "A")
    sim.deliver("timer", "A")
    sim.deliver("run", "A")
    assert sim.state("A") is S.RUNNING and sim.machine.nodes[0].attempt == 2
    return sim


def _backoff() -> Simulator:
    """A's first attempt failed; A waits for its retry timer."""
    sim = sim_for([node("A", retry=EXACT), node("B", "A")], {"A": [TRANSIENT]})
    sim.start()
    sim.deliver("run", "A")
    assert sim.state("A") is S.WAITING
    return sim


def _completed() -> Simulator:
    sim = sim_for([node("A"), node("B", "A")], {"B": [HANG]})
    sim.start()
    sim.deliver("run", "A")
    sim.deliver("run", "B")  # B started, never answers
    return sim


def _waiting() -> Simulator:
    sim = sim_for([node("A")], {"A": [WAIT]})
    sim.start()
    sim.deliver("run", "A")
    return sim


ERR = ErrorInfo("network", "reset", transient=True)

STALE = [
    pytest.param(_completed, lambda t: NodeSucceeded("A", 1, t), id="duplicate-success"),
    pytest.param(_completed, lambda t: NodeFailed("A", 1, t, ERR), id="failure-after-success"),
    pytest.param(_completed, lambda t: NodeStarted("A", 1, t), id="started-after-success"),
    pytest.param(_completed, lambda t: NodeSkipped("A", 1, t), id="skip-after-success"),
    pytest.param(_completed, lambda t: NodeWaiting("A", 1, t, "approval"), id="wait-after-success"),
    pytest.param(_completed, lambda t: TimerFired("A", 1, t), id="timer-after-success"),
    pytest.param(_completed, lambda t: Started(t), id="second-start"),
    pytest.param(_completed, lambda t: NodeStarted("B", 1, t), id="duplicate-started"),
    pytest.param(_completed, lambda t: NodeSucceeded("B", 2, t), id="future-attempt"),
    pytest.param(_completed, lambda t: WaitResolved("B", 1, t), id="resolve-not-waiting"),
    pytest.param(
        _completed, lambda t: CompensationSucceeded("A", t), id="compensation-not-compensating"
    ),
    pytest.param(_retrying, lambda t: NodeFailed("A", 1, t, ERR), id="old-attempt-failure"),
    pytest.param(_retrying, lambda t: NodeSucceeded("A", 1, t), id="old-attempt-success"),
    pytest.param(_retrying, lambda t: NodeStarted("A", 1, t), id="old-attempt-started"),
    pytest.param(_retrying, lambda t: TimerFired("A", 1, t), id="old-timer"),
    pytest.param(_backoff, lambda t: NodeFailed("A", 1, t, ERR), id="duplicate-failure-in-backoff"),
    pytest.param(_backoff, lambda t: NodeSucceeded("A", 1, t), id="success-of-failed-attempt"),
    pytest.param(_backoff, lambda t: NodeSkipped("A", 1, t), id="skip-of-failed-attempt"),
    pytest.param(_backoff, lambda t: NodeWaiting("A", 1, t, "approval"), id="wait-in-backoff"),
    pytest.param(_backoff, lambda t: WaitResolved("A", 1, t), id="resolve-in-backoff"),
    pytest.param(_backoff, lambda t: TimerFired("A", 1, t, "wake"), id="wrong-timer-kind"),
    pytest.param(_waiting, lambda t: TimerFired("A", 1, t, "retry"), id="retry-timer-for-a-wait"),
    pytest.param(_waiting, lambda t: NodeStarted("A", 1, t), id="started-while-waiting"),
    pytest.param(_waiting, lambda t: WaitResolved("A", 2, t), id="resolve-wrong-attempt"),
]


@pytest.mark.parametrize(("setup", "stale"), STALE)
def test_stale_and_duplicate_events_are_no_ops(setup: Any, stale: Any) -> None:
    sim = setup()
    assert_no_op(sim, stale(sim.tick()))


def test_a_duplicate_failure_in_backoff_schedules_no_second_timer() -> None:
    sim = _backoff()
    sim.apply(NodeFailed("A", 1, sim.tick(), ERR))
    sim.run()
    assert len(sim.timers()) == 1
    assert sim.dispatched("A") == [("A", 1), ("A", 2)]


# ====================================================================== restore + recover


def test_recover_redispatches_in_flight_attempts_with_the_same_attempt_number() -> None:
    spec = [node("A"), node("B", "A"), node("C", retry=EXACT), node("D"), node("E", "B")]
    sim = sim_for(spec, {"B": [HANG], "C": [TRANSIENT, TRANSIENT]})
    sim.start()
    sim.deliver("run", "A")  # completed
    sim.deliver("run", "B")  # running
    sim.deliver("run", "C")  # failed once: in backoff
    sim.deliver("timer", "C")  # attempt 2 queued
    sim.deliver("run", "C")  # failed twice: in backoff again
    wake_at = sim.machine.nodes[2].wake_at
    # D is queued: dispatched, never picked up
    assert sim.states() == {
        "A": S.COMPLETED,
        "B": S.RUNNING,
        "C": S.WAITING,
        "D": S.QUEUED,
        "E": S.PENDING,
    }

    step = sim.crash()
    assert [r.type for r in step.records] == ["execution.recovered"]
    assert step.commands == [  # in topological order: A, C, D, B, E
        ScheduleTimer("C", 2, wake_at, "retry"),
        Dispatch("D", 1),
        Dispatch("B", 1),
    ]
    sim.script["B"] = [HANG, OK]
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("A") == [("A", 1)]  # completed nodes never run again
    assert sim.dispatched("B") == [("B", 1), ("B", 1)]
    assert sim.dispatched("C") == [("C", 1), ("C", 2), ("C", 3)]


def test_recover_decides_pending_nodes_whose_dependencies_are_settled() -> None:
    plan = Plan.build(
        make_spec([node("A"), node("B", "A"), node("C", "A", trigger_rule="one_failed")])
    )
    machine = ExecutionMachine(plan, "e")
    machine.restore(X.RUNNING, "run", {"A": NodeRun(state=S.COMPLETED, attempt=1)})
    step = machine.recover(5.0)
    assert step.commands == [Dispatch("B", 1)]
    assert machine.node_state("C") is S.SKIPPED


def test_recover_keeps_waits_and_reschedules_their_timers() -> None:
    sim = sim_for([node("A"), node("B")], {"A": [WAIT], "B": [WAIT]})
    sim.wake_after = None
    sim.start()
    sim.deliver("run", "A")  # waits for a person: nothing to re-issue
    sim.wake_after = 60.0
    sim.deliver("run", "B")  # waits until a time
    wake_at = sim.machine.nodes[1].wake_at
    assert sim.status is X.WAITING
    step = sim.crash()
    assert step.commands == [ScheduleTimer("B", 1, wake_at, "wake")]
    assert sim.status is X.WAITING
    sim.run()
    assert sim.status is X.COMPLETED


def test_recover_while_paused_redispatches_what_was_in_flight_and_keeps_holding_the_rest() -> None:
    sim = sim_for([node("A"), node("B", "A"), node("C")], {"C": [HANG]})
    sim.start()
    sim.deliver("run", "C")  # C running
    sim.apply(PauseRequested(sim.tick()))
    sim.deliver("run", "A")  # A completes; B is ready but held
    step = sim.crash()
    assert step.commands == [Dispatch("C", 1)]  # same attempt, same idempotency key
    assert sim.status is X.PAUSED
    sim.script["C"] = [HANG, OK]
    sim.run()
    assert sim.state("B") is S.PENDING and sim.state("C") is S.COMPLETED
    step = sim.apply(ResumeRequested(sim.tick()))
    assert step.commands == [Dispatch("B", 1)]
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("A") == [("A", 1)] and sim.dispatched("C") == [("C", 1), ("C", 1)]


@pytest.mark.parametrize("compensated_before_crash", [0, 1, 2])
def test_recover_resumes_an_interrupted_compensation(compensated_before_crash: int) -> None:
    spec = [
        node("A", compensate="undo"),
        node("B", "A", compensate="undo"),
        node("C", "B", compensate="undo"),
        node("D", "C"),
    ]
    sim = sim_for(spec, {"D": [PERMANENT]}, compensation_failures={"B"})
    sim.start()
    for _ in range(4):
        sim.deliver("run")
    for _ in range(compensated_before_crash):
        sim.deliver("compensate")
    out = sim.compensations[-1]
    step = sim.crash()
    assert [r.type for r in step.records] == ["execution.recovered"]
    # The one in flight, again, in the same round: a dispatch guard holds it back if sent.
    assert step.commands == [RunCompensation(out, 1)]
    sim.run()
    assert (
        sim.compensations
        == ["C", "B", "A"][: compensated_before_crash + 1]
        + ["C", "B", "A"][compensated_before_crash:]
    )
    assert sim.states() == {"A": S.COMPENSATED, "B": S.COMPLETED, "C": S.COMPENSATED, "D": S.FAILED}
    assert sim.status is X.FAILED


def test_results_from_before_a_crash_and_from_the_redispatch_count_once() -> None:
    sim = sim_for(FAN_SPEC)
    sim.start()
    sim.deliver("run", "R")
    sim.crash(keep_pending=True)  # the first workers are still alive somewhere
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("S") == [("S", 1)]
    assert len(sim.ever("node.completed")) == 6
    assert len([r for r in sim.records if r.type == "node.completed"]) == 6


@pytest.mark.parametrize("status", [X.PENDING, X.COMPLETED, X.FAILED, X.CANCELLED])
def test_recover_does_nothing_for_unstarted_or_finished_executions(status: ExecutionStatus) -> None:
    machine = ExecutionMachine(Plan.build(make_spec([node("A")])), "e")
    machine.restore(status, "run", {"A": NodeRun(state=S.QUEUED, attempt=1)})
    step = machine.recover(1.0)
    assert step.records == [] and step.commands == []


def test_restore_rebuilds_the_fan_in_counters() -> None:
    sim = sim_for(FAN_SPEC)
    sim.start()
    sim.deliver("run", "R")
    for m in FAN[:3]:
        sim.deliver("run", m)
    step = sim.crash()
    assert step.commands == [Dispatch("M4", 1)]
    sim.run()
    assert sim.dispatched("S") == [("S", 1)]


# ====================================================================== waiting


def test_a_wait_for_a_person_makes_the_execution_wait() -> None:
    sim = sim_for(chain("A", "B"), {"A": [WAIT]})
    sim.start()
    steps = sim.deliver("run", "A")
    assert [r.type for r in steps[-1].records] == ["node.waiting", "execution.waiting"]
    record = steps[-1].records[0]
    assert record.state is S.WAITING and record.wait_reason == "approval"
    assert record.data == {"reason": "approval"}
    assert steps[-1].commands == []
    assert sim.status is X.WAITING

    [step] = sim.deliver("resolve", "A")
    assert [r.type for r in step.records] == ["execution.running", "node.completed", "node.queued"]
    assert step.records[1].output == {"approved": "A"}
    assert step.commands == [Dispatch("B", 1)]
    sim.run()
    assert sim.status is X.COMPLETED


def test_a_rejected_wait_fails_the_node() -> None:
    sim = run(chain("A", "B"), {"A": [WAIT_FAIL]})
    assert sim.states() == {"A": S.FAILED, "B": S.SKIPPED}
    assert sim.status is X.FAILED


def test_a_wait_with_a_wake_time_schedules_a_timer_and_runs_the_same_attempt_again() -> None:
    sim = sim_for([node("A")], {"A": [WAIT, OK]}, wake_after=30.0)
    sim.start()
    [_, step] = sim.deliver("run", "A")
    wake_at = sim.machine.nodes[0].wake_at
    assert wake_at is not None
    assert step.commands == [ScheduleTimer("A", 1, wake_at, "wake")]
    [step] = sim.deliver("timer", "A")
    assert [r.type for r in step.records] == ["execution.running", "node.woken"]
    assert step.records[1].state is S.QUEUED and step.records[1].data == {"reason": "approval"}
    assert step.commands == [Dispatch("A", 1, woken=True)]
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("A") == [("A", 1), ("A", 1)]


def test_the_execution_waits_only_when_every_live_node_waits() -> None:
    sim = sim_for([node("A"), node("B"), node("C", "B")], {"A": [WAIT], "B": [HANG]})
    sim.start()
    sim.deliver("run", "A")
    sim.deliver("run", "B")
    assert sim.status is X.RUNNING  # B is still running
    step = sim.apply(NodeSucceeded("B", 1, sim.tick()))
    assert sim.status is X.RUNNING  # C was dispatched
    step = sim.apply(NodeSucceeded("C", 1, sim.tick()))
    assert [r.type for r in step.records] == ["node.completed", "execution.waiting"]
    assert sim.status is X.WAITING


def test_a_direct_result_for_a_waiting_node_leaves_the_waiting_status() -> None:
    sim = sim_for(chain("A", "B"), {"A": [WAIT]})
    sim.start()
    sim.deliver("run", "A")
    assert sim.status is X.WAITING
    step = sim.apply(NodeSucceeded("A", 1, sim.tick()))
    assert [r.type for r in step.records] == ["execution.running", "node.completed", "node.queued"]
    assert sim.status is X.RUNNING


def test_a_retry_backoff_is_not_a_wait() -> None:
    sim = sim_for([node("A", retry=EXACT)], {"A": [TRANSIENT]})
    sim.start()
    sim.deliver("run", "A")
    assert sim.state("A") is S.WAITING
    assert sim.status is X.RUNNING


def test_pause_and_resume_while_waiting() -> None:
    sim = sim_for([node("A")], {"A": [WAIT]})
    sim.start()
    sim.deliver("run", "A")
    sim.apply(PauseRequested(sim.tick()))
    assert sim.status is X.PAUSED
    step = sim.apply(ResumeRequested(sim.tick()))
    assert [r.type for r in step.records] == ["execution.resumed", "execution.waiting"]
    assert sim.status is X.WAITING
    sim.run()
    assert sim.status is X.COMPLETED


def test_cancel_while_waiting_cancels_the_wait() -> None:
    sim = sim_for([node("A")], {"A": [WAIT]})
    sim.start()
    sim.deliver("run", "A")
    step = sim.apply(CancelRequested(sim.tick()))
    assert CancelNode("A", 1) in step.commands
    assert sim.status is X.CANCELLED


# ====================================================================== records

RECORD_STATE = {
    "node.queued": S.QUEUED,
    "node.started": S.RUNNING,
    "node.completed": S.COMPLETED,
    "node.failed": S.FAILED,
    "node.skipped": S.SKIPPED,
    "node.cancelled": S.CANCELLED,
    "node.retry_scheduled": S.WAITING,
    "node.waiting": S.WAITING,
    "node.woken": S.QUEUED,
    "node.compensated": S.COMPENSATED,
    "node.reset": S.PENDING,
}


def _mixed_run() -> Simulator:
    spec = [
        node("A", compensate="undo"),
        node("B", "A", retry=EXACT),
        node("C", "A", when="x"),
        node("D", "B", "C", trigger_rule="all_done", compensate="undo"),
        node("E", "D"),
        node("F", "A"),
        node("G", "F"),
    ]
    script = {"B": [TRANSIENT, OK], "C": [SKIP], "F": [WAIT, OK], "E": [PERMANENT]}
    return run(spec, script, wake_after=5.0, compensation_failures={"A"})


def test_every_record_has_the_state_its_type_says() -> None:
    sim = _mixed_run()
    for record in sim.node_records():
        if record.type == "node.compensation_failed":
            assert record.state in (S.COMPLETED, S.FAILED)
        else:
            assert record.state is RECORD_STATE[record.type], record
    seen = {r.type for r in sim.node_records()}
    assert seen >= set(RECORD_STATE) - {"node.cancelled", "node.reset"}


def test_every_transition_has_exactly_one_record() -> None:
    sim = _mixed_run()
    # Replaying the node records one by one walks each node through its states with no
    # repeated state except a re-dispatch of the same attempt (woken, recovered).
    for node_id in sim.plan.ids:
        states = [(r.state, r.attempt, r.type) for r in sim.node_records(node_id)]
        for (s1, a1, t1), (s2, a2, t2) in itertools.pairwise(states):
            assert (s1, a1) != (s2, a2) or t2 == "node.compensation_failed", (node_id, t1, t2)
    assert sim.record_types("C") == ["node.queued", "node.started", "node.skipped"]
    assert sim.record_types("G") == ["node.queued", "node.started", "node.completed"]
    replayed = replay(sim.records)
    assert {n: r.state for n, r in replayed.nodes.items()} == sim.states()
    assert replayed.status is sim.status


@pytest.mark.parametrize("outcome", [OK, PERMANENT, "cancel"])
def test_the_execution_record_is_the_last_record(outcome: str) -> None:
    sim = sim_for(
        chain("A", "B", compensate="undo"), {"B": [PERMANENT if outcome == PERMANENT else OK]}
    )
    if outcome == "cancel":
        sim.start()
        sim.apply(CancelRequested(sim.tick()))
    sim.run()
    expected = {
        OK: "execution.completed",
        PERMANENT: "execution.failed",
        "cancel": "execution.cancelled",
    }
    assert sim.records[-1].type == expected[outcome]
    assert [r.type for r in sim.records].count(expected[outcome]) == 1
    assert len(sim.finished) == 1


def test_a_retry_clears_the_error_a_failed_compensation_left_on_its_node() -> None:
    spec = [node("A", compensate="undo"), node("B", "A")]
    sim = run(spec, {"B": [PERMANENT, OK]}, compensation_failures={"A"})
    assert sim.state("A") is S.COMPLETED and sim.machine.nodes[0].error is not None
    sim.apply(RetryRequested(sim.tick()))
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.machine.nodes[0].error is None and sim.machine.nodes[0].compensation is None


def test_recover_ends_a_saga_left_waiting_on_the_compensation_of_a_failed_node() -> None:
    # An execution stuck compensating a node the timeout failed (as an older version left it):
    # recovery compensates completed nodes only, so it fails now instead of waiting for ever.
    plan = Plan.build(make_spec([node("a", compensate="undo"), node("s", "a", compensate="undo")]))
    machine = ExecutionMachine(plan, "e")
    timeout = {"category": "timeout", "message": "execution exceeded its timeout"}
    machine.restore(
        X.RUNNING,
        "compensate",
        {
            "a": NodeRun(state=S.COMPENSATED, attempt=1, compensation="done"),
            "s": NodeRun(state=S.FAILED, attempt=1, error=timeout),
        },
        error=timeout,
    )
    step = machine.recover(5.0)
    assert not [c for c in step.commands if isinstance(c, RunCompensation)]
    assert step.commands[-1] == ExecutionFinished(X.FAILED)
    assert machine.status is X.FAILED and machine.error == timeout
