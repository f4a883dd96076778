"""Benchmark workloads as definition builders (shared by bench/run.py and the tests)."""

from __future__ import annotations

from typing import Any

__all__ = ["HANDLERS", "chain", "diamond", "fan_out", "map_items", "node", "wide_dag"]

HANDLERS = ("async", "sync", "quick", "inline", "inline-def", "noop")
"""What a workload's nodes run: a user function per node through the ``python`` handler,
``async def`` (async), ``def`` (sync: in a worker thread, the default) or ``def`` registered
with ``blocking=False`` (quick: on the event loop) or ``async def`` registered with
``inline=True`` (inline: inside the engine's turn) or ``def`` registered so (inline-def),
see bench/functions.py; or the built-in
``noop`` handler, which runs inside the engine's turn (the engine's own overhead)."""
FUNCTIONS = {
    "async": "bench_pass_on",
    "sync": "bench_pass_on_sync",
    "quick": "bench_pass_on_quick",
    "inline": "bench_pass_on_inline",
    "inline-def": "bench_pass_on_inline_def",
}


def node(
    node_id: str, handler: str = "noop", dependencies: list[str] | None = None, value: Any = None
) -> dict[str, Any]:
    """One node of ``handler`` (one of ``HANDLERS``, or a handler name) passing ``value`` on."""
    spec: dict[str, Any] = {"id": node_id}
    if dependencies:
        spec["dependencies"] = dependencies
    if handler in FUNCTIONS:
        function = FUNCTIONS[handler]
        params = {} if value is None else {"value": value}
        spec["handler"] = "python"
        spec["config"] = {"function": function, "params": params}
    else:
        spec["handler"] = handler
        if value is not None:
            spec["config"] = {"value": value}
    return spec


def fan_out(width: int = 1000, handler: str = "noop") -> dict[str, Any]:
    """1 root -> ``width`` parallel nodes -> 1 sink."""
    nodes = [node("root", handler)]
    nodes += [node(f"n{i}", handler, ["root"]) for i in range(width)]
    nodes.append(node("sink", handler, [f"n{i}" for i in range(width)]))
    suffix = "" if handler == "noop" else f"-{handler}"
    return {"name": f"fan-out-{width}{suffix}", "dag": {"nodes": nodes}}


def chain(length: int = 200, handler: str = "noop") -> dict[str, Any]:
    """``length`` nodes in a line, each passing its predecessor's output on."""
    nodes = [node("c0", handler, value=0)]
    nodes += [
        node(f"c{i}", handler, [f"c{i - 1}"], f"{{{{ c{i - 1}.output }}}}")
        for i in range(1, length)
    ]
    return {"name": f"chain-{length}-{handler}", "dag": {"nodes": nodes}}


def diamond(handler: str = "noop") -> dict[str, Any]:
    """a -> (b, c) -> d."""
    return {
        "name": "diamond" if handler == "noop" else f"diamond-{handler}",
        "dag": {
            "nodes": [
                node("a", handler),
                node("b", handler, ["a"]),
                node("c", handler, ["a"]),
                node("d", handler, ["b", "c"]),
            ]
        },
    }


def wide_dag(size: int = 100_000) -> dict[str, Any]:
    """``size`` nodes: a binary-tree-like DAG (each node depends on node i // 2)."""
    nodes: list[dict[str, Any]] = [{"id": "n0", "handler": "noop"}]
    nodes += [
        {"id": f"n{i}", "handler": "noop", "dependencies": [f"n{(i - 1) // 2}"]}
        for i in range(1, size)
    ]
    return {"name": f"dag-{size}", "dag": {"nodes": nodes}}


def map_items(count: int = 10_000) -> dict[str, Any]:
    """A ``map`` node running a no-op per item over ``count`` items made upstream."""
    return {
        "name": f"map-{count}",
        "dag": {
            "nodes": [
                {"id": "items", "handler": "noop", "config": {"value": list(range(count))}},
                {
                    "id": "each",
                    "handler": "map",
                    "dependencies": ["items"],
                    "config": {
                        "items": "{{ items.output }}",
                        "handler": "noop",
                        "config": {"value": "{{ item }}"},
                        "concurrency": 100,
                    },
                },
            ]
        },
    }
