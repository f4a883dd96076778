"""The workflow control-flow patterns of docs/PATTERNS.md, run from examples/patterns/.

Each test runs a pattern's example file and checks the ORDER of the event journal (what was
queued, started, completed or skipped before what), not only the final state.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrion.core.result import ExecutionResult
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import DefinitionError
from orchestrion.handlers.loading import load_definition
from orchestrion.store.base import EventRecord
from scaleout import engine_for

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = ROOT / "examples" / "patterns"
EXAMPLES = sorted(PATTERNS.glob("wcp*.yaml"))
# Patterns with an example: supported or partly supported (see docs/PATTERNS.md).
WITH_EXAMPLE = {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 20}


@pytest.fixture(params=["memory://", "scaleout"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    async with engine_for(request.param, request) as engine:
        yield engine


def example(name: str) -> Path:
    (path,) = PATTERNS.glob(f"{name}*.yaml")
    return path


async def journal(engine: Engine, execution_id: str) -> list[EventRecord]:
    events = await engine.store.list_events(execution_id, limit=10_000)
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    return events


def where(events: Sequence[EventRecord], kind: str, node: str | None = None) -> list[int]:
    """Positions of the ``kind`` events of ``node`` (None: execution events)."""
    return [i for i, e in enumerate(events) if e.type == kind and e.node_id == node]


def where_type(events: Sequence[EventRecord], kind: str) -> list[int]:
    return [i for i, e in enumerate(events) if e.type == kind]


def at(events: Sequence[EventRecord], kind: str, node: str | None = None) -> int:
    """The position of the one ``kind`` event of ``node`` (failing if there is not exactly one)."""
    hits = where(events, kind, node)
    assert len(hits) == 1, f"{len(hits)} '{kind}' events for {node!r}: {describe(events)}"
    return hits[0]


def describe(events: Sequence[EventRecord]) -> list[str]:
    return [f"{e.type} {e.node_id or ''}".strip() for e in events]


def skip_reason(events: Sequence[EventRecord], node: str) -> str:
    event = events[at(events, "node.skipped", node)]
    assert event.data is not None
    return str(event.data["reason"])


async def run(
    engine: Engine, name: str, inputs: dict[str, Any] | None = None
) -> tuple[ExecutionResult, list[EventRecord]]:
    """Run the example ``name`` to its end; return its result and its journal."""
    result = await engine.run(example(name), inputs, timeout=10)
    return result, await journal(engine, result.execution_id)


async def until(
    engine: Engine, execution_id: str, kind: str, node: str | None = None
) -> list[EventRecord]:
    """Poll the journal until a ``kind`` event of ``node`` is in it; return the journal."""
    deadline = time.monotonic() + 5
    while True:
        events = await journal(engine, execution_id)
        if where(events, kind, node):
            return events
        assert time.monotonic() < deadline, f"no '{kind}' for {node!r}: {describe(events)}"
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------------- the examples themselves


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_passes_validate(path: Path) -> None:
    loaded = load_definition(path)
    assert loaded.source_format == "yaml" and loaded.dialect == "canonical"
    assert loaded.warnings == []
    number = int(path.stem[3:5])
    assert loaded.spec.name.startswith(f"wcp{number:02d}-")


def test_there_is_one_example_per_supported_pattern_and_the_doc_names_them() -> None:
    numbers = [int(path.stem[3:5]) for path in EXAMPLES]
    assert sorted(numbers) == sorted(WITH_EXAMPLE)
    doc = (ROOT / "docs" / "PATTERNS.md").read_text(encoding="utf-8")
    named = set(re.findall(r"examples/patterns/(wcp\d\d_\w+\.yaml)", doc))
    assert named == {path.name for path in EXAMPLES}


# ---------------------------------------------------------------------- basic control flow


async def test_wcp01_sequence_each_task_starts_after_the_previous_completed(
    engine: Engine,
) -> None:
    result, events = await run(engine, "wcp01")
    assert result.ok, result.error
    chain = ["receive_order", "check_stock", "ship"]
    for before, after in itertools.pairwise(chain):
        assert at(events, "node.completed", before) < at(events, "node.queued", after)
    started = [events[at(events, "node.started", n)].at for n in chain]
    assert started == sorted(started)


async def test_wcp02_parallel_split_branches_overlap(engine: Engine) -> None:
    result, events = await run(engine, "wcp02")
    assert result.ok, result.error
    branches = ["check_credit", "check_stock"]
    # Overlap by the attempts' own clocks, not journal order: a scale-out worker holds a start
    # back a moment and, on a loaded machine, may send it with the outcome, after the other's.
    first_done = min(events[at(events, "node.completed", n)].at for n in branches)
    for node in branches:
        assert at(events, "node.completed", "register") < at(events, "node.queued", node)
        assert events[at(events, "node.started", node)].at < first_done  # both running at once


async def test_wcp03_synchronization_joins_once_after_all_branches(engine: Engine) -> None:
    result, events = await run(engine, "wcp03")
    assert result.ok, result.error
    last_done = max(at(events, "node.completed", n) for n in ("check_credit", "check_stock"))
    assert at(events, "node.queued", "approve") == last_done + 1  # decided in that same step
    assert result.nodes["approve"].output == "credit ok and in stock"


@pytest.mark.parametrize(
    ("amount", "chosen"),
    [(50, "auto_approve"), (500, "standard_review"), (5000, "manual_review")],
)
async def test_wcp04_exclusive_choice_runs_exactly_one_branch(
    engine: Engine, amount: int, chosen: str
) -> None:
    result, events = await run(engine, "wcp04", {"amount": amount})
    assert result.ok, result.error
    branches = {"auto_approve", "standard_review", "manual_review"}
    route_done = at(events, "node.completed", "route")
    assert at(events, "node.queued", chosen) > route_done
    assert result.nodes[chosen].state is NodeState.COMPLETED
    for other in branches - {chosen}:
        assert not where(events, "node.queued", other)
        assert skip_reason(events, other) == "branch_not_taken"
        assert at(events, "node.skipped", other) < at(events, "node.completed", chosen)
    if chosen == "manual_review":
        assert at(events, "node.completed", "manual_review") < at(events, "node.queued", "escalate")
    else:  # the skip propagates down the branch not taken
        assert skip_reason(events, "escalate") == "upstream_skipped"


@pytest.mark.parametrize(
    ("express", "chosen", "other"),
    [(True, "ship_express", "ship_standard"), (False, "ship_standard", "ship_express")],
)
async def test_wcp05_simple_merge_runs_once_after_the_branch_taken(
    engine: Engine, express: bool, chosen: str, other: str
) -> None:
    result, events = await run(engine, "wcp05", {"express": express})
    assert result.ok, result.error
    assert skip_reason(events, other) == "branch_not_taken"
    chosen_done = at(events, "node.completed", chosen)
    assert at(events, "node.skipped", other) < chosen_done
    assert at(events, "node.queued", "confirm") == chosen_done + 1
    assert result.nodes["confirm"].state is NodeState.COMPLETED


SERVICES = {"fire": "fire_brigade", "theft": "police", "flood": "pumping_crew"}
INCIDENTS = [
    ({}, {"fire_brigade", "police"}),  # the defaults: fire and theft
    ({"fire": False, "theft": False, "flood": True}, {"pumping_crew"}),
    ({"flood": True}, {"fire_brigade", "police", "pumping_crew"}),
    ({"fire": False, "theft": False}, {"log_false_alarm"}),
]


@pytest.mark.parametrize(("inputs", "chosen"), INCIDENTS)
async def test_wcp06_multi_choice_runs_every_chosen_branch_concurrently(
    engine: Engine, inputs: dict[str, bool], chosen: set[str]
) -> None:
    result, events = await run(engine, "wcp06", inputs)
    assert result.ok, result.error
    branches = {*SERVICES.values(), "log_false_alarm"}
    route_done = at(events, "node.completed", "assess")
    # Concurrent: every chosen branch began before the first one ended. Told by the attempts'
    # own clocks, not by journal order: a scale-out worker holds a start back for 50 ms (as
    # long as these branches sleep) and may then send it along with the outcome.
    first_done = min(result.nodes[n].finished_at or 0.0 for n in chosen)
    for node in chosen:
        assert route_done < at(events, "node.queued", node)
        assert (result.nodes[node].started_at or 0.0) <= first_done
    for node in branches - chosen:
        assert not where(events, "node.queued", node)
        assert skip_reason(events, node) == "branch_not_taken"
    # Every branch was decided in the step that completed the choice, right after it.
    decided = {at(events, "node.queued", n) for n in chosen}
    decided |= {at(events, "node.skipped", n) for n in branches - chosen}
    assert decided == set(range(route_done + 1, route_done + 1 + len(branches)))


@pytest.mark.parametrize(("inputs", "chosen"), INCIDENTS)
async def test_wcp07_synchronizing_merge_waits_for_exactly_the_chosen_branches(
    engine: Engine, inputs: dict[str, bool], chosen: set[str]
) -> None:
    result, events = await run(engine, "wcp07", inputs)
    assert result.ok, result.error
    leaves = {n if n != "police" else "police_report" for n in chosen}
    last_done = max(at(events, "node.completed", n) for n in leaves)
    assert at(events, "node.queued", "close_incident") == last_done + 1
    if "police" not in chosen:
        assert skip_reason(events, "police") == "branch_not_taken"
        assert skip_reason(events, "police_report") == "upstream_skipped"  # the skip propagates
    merged = result.nodes["close_incident"].output
    assert {n for n, v in merged.items() if v is not None} == leaves


# ---------------------------------------------------------------------- advanced branching


async def test_wcp08_multi_merge_each_branch_runs_its_own_continuation(engine: Engine) -> None:
    result, events = await run(engine, "wcp08")
    assert result.ok, result.error
    credit_done = at(events, "node.completed", "check_credit")
    stock_done = at(events, "node.completed", "check_stock")
    assert at(events, "node.queued", "notify_after_credit") == credit_done + 1
    assert at(events, "node.completed", "notify_after_credit") < stock_done  # did not wait
    assert at(events, "node.queued", "notify_after_stock") == stock_done + 1


@pytest.mark.parametrize("rule", ["all_success", "all_done", "one_success", "none_failed"])
async def test_wcp08_limit_a_node_with_several_parents_runs_once(engine: Engine, rule: str) -> None:
    result = await engine.run(
        {
            "name": "one-merge",
            "dag": {
                "nodes": [
                    {"id": "b", "handler": "noop", "config": {"sleep": 0.01}},
                    {"id": "c", "handler": "noop", "config": {"sleep": 0.03}},
                    {
                        "id": "merge",
                        "handler": "noop",
                        "dependencies": ["b", "c"],
                        "trigger_rule": rule,
                    },
                ]
            },
        }
    )
    assert result.ok, result.error
    events = await journal(engine, result.execution_id)
    assert len(where(events, "node.queued", "merge")) == 1  # not once per incoming branch


async def test_wcp09_discriminator_fires_once_right_after_the_first_branch(
    engine: Engine,
) -> None:
    result, events = await run(engine, "wcp09")
    assert result.ok, result.error
    first = at(events, "node.completed", "mirror_eu")
    others = [at(events, "node.completed", n) for n in ("mirror_us", "mirror_ap")]
    assert first < min(others)
    assert at(events, "node.queued", "use_first") == first + 1
    assert at(events, "node.completed", "use_first") < min(others)  # did not wait for them
    assert at(events, "execution.completed") > max(others)  # the case still ends after all


def test_wcp10_limit_definitions_are_acyclic() -> None:
    cyclic = {
        "name": "loop",
        "dag": {
            "nodes": [
                {"id": "a", "handler": "noop", "dependencies": ["c"]},
                {"id": "b", "handler": "noop", "dependencies": ["a"]},
                {"id": "c", "handler": "noop", "dependencies": ["b"]},
            ]
        },
    }
    with pytest.raises(DefinitionError, match="cycle"):
        load_definition(cyclic)


async def test_wcp11_implicit_termination_ends_when_the_last_branch_ends(
    engine: Engine,
) -> None:
    result, events = await run(engine, "wcp11")
    assert result.ok, result.error
    assert skip_reason(events, "page_on_call") == "condition_false"
    quick = at(events, "node.completed", "quick_note")
    long = at(events, "node.completed", "long_step_2")
    assert quick < long  # one branch ended long before the other ...
    assert [e.type for e in events[quick:long] if e.type.startswith("execution.")] == []
    assert at(events, "execution.completed") == len(events) - 1 == long + 1  # ... no end node


# ---------------------------------------------------------------------- multiple instances


async def test_wcp12_instances_run_while_the_flow_goes_on(engine: Engine) -> None:
    recipients = [f"r{n}" for n in range(10)]  # the map's concurrency: all at once
    result, events = await run(engine, "wcp12", {"recipients": recipients})
    assert result.ok, result.error
    spawned_done = at(events, "node.completed", "notify_each")
    assert at(events, "node.queued", "notify_each") < at(events, "node.completed", "carry_on")
    assert at(events, "node.completed", "finish") < spawned_done  # nothing waited for them
    output = result.nodes["notify_each"].output
    assert [r["value"] for r in output["results"]] == [f"notified {who}" for who in recipients]
    took = events[spawned_done].at - events[at(events, "node.started", "notify_each")].at
    # Ten 50 ms instances one after the other take 0.5 s at least; together, about 50 ms
    # (the margin is for a loaded machine).
    assert took < 0.4


async def test_wcp13_design_time_instances_are_synchronised(engine: Engine) -> None:
    result, events = await run(engine, "wcp13")
    assert result.ok, result.error
    assert at(events, "node.completed", "inspect_each") < at(events, "node.queued", "report")
    assert result.nodes["inspect_each"].output["results"] == [
        "north inspected",
        "south inspected",
        "east inspected",
    ]
    assert result.nodes["report"].output == "3 sites inspected"


@pytest.mark.parametrize("parts", [["gear"], ["a", "b", "c", "d", "e", "f"], []])
async def test_wcp14_the_number_of_instances_is_decided_at_run_time(
    engine: Engine, parts: list[str]
) -> None:
    result, events = await run(engine, "wcp14", {"parts": parts})
    assert result.ok, result.error
    assert at(events, "node.completed", "list_parts") < at(events, "node.queued", "build_each")
    assert at(events, "node.completed", "build_each") < at(events, "node.queued", "assemble")
    assert result.nodes["build_each"].output["count"] == len(parts)
    assert result.nodes["assemble"].output == [f"{p} built" for p in parts]


# ---------------------------------------------------------------------- state-based


@pytest.mark.parametrize(
    ("how", "chosen", "other"),
    [
        ("approve", "ship_express", "ship_standard"),
        ("reject", "ship_standard", "ship_express"),
        ("timeout", "ship_standard", "ship_express"),
    ],
)
async def test_wcp16_deferred_choice_the_environment_picks_the_branch(
    engine: Engine, how: str, chosen: str, other: str
) -> None:
    spec: Path | dict[str, Any] = example("wcp16")
    if how == "timeout":
        # An approval's timer is the definition's alone (a start may not override it): the
        # same workflow with a short one.
        short: dict[str, Any] = yaml.safe_load(example("wcp16").read_text())
        (choice,) = [n for n in short["dag"]["nodes"] if n["id"] == "customer_choice"]
        choice["config"]["timeout"] = 0.05
        spec = short
    record = await engine.start_execution(spec)
    events = await until(engine, record.id, "node.waiting", "customer_choice")
    for node in ("route", "ship_express", "ship_standard"):
        assert not where(events, "node.queued", node)  # both futures still open
    if how != "timeout":
        await asyncio.sleep(0.02)
        assert (await engine.result(record.id)).status is ExecutionStatus.WAITING
        await engine.decide(record.id, "customer_choice", approved=how == "approve", by="ann")
    result = await engine.wait(record.id, timeout=5)
    assert result.ok, result.error
    events = await journal(engine, record.id)
    waited = at(events, "node.waiting", "customer_choice")
    decided = at(events, "node.completed", "customer_choice")
    if how == "timeout":
        assert waited < at(events, "node.woken", "customer_choice") < decided
    assert decided < at(events, "node.queued", "route") < at(events, "node.queued", chosen)
    assert not where(events, "node.queued", other)
    assert skip_reason(events, other) == "branch_not_taken"
    decision = result.nodes["customer_choice"].output
    assert decision["approved"] is (how == "approve")


async def test_wcp17_interleaved_no_two_nodes_run_at_once(engine: Engine) -> None:
    result, events = await run(engine, "wcp17")
    assert result.ok, result.error
    order = [events[i].node_id for i in where_type(events, "node.started")]
    assert order == [
        "open_books",
        "check_invoices",  # priority high
        "take_inventory",  # medium
        "reconcile_inventory",  # medium, ready once take_inventory is done
        "interview_staff",  # default priority, defined first but runs last
        "close_books",
    ]
    spans = sorted(
        (at(events, "node.queued", n), at(events, "node.completed", n)) for n in result.nodes
    )
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert end < begin  # each is queued only after the one before completed
    times = sorted(
        (events[at(events, "node.started", n)].at, events[at(events, "node.completed", n)].at)
        for n in result.nodes
    )
    for (_, finished), (started, _) in itertools.pairwise(times):
        assert finished <= started  # and, by the clock, never ran at the same time


# ---------------------------------------------------------------------- cancellation


async def test_wcp20_cancel_case_stops_everything_and_nothing_follows(engine: Engine) -> None:
    began = time.monotonic()
    record = await engine.start_execution(example("wcp20"))
    await until(engine, record.id, "node.started", "long_job")
    await until(engine, record.id, "node.started", "side_job")
    await engine.cancel(record.id)
    result = await engine.wait(record.id, timeout=5)
    assert result.status is ExecutionStatus.CANCELLED
    assert time.monotonic() - began < 2  # the 3 s jobs were stopped, not waited for
    await asyncio.sleep(0.1)  # give a stray completion the chance to show up
    events = await journal(engine, record.id)
    cancelled = at(events, "execution.cancelled")
    assert cancelled == len(events) - 1  # nothing at all after the cancellation
    for node in ("long_job", "side_job", "publish"):
        assert events[at(events, "node.cancelled", node)].seq < events[cancelled].seq
        assert not where(events, "node.completed", node)
        assert result.nodes[node].state is NodeState.CANCELLED
    assert not where(events, "node.queued", "publish")
    assert result.nodes["prepare"].state is NodeState.COMPLETED
