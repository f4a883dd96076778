"""Property tests of the execution state machine over random DAGs, outcomes and interleavings.

Every example builds a random acyclic workflow (edges only from lower to higher index), random
trigger rules, retry policies, compensation specs and a concurrency limit, scripts random
outcomes per dispatch, and delivers results in a hypothesis-drawn order, sometimes with a
cancel, an execution timeout, a pause/resume or a crash (restore + recover) at a random point.

Checked after every step: the concurrency limit, one compensation at a time, no new attempt
while paused, the execution is ``waiting`` exactly while every live node waits on a person or
a timer (plus the driver's own per-step record checks). Checked at the end: (1) a dispatched
node's parents satisfy its trigger rule (all final for all_success/all_done/none_failed, all
completed under all_success; one_success/one_failed run as soon as one parent completed/failed,
by design), (2) attempts of a node are dispatched once each, 1..n, so a fan-in runs at most once
per attempt, (3) under all_success nothing downstream of a failure runs, (4) the run ends in a
final status with every node final, (5) completed iff no node failed and the success criteria
(when the workflow has some) passed, (6) replaying the records gives the final state, plus saga
order and a single ExecutionFinished.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orchestrion.core.events import (
    CancelRequested,
    Dispatch,
    ExecutionTimedOut,
    PauseRequested,
    ResumeRequested,
)
from orchestrion.core.states import (
    ACTIVE_NODE_STATES,
    FINAL_EXECUTION_STATES,
    FINAL_NODE_STATES,
    ExecutionStatus,
    NodeState,
)
from orchestrion.definition.model import TriggerRule

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for machine_driver
from machine_driver import (
    OK,
    PERMANENT,
    POLICY,
    SKIP,
    TRANSIENT,
    WAIT,
    WAIT_FAIL,
    Simulator,
    Timeline,
    make_spec,
    node,
    replay,
)

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MAX_DELIVERIES = 5_000

# Weighted: mostly successes, so that deep graphs still get somewhere.
OUTCOME_POOL = [OK, OK, OK, OK, TRANSIENT, TRANSIENT, PERMANENT, POLICY, SKIP, WAIT, WAIT_FAIL]


@dataclass
class Scenario:
    spec_dict: dict[str, Any]
    script: dict[str, list[str]]
    intervention: str | None  # None, "cancel", "timeout", "pause", "crash"
    at_step: int
    resume_after: int
    keep_pending: bool
    seed: int
    criteria: str | None = None  # None: no success criteria; "pass" or "fail": the verdict


@st.composite
def retry_policies(draw: st.DrawFn) -> dict[str, Any] | None:
    if draw(st.booleans()):
        return None  # the workflow default applies
    initial = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    return {
        "max_attempts": draw(st.integers(1, 4)),
        "initial_delay": initial,
        "max_delay": initial + draw(st.sampled_from([0.0, 1.0, 5.0])),
        "multiplier": draw(st.sampled_from([1.0, 2.0, 3.0])),
        "jitter": draw(st.sampled_from(["full", "none"])),
        "retry_on": draw(
            st.sampled_from([["transient"], ["all"], ["validation"], ["transient", "validation"]])
        ),
    }


@st.composite
def scenarios(draw: st.DrawFn, interventions: tuple[str | None, ...]) -> Scenario:
    n = draw(st.integers(1, 30))
    nodes = []
    script: dict[str, list[str]] = {}
    for j in range(n):
        parents: list[int] = []
        if j:
            parents = draw(st.lists(st.integers(0, j - 1), unique=True, max_size=min(j, 4)))
        fields: dict[str, Any] = {
            "trigger_rule": draw(st.sampled_from(list(TriggerRule))).value,
            "priority": draw(st.integers(0, 3)),
        }
        retry = draw(retry_policies())
        if retry is not None:
            fields["retry"] = retry
        if draw(st.booleans()):
            fields["compensate"] = f"undo_n{j}"
        nodes.append(node(f"n{j}", *(f"n{p}" for p in sorted(parents)), **fields))
        script[f"n{j}"] = draw(st.lists(st.sampled_from(OUTCOME_POOL), max_size=4))
    spec_dict = {
        "nodes": nodes,
        "on_failure": draw(st.sampled_from(["compensate", "none"])),
        "concurrency": draw(st.one_of(st.none(), st.integers(1, 4))),
    }
    return Scenario(
        spec_dict=spec_dict,
        script=script,
        intervention=draw(st.sampled_from(interventions)),
        at_step=draw(st.integers(0, 60)),
        resume_after=draw(st.integers(0, 20)),
        keep_pending=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
        criteria=draw(st.sampled_from([None, None, "pass", "fail"])),
    )


def build(scenario: Scenario, data: st.DataObject) -> Simulator:
    spec = make_spec(
        scenario.spec_dict["nodes"],
        on_failure=scenario.spec_dict["on_failure"],
        concurrency=scenario.spec_dict["concurrency"],
        success_criteria=["verdict"] if scenario.criteria else [],
    )

    def chooser(pending: Any) -> int:
        return data.draw(st.integers(0, len(pending) - 1), label="deliver")

    sim = Simulator(
        spec,
        scenario.script,
        seed=scenario.seed,
        chooser=chooser,
        compensation_failures={f"n{j}" for j in range(0, len(spec.dag.nodes), 3)},
        criteria_pass=scenario.criteria != "fail",
    )
    sim.after_step = check_step
    return sim


def drive(sim: Simulator, scenario: Scenario) -> None:
    """Deliver everything, applying the scenario's intervention at its step."""
    sim.start()
    intervention = scenario.intervention
    done = False
    paused_at: int | None = None
    for k in range(MAX_DELIVERIES):
        if intervention and not done and (k >= scenario.at_step or not sim.pending):
            done = True
            if intervention == "cancel":
                sim.apply(CancelRequested(sim.tick()))
            elif intervention == "timeout":
                sim.apply(ExecutionTimedOut(sim.tick()))
            elif intervention == "pause":
                sim.apply(PauseRequested(sim.tick()))
                paused_at = k
            elif intervention == "crash":
                sim.crash(keep_pending=scenario.keep_pending)
        if paused_at is not None and (k >= paused_at + scenario.resume_after or not sim.pending):
            sim.apply(ResumeRequested(sim.tick()))
            paused_at = None
        if not sim.pending:
            if paused_at is None and (done or not intervention):
                return
            continue
        sim.deliver_at(sim.chooser(sim.pending))
    raise AssertionError(f"no quiescence after {MAX_DELIVERIES} deliveries\n{Timeline.of(sim)}")


