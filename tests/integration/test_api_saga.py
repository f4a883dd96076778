"""Compensation (saga) through the REST API, in-process on a real engine and SQLite: only the
nodes whose action completed are compensated, the failed node and a node still running at the
execution's timeout stay FAILED, and a compensation that fails shows on its node
(``compensation``, ``error``) and in the execution's error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_api import serving


def undo(function: str, **params: Any) -> dict[str, Any]:
    return {"handler": "python", "config": {"function": function, "params": params}}


def step(node_id: str, deps: list[str], compensate: dict[str, Any], **extra: Any) -> dict:
    return {
        "id": node_id,
        "handler": "noop",
        "dependencies": deps,
        "compensate": compensate,
        **extra,
    }


async def test_a_failure_compensates_completed_nodes_and_shows_a_broken_compensation(
    tmp_path: Path,
) -> None:
    flow = {
        "name": "saga-api",
        "on_failure": "compensate",
        "dag": {
            "nodes": [
                step("a", [], undo("fail", message="comp a broke")),
                step("b", ["a"], undo("sleep", seconds=0)),
                {
                    **step("c", ["b"], undo("sleep", seconds=0)),
                    "handler": "python",
                    "config": {"function": "fail", "params": {"message": "c broke"}},
                    "retry": {"max_attempts": 1},
                },
            ]
        },
    }
    async with serving(tmp_path) as api:
        execution_id = await api.start(flow)
        body = await api.until(execution_id, "FAILED", "COMPLETED")
        events = (await api.client.get(f"/v1/workflows/{execution_id}/events")).json()
    nodes = body["nodes"]
    assert {n: (nodes[n]["state"], nodes[n]["compensation"]) for n in nodes} == {
        "a": ("COMPLETED", "failed"),
        "b": ("COMPENSATED", "done"),
        "c": ("FAILED", None),
    }
    assert "comp a broke" in nodes["a"]["error"]["message"]
    assert "c broke" in nodes["c"]["error"]["message"]
    assert nodes["b"]["error"] is None
    assert body["error"]["nodes"] == ["c"] and body["error"]["compensation_failed"] == ["a"]
    assert "compensation failed: a (a: " in body["error"]["message"]
    items = events["items"] if isinstance(events, dict) else events
    undone = [e["node_id"] for e in items if e["type"] == "node.compensated"]
    assert undone == ["b"]


async def test_a_timeout_compensates_what_completed_not_what_still_ran(tmp_path: Path) -> None:
    flow = {
        "name": "saga-timeout-api",
        "timeout": "1s",
        "dag": {
            "nodes": [
                step("a", [], undo("sleep", seconds=0)),
                {
                    **step("s", ["a"], undo("sleep", seconds=0)),
                    "handler": "python",
                    "config": {"function": "sleep", "params": {"seconds": 3}},
                },
            ]
        },
    }
    async with serving(tmp_path) as api:
        execution_id = await api.start(flow)
        body = await api.until(execution_id, "FAILED", "COMPLETED", timeout=10)
    nodes = body["nodes"]
    assert body["error"]["category"] == "timeout"
    assert (nodes["a"]["state"], nodes["a"]["compensation"]) == ("COMPENSATED", "done")
    assert (nodes["s"]["state"], nodes["s"]["compensation"]) == ("FAILED", None)
    assert nodes["s"]["error"]["category"] == "timeout"
