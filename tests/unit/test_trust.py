"""Trust levels: how they are read, combined, carried on the wire and applied per attempt."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrion.cluster.wire import decode_task, encode_task, loads
from orchestrion.core.events import Event, NodeFailed, NodeSucceeded
from orchestrion.dispatch.base import TaskMessage
from orchestrion.execution import enforce
from orchestrion.execution.enforce import attempt_resources
from orchestrion.execution.executor import NodeExecutor
from orchestrion.governance.runtime import Governance
from orchestrion.governance.trust import (
    Trust,
    stricter,
)
from orchestrion.handlers.base import Controls, Resources
from orchestrion.handlers.registry import default_registry

POLICY = "version: 1\npython:\n  allowed_modules: [json]\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("trusted", Trust.TRUSTED),
        (Trust.TRUSTED, Trust.TRUSTED),
        ("untrusted", Trust.UNTRUSTED),
        (None, Trust.UNTRUSTED),
        ("", Trust.UNTRUSTED),
        ("TRUSTED", Trust.UNTRUSTED),
        ("trusted ", Trust.UNTRUSTED),
        (" trusted", Trust.UNTRUSTED),
        ("yes", Trust.UNTRUSTED),
        (True, Trust.UNTRUSTED),
        (1, Trust.UNTRUSTED),
        (["trusted"], Trust.UNTRUSTED),
        ({"trust": "trusted"}, Trust.UNTRUSTED),
    ],
)
def test_only_the_exact_word_is_trusted(value: Any, expected: Trust) -> None:
    assert Trust.of(value) is expected


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ((), Trust.TRUSTED),
        (("trusted",), Trust.TRUSTED),
        (("trusted", Trust.TRUSTED), Trust.TRUSTED),
        (("trusted", "untrusted"), Trust.UNTRUSTED),
        (("untrusted", "trusted"), Trust.UNTRUSTED),
        (("trusted", None), Trust.UNTRUSTED),
        (("trusted", "garbage", "trusted"), Trust.UNTRUSTED),
    ],
)
def test_stricter_is_trusted_only_when_every_level_is(
    levels: tuple[Any, ...], expected: Trust
) -> None:
    assert stricter(*levels) is expected


def governance(tmp_path: Path, *, trusted: bool) -> Governance:
    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    return Governance.load(policy, trusted=trusted, environ={})


def installed(tmp_path: Path, *, trusted: bool) -> Resources:
    return Resources(enforce.controls_of(governance(tmp_path, trusted=trusted)))


@pytest.mark.parametrize(
    ("process", "task", "allowlist"),
    [
        (True, "trusted", None),
        (True, "untrusted", ("json",)),
        (True, None, ("json",)),
        (False, "trusted", ("json",)),  # an untrusted process runs nothing trusted
        (False, "untrusted", ("json",)),
    ],
)
def test_an_attempt_gets_the_stricter_of_its_process_and_its_execution(
    tmp_path: Path, process: bool, task: Any, allowlist: tuple[str, ...] | None
) -> None:
    resources = installed(tmp_path, trusted=process)
    view = attempt_resources(resources, task)
    assert view.controls.python_allowlist == allowlist
    # The process's own controls are never changed by a view.
    assert resources.controls.python_allowlist == (None if process else ("json",))


def test_without_a_policy_installed_untrusted_work_gets_registered_functions_only() -> None:
    view = attempt_resources(Resources(Controls.unrestricted()), "untrusted")
    assert view.controls.python_allowlist == ()
    assert not view.controls.routing.trusted


def test_a_view_shares_the_process_http_client() -> None:
    made: list[object] = []

    def factory() -> Any:
        made.append(object())
        return made[-1]

    resources = Resources(Controls.unrestricted(), http_factory=factory)
    view = attempt_resources(resources, "untrusted")
    assert view.http_client() is resources.http_client()
    assert attempt_resources(resources, "untrusted").http_client() is made[0]
    assert len(made) == 1
    unshared = Resources(Controls.unrestricted())
    assert attempt_resources(unshared, "untrusted").http_client() is None


def task(trust: Any = Trust.UNTRUSTED, **overrides: Any) -> TaskMessage:
    values: dict[str, Any] = {
        "execution_id": "e1",
        "node_id": "run",
        "attempt": 1,
        "handler": "python",
        "config": {"function": "{{ input.fn }}", "params": {"obj": [1]}},
        "inputs": {"fn": "textwrap:dedent"},
        "outputs": {},
        "trust": trust,
    }
    values.update(overrides)
    return TaskMessage(**values)


@pytest.mark.parametrize("trust", [Trust.TRUSTED, Trust.UNTRUSTED])
def test_trust_crosses_the_wire(trust: Trust) -> None:
    decoded = decode_task(loads(encode_task(task(trust))))
    assert decoded.trust is trust


@pytest.mark.parametrize("sent", [None, "", "TRUSTED", "trusted\u200b", 1, True, ["trusted"]])
def test_a_task_without_a_valid_trust_is_untrusted(sent: Any) -> None:
    body = json.loads(encode_task(task(Trust.TRUSTED)))
    if sent is None:
        del body["task"]["trust"]  # from an orchestrator older than the field
    else:
        body["task"]["trust"] = sent
    assert decode_task(loads(json.dumps(body))).trust is Trust.UNTRUSTED


async def run(executor: NodeExecutor, message: TaskMessage) -> Event:
    events: list[Event] = []
    await executor.execute(message, lambda _eid, event: events.append(event))
    return events[-1]


@pytest.mark.parametrize("kind", ["run", "compensate"])
@pytest.mark.parametrize(
    ("process", "trust", "runs"),
    [
        (True, Trust.TRUSTED, True),
        (True, Trust.UNTRUSTED, False),
        (False, Trust.TRUSTED, False),
        (False, Trust.UNTRUSTED, False),
    ],
)
async def test_the_executor_applies_the_allowlist_per_attempt(
    tmp_path: Path, process: bool, trust: Trust, runs: bool, kind: str
) -> None:
    """``textwrap:dedent`` is outside the allowlist: only trusted work in a trusted process
    may call it, whether the attempt is a node or a compensation."""
    executor = NodeExecutor(default_registry(), installed(tmp_path, trusted=process))
    message = task(
        trust,
        kind=kind,
        config={"function": "{{ input.fn }}", "params": {"text": "  x"}},
    )
    outcome = await run(executor, message)
    if runs:
        assert getattr(outcome, "output", None) == "x", outcome
    else:
        error = getattr(outcome, "error", None)
        assert error is not None and error.category == "policy_violation", outcome


@pytest.mark.parametrize(("trust", "runs"), [(Trust.TRUSTED, True), (Trust.UNTRUSTED, False)])
async def test_map_items_get_the_attempt_s_allowlist(
    tmp_path: Path, trust: Trust, runs: bool
) -> None:
    executor = NodeExecutor(default_registry(), installed(tmp_path, trusted=True))
    message = task(
        trust,
        handler="map",
        config={
            "items": ["  a", "  b"],
            "handler": "python",
            "config": {"function": "{{ input.fn }}", "params": {"text": "{{ item }}"}},
        },
    )
    outcome = await run(executor, message)
    if runs:
        assert isinstance(outcome, NodeSucceeded), outcome
        assert outcome.output["results"] == ["a", "b"]
    else:
        assert isinstance(outcome, NodeFailed), outcome
        assert "policy_violation" in outcome.error.message


async def test_untrusted_and_trusted_attempts_interleave_without_leaking(tmp_path: Path) -> None:
    """One executor, both levels at once: a trusted attempt never lends its (absent)
    allowlist to an untrusted one, nor the reverse."""
    executor = NodeExecutor(default_registry(), installed(tmp_path, trusted=True))
    config = {"function": "{{ input.fn }}", "params": {"text": "  x"}}
    messages = [
        task(Trust.TRUSTED if i % 2 else Trust.UNTRUSTED, node_id=f"n{i}", config=config)
        for i in range(20)
    ]
    outcomes = await asyncio.gather(*(run(executor, m) for m in messages))
    for i, outcome in enumerate(outcomes):
        assert isinstance(outcome, NodeSucceeded if i % 2 else NodeFailed), (i, outcome)