def check_step(sim: Simulator, step: Any) -> None:
    """Invariants that hold after every single step."""
    machine = sim.machine
    live = [run for run in machine.nodes if run.state in ACTIVE_NODE_STATES]
    limit = sim.spec.concurrency
    # (7) the concurrency limit is never exceeded
    if limit is not None:
        assert len(live) <= limit, (limit, live)
    # One compensation at a time (a crash may leave a stale duplicate of a finished one out).
    out = {
        item.node
        for item in sim.pending
        if item.kind == "compensate"
        and machine.nodes[sim.plan.index[item.node]].compensation is None
    }
    assert len(out) <= 1, out
    # While paused, no new attempt is dispatched (a wake timer re-runs the same attempt).
    before, after, commands = sim.status_log[-1]
    if before is ExecutionStatus.PAUSED and after is ExecutionStatus.PAUSED:
        dispatched = sum(1 for command in commands if isinstance(command, Dispatch))
        if dispatched:
            fresh = [d for d in sim.dispatches[-dispatched:] if not d.redispatch]
            assert not fresh, ("dispatched while paused", fresh)
    if machine.phase == "compensate":
        assert machine.status is not ExecutionStatus.WAITING
    # The execution is `waiting` exactly while every live node waits on a person or a timer.
    if (
        machine.status in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING)
        and machine.phase == "run"
    ):
        parked = bool(live) and all(
            run.state is NodeState.WAITING and run.wait_reason != "retry" for run in live
        )
        assert (machine.status is ExecutionStatus.WAITING) == parked, (machine.status, live)


def ancestors_tainted(sim: Simulator, failed: set[str]) -> set[str]:
    """all_success nodes downstream of a failure through all_success nodes only."""
    plan = sim.plan
    tainted: set[int] = set()
    failed_i = {plan.index[n] for n in failed}
    for i in plan.topo_order:
        if plan.trigger_rule[i] is not TriggerRule.ALL_SUCCESS:
            continue
        if any(p in failed_i or p in tainted for p in plan.parents[i]):
            tainted.add(i)
    return {plan.ids[i] for i in tainted}


