"""Retry keeps the decisions a run made (orchestrion.core.machine).

A child a condition did not choose (``branch_not_taken``) and a node whose ``when:`` was false
(``condition_false``) are decisions, not failures: a retry runs again what failed, was
cancelled or was skipped because of a failure, and leaves decisions alone unless the node that
made them runs again.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.events import NodeSucceeded, RetryRequested
from orchestrion.core.machine import ExecutionMachine
from orchestrion.core.states import ExecutionStatus, NodeState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for machine_driver
from machine_driver import HANG, OK, PERMANENT, SKIP, Simulator, make_spec, node, replay

S = NodeState
X = ExecutionStatus


def condition(node_id: str, *deps: str, children: list[str]) -> dict[str, Any]:
    config = {"cases": [{"when": "true", "then": children[:1]}], "default": children[1:]}
    return {"id": node_id, "handler": "condition", "dependencies": list(deps), "config": config}


def decide(sim: Simulator, node_id: str, branches: list[str]) -> None:
    """The condition ``node_id`` (scripted HANG) answers, choosing ``branches``."""
    attempt = sim.machine.nodes[sim.plan.index[node_id]].attempt
    sim.apply(NodeSucceeded(node_id, attempt, sim.tick(), {"branches": branches}))
    sim.run()


ROUTED = [
    condition("route", children=["left", "right"]),
    node("left", "route"),
    node("flaky", "left"),
    node("right", "route"),
    node("right_tail", "right"),
]


def routed(script: dict[str, list[str]]) -> Simulator:
    sim = Simulator(make_spec(ROUTED, on_failure="none"), {"route": [HANG, HANG], **script})
    sim.run()
    decide(sim, "route", ["left"])
    return sim


def test_retry_after_a_failure_keeps_the_branch_not_taken() -> None:
    sim = routed({"flaky": [PERMANENT, OK]})
    assert sim.status is X.FAILED
    assert sim.machine.nodes[sim.plan.index["right"]].wait_reason == "branch_not_taken"
    sim.apply(RetryRequested(sim.tick()))
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.state("right") is S.SKIPPED and sim.state("right_tail") is S.SKIPPED
    assert sim.dispatched("right") == [] and sim.dispatched("right_tail") == []
    assert sim.dispatched("route") == [("route", 1)]


def test_retry_after_a_crash_keeps_the_branch_not_taken() -> None:
    sim = routed({"flaky": [PERMANENT, OK]})
    sim.crash()  # the machine is rebuilt from what the store holds
    sim.apply(RetryRequested(sim.tick()))
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("right") == []


def test_rerun_from_a_node_below_the_condition_keeps_the_branch_not_taken() -> None:
    sim = routed({"flaky": [OK, OK]})
    assert sim.status is X.COMPLETED
    sim.apply(RetryRequested(sim.tick(), "left"))
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("left") == [("left", 1), ("left", 2)]
    assert sim.dispatched("right") == [] and sim.state("right") is S.SKIPPED


def test_rerun_from_a_branch_not_taken_keeps_it_skipped() -> None:
    sim = routed({"flaky": [OK]})
    sim.apply(RetryRequested(sim.tick(), "right"))
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("right") == [] and sim.state("right_tail") is S.SKIPPED


def test_rerun_from_the_condition_decides_again() -> None:
    sim = routed({"flaky": [OK, OK], "right": [OK], "right_tail": [OK]})
    sim.apply(RetryRequested(sim.tick(), "route"))
    sim.run()
    decide(sim, "route", ["right"])  # this time the condition chooses the other branch
    assert sim.status is X.COMPLETED
    assert sim.state("left") is S.SKIPPED and sim.state("flaky") is S.SKIPPED
    assert sim.dispatched("right") == [("right", 1)]
    assert sim.dispatched("right_tail") == [("right_tail", 1)]


def test_multi_choice_keeps_every_branch_not_taken() -> None:
    spec = [
        condition("route", children=["a", "b", "c"]),
        node("a", "route"),
        node("b", "route"),
        node("c", "route"),
    ]
    sim = Simulator(make_spec(spec, on_failure="none"), {"route": [HANG], "a": [PERMANENT, OK]})
    sim.run()
    decide(sim, "route", ["a", "b"])
    assert sim.status is X.FAILED
    sim.apply(RetryRequested(sim.tick()))
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("c") == [] and sim.dispatched("b") == [("b", 1)]


def test_nested_conditions_keep_their_decisions() -> None:
    spec = [
        condition("outer", children=["inner", "z"]),
        condition("inner", "outer", children=["x", "y"]),
        node("x", "inner"),
        node("after_x", "x"),
        node("y", "inner"),
        node("z", "outer"),
    ]
    script = {"outer": [HANG], "inner": [HANG], "after_x": [PERMANENT, OK]}
    sim = Simulator(make_spec(spec, on_failure="none"), script)
    sim.run()
    decide(sim, "outer", ["inner"])
    decide(sim, "inner", ["x"])
    assert sim.status is X.FAILED
    sim.apply(RetryRequested(sim.tick()))
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("y") == [] and sim.dispatched("z") == []


def test_a_branch_skipped_by_a_failure_and_not_chosen_stays_skipped() -> None:
    """``join`` was skipped because ``a`` failed before the condition answered; the condition
    did not choose it either, so once ``a`` succeeds on retry, ``join`` still does not run."""
    spec = [
        node("a"),
        condition("route", children=["other", "join"]),
        node("other", "route"),
        node("join", "a", "route"),
    ]
    sim = Simulator(make_spec(spec, on_failure="none"), {"a": [PERMANENT, OK], "route": [HANG]})
    sim.run()
    assert sim.state("join") is S.SKIPPED  # upstream_failed, for now
    decide(sim, "route", ["other"])
    assert sim.machine.nodes[sim.plan.index["join"]].wait_reason == "branch_not_taken"
    sim.apply(RetryRequested(sim.tick()))
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("join") == []


@pytest.mark.parametrize("rule", ["all_success", "all_done", "none_failed", "one_success"])
def test_a_join_after_retry_decides_as_a_clean_run_would(rule: str) -> None:
    """A join of the taken and the untaken branch ends as it would have without the failure."""
    spec = [
        *ROUTED,
        node("join", "flaky", "right_tail", trigger_rule=rule),
    ]

    def finish(script: dict[str, list[str]], retry: bool) -> Simulator:
        sim = Simulator(make_spec(spec, on_failure="none"), {"route": [HANG], **script})
        sim.run()
        decide(sim, "route", ["left"])
        if retry:
            sim.apply(RetryRequested(sim.tick()))
            sim.run()
        return sim

    clean = finish({"flaky": [OK]}, retry=False)
    retried = finish({"flaky": [PERMANENT, OK]}, retry=True)
    assert retried.status is clean.status is X.COMPLETED
    assert retried.states() == clean.states()
    assert retried.dispatched("right") == []


def test_retry_keeps_when_skips_and_rerun_from_the_node_evaluates_it_again() -> None:
    spec = [node("start"), node("guarded", "start"), node("flaky", "start")]
    sim = Simulator(
        make_spec(spec, on_failure="none"),
        {"guarded": [SKIP, OK], "flaky": [PERMANENT, OK]},
    )
    sim.run()
    assert sim.status is X.FAILED
    sim.apply(RetryRequested(sim.tick()))
    sim.run()
    assert sim.status is X.COMPLETED
    assert sim.dispatched("guarded") == [("guarded", 1)]
    sim.apply(RetryRequested(sim.tick(), "guarded"))
    sim.run()
    assert sim.dispatched("guarded") == [("guarded", 1), ("guarded", 2)]
    assert sim.state("guarded") is S.COMPLETED


def test_restored_machine_keeps_the_reason_of_a_skip() -> None:
    sim = routed({"flaky": [PERMANENT]})
    nodes = replay(sim.records).nodes
    machine = ExecutionMachine(sim.plan, "exec-1", rng=random.Random(0))
    machine.restore(X.FAILED, "run", nodes)
    step = machine.apply(RetryRequested(sim.tick()))
    assert [c.node for c in step.commands if hasattr(c, "node")] == ["flaky"]


def test_a_node_woken_by_its_timer_keeps_its_first_start() -> None:
    from orchestrion.core.events import NodeStarted, NodeWaiting, TimerFired

    sim = Simulator(make_spec([node("nap")]), {"nap": [HANG]})
    sim.run()
    run = sim.machine.nodes[0]
    first = run.started_at
    assert first is not None
    sim.apply(NodeWaiting("nap", 1, sim.tick(), reason="timer", wake_at=sim.now + 60))
    sim.apply(TimerFired("nap", 1, sim.tick(60), kind="wake"))
    sim.apply(NodeStarted("nap", 1, sim.tick()))
    sim.apply(NodeSucceeded("nap", 1, sim.tick(), {"woke": True}))
    assert run.state is S.COMPLETED
    assert run.started_at == first
    assert run.finished_at is not None and run.finished_at - first > 60
