"""A deterministic simulator around ``ExecutionMachine`` for the machine tests.

It plays the runtime: it feeds events to the machine, carries out the commands it answers
with, and keeps the whole timeline (events, records, commands) for assertions.

- ``Dispatch(node, attempt)`` becomes a pending *run*: when delivered, ``NodeStarted`` and then
  the scripted outcome of that dispatch are applied.
- ``ScheduleTimer`` becomes a pending *timer*; delivering it applies ``TimerFired`` (the clock
  jumps to ``fire_at`` if that is later).
- ``RunCompensation`` becomes a pending *compensation*; delivering it applies
  ``CompensationSucceeded`` (or ``CompensationFailed`` for nodes listed in
  ``compensation_failures``).
- ``NodeWaiting`` outcomes leave a pending *resolve* that applies ``WaitResolved``.
- ``JudgeCriteria`` becomes a pending *judge*; delivering it applies ``CriteriaJudged`` with
  one required criterion that passed or not, as ``criteria_pass`` says.

Which pending item is delivered next is up to ``chooser`` (FIFO by default), so hypothesis
can draw any interleaving of concurrent results. Outcomes are scripted per node and per
dispatch: ``script["B"] = ["transient", "ok"]`` makes B's first dispatch fail with a transient
error and its second succeed; dispatches beyond the list succeed.

``crash()`` simulates kill -9: the persisted records are replayed into node snapshots, a new
machine is built, ``restore`` + ``recover`` are called, and (by default) everything that was in
flight is lost, as it would be when the workers died with the process.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrion.core.criteria import CriterionResult
from orchestrion.core.events import (
    CancelNode,
    Command,
    CompensationFailed,
    CompensationSucceeded,
    CriteriaJudged,
    Dispatch,
    ErrorInfo,
    Event,
    ExecutionFinished,
    JudgeCriteria,
    NodeFailed,
    NodeSkipped,
    NodeStarted,
    NodeSucceeded,
    NodeWaiting,
    Record,
    RetryRequested,
    RunCompensation,
    ScheduleTimer,
    Started,
    TimerFired,
    WaitResolved,
)
from orchestrion.core.machine import ExecutionMachine, NodeRun, Step
from orchestrion.core.plan import Plan
from orchestrion.core.states import ACTIVE_NODE_STATES, ExecutionStatus, NodeState
from orchestrion.definition.model import WorkflowSpec

__all__ = [
    "HANG",
    "OK",
    "OUTCOMES",
    "PERMANENT",
    "POLICY",
    "SKIP",
    "TRANSIENT",
    "WAIT",
    "WAIT_FAIL",
    "DispatchSnapshot",
    "Pending",
    "Replayed",
    "Simulator",
    "Timeline",
    "error_for",
    "make_spec",
    "node",
    "replay",
]

# ---------------------------------------------------------------- scripted outcomes

OK = "ok"  # NodeSucceeded
TRANSIENT = "transient"  # NodeFailed, transient network error (retried by default)
PERMANENT = "permanent"  # NodeFailed, permanent validation error (not retried by default)
POLICY = "policy"  # NodeFailed, policy_violation (never retried)
SKIP = "skip"  # NodeSkipped (the node's `when:` was false)
WAIT = "wait"  # NodeWaiting(approval), later WaitResolved with an output
WAIT_FAIL = "wait_fail"  # NodeWaiting(approval), later WaitResolved with a permanent error
HANG = "hang"  # NodeStarted, then nothing (a worker that never answers)

OUTCOMES = (OK, TRANSIENT, PERMANENT, POLICY, SKIP, WAIT, WAIT_FAIL, HANG)


def error_for(outcome: str, node_id: str = "", attempt: int = 0) -> ErrorInfo:
    if outcome == TRANSIENT:
        return ErrorInfo("network", f"{node_id}#{attempt}: connection reset", transient=True)
    if outcome == POLICY:
        return ErrorInfo("policy_violation", f"{node_id}#{attempt}: blocked", transient=False)
    return ErrorInfo("validation", f"{node_id}#{attempt}: bad input", transient=False)


# ---------------------------------------------------------------- spec helpers


def node(node_id: str, *deps: str, **fields: Any) -> dict[str, Any]:
    """One node as a definition dict: ``node("C", "A", "B", trigger_rule="all_done")``."""
    return {"id": node_id, "handler": "noop", "dependencies": list(deps), **fields}


def make_spec(nodes: Iterable[dict[str, Any]], **workflow: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"name": "t", "dag": {"nodes": list(nodes)}, **workflow})


# ---------------------------------------------------------------- replay of records


@dataclass
class Replayed:
    status: ExecutionStatus | None
    phase: str
    error: dict[str, Any] | None
    nodes: dict[str, NodeRun]
    compensation_round: int = 0  # its ``execution.compensating`` records, as a store counts


def replay(records: Iterable[Record]) -> Replayed:
    """Rebuild what a store would hold from the records alone (last record per node wins)."""
    status: ExecutionStatus | None = None
    phase = "run"
    error: dict[str, Any] | None = None
    nodes: dict[str, NodeRun] = {}
    rounds = 0
    for record in records:
        if record.node is None:
            rounds += record.type == "execution.compensating"
            if record.status is not None:
                status = record.status
            if record.phase:
                phase = record.phase
            if record.type == "execution.retried":
                error = None
            elif record.type in ("execution.failed", "execution.cancelled") and record.data:
                error = record.data.get("error", error)
            continue
        assert record.state is not None, record
        nodes[record.node] = NodeRun(
            state=record.state,
            attempt=record.attempt,
            started_at=record.started_at,
            finished_at=record.finished_at,
            error=record.error,
            wait_reason=record.wait_reason,
            wake_at=record.wake_at,
            compensation=record.extra.get("compensation"),
        )
    return Replayed(status, phase, error, nodes, rounds)


# ---------------------------------------------------------------- the simulator


@dataclass
class Pending:
    """Something the simulated runtime will deliver to the machine later."""

    kind: str  # "run", "timer", "compensate", "resolve"
    node: str
    attempt: int = 0
    outcome: str = OK  # run/resolve: what happens
    fire_at: float = 0.0  # timer
    timer_kind: str = "retry"  # timer
    seq: int = 0


@dataclass
class DispatchSnapshot:
    """A Dispatch command with the machine's view of the node's parents when it was issued."""

    node: str
    attempt: int
    parent_states: dict[str, NodeState]
    status: ExecutionStatus
    cause: str  # type of the event that produced it ("recover" for recover())
    redispatch: bool  # same attempt dispatched again (wake timer or recovery)


Chooser = Callable[[Sequence[Pending]], int]


def fifo(pending: Sequence[Pending]) -> int:
    return 0


class Simulator:
    def __init__(
        self,
        spec: WorkflowSpec,
        script: Mapping[str, Sequence[str]] | None = None,
        *,
        seed: int = 0,
        chooser: Chooser = fifo,
        compensation_failures: Iterable[str] = (),
        wake_after: float | None = None,
        deliver_started: bool = True,
        start_at: float = 1000.0,
        strict: bool = True,
        criteria_pass: bool = True,
    ) -> None:
        self.spec = spec
        self.strict = strict  # check every step's records against the machine's state
        self.criteria_pass = criteria_pass  # the verdict on the success criteria, if asked
        self.plan = Plan.build(spec)
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.seed = seed
        self.machine = ExecutionMachine(self.plan, "exec-1", rng=random.Random(seed))
        self.chooser = chooser
        self.compensation_failures = set(compensation_failures)
        self.wake_after = wake_after  # NodeWaiting carries wake_at = now + wake_after
        self.deliver_started = deliver_started
        self.now = start_at
        self.pending: list[Pending] = []
        self._seq = 0
        self.events: list[Event] = []
        self.steps: list[Step] = []
        self.records: list[Record] = []
        self.commands: list[Command] = []
        self.dispatches: list[DispatchSnapshot] = []
        self.dispatch_count: Counter[str] = Counter()
        self.cancelled: list[CancelNode] = []
        self.compensations: list[str] = []
        self.finished: list[ExecutionFinished] = []
        self.max_active = 0
        self.delivered = 0
        self.crashes = 0
        # (status before, status after, commands) for every step, for pause checks
        self.status_log: list[tuple[ExecutionStatus, ExecutionStatus, list[Command]]] = []
        self.after_step: Callable[[Simulator, Step], None] | None = None

    # ------------------------------------------------------------ feeding the machine

    def start(self) -> Step:
        return self.apply(Started(self.tick()))

    def tick(self, by: float = 0.25) -> float:
        self.now += by
        return self.now

    def apply(self, event: Event) -> Step:
        before = self.machine.status
        was_finished = self.machine.finished
        snapshot = self._snapshot()
        step = self.machine.apply(event)
        self.events.append(event)
        if self.strict:
            if was_finished and not isinstance(event, RetryRequested):
                assert not step.records and not step.commands, (event, step)
            self._check_records(step, snapshot)
        self._absorb(step, type(event).__name__, before)
        return step

    def _snapshot(self) -> list[tuple[NodeState, int]]:
        return [(run.state, run.attempt) for run in self.machine.nodes]

    def _check_records(self, step: Step, snapshot: list[tuple[NodeState, int]]) -> None:
        """No silent transition: a node whose state or attempt changed has a record for it,
        and the last record of each node in a step describes the node as it now is."""
        last: dict[str, Record] = {}
        for record in step.records:
            if record.node is not None:
                last[record.node] = record
        for i, run in enumerate(self.machine.nodes):
            node_id = self.plan.ids[i]
            record = last.get(node_id)
            if record is None:
                assert (run.state, run.attempt) == snapshot[i], (node_id, snapshot[i], run)
            else:
                assert record.state is run.state, (node_id, record, run)
                assert record.attempt == run.attempt, (node_id, record, run)
        execution = [r for r in step.records if r.node is None]
        if execution:
            assert execution[-1].status is self.machine.status, (execution[-1], self.status)

    def _absorb(self, step: Step, cause: str, before: ExecutionStatus) -> None:
        machine = self.machine
        self.steps.append(step)
        self.records.extend(step.records)
        self.commands.extend(step.commands)
        for command in step.commands:
            match command:
                case Dispatch(node=node_id, attempt=attempt):
                    i = self.plan.index[node_id]
                    previous = [d.attempt for d in self.dispatches if d.node == node_id]
                    self.dispatches.append(
                        DispatchSnapshot(
                            node=node_id,
                            attempt=attempt,
                            parent_states={
                                self.plan.ids[p]: machine.nodes[p].state
                                for p in self.plan.parents[i]
                            },
                            status=machine.status,
                            cause=cause,
                            redispatch=attempt in previous,
                        )
                    )
                    outcomes = self.script.get(node_id, [])
                    n = self.dispatch_count[node_id]
                    self.dispatch_count[node_id] += 1
                    outcome = outcomes[n] if n < len(outcomes) else OK
                    self._push(Pending("run", node_id, attempt, outcome=outcome))
                case ScheduleTimer(node=node_id, attempt=attempt, fire_at=fire_at, kind=kind):
                    self._push(Pending("timer", node_id, attempt, fire_at=fire_at, timer_kind=kind))
                case CancelNode():
                    self.cancelled.append(command)
                case RunCompensation(node=node_id, round=round_):
                    # Its round names it to the dispatch guard: the compensations begun so
                    # far, as the journal counts them (across crashes and retries alike).
                    begun = sum(r.type == "execution.compensating" for r in self.records)
                    assert round_ == begun >= 1, (round_, begun)
                    self.compensations.append(node_id)
                    self._push(Pending("compensate", node_id))
                case ExecutionFinished():
                    self.finished.append(command)
                case JudgeCriteria(round=judge_round):
                    self._push(Pending("judge", "", judge_round))
        active = sum(1 for run in machine.nodes if run.state in ACTIVE_NODE_STATES)
        self.max_active = max(self.max_active, active)
        self.status_log.append((before, machine.status, list(step.commands)))
        if self.after_step is not None:
            self.after_step(self, step)

    def _push(self, item: Pending) -> None:
        self._seq += 1
        item.seq = self._seq
        self.pending.append(item)

    # ------------------------------------------------------------ delivering pending work

    def find(self, kind: str | None = None, node: str | None = None) -> int:
        for k, item in enumerate(self.pending):
            if (kind is None or item.kind == kind) and (node is None or item.node == node):
                return k
        raise LookupError(f"nothing pending for kind={kind} node={node}: {self.pending}")

    def deliver(self, kind: str | None = None, node: str | None = None) -> list[Step]:
        """Deliver the first pending item matching ``kind``/``node``."""
        return self.deliver_at(self.find(kind, node))

    def deliver_at(self, index: int) -> list[Step]:
        item = self.pending.pop(index)
        self.delivered += 1
        steps: list[Step] = []
        at = self.tick()
        if item.kind == "timer":
            self.now = at = max(at, item.fire_at)
            steps.append(self.apply(TimerFired(item.node, item.attempt, at, item.timer_kind)))
        elif item.kind == "compensate":
            if item.node in self.compensation_failures:
                error = ErrorInfo("compensation", f"undo {item.node} failed")
                steps.append(self.apply(CompensationFailed(item.node, at, error)))
            else:
                steps.append(self.apply(CompensationSucceeded(item.node, at)))
        elif item.kind == "judge":
            verdict = CriterionResult("verdict", True, self.criteria_pass)
            steps.append(self.apply(CriteriaJudged(at, (verdict,), item.attempt)))
        elif item.kind == "resolve":
            if item.outcome == WAIT_FAIL:
                error = error_for(PERMANENT, item.node, item.attempt)
                steps.append(self.apply(WaitResolved(item.node, item.attempt, at, error=error)))
            else:
                output = {"approved": item.node}
                steps.append(self.apply(WaitResolved(item.node, item.attempt, at, output=output)))
        else:
            steps.extend(self._run(item, at))
        return steps

    def _run(self, item: Pending, at: float) -> list[Step]:
        node_id, attempt, outcome = item.node, item.attempt, item.outcome
        steps = []
        if self.deliver_started:
            steps.append(self.apply(NodeStarted(node_id, attempt, at)))
        at = self.tick(0.01)
        if outcome == OK:
            output = {"node": node_id, "attempt": attempt}
            steps.append(self.apply(NodeSucceeded(node_id, attempt, at, output)))
        elif outcome in (TRANSIENT, PERMANENT, POLICY):
            error = error_for(outcome, node_id, attempt)
            steps.append(self.apply(NodeFailed(node_id, attempt, at, error)))
        elif outcome == SKIP:
            steps.append(self.apply(NodeSkipped(node_id, attempt, at)))
        elif outcome in (WAIT, WAIT_FAIL):
            wake_at = None if self.wake_after is None else at + self.wake_after
            steps.append(
                self.apply(NodeWaiting(node_id, attempt, at, reason="approval", wake_at=wake_at))
            )
            if wake_at is None:
                self._push(Pending("resolve", node_id, attempt, outcome=outcome))
        elif outcome != HANG:
            raise ValueError(f"unknown outcome {outcome!r}")
        return steps

    def run(self, max_steps: int = 20_000, *, stop_when_finished: bool = False) -> Simulator:
        """Deliver pending items (chosen by ``chooser``) until there are none left."""
        if self.machine.status is ExecutionStatus.PENDING:
            self.start()
        for _ in range(max_steps):
            if not self.pending or (stop_when_finished and self.machine.finished):
                return self
            self.deliver_at(self.chooser(self.pending))
        raise AssertionError(f"no quiescence after {max_steps} deliveries: {self.pending}")

    # ------------------------------------------------------------ crash and recovery

    def crash(self, *, keep_pending: bool = False) -> Step:
        """Kill -9: rebuild a machine from the records only, then restore + recover it."""
        self.crashes += 1
        state = replay(self.records)
        assert state.status is not None
        before = self.machine.status
        self.machine = ExecutionMachine(
            self.plan, "exec-1", rng=random.Random(self.seed + 1000 * self.crashes)
        )
        self.machine.restore(
            state.status, state.phase, state.nodes, state.error, state.compensation_round
        )
        if not keep_pending:
            # Workers, timers and compensations died with the process; a person's decision on
            # an approval comes through the API later and is not lost.
            self.pending = [item for item in self.pending if item.kind == "resolve"]
        snapshot = self._snapshot()
        step = self.machine.recover(self.tick())
        if self.strict:
            self._check_records(step, snapshot)
        self._absorb(step, "recover", before)
        return step

    # ------------------------------------------------------------ views

    def states(self) -> dict[str, NodeState]:
        return {node_id: self.machine.node_state(node_id) for node_id in self.plan.ids}

    def state(self, node_id: str) -> NodeState:
        return self.machine.node_state(node_id)

    @property
    def status(self) -> ExecutionStatus:
        return self.machine.status

    def node_records(self, node_id: str | None = None) -> list[Record]:
        return [r for r in self.records if r.node is not None and node_id in (None, r.node)]

    def record_types(self, node_id: str | None = None) -> list[str]:
        if node_id is None:
            return [r.type for r in self.records]
        return [r.type for r in self.records if r.node == node_id]

    def execution_record_types(self) -> list[str]:
        return [r.type for r in self.records if r.node is None]

    def dispatched(self, node_id: str | None = None) -> list[tuple[str, int]]:
        return [
            (d.node, d.attempt) for d in self.dispatches if node_id is None or d.node == node_id
        ]

    def dispatch_order(self) -> list[str]:
        return [d.node for d in self.dispatches]

    def timers(self) -> list[ScheduleTimer]:
        return [c for c in self.commands if isinstance(c, ScheduleTimer)]

    def ever(self, record_type: str) -> set[str]:
        """Nodes that ever got a record of ``record_type``."""
        return {r.node for r in self.records if r.type == record_type and r.node is not None}


@dataclass
class Timeline:
    """Convenience: a flat, printable log (handy when a property test fails)."""

    lines: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, sim: Simulator) -> Timeline:
        lines = []
        for record in sim.records:
            who = record.node or "<execution>"
            what = record.state or record.status
            lines.append(f"{record.at:10.3f} {record.type:28} {who:8} #{record.attempt} {what}")
        return cls(lines)

    def __str__(self) -> str:
        return "\n".join(self.lines)