def check_final(sim: Simulator, scenario: Scenario) -> None:
    machine = sim.machine
    event(f"status={machine.status.value}")
    event(f"nodes={'<10' if len(sim.plan) < 10 else '10-19' if len(sim.plan) < 20 else '20+'}")
    if sim.crashes:
        event("crashed")
    if sim.compensations:
        event("compensated")
    plan = sim.plan
    timeline = Timeline.of(sim)

    # (4) terminated in a final status, every node final
    assert machine.status in FINAL_EXECUTION_STATES, timeline
    assert all(run.state in FINAL_NODE_STATES for run in machine.nodes), timeline
    assert len(sim.finished) == 1, sim.finished
    assert sim.finished[0].status is machine.status
    last = sim.records[-1]
    assert last.node is None and last.type == f"execution.{machine.status.value}", last

    # (1) dependencies are settled before a dispatch, as each trigger rule requires
    for d in sim.dispatches:
        if d.redispatch or not d.parent_states:
            continue
        states = list(d.parent_states.values())
        rule = plan.trigger_rule[plan.index[d.node]]
        if rule is TriggerRule.ONE_SUCCESS:
            assert NodeState.COMPLETED in states, d
        elif rule is TriggerRule.ONE_FAILED:
            assert NodeState.FAILED in states, d
        else:
            assert all(s in FINAL_NODE_STATES for s in states), d
            if rule is TriggerRule.ALL_SUCCESS:
                assert all(s is NodeState.COMPLETED for s in states), d
            elif rule is TriggerRule.NONE_FAILED:
                assert NodeState.FAILED not in states, d

    # (2) attempts are dispatched once each, in sequence; a fan-in node runs at most once per
    # attempt, exactly once if it ran at all
    for node_id in plan.ids:
        fresh = [d.attempt for d in sim.dispatches if d.node == node_id and not d.redispatch]
        assert fresh == list(range(1, len(fresh) + 1)), (node_id, fresh)
        if node_id in sim.ever("node.started"):
            assert fresh[0] == 1
        if not sim.crashes:
            wakes = [d for d in sim.dispatches if d.node == node_id and d.redispatch]
            assert all(d.cause == "TimerFired" for d in wakes), wakes

    # (3) under all_success, a node downstream of a failure never runs
    failed = sim.ever("node.failed")
    for node_id in ancestors_tainted(sim, failed):
        assert not sim.dispatched(node_id), (node_id, timeline)
        assert machine.node_state(node_id) in (NodeState.SKIPPED, NodeState.CANCELLED)

    # (5) completed iff no node failed and the criteria passed (a cancel or timeout decides
    # otherwise); the verdict is journalled once per judged end, before the end
    if scenario.intervention not in ("cancel", "timeout"):
        completes = not failed and scenario.criteria != "fail"
        assert (machine.status is ExecutionStatus.COMPLETED) == completes, timeline
        judged = sim.execution_record_types().count("execution.criteria_evaluated")
        assert judged == (1 if scenario.criteria and not failed else 0), timeline
        assert machine.status is not ExecutionStatus.CANCELLED
    if machine.status is ExecutionStatus.FAILED:
        assert machine.error is not None

    # (6) replaying the records reproduces the final state
    replayed = replay(sim.records)
    assert replayed.status is machine.status
    for i, node_id in enumerate(plan.ids):
        run = machine.nodes[i]
        got = replayed.nodes[node_id]
        assert (got.state, got.attempt) == (run.state, run.attempt), node_id
        assert got.compensation == run.compensation, node_id

    # Compensation: one at a time, in reverse topological order, of completed nodes only (a
    # failed node, or one the timeout stopped, did nothing to undo and stays failed)
    if machine.status is ExecutionStatus.FAILED and sim.spec.on_failure == "compensate":
        for node_id in failed:
            assert machine.nodes[plan.index[node_id]].state is NodeState.FAILED, node_id
        if scenario.intervention != "crash":
            undoable = sim.ever("node.completed")
            expected = [
                plan.ids[i]
                for i in reversed(plan.topo_order)
                if plan.nodes[i].compensate is not None and plan.ids[i] in undoable
            ]
            assert sim.compensations == expected, (sim.compensations, expected, timeline)
        for node_id in sim.compensations:
            run = machine.nodes[plan.index[node_id]]
            if node_id in sim.compensation_failures:
                assert run.compensation == "failed"
            else:
                assert run.compensation == "done"
                assert run.state is NodeState.COMPENSATED
    elif scenario.intervention != "cancel":
        assert not sim.compensations
    assert not any(d.status is ExecutionStatus.PAUSED and not d.redispatch for d in sim.dispatches)


@PROPERTY_SETTINGS
@given(scenario=scenarios(interventions=(None,)), data=st.data())
def test_random_dags_run_to_a_consistent_end(scenario: Scenario, data: st.DataObject) -> None:
    sim = build(scenario, data)
    drive(sim, scenario)
    check_final(sim, scenario)


@PROPERTY_SETTINGS
@given(scenario=scenarios(interventions=("cancel", "timeout", "pause")), data=st.data())
def test_random_dags_with_cancel_timeout_or_pause(scenario: Scenario, data: st.DataObject) -> None:
    sim = build(scenario, data)
    drive(sim, scenario)
    check_final(sim, scenario)
    if scenario.intervention == "cancel" and sim.status is ExecutionStatus.CANCELLED:
        # every attempt that was out when the cancel came got a CancelNode
        assert not any(r.type == "node.started" for r in sim.records[_cancel_index(sim) :])


def _cancel_index(sim: Simulator) -> int:
    for k, record in enumerate(sim.records):
        if record.type == "execution.cancelled":
            return k
    return len(sim.records)


@PROPERTY_SETTINGS
@given(scenario=scenarios(interventions=("crash",)), data=st.data())
def test_random_dags_survive_a_crash(scenario: Scenario, data: st.DataObject) -> None:
    sim = build(scenario, data)
    drive(sim, scenario)
    check_final(sim, scenario)
    # A node that completed before the crash was never dispatched again.
    recovered_at = next(
        (k for k, r in enumerate(sim.records) if r.type == "execution.recovered"), None
    )
    if recovered_at is not None:
        completed_before = {
            r.node for r in sim.records[:recovered_at] if r.type == "node.completed"
        }
        queued_after = {r.node for r in sim.records[recovered_at:] if r.type == "node.queued"}
        assert not completed_before & queued_after
